package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

const apiColumns = `id, identifier, name, scopes, scope_descriptions, token_lifetime_ms, discoverable, COALESCE(builtin, ''), version, created_at, updated_at`

func scanAPI(row interface{ Scan(...any) error }) (store.API, error) {
	var a store.API
	var scopes, descs string
	var lifetimeMS, created, updated int64
	if err := row.Scan(&a.ID, &a.Identifier, &a.Name, &scopes, &descs, &lifetimeMS, &a.Discoverable, &a.Builtin, &a.Version, &created, &updated); err != nil {
		return a, err
	}
	a.Scopes = splitScopes(scopes)
	a.ScopeDescriptions = map[string]string{}
	if descs != "{}" && descs != "" {
		if err := json.Unmarshal([]byte(descs), &a.ScopeDescriptions); err != nil {
			return a, fmt.Errorf("api %s scope descriptions: %w", a.Identifier, err)
		}
	}
	a.TokenLifetime = time.Duration(lifetimeMS) * time.Millisecond
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	return a, nil
}

// definedDescriptions returns the descriptions of the scopes the API
// defines (never nil): a description never outlives its scope.
func definedDescriptions(a store.API) map[string]string {
	out := make(map[string]string, len(a.ScopeDescriptions))
	for _, sc := range a.Scopes {
		if d, ok := a.ScopeDescriptions[sc]; ok {
			out[sc] = d
		}
	}
	return out
}

func insertAPI(ctx context.Context, q querier, env string, a store.API) error {
	var builtin any
	if a.Builtin != "" {
		builtin = a.Builtin
	}
	_, err := q.ExecContext(ctx, `INSERT INTO apis (env, id, identifier, name, scopes, scope_descriptions, token_lifetime_ms, discoverable, builtin, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11)`,
		env, a.ID, a.Identifier, a.Name, joinScopes(a.Scopes), marshalMap(definedDescriptions(a)), a.TokenLifetime.Milliseconds(), a.Discoverable, builtin, micros(a.CreatedAt), micros(a.UpdatedAt))
	return err
}

// CreateAPI implements store.Store.
func (s *Store) CreateAPI(ctx context.Context, a store.API) error {
	return s.mapErr("create api", insertAPI(ctx, s.db, s.env, a))
}

// GetAPI implements store.Store.
func (s *Store) GetAPI(ctx context.Context, identifier string) (store.API, error) {
	a, err := scanAPI(s.db.QueryRowContext(ctx, `SELECT `+apiColumns+` FROM apis WHERE env = $1 AND identifier = $2`, s.env, identifier))
	return a, s.mapErr("get api", err)
}

// ListAPIs implements store.Store.
func (s *Store) ListAPIs(ctx context.Context, opts store.ListOptions) ([]store.API, error) {
	var q strings.Builder
	var a args
	q.WriteString(`SELECT ` + apiColumns + ` FROM apis`)
	s.page(&q, &a, "identifier", "name", opts, []string{"env = " + a.add(s.env)})
	rows, err := s.db.QueryContext(ctx, q.String(), a...)
	if err != nil {
		if s.invalidText(err) {
			return []store.API{}, nil // no stored text equals or contains it
		}
		return nil, s.mapErr("list apis", err)
	}
	apis, err := collect(rows, scanAPI)
	return apis, s.mapErr("list apis", err)
}

// UpdateAPI implements store.Store.
func (s *Store) UpdateAPI(ctx context.Context, identifier string, revokeBefore time.Time, fn func(*store.API) error) (store.API, error) {
	var out store.API
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanAPI(tx.QueryRowContext(ctx, `SELECT `+apiColumns+` FROM apis WHERE env = $1 AND identifier = $2`+s.f.ForUpdate, s.env, identifier))
		if err != nil {
			return err
		}
		next := cur
		next.Scopes = append([]string(nil), cur.Scopes...)
		next.ScopeDescriptions = maps.Clone(cur.ScopeDescriptions)
		if err := fn(&next); err != nil {
			return err
		}
		next.ScopeDescriptions = definedDescriptions(next)
		if next.Identifier != cur.Identifier || next.ID != cur.ID || next.Builtin != cur.Builtin {
			return fmt.Errorf("%w: an API's identifier cannot change", store.ErrConflict)
		}
		next.Version = cur.Version + 1
		if _, err := tx.ExecContext(ctx, `UPDATE apis SET name = $1, scopes = $2, scope_descriptions = $3, token_lifetime_ms = $4, discoverable = $5, version = $6, updated_at = $7 WHERE env = $8 AND identifier = $9`,
			next.Name, joinScopes(next.Scopes), marshalMap(next.ScopeDescriptions), next.TokenLifetime.Milliseconds(), next.Discoverable, next.Version, micros(next.UpdatedAt), s.env, identifier); err != nil {
			return err
		}
		if err := pruneGrants(ctx, tx, s.env, identifier, next.Scopes, revokeBefore); err != nil {
			return err
		}
		out = next
		return s.notify(ctx, tx, ChangeAPIPrefix+identifier)
	})
	return out, s.mapErr("update api", err)
}

