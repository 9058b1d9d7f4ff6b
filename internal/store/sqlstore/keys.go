package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"

	"github.com/m2mauth/m2mauth/internal/store"
)

const keyColumns = `kid, alg, state, private_key, public_jwk, master_key_id, created_at, activate_at, activated_at, retired_at, remove_at`

func insertKey(ctx context.Context, q querier, env string, k store.SigningKey, onConflict string) (sql.Result, error) {
	return q.ExecContext(ctx, `INSERT INTO signing_keys (env, `+keyColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`+onConflict,
		env, k.KID, k.Alg, k.State, k.Private, string(k.PublicJWK), k.MasterKeyID,
		micros(k.CreatedAt), micros(k.ActivateAt), micros(k.ActivatedAt), micros(k.RetiredAt), micros(k.RemoveAt))
}

// CreateSigningKey implements store.Store. The partial unique index on
// (env, state) where state = 'active' makes "insert an active key unless
// the environment has one" atomic.
func (s *Store) CreateSigningKey(ctx context.Context, k store.SigningKey) (bool, error) {
	res, err := insertKey(ctx, s.db, s.env, k, " ON CONFLICT DO NOTHING")
	if err != nil {
		return false, s.mapErr("create signing key", err)
	}
	n, err := res.RowsAffected()
	if err == nil && n == 1 {
		err = s.notify(ctx, s.db, ChangeKeys)
	}
	return n == 1, s.mapErr("create signing key", err)
}

// ListSigningKeys implements store.Store.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	keys, err := listKeys(ctx, s.db, s.env)
	return keys, s.mapErr("list signing keys", err)
}

func listKeys(ctx context.Context, q querier, env string) ([]store.SigningKey, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+keyColumns+` FROM signing_keys WHERE env = $1 ORDER BY created_at DESC, kid`, env)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := []store.SigningKey{}
	for rows.Next() {
		var k store.SigningKey
		var pub string
		var created, activate, activated, retired, remove int64
		if err := rows.Scan(&k.KID, &k.Alg, &k.State, &k.Private, &pub, &k.MasterKeyID, &created, &activate, &activated, &retired, &remove); err != nil {
			return nil, err
		}
		k.PublicJWK = []byte(pub)
		k.CreatedAt, k.ActivateAt, k.ActivatedAt = fromMicros(created), fromMicros(activate), fromMicros(activated)
		k.RetiredAt, k.RemoveAt = fromMicros(retired), fromMicros(remove)
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// UpdateSigningKeys implements store.Store. The keys are the
// environment's; meta (read by fn, written by the update) is the
// deployment's.
func (s *Store) UpdateSigningKeys(ctx context.Context, fn func([]store.SigningKey, func(string) string) (store.KeyUpdate, error)) error {
	return s.mapErr("update signing keys", s.inTx(ctx, func(tx *sql.Tx) error {
		if s.f.KeysLock != "" {
			if _, err := tx.ExecContext(ctx, s.f.KeysLock, s.env); err != nil {
				return err
			}
		}
		keys, err := listKeys(ctx, tx, s.env)
		if err != nil {
			return err
		}
		var metaErr error
		meta := func(k string) string {
			var v string
			if err := tx.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = $1`, k).Scan(&v); err != nil && !errors.Is(err, sql.ErrNoRows) {
				metaErr = err
			}
			return v
		}
		u, err := fn(keys, meta)
		if err != nil {
			return err
		}
		if metaErr != nil {
			return metaErr
		}
		if u.Empty() {
			return nil
		}
		for _, kid := range u.Delete {
			if _, err := tx.ExecContext(ctx, `DELETE FROM signing_keys WHERE env = $1 AND kid = $2`, s.env, kid); err != nil {
				return err
			}
		}
		// Keys leaving the active state first: at most one key is active.
		ordered := append([]store.SigningKey{}, u.Update...)
		slices.SortStableFunc(ordered, func(a, b store.SigningKey) int {
			return boolInt(a.State == store.KeyActive) - boolInt(b.State == store.KeyActive)
		})
		for _, k := range ordered {
			if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET state = $1, private_key = $2, master_key_id = $3,
					activate_at = $4, activated_at = $5, retired_at = $6, remove_at = $7 WHERE env = $8 AND kid = $9`,
				k.State, k.Private, k.MasterKeyID, micros(k.ActivateAt), micros(k.ActivatedAt), micros(k.RetiredAt), micros(k.RemoveAt), s.env, k.KID); err != nil {
				return err
			}
		}
		for _, k := range u.Insert {
			if _, err := insertKey(ctx, tx, s.env, k, ""); err != nil {
				return err
			}
		}
		for k, v := range u.Meta {
			if _, err := tx.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v`, k, v); err != nil {
				return err
			}
		}
		return s.notify(ctx, tx, ChangeKeys)
	}))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
