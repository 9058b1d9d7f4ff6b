// Package postgres is the PostgreSQL storage backend (pgx v5), used when
// several replicas serve one deployment.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/m2mauth/m2mauth/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockID is the advisory lock key that serialises migrators
// ("m2mauth" in ASCII).
const migrationLockID = 0x6d326d61757468

// Channel is the LISTEN/NOTIFY channel on which changes to clients and APIs
// are announced to every replica.
const Channel = "m2mauth_changes"

// keysLockClass is the first key of the two-key advisory lock that
// serialises the signing key changes of one environment (the second is a
// hash of its name): environments do not wait for each other. Two-key
// locks never conflict with the one-key migration lock.
const keysLockClass = 0x6d326d61 // "m2ma" in ASCII

// Flavor describes PostgreSQL to sqlstore.
var Flavor = sqlstore.Flavor{
	Name:          "postgres",
	MigrationLock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLockID),
	ForUpdate:     " FOR UPDATE",
	KeysLock:      fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, hashtext($1))", keysLockClass),
	Notify:        "SELECT pg_notify('" + Channel + "', $1)",
	GrantsJSON: `(SELECT COALESCE(json_agg(json_build_object('a', g.api_identifier, 's', g.scopes, 'l', a.token_lifetime_ms) ORDER BY g.api_identifier), '[]')::text
		FROM client_grants g JOIN apis a ON a.env = g.env AND a.identifier = g.api_identifier WHERE g.env = c.env AND g.client_id = c.id)`,
	TouchSecrets: func(envs, ids []string, at []int64) (string, []any) {
		return `UPDATE client_secrets AS s SET last_used_at = v.t
			FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v (env, id, t)
			WHERE s.id = v.id AND s.env = v.env AND s.last_used_at < v.t`, []any{envs, ids, at}
	},
	// 40P01 deadlock_detected.
	IsDeadlock:            func(err error) bool { return hasCode(err, "40P01") },
	Contains:              func(col, param string) string { return "strpos(lower(" + col + "), lower(" + param + ")) > 0" },
	IsUniqueViolation:     func(err error) bool { return hasCode(err, "23505") },
	IsForeignKeyViolation: func(err error) bool { return hasCode(err, "23503") },
	// 22021 character_not_in_repertoire: invalid UTF-8 or a NUL byte.
	IsInvalidText: func(err error) bool { return hasCode(err, "22021") },
}

func hasCode(err error, code string) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == code
}

// Store is a PostgreSQL-backed store.
type Store struct {
	*sqlstore.Store
	pool *pgxpool.Pool
}

// Open connects to dsn (a postgres:// URL or key=value string) and applies
// pending migrations.
func Open(ctx context.Context, dsn string, opts ...sqlstore.Option) (*Store, error) {
	pool, db, err := connect(ctx, dsn, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := Migrate(ctx, db); err != nil {
		db.Close()
		pool.Close()
		return nil, err
	}
	return &Store{Store: sqlstore.New(db, Flavor), pool: pool}, nil
}

// MigrateDSN applies pending migrations to the database at dsn.
func MigrateDSN(ctx context.Context, dsn string) (int, error) {
	pool, db, err := connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	defer db.Close()
	return Migrate(ctx, db)
}

func connect(ctx context.Context, dsn string, opts ...sqlstore.Option) (*pgxpool.Pool, *sql.DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can echo the DSN, which may hold a password.
		return nil, nil, errors.New("open postgres: invalid connection string")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("open postgres: %w", err)
	}
	db := sqlstore.OpenDB(stdlib.GetPoolConnector(pool), opts...)
	// The pool holds the idle connections (as stdlib.OpenDBFromPool).
	db.SetMaxIdleConns(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		pool.Close()
		return nil, nil, fmt.Errorf("open postgres %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return pool, db, nil
}

// Migrate applies pending migrations and reports how many it applied.
func Migrate(ctx context.Context, db *sql.DB) (int, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, err
	}
	return sqlstore.Migrate(ctx, db, Flavor, sub)
}

// Close closes the database and its pool.
func (s *Store) Close() error {
	err := s.Store.Close()
	s.pool.Close()
	return err
}
