// Package sqlite is the embedded default storage backend: a single SQLite
// file (modernc.org/sqlite, pure Go) in WAL mode with a busy timeout,
// durable commits and foreign keys on.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/m2mauth/m2mauth/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Flavor describes SQLite to sqlstore. Every transaction is BEGIN IMMEDIATE
// (see Open), which serialises migrators without an extra lock.
var Flavor = sqlstore.Flavor{
	Name:            "sqlite",
	ForeignKeysOff:  "PRAGMA foreign_keys = OFF",
	ForeignKeysOn:   "PRAGMA foreign_keys = ON",
	ForeignKeyCheck: "PRAGMA foreign_key_check",
	Positional:      true,
	GrantsJSON: `(SELECT COALESCE(json_group_array(json_object('a', api_identifier, 's', scopes, 'l', token_lifetime_ms)), '[]')
		FROM (SELECT g.api_identifier, g.scopes, a.token_lifetime_ms FROM client_grants g JOIN apis a ON a.env = g.env AND a.identifier = g.api_identifier
			WHERE g.env = c.env AND g.client_id = c.id ORDER BY g.api_identifier))`,
	Contains: func(col, param string) string { return "instr(lower(" + col + "), lower(" + param + ")) > 0" },
	IsUniqueViolation: func(err error) bool {
		return hasCode(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
	},
	IsForeignKeyViolation: func(err error) bool { return hasCode(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) },
}

func hasCode(err error, codes ...int) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, c := range codes {
		if e.Code() == c {
			return true
		}
	}
	return false
}

// Open opens (creating if needed) the database file at path and applies
// pending migrations.
func Open(ctx context.Context, path string, opts ...sqlstore.Option) (*sqlstore.Store, error) {
	db, err := openDB(ctx, path, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := Migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return sqlstore.New(db, Flavor), nil
}

// MigrateFile applies pending migrations to the database file at path.
func MigrateFile(ctx context.Context, path string) (int, error) {
	db, err := openDB(ctx, path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return Migrate(ctx, db)
}

func openDB(ctx context.Context, path string, opts ...sqlstore.Option) (*sql.DB, error) {
	// Create the file owner-only before SQLite does; its -wal and -shm files
	// inherit the mode.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	} else {
		f.Close()
	}
	q := url.Values{}
	// temp_store(MEMORY): an upsert of many rows inside a transaction
	// (the usage flush) keeps a statement journal; in a temporary file it
	// cost a pwrite a page (18 % of the flush's CPU).
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)", "synchronous(FULL)", "temp_store(MEMORY)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	c, err := sqlite.NewConnector("file:" + path + "?" + q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db := sqlstore.OpenDB(c, opts...)
	db.SetMaxOpenConns(8)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, nil
}

// Migrate applies pending migrations and reports how many it applied.
func Migrate(ctx context.Context, db *sql.DB) (int, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, err
	}
	return sqlstore.Migrate(ctx, db, Flavor, sub)
}
