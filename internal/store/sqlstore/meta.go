package sqlstore

import (
	"context"
	"database/sql"

	"github.com/m2mauth/m2mauth/internal/store"
)

// InitBootstrap implements store.Store. The insert into meta is the claim:
// under concurrency exactly one transaction inserts the row; the others wait
// for it to commit and then find it taken.
func (s *Store) InitBootstrap(ctx context.Context, b store.Bootstrap) (bool, error) {
	created := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ('bootstrap_admin_client', $1) ON CONFLICT (k) DO NOTHING`, b.AdminClient.ID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v`,
			store.MetaIssuer, b.Issuer); err != nil {
			return err
		}
		if n == 0 {
			// Already bootstrapped. The issuer may have changed: move the
			// built-in API, its grants (by cascade) and default audiences.
			var cur string
			if err := tx.QueryRowContext(ctx, `SELECT identifier FROM apis WHERE env = $1 AND builtin = $2`, s.env, b.AdminAPI.Builtin).Scan(&cur); err != nil {
				return err
			}
			if cur == b.AdminAPI.Identifier {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE apis SET identifier = $1, updated_at = $2, version = version + 1 WHERE env = $3 AND builtin = $4`,
				b.AdminAPI.Identifier, micros(b.AdminAPI.UpdatedAt), s.env, b.AdminAPI.Builtin); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE clients SET default_audience = $1, version = version + 1 WHERE env = $2 AND default_audience = $3`,
				b.AdminAPI.Identifier, s.env, cur); err != nil {
				return err
			}
			return s.notify(ctx, tx, ChangeAPIPrefix+b.AdminAPI.Identifier)
		}
		created = true
		if err := insertAPI(ctx, tx, s.env, b.AdminAPI); err != nil {
			return err
		}
		return insertClient(ctx, tx, s.env, b.AdminClient)
	})
	if err != nil {
		return false, s.mapErr("bootstrap", err)
	}
	return created, nil
}

// GetMeta implements store.Store.
func (s *Store) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = $1`, key).Scan(&v)
	return v, s.mapErr("get meta", err)
}

// EnsureMeta implements store.Store.
func (s *Store) EnsureMeta(ctx context.Context, key, value string) (string, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING`, key, value); err != nil {
		return "", s.mapErr("ensure meta", err)
	}
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = $1`, key).Scan(&v)
	return v, s.mapErr("ensure meta", err)
}
