package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// ChangeTrustPrefix + a trust policy's name: the policy changed.
const ChangeTrustPrefix = "trust:"

const trustColumns = `name, kind, issuer, description, jwks_uri, discovery, jwks, algorithms, audience,
	max_token_age_ms, max_token_lifetime_ms, single_use, require_jti, version, created_at, updated_at`

func scanTrust(row interface{ Scan(...any) error }) (store.TrustPolicy, error) {
	var p store.TrustPolicy
	var jwks, algs string
	var age, life, created, updated int64
	err := row.Scan(&p.Name, &p.Kind, &p.Issuer, &p.Description, &p.JWKSURI, &p.Discovery, &jwks, &algs, &p.Audience,
		&age, &life, &p.SingleUse, &p.RequireJTI, &p.Version, &created, &updated)
	if jwks != "" {
		p.JWKS = []byte(jwks)
	}
	p.Algorithms = splitScopes(algs)
	p.MaxTokenAge, p.MaxTokenLifetime = time.Duration(age)*time.Millisecond, time.Duration(life)*time.Millisecond
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	return p, err
}

// CreateTrustPolicy implements store.Store.
func (s *Store) CreateTrustPolicy(ctx context.Context, p store.TrustPolicy) error {
	return s.mapErr("create trust policy", s.inTx(ctx, func(tx *sql.Tx) error {
		// A binding left over from a deleted policy of this name (a client
		// bound while the policy was deleted) must not start accepting the
		// new policy's issuer.
		stale, err := clientsBoundTo(ctx, tx, s.env, p.Name)
		if err != nil {
			return err
		}
		if len(stale) > 0 {
			return fmt.Errorf("%w: clients are still bound to a trust policy named %s: %s", store.ErrConflict, p.Name, strings.Join(stale, ", "))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO trust_policies (env, `+trustColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $16)`,
			s.env, p.Name, p.Kind, p.Issuer, p.Description, p.JWKSURI, p.Discovery, string(p.JWKS), joinScopes(p.Algorithms), p.Audience,
			p.MaxTokenAge.Milliseconds(), p.MaxTokenLifetime.Milliseconds(), p.SingleUse, p.RequireJTI,
			micros(p.CreatedAt), micros(p.UpdatedAt)); err != nil {
			return err
		}
		return s.notify(ctx, tx, ChangeTrustPrefix+p.Name)
	}))
}

// GetTrustPolicy implements store.Store.
func (s *Store) GetTrustPolicy(ctx context.Context, name string) (store.TrustPolicy, error) {
	p, err := scanTrust(s.db.QueryRowContext(ctx, `SELECT `+trustColumns+` FROM trust_policies WHERE env = $1 AND name = $2`, s.env, name))
	return p, s.mapErr("get trust policy", err)
}

// ListTrustPolicies implements store.Store.
func (s *Store) ListTrustPolicies(ctx context.Context) ([]store.TrustPolicy, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+trustColumns+` FROM trust_policies WHERE env = $1 ORDER BY name`, s.env)
	if err != nil {
		return nil, s.mapErr("list trust policies", err)
	}
	out, err := collect(rows, scanTrust)
	return out, s.mapErr("list trust policies", err)
}

// UpdateTrustPolicy implements store.Store.
func (s *Store) UpdateTrustPolicy(ctx context.Context, name string, fn func(*store.TrustPolicy) error) (store.TrustPolicy, error) {
	var out store.TrustPolicy
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanTrust(tx.QueryRowContext(ctx, `SELECT `+trustColumns+` FROM trust_policies WHERE env = $1 AND name = $2`+s.f.ForUpdate, s.env, name))
		if err != nil {
			return err
		}
		next := cur
		next.Algorithms = append([]string(nil), cur.Algorithms...)
		next.JWKS = append([]byte(nil), cur.JWKS...)
		if err := fn(&next); err != nil {
			return err
		}
		if next.Name != cur.Name || next.Kind != cur.Kind {
			return fmt.Errorf("%w: a trust policy's name and kind cannot change", store.ErrConflict)
		}
		next.Version = cur.Version + 1
		if _, err := tx.ExecContext(ctx, `UPDATE trust_policies SET issuer = $1, description = $2, jwks_uri = $3, discovery = $4, jwks = $5,
				algorithms = $6, audience = $7, max_token_age_ms = $8, max_token_lifetime_ms = $9, single_use = $10, require_jti = $11,
				version = $12, updated_at = $13 WHERE env = $14 AND name = $15`,
			next.Issuer, next.Description, next.JWKSURI, next.Discovery, string(next.JWKS), joinScopes(next.Algorithms), next.Audience,
			next.MaxTokenAge.Milliseconds(), next.MaxTokenLifetime.Milliseconds(), next.SingleUse, next.RequireJTI,
			next.Version, micros(next.UpdatedAt), s.env, name); err != nil {
			return err
		}
		out = next
		return s.notify(ctx, tx, ChangeTrustPrefix+name)
	})
	return out, s.mapErr("update trust policy", err)
}

// DeleteTrustPolicy implements store.Store. The federation column is JSON,
// so the reference check reads it: policies are few, federated clients
// are read in one query. A client bound concurrently could still name a
// deleted policy; the federated authenticator treats a binding to a
// missing policy as matching nothing, and CreateTrustPolicy refuses the
// name while such a binding remains.
func (s *Store) DeleteTrustPolicy(ctx context.Context, name string) error {
	return s.mapErr("delete trust policy", s.inTx(ctx, func(tx *sql.Tx) error {
		// Lock the policy first, so that no client binds to it meanwhile
		// on a replica that read it before.
		var locked string
		if err := tx.QueryRowContext(ctx, `SELECT name FROM trust_policies WHERE env = $1 AND name = $2`+s.f.ForUpdate, s.env, name).Scan(&locked); err != nil {
			return err // sql.ErrNoRows maps to ErrNotFound
		}
		users, err := clientsBoundTo(ctx, tx, s.env, name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return fmt.Errorf("%w: clients bound to trust policy %s: %s", store.ErrConflict, name, strings.Join(users, ", "))
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM trust_policies WHERE env = $1 AND name = $2`, s.env, name); err != nil {
			return err
		}
		return s.notify(ctx, tx, ChangeTrustPrefix+name)
	}))
}

// UseAssertionID implements store.Store: the insert is the claim, so of
// concurrent callers exactly one inserts the row.
func (s *Store) UseAssertionID(ctx context.Context, key string, expires time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO assertion_ids (env, key, expires_at) VALUES ($1, $2, $3) ON CONFLICT (env, key) DO NOTHING`, s.env, key, micros(expires))
	if err != nil {
		return false, s.mapErr("use assertion id", err)
	}
	n, err := res.RowsAffected()
	return n == 1, s.mapErr("use assertion id", err)
}

// DeleteExpiredAssertionIDs implements store.Store: it cleans up every
// environment.
func (s *Store) DeleteExpiredAssertionIDs(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM assertion_ids WHERE expires_at < $1`, micros(before))
	if err != nil {
		return 0, s.mapErr("delete expired assertion ids", err)
	}
	n, err := res.RowsAffected()
	return int(n), s.mapErr("delete expired assertion ids", err)
}
