package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, r store.Revocation) error {
	return s.mapErr("revoke token", s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO revocations (env, jti, client_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (env, jti) DO NOTHING`,
			s.env, r.JTI, r.ClientID, micros(r.ExpiresAt), micros(r.RevokedAt)); err != nil {
			return err
		}
		return s.notify(ctx, tx, ChangeRevokedPrefix+strconv.FormatInt(micros(r.ExpiresAt), 10)+":"+r.JTI)
	}))
}

// IsRevoked implements store.Store.
func (s *Store) IsRevoked(ctx context.Context, jti string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM revocations WHERE env = $1 AND jti = $2`, s.env, jti).Scan(&n)
	return n > 0, s.mapErr("is revoked", err)
}

// ListRevocations implements store.Store.
func (s *Store) ListRevocations(ctx context.Context, now time.Time, after *store.Revocation, limit int) ([]store.Revocation, error) {
	var q strings.Builder
	a := args{}
	q.WriteString(`SELECT jti, client_id, expires_at, revoked_at FROM revocations WHERE env = ` + a.add(s.env) + ` AND expires_at > ` + a.add(micros(now)))
	if after != nil {
		at := a.add(micros(after.RevokedAt))
		q.WriteString(` AND (revoked_at < ` + at + ` OR (revoked_at = ` + at + ` AND jti > ` + a.add(after.JTI) + `))`)
	}
	q.WriteString(` ORDER BY revoked_at DESC, jti`)
	if limit > 0 {
		q.WriteString(` LIMIT ` + a.add(limit))
	}
	rows, err := s.db.QueryContext(ctx, q.String(), a...)
	if err != nil {
		return nil, s.mapErr("list revocations", err)
	}
	defer rows.Close()
	out := []store.Revocation{}
	for rows.Next() {
		var r store.Revocation
		var exp, rev int64
		if err := rows.Scan(&r.JTI, &r.ClientID, &exp, &rev); err != nil {
			return nil, s.mapErr("list revocations", err)
		}
		r.ExpiresAt, r.RevokedAt = fromMicros(exp), fromMicros(rev)
		out = append(out, r)
	}
	return out, s.mapErr("list revocations", rows.Err())
}

// DeleteExpiredRevocations implements store.Store. It is deployment
// maintenance: it deletes the expired revocations of every environment.
func (s *Store) DeleteExpiredRevocations(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM revocations WHERE expires_at < $1`, micros(before))
	if err != nil {
		return 0, s.mapErr("delete expired revocations", err)
	}
	n, err := res.RowsAffected()
	return int(n), s.mapErr("delete expired revocations", err)
}
