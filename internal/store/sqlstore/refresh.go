package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

const refreshColumns = `hash, family_id, client_id, audience, scopes, created_at, expires_at, used_at, revoked_at, dpop`

// insertRefresh inserts t into environment env.
func insertRefresh(ctx context.Context, q querier, env string, t store.RefreshToken) error {
	_, err := q.ExecContext(ctx, `INSERT INTO refresh_tokens (env, `+refreshColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9)`,
		env, t.Hash, t.FamilyID, t.ClientID, joinScopes(t.Audience), joinScopes(t.Scopes), micros(t.CreatedAt), micros(t.ExpiresAt), t.DPoP)
	return err
}

// CreateRefreshToken implements store.Store.
func (s *Store) CreateRefreshToken(ctx context.Context, t store.RefreshToken) error {
	return s.mapErr("create refresh token", insertRefresh(ctx, s.db, s.env, t))
}

// RedeemRefreshToken implements store.Store.
func (s *Store) RedeemRefreshToken(ctx context.Context, hash string, now time.Time, next func(store.RefreshToken) (store.RefreshToken, error)) (store.RefreshToken, error) {
	var cur store.RefreshToken
	spent := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if cur, err = scanRefresh(tx.QueryRowContext(ctx, `SELECT `+refreshColumns+` FROM refresh_tokens WHERE hash = $1 AND env = $2`+s.f.ForUpdate, hash, s.env)); err != nil {
			return err
		}
		if !now.Before(cur.ExpiresAt) {
			return store.ErrNotFound
		}
		if !cur.UsedAt.IsZero() || !cur.RevokedAt.IsZero() {
			// Replay of a spent token: someone holds a copy. Revoke the
			// family, and commit that.
			spent = true
			_, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND env = $3 AND revoked_at = 0`, micros(now), cur.FamilyID, s.env)
			return err
		}
		succ, err := next(cur)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2 AND env = $3`, micros(now), hash, s.env); err != nil {
			return err
		}
		return insertRefresh(ctx, tx, s.env, succ)
	})
	if err == nil && spent {
		err = store.ErrTokenSpent
	}
	return cur, s.mapErr("redeem refresh token", err)
}

// DeleteExpiredRefreshTokens implements store.Store. It is deployment
// maintenance: it deletes the expired tokens of every environment.
func (s *Store) DeleteExpiredRefreshTokens(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE expires_at < $1`, micros(before))
	if err != nil {
		return 0, s.mapErr("delete expired refresh tokens", err)
	}
	n, err := res.RowsAffected()
	return int(n), s.mapErr("delete expired refresh tokens", err)
}

func scanRefresh(row interface{ Scan(...any) error }) (store.RefreshToken, error) {
	var t store.RefreshToken
	var aud, scopes string
	var created, expires, used, revoked int64
	err := row.Scan(&t.Hash, &t.FamilyID, &t.ClientID, &aud, &scopes, &created, &expires, &used, &revoked, &t.DPoP)
	t.Audience, t.Scopes = splitScopes(aud), splitScopes(scopes)
	t.CreatedAt, t.ExpiresAt, t.UsedAt, t.RevokedAt = fromMicros(created), fromMicros(expires), fromMicros(used), fromMicros(revoked)
	return t, err
}

// GetRefreshToken implements store.Store.
func (s *Store) GetRefreshToken(ctx context.Context, hash string) (store.RefreshToken, error) {
	t, err := scanRefresh(s.db.QueryRowContext(ctx, `SELECT `+refreshColumns+` FROM refresh_tokens WHERE hash = $1 AND env = $2`, hash, s.env))
	return t, s.mapErr("get refresh token", err)
}

// RevokeRefreshFamily implements store.Store.
func (s *Store) RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND env = $3 AND revoked_at = 0`, micros(now), familyID, s.env)
	return s.mapErr("revoke refresh family", err)
}

// RevokeClientRefreshTokens implements store.Store.
func (s *Store) RevokeClientRefreshTokens(ctx context.Context, clientID string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE env = $2 AND client_id = $3 AND revoked_at = 0`, micros(now), s.env, clientID)
	return s.mapErr("revoke client refresh tokens", err)
}
