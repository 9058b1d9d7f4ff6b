package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Migrate applies the numbered migrations in fsys ("0001_name.sql", …) that
// the database has not seen, each in its own transaction together with its
// record in schema_migrations. Concurrent migrators are serialised by the
// flavor's lock (PostgreSQL) or by the transaction's write lock (SQLite), and
// each re-checks the version inside its transaction, so two processes
// starting at once apply every migration exactly once.
func Migrate(ctx context.Context, db *sql.DB, f Flavor, fsys fs.FS) (applied int, err error) {
	type migration struct {
		version int
		name    string
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return 0, fmt.Errorf("migrate: bad migration file name %q", e.Name())
		}
		ms = append(ms, migration{v, e.Name()})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if i > 0 && ms[i-1].version == m.version {
			return 0, fmt.Errorf("migrate: two migrations numbered %d", m.version)
		}
		body, err := fs.ReadFile(fsys, m.name)
		if err != nil {
			return applied, fmt.Errorf("migrate: %w", err)
		}
		did, err := applyOne(ctx, db, f, m.version, string(body))
		if err != nil {
			return applied, fmt.Errorf("migrate: %s: %w", m.name, err)
		}
		if did {
			applied++
		}
	}
	return applied, nil
}

func applyOne(ctx context.Context, db *sql.DB, f Flavor, version int, body string) (did bool, err error) {
	// One connection for the whole migration: a flavor whose foreign keys
	// must be off to rebuild tables (SQLite) switches them off on it, outside
	// the transaction, and checks them before committing.
	conn, err := db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if f.ForeignKeysOff != "" {
		if _, err := conn.ExecContext(ctx, f.ForeignKeysOff); err != nil {
			return false, err
		}
		defer func() {
			if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), f.ForeignKeysOn); rerr != nil {
				// Never hand back to the pool a connection that does not
				// enforce foreign keys.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
				if err == nil {
					err = rerr
				}
			}
		}()
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()
	if f.MigrationLock != "" {
		if _, err := tx.ExecContext(ctx, f.MigrationLock); err != nil {
			return false, err
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return false, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return false, err
	}
	if f.ForeignKeyCheck != "" {
		rows, err := tx.QueryContext(ctx, f.ForeignKeyCheck)
		if err != nil {
			return false, err
		}
		broken := rows.Next()
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return false, err
		}
		if broken {
			return false, errors.New("the migration leaves rows whose references are broken")
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, time.Now().UnixMicro()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
