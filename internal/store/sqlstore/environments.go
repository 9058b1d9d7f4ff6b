package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

const envColumns = `name, display_name, signing_alg, key_rotation_ms, key_work_at, version, created_at, updated_at`

func scanEnvironment(row interface{ Scan(...any) error }) (store.Environment, error) {
	var e store.Environment
	var rotationMS, workAt, created, updated int64
	if err := row.Scan(&e.Name, &e.DisplayName, &e.SigningAlg, &rotationMS, &workAt, &e.Version, &created, &updated); err != nil {
		return e, err
	}
	e.KeyRotationPeriod = time.Duration(rotationMS) * time.Millisecond
	e.KeyWorkAt, e.CreatedAt, e.UpdatedAt = fromMicros(workAt), fromMicros(created), fromMicros(updated)
	return e, nil
}

// CreateEnvironment implements store.Store.
func (s *Store) CreateEnvironment(ctx context.Context, e store.Environment) error {
	return s.mapErr("create environment", s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO environments (`+envColumns+`) VALUES ($1, $2, $3, $4, $5, 1, $6, $7)`,
			e.Name, e.DisplayName, e.SigningAlg, e.KeyRotationPeriod.Milliseconds(), micros(e.KeyWorkAt), micros(e.CreatedAt), micros(e.UpdatedAt)); err != nil {
			return err
		}
		return s.Scoped(store.DefaultEnv).notify(ctx, tx, ChangeEnvPrefix+e.Name)
	}))
}

// GetEnvironment implements store.Store.
func (s *Store) GetEnvironment(ctx context.Context, name string) (store.Environment, error) {
	e, err := scanEnvironment(s.db.QueryRowContext(ctx, `SELECT `+envColumns+` FROM environments WHERE name = $1`, name))
	return e, s.mapErr("get environment", err)
}

// ListEnvironments implements store.Store.
func (s *Store) ListEnvironments(ctx context.Context, opts store.ListOptions) ([]store.Environment, error) {
	var q strings.Builder
	var a args
	q.WriteString(`SELECT ` + envColumns + ` FROM environments`)
	// The search matches the display name too.
	var extra []string
	if opts.NameContains != "" {
		p := a.add(opts.NameContains)
		extra = append(extra, "("+s.f.Contains("name", p)+" OR "+s.f.Contains("display_name", p)+")")
		opts.NameContains = ""
	}
	s.page(&q, &a, "name", "name", opts, extra)
	rows, err := s.db.QueryContext(ctx, q.String(), a...)
	if err != nil {
		if s.invalidText(err) {
			return []store.Environment{}, nil
		}
		return nil, s.mapErr("list environments", err)
	}
	out, err := collect(rows, scanEnvironment)
	return out, s.mapErr("list environments", err)
}

// UpdateEnvironment implements store.Store.
func (s *Store) UpdateEnvironment(ctx context.Context, name string, fn func(*store.Environment) error) (store.Environment, error) {
	var out store.Environment
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		e, err := scanEnvironment(tx.QueryRowContext(ctx, `SELECT `+envColumns+` FROM environments WHERE name = $1`+s.f.ForUpdate, name))
		if err != nil {
			return err
		}
		next := e
		if err := fn(&next); err != nil {
			return err
		}
		if next.Name != e.Name {
			return fmt.Errorf("an environment's name cannot change: %w", store.ErrConflict)
		}
		next.Version = e.Version + 1
		if _, err := tx.ExecContext(ctx, `UPDATE environments SET display_name = $1, signing_alg = $2, key_rotation_ms = $3, key_work_at = $4,
				version = $5, updated_at = $6 WHERE name = $7`,
			next.DisplayName, next.SigningAlg, next.KeyRotationPeriod.Milliseconds(), micros(next.KeyWorkAt), next.Version, micros(next.UpdatedAt), name); err != nil {
			return err
		}
		out = next
		return s.Scoped(store.DefaultEnv).notify(ctx, tx, ChangeEnvPrefix+name)
	})
	return out, s.mapErr("update environment", err)
}

// DeleteEnvironment implements store.Store. Every per-environment table
// references environments with ON DELETE CASCADE: one statement deletes
// the environment and all it holds, atomically.
func (s *Store) DeleteEnvironment(ctx context.Context, name string, version int64) error {
	if name == store.DefaultEnv {
		return s.mapErr("delete environment", fmt.Errorf("the default environment cannot be deleted: %w", store.ErrConflict))
	}
	return s.mapErr("delete environment", s.inTx(ctx, func(tx *sql.Tx) error {
		var cur int64
		if err := tx.QueryRowContext(ctx, `SELECT version FROM environments WHERE name = $1`+s.f.ForUpdate, name).Scan(&cur); err != nil {
			return err
		}
		if cur != version {
			return fmt.Errorf("environment %s is at version %d, not %d: %w", name, cur, version, store.ErrConflict)
		}
		// Children first, so that no ON DELETE RESTRICT-like check between
		// them (grants of an API) depends on the order of the cascade.
		for _, table := range []string{"client_grants", "client_secrets", "refresh_tokens", "clients", "apis"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE env = $1`, name); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM environments WHERE name = $1`, name); err != nil {
			return err
		}
		return s.Scoped(store.DefaultEnv).notify(ctx, tx, ChangeEnvPrefix+name)
	}))
}

// KeyWorkDue implements store.Store.
func (s *Store) KeyWorkDue(ctx context.Context, now time.Time, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM environments WHERE key_work_at <= $1 ORDER BY key_work_at, name LIMIT $2`, micros(now), limit)
	if err != nil {
		return nil, s.mapErr("environments due for key work", err)
	}
	out, err := collect(rows, scanString)
	return out, s.mapErr("environments due for key work", err)
}

// SetKeyWorkAt implements store.Store.
func (s *Store) SetKeyWorkAt(ctx context.Context, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE environments SET key_work_at = $1 WHERE name = $2`, micros(at), s.env)
	return s.mapErr("set key work time", err)
}