// pruneGrants removes from every grant for api in env the scopes it no
// longer defines, and revokes the tokens of each client it changes.
func pruneGrants(ctx context.Context, tx *sql.Tx, env, api string, defined []string, revokeBefore time.Time) error {
	rows, err := tx.QueryContext(ctx, `SELECT client_id, scopes FROM client_grants WHERE env = $1 AND api_identifier = $2`, env, api)
	if err != nil {
		return err
	}
	type change struct{ client, scopes string }
	var changes []change
	for rows.Next() {
		var c, scopes string
		if err := rows.Scan(&c, &scopes); err != nil {
			rows.Close()
			return err
		}
		var kept []string
		for _, sc := range splitScopes(scopes) {
			for _, d := range defined {
				if sc == d {
					kept = append(kept, sc)
					break
				}
			}
		}
		if joined := joinScopes(kept); joined != scopes {
			changes = append(changes, change{c, joined})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, `UPDATE client_grants SET scopes = $1 WHERE env = $2 AND client_id = $3 AND api_identifier = $4`, c.scopes, env, c.client, api); err != nil {
			return err
		}
		if err := revokeNarrowed(ctx, tx, env, `id = $3`, c.client, revokeBefore); err != nil {
			return err
		}
	}
	return nil
}

// revokeNarrowed bumps the version of the clients of env matched by where
// (a condition on clients.id with env as $2 and its argument as $3) and
// revokes their tokens: access tokens issued before revokeBefore, and
// every refresh token. Rights taken away take the tokens issued under
// them, as a client update that narrows grants does.
func revokeNarrowed(ctx context.Context, tx *sql.Tx, env, where, arg string, revokeBefore time.Time) error {
	at := micros(revokeBefore)
	if _, err := tx.ExecContext(ctx, `UPDATE clients SET version = version + 1,
		tokens_revoked_before = CASE WHEN tokens_revoked_before < $1 THEN $1 ELSE tokens_revoked_before END WHERE env = $2 AND `+where, at, env, arg); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE env = $2 AND revoked_at = 0
		AND client_id IN (SELECT id FROM clients WHERE env = $2 AND `+where+`)`, at, env, arg)
	return err
}

// DeleteAPI implements store.Store.
func (s *Store) DeleteAPI(ctx context.Context, identifier string, force bool, revokeBefore time.Time) error {
	return s.mapErr("delete api", s.inTx(ctx, func(tx *sql.Tx) error {
		var builtin string
		err := tx.QueryRowContext(ctx, `SELECT COALESCE(builtin, '') FROM apis WHERE env = $1 AND identifier = $2`+s.f.ForUpdate, s.env, identifier).Scan(&builtin)
		if err != nil {
			return err
		}
		if builtin != "" {
			return fmt.Errorf("%w: the %s API is built in", store.ErrConflict, builtin)
		}
		if force {
			if err := revokeNarrowed(ctx, tx, s.env, `id IN (SELECT client_id FROM client_grants WHERE env = $2 AND api_identifier = $3)`, identifier, revokeBefore); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE clients SET default_audience = '' WHERE env = $1 AND default_audience = $2`, s.env, identifier); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM client_grants WHERE env = $1 AND api_identifier = $2`, s.env, identifier); err != nil {
				return err
			}
		} else {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM client_grants WHERE env = $1 AND api_identifier = $2`, s.env, identifier).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%w: %d client(s) hold a grant for it", store.ErrConflict, n)
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM apis WHERE env = $1 AND identifier = $2`, s.env, identifier); err != nil {
			return err
		}
		return s.notify(ctx, tx, ChangeAPIPrefix+identifier)
	}))
}
