package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

func marshalMap[M ~map[string]V, V any](m M) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// insertClient inserts c, with its grants and secrets, into environment env.
func insertClient(ctx context.Context, q querier, env string, c store.Client) error {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM client_tombstones WHERE env = $1 AND id = $2`, env, c.ID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: client id %s belonged to a deleted client", store.ErrConflict, c.ID)
	}
	_, err := q.ExecContext(ctx, `INSERT INTO clients (env, id, name, description, default_audience, token_lifetime_ms, disabled, refresh_tokens, custom_claims, metadata, introspect, tokens_revoked_before,
			auth_method, jwks, jwks_uri, accept_secrets, accept_token_endpoint_audience, federation, version, created_at, updated_at,
			quota_per_minute, quota_per_hour, quota_per_day, token_reuse, tls_subject_kind, tls_subject, cert_bound_tokens, dpop_bound_tokens)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 1, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)`,
		env, c.ID, c.Name, c.Description, c.DefaultAudience, c.TokenLifetime.Milliseconds(), c.Disabled, c.RefreshTokens,
		marshalMap(c.CustomClaims), marshalMap(c.Metadata), joinScopes(c.Introspect), micros(c.TokensRevokedBefore),
		c.Method(), string(c.JWKS), c.JWKSURI, c.AcceptSecrets, c.AcceptTokenEndpointAudience, marshalFederation(c.Federation),
		micros(c.CreatedAt), micros(c.UpdatedAt), c.Quota.PerMinute, c.Quota.PerHour, c.Quota.PerDay, c.TokenReuse,
		c.TLSSubject.Kind, c.TLSSubject.Value, c.CertBoundTokens, c.DPoPBoundTokens)
	if err != nil {
		return err
	}
	if err := insertGrants(ctx, q, env, c.ID, c.Grants); err != nil {
		return err
	}
	for _, sec := range c.Secrets {
		if err := insertSecret(ctx, q, env, c.ID, sec); err != nil {
			return err
		}
	}
	return nil
}

func insertGrants(ctx context.Context, q querier, env, clientID string, grants []store.Grant) error {
	for _, g := range grants {
		if _, err := q.ExecContext(ctx, `INSERT INTO client_grants (env, client_id, api_identifier, scopes) VALUES ($1, $2, $3, $4)`,
			env, clientID, g.Audience, joinScopes(g.Scopes)); err != nil {
			return err
		}
	}
	return nil
}

func insertSecret(ctx context.Context, q querier, env, clientID string, sec store.Secret) error {
	_, err := q.ExecContext(ctx, `INSERT INTO client_secrets (env, id, client_id, hash, hint, created_at, expires_at, last_used_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		env, sec.ID, clientID, sec.Hash, sec.Hint, micros(sec.CreatedAt), micros(sec.ExpiresAt), micros(sec.LastUsedAt))
	return err
}

// CreateClient implements store.Store.
func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	return s.mapErr("create client", s.inTx(ctx, func(tx *sql.Tx) error {
		if err := insertClient(ctx, tx, s.env, c); err != nil {
			return err
		}
		// Replicas may hold "no such client" for this id.
		return s.notify(ctx, tx, ChangeClientPrefix+c.ID)
	}))
}

const clientColumns = `c.id, c.name, c.description, c.default_audience, c.token_lifetime_ms, c.disabled, c.refresh_tokens, c.custom_claims, c.metadata, c.introspect, c.tokens_revoked_before,
	c.auth_method, c.jwks, c.jwks_uri, c.accept_secrets, c.accept_token_endpoint_audience, c.federation, c.version, c.created_at, c.updated_at,
	c.quota_per_minute, c.quota_per_hour, c.quota_per_day, c.token_reuse, c.tls_subject_kind, c.tls_subject, c.cert_bound_tokens, c.dpop_bound_tokens`

// authMethod stores the default method by name.

func marshalFederation(f []store.FederatedIdentity) string {
	if len(f) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(f)
	return string(b)
}

func scanClient(row interface{ Scan(...any) error }, extra ...any) (store.Client, error) {
	c, j, err := scanClientRow(row, extra...)
	if err != nil {
		return c, err
	}
	return c, j.decodeInto(&c)
}

// clientJSON holds a client row's JSON columns, still encoded.
type clientJSON struct{ claims, meta, federation string }

// scanClientRow scans a client row, leaving its JSON columns encoded.
func scanClientRow(row interface{ Scan(...any) error }, extra ...any) (store.Client, clientJSON, error) {
	var c store.Client
	var j clientJSON
	var lifetimeMS, created, updated, revokedBefore int64
	var introspect, jwks string
	dest := append([]any{&c.ID, &c.Name, &c.Description, &c.DefaultAudience, &lifetimeMS, &c.Disabled, &c.RefreshTokens, &j.claims, &j.meta, &introspect, &revokedBefore,
		&c.AuthMethod, &jwks, &c.JWKSURI, &c.AcceptSecrets, &c.AcceptTokenEndpointAudience, &j.federation, &c.Version, &created, &updated,
		&c.Quota.PerMinute, &c.Quota.PerHour, &c.Quota.PerDay, &c.TokenReuse, &c.TLSSubject.Kind, &c.TLSSubject.Value, &c.CertBoundTokens, &c.DPoPBoundTokens}, extra...)
	if err := row.Scan(dest...); err != nil {
		return c, j, err
	}
	if jwks != "" {
		c.JWKS = []byte(jwks)
	}
	c.Introspect = splitScopes(introspect)
	c.TokensRevokedBefore = fromMicros(revokedBefore)
	c.TokenLifetime = time.Duration(lifetimeMS) * time.Millisecond
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	c.Grants, c.Secrets = []store.Grant{}, []store.Secret{}
	return c, j, nil
}

func (j clientJSON) decodeInto(c *store.Client) error {
	if j.claims != "{}" {
		if err := json.Unmarshal([]byte(j.claims), &c.CustomClaims); err != nil {
			return fmt.Errorf("client %s custom claims: %w", c.ID, err)
		}
	}
	if j.meta != "{}" {
		if err := json.Unmarshal([]byte(j.meta), &c.Metadata); err != nil {
			return fmt.Errorf("client %s metadata: %w", c.ID, err)
		}
	}
	if j.federation != "[]" && j.federation != "" {
		if err := json.Unmarshal([]byte(j.federation), &c.Federation); err != nil {
			return fmt.Errorf("client %s federation: %w", c.ID, err)
		}
	}
	return nil
}

// GetClient implements store.Store. It is on the token hot path (on a cache
// miss): one query for the client with its secrets and, through the
// flavor's GrantsJSON, its grants with their APIs' lifetimes. An unknown
// client id costs the same query.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := s.getClient(ctx, s.db, id, "")
	return c, s.mapErr("get client", err)
}

// grantJSON is one grant as Flavor.GrantsJSON encodes it.
type grantJSON struct {
	Audience   string `json:"a"`
	Scopes     string `json:"s"`
	LifetimeMS int64  `json:"l"`
}

func (s *Store) getClient(ctx context.Context, q querier, id, lock string) (store.Client, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+clientColumns+`,
			COALESCE(s.id, ''), COALESCE(s.hash, ''), COALESCE(s.hint, ''),
			COALESCE(s.created_at, 0), COALESCE(s.expires_at, 0), COALESCE(s.last_used_at, 0), `+s.f.GrantsJSON+`
		FROM clients c LEFT JOIN client_secrets s ON s.env = c.env AND s.client_id = c.id
		WHERE c.env = $1 AND c.id = $2 ORDER BY s.created_at, s.id`+lock, s.env, id)
	if err != nil {
		return store.Client{}, err
	}
	var c store.Client
	var grantsText string
	found := false
	for rows.Next() {
		var sec store.Secret
		var sCreated, sExpires, sUsed int64
		// One row per secret: the client's columns repeat; decode its JSON once.
		row, j, err := scanClientRow(rows, &sec.ID, &sec.Hash, &sec.Hint, &sCreated, &sExpires, &sUsed, &grantsText)
		if err == nil && !found {
			err = j.decodeInto(&row)
			c, found = row, true
		}
		if err != nil {
			rows.Close()
			return store.Client{}, err
		}
		if sec.ID != "" {
			sec.CreatedAt, sec.ExpiresAt, sec.LastUsedAt = fromMicros(sCreated), fromMicros(sExpires), fromMicros(sUsed)
			c.Secrets = append(c.Secrets, sec)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return store.Client{}, err
	}
	if !found {
		return store.Client{}, store.ErrNotFound
	}
	var gs []grantJSON
	if err := json.Unmarshal([]byte(grantsText), &gs); err != nil {
		return store.Client{}, fmt.Errorf("client %s grants: %w", id, err)
	}
	for _, g := range gs {
		c.Grants = append(c.Grants, store.Grant{Audience: g.Audience, Scopes: splitScopes(g.Scopes),
			APITokenLifetime: time.Duration(g.LifetimeMS) * time.Millisecond})
	}
	return c, nil
}

// inList returns "($n, $n+1, …)" for ids.
func inList(a *args, ids []string) string {
	ph := make([]string, len(ids))
	for i, id := range ids {
		ph[i] = a.add(id)
	}
	return "(" + strings.Join(ph, ", ") + ")"
}

// loadGrants loads the grants (with their API's lifetime) of clients of
// environment env.
func loadGrants(ctx context.Context, q querier, env string, clientIDs []string) (map[string][]store.Grant, error) {
	out := map[string][]store.Grant{}
	if len(clientIDs) == 0 {
		return out, nil
	}
	a := args{env}
	rows, err := q.QueryContext(ctx, `SELECT g.client_id, g.api_identifier, g.scopes, a.token_lifetime_ms
		FROM client_grants g JOIN apis a ON a.env = g.env AND a.identifier = g.api_identifier
		WHERE g.env = $1 AND g.client_id IN `+inList(&a, clientIDs)+` ORDER BY g.client_id, g.api_identifier`, a...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var clientID, scopes string
		var g store.Grant
		var lifetimeMS int64
		if err := rows.Scan(&clientID, &g.Audience, &scopes, &lifetimeMS); err != nil {
			return nil, err
		}
		g.Scopes = splitScopes(scopes)
		g.APITokenLifetime = time.Duration(lifetimeMS) * time.Millisecond
		out[clientID] = append(out[clientID], g)
	}
	return out, rows.Err()
}

// ListClients implements store.Store.
func (s *Store) ListClients(ctx context.Context, opts store.ListOptions) ([]store.Client, error) {
	var q strings.Builder
	var a args
	extra := []string{"c.env = " + a.add(s.env)}
	if opts.Audience != "" {
		extra = append(extra, `EXISTS (SELECT 1 FROM client_grants g WHERE g.env = c.env AND g.client_id = c.id AND g.api_identifier = `+a.add(opts.Audience)+`)`)
	}
	q.WriteString(`SELECT ` + clientColumns + ` FROM clients c`)
	s.page(&q, &a, "c.id", "c.name", opts, extra)
	rows, err := s.db.QueryContext(ctx, q.String(), a...)
	if err != nil {
		if s.invalidText(err) {
			return []store.Client{}, nil // no stored text equals or contains it
		}
		return nil, s.mapErr("list clients", err)
	}
	clients := []store.Client{}
	var ids []string
	index := map[string]int{}
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			rows.Close()
			return nil, s.mapErr("list clients", err)
		}
		index[c.ID] = len(clients)
		ids = append(ids, c.ID)
		clients = append(clients, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.mapErr("list clients", err)
	}
	if len(ids) == 0 {
		return clients, nil
	}
	grants, err := loadGrants(ctx, s.db, s.env, ids)
	if err != nil {
		return nil, s.mapErr("list clients", err)
	}
	for id, gs := range grants {
		clients[index[id]].Grants = gs
	}
	sa := args{s.env}
	srows, err := s.db.QueryContext(ctx, `SELECT client_id, id, hash, hint, created_at, expires_at, last_used_at
		FROM client_secrets WHERE env = $1 AND client_id IN `+inList(&sa, ids)+` ORDER BY client_id, created_at, id`, sa...)
	if err != nil {
		return nil, s.mapErr("list clients", err)
	}
	defer srows.Close()
	for srows.Next() {
		var clientID string
		var sec store.Secret
		var created, expires, used int64
		if err := srows.Scan(&clientID, &sec.ID, &sec.Hash, &sec.Hint, &created, &expires, &used); err != nil {
			return nil, s.mapErr("list clients", err)
		}
		sec.CreatedAt, sec.ExpiresAt, sec.LastUsedAt = fromMicros(created), fromMicros(expires), fromMicros(used)
		clients[index[clientID]].Secrets = append(clients[index[clientID]].Secrets, sec)
	}
	return clients, s.mapErr("list clients", srows.Err())
}

// ClientIDs implements store.Store.
func (s *Store) ClientIDs(ctx context.Context, fn func(id string)) error {
	return s.streamIDs(ctx, "client ids", fn, `SELECT id FROM clients WHERE env = $1`, s.env)
}

// GrantHolderIDs implements store.Store.
func (s *Store) GrantHolderIDs(ctx context.Context, audience string, fn func(id string)) error {
	err := s.streamIDs(ctx, "grant holder ids", fn, `SELECT client_id FROM client_grants WHERE env = $1 AND api_identifier = $2 ORDER BY client_id`, s.env, audience)
	if errors.Is(err, store.ErrNotFound) {
		return nil // an audience no text equals holds no grant
	}
	return err
}

// streamIDs calls fn with the one text column of each row, a row at a time.
func (s *Store) streamIDs(ctx context.Context, op string, fn func(id string), query string, params ...any) error {
	rows, err := s.db.QueryContext(ctx, query, params...)
	if err != nil {
		return s.mapErr(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return s.mapErr(op, err)
		}
		fn(id)
	}
	return s.mapErr(op, rows.Err())
}

// UpdateClient implements store.Store.
func (s *Store) UpdateClient(ctx context.Context, id string, fn func(*store.Client) error) (store.Client, error) {
	var out store.Client
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Lock the client row first: concurrent updates of one client
		// run one after the other, each seeing the previous one's result.
		var version int64
		if err := tx.QueryRowContext(ctx, `SELECT version FROM clients WHERE env = $1 AND id = $2`+s.f.ForUpdate, s.env, id).Scan(&version); err != nil {
			return err
		}
		cur, err := s.getClient(ctx, tx, id, "")
		if err != nil {
			return err
		}
		next := cloneClient(cur)
		if err := fn(&next); err != nil {
			return err
		}
		if next.ID != cur.ID {
			return fmt.Errorf("%w: a client's id cannot change", store.ErrConflict)
		}
		next.Version = cur.Version + 1
		if _, err := tx.ExecContext(ctx, `UPDATE clients SET name = $1, description = $2, default_audience = $3, token_lifetime_ms = $4,
				disabled = $5, refresh_tokens = $6, custom_claims = $7, metadata = $8, introspect = $9, tokens_revoked_before = $10,
				auth_method = $11, jwks = $12, jwks_uri = $13, accept_secrets = $14, accept_token_endpoint_audience = $15, federation = $16,
				version = $17, updated_at = $18, quota_per_minute = $21, quota_per_hour = $22, quota_per_day = $23, token_reuse = $24,
				tls_subject_kind = $25, tls_subject = $26, cert_bound_tokens = $27, dpop_bound_tokens = $28 WHERE env = $19 AND id = $20`,
			next.Name, next.Description, next.DefaultAudience, next.TokenLifetime.Milliseconds(), next.Disabled, next.RefreshTokens,
			marshalMap(next.CustomClaims), marshalMap(next.Metadata), joinScopes(next.Introspect), micros(next.TokensRevokedBefore),
			next.Method(), string(next.JWKS), next.JWKSURI, next.AcceptSecrets, next.AcceptTokenEndpointAudience, marshalFederation(next.Federation),
			next.Version, micros(next.UpdatedAt), s.env, id, next.Quota.PerMinute, next.Quota.PerHour, next.Quota.PerDay, next.TokenReuse,
			next.TLSSubject.Kind, next.TLSSubject.Value, next.CertBoundTokens, next.DPoPBoundTokens); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM client_grants WHERE env = $1 AND client_id = $2`, s.env, id); err != nil {
			return err
		}
		if err := insertGrants(ctx, tx, s.env, id, next.Grants); err != nil {
			return err
		}
		if err := syncSecrets(ctx, tx, s.env, id, cur.Secrets, next.Secrets); err != nil {
			return err
		}
		if out, err = s.getClient(ctx, tx, id, ""); err != nil {
			return err
		}
		return s.notify(ctx, tx, ChangeClientPrefix+id)
	})
	return out, s.mapErr("update client", err)
}

// syncSecrets writes the difference between two secret lists: removed
// secrets are deleted, new ones inserted, and existing ones get their new
// expiry (their hash and hint never change).
func syncSecrets(ctx context.Context, tx *sql.Tx, env, clientID string, before, after []store.Secret) error {
	old := map[string]store.Secret{}
	for _, s := range before {
		old[s.ID] = s
	}
	for _, s := range after {
		prev, ok := old[s.ID]
		delete(old, s.ID)
		switch {
		case !ok:
			if err := insertSecret(ctx, tx, env, clientID, s); err != nil {
				return err
			}
		case !prev.ExpiresAt.Equal(s.ExpiresAt):
			if _, err := tx.ExecContext(ctx, `UPDATE client_secrets SET expires_at = $1 WHERE id = $2 AND env = $3 AND client_id = $4`,
				micros(s.ExpiresAt), s.ID, env, clientID); err != nil {
				return err
			}
		}
	}
	for id := range old {
		if _, err := tx.ExecContext(ctx, `DELETE FROM client_secrets WHERE id = $1 AND env = $2 AND client_id = $3`, id, env, clientID); err != nil {
			return err
		}
	}
	return nil
}

func cloneClient(c store.Client) store.Client {
	out := c
	out.Grants = make([]store.Grant, len(c.Grants))
	for i, g := range c.Grants {
		out.Grants[i] = store.Grant{Audience: g.Audience, Scopes: append([]string(nil), g.Scopes...), APITokenLifetime: g.APITokenLifetime}
	}
	out.Secrets = append([]store.Secret(nil), c.Secrets...)
	out.Introspect = append([]string(nil), c.Introspect...)
	if c.CustomClaims != nil {
		out.CustomClaims = make(map[string]any, len(c.CustomClaims))
		for k, v := range c.CustomClaims {
			out.CustomClaims[k] = v
		}
	}
	if c.Metadata != nil {
		out.Metadata = make(map[string]string, len(c.Metadata))
		for k, v := range c.Metadata {
			out.Metadata[k] = v
		}
	}
	out.JWKS = append([]byte(nil), c.JWKS...)
	out.Federation = make([]store.FederatedIdentity, len(c.Federation))
	for i, f := range c.Federation {
		out.Federation[i] = f
		out.Federation[i].Claims = maps.Clone(f.Claims)
	}
	return out
}

// FederatedIdentities implements store.Store.
func (s *Store) FederatedIdentities(ctx context.Context) (map[string][]store.FederatedIdentity, error) {
	out, err := federatedIdentities(ctx, s.db, s.env)
	return out, s.mapErr("federated identities", err)
}

// federatedIdentities reads the federation of every client of environment
// env that has one.
func federatedIdentities(ctx context.Context, q querier, env string) (map[string][]store.FederatedIdentity, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, federation FROM clients WHERE env = $1 AND federation <> '[]'`, env)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]store.FederatedIdentity{}
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			return nil, err
		}
		var f []store.FederatedIdentity
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			return nil, fmt.Errorf("client %s federation: %w", id, err)
		}
		out[id] = f
	}
	return out, rows.Err()
}

// clientsBoundTo returns, sorted, the clients of environment env whose
// federation names the trust policy.
func clientsBoundTo(ctx context.Context, q querier, env, policy string) ([]string, error) {
	all, err := federatedIdentities(ctx, q, env)
	if err != nil {
		return nil, err
	}
	var ids []string
	for id, f := range all {
		if slices.ContainsFunc(f, func(fi store.FederatedIdentity) bool { return fi.Policy == policy }) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// DeleteClient implements store.Store.
func (s *Store) DeleteClient(ctx context.Context, id string, at time.Time) error {
	return s.mapErr("delete client", s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM clients WHERE env = $1 AND id = $2`, s.env, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO client_tombstones (env, id, deleted_at) VALUES ($1, $2, $3) ON CONFLICT (env, id) DO NOTHING`,
			s.env, id, micros(at)); err != nil {
			return err
		}
		return s.notify(ctx, tx, ChangeClientPrefix+id)
	}))
}

// TouchSecrets implements store.Store. Last-use times are not propagated to
// other replicas: they are informational and never affect authentication.
func (s *Store) TouchSecrets(ctx context.Context, lastUsed map[string]time.Time) error {
	uses := make([]store.SecretUse, 0, len(lastUsed))
	for id, t := range lastUsed {
		uses = append(uses, store.SecretUse{Env: s.env, SecretID: id, At: t})
	}
	return s.mapErr("touch secrets", s.touchSecrets(ctx, uses))
}

// TouchChunk is how many last-use times one statement writes.
var TouchChunk = 1000

// touchAttempts bounds the tries of a chunk the database aborted to break a
// deadlock.
const touchAttempts = 5

// touchSecrets records secret last-use times, one environment's or many:
// where the flavor has a TouchSecrets statement, a chunk of TouchChunk rows per statement, each statement its own
// transaction. Other replicas flush overlapping sets at the same time: the
// chunks go in one order (sorted), but a statement's row locks follow its
// plan, not its input, so two flushers can still deadlock on PostgreSQL,
// which then aborts one of them. The update only ever moves a time
// forward, so the aborted chunk is simply run again; and a chunk that
// committed before a later one failed is harmless, the recorder retrying
// the whole batch at the next flush.
func (s *Store) touchSecrets(ctx context.Context, uses []store.SecretUse) error {
	slices.SortFunc(uses, func(a, b store.SecretUse) int {
		return cmp.Or(strings.Compare(a.Env, b.Env), strings.Compare(a.SecretID, b.SecretID))
	})
	if s.f.TouchSecrets == nil {
		return s.inTx(ctx, func(tx *sql.Tx) error {
			for _, u := range uses {
				if _, err := tx.ExecContext(ctx, `UPDATE client_secrets SET last_used_at = $1 WHERE id = $2 AND env = $3 AND last_used_at < $1`, micros(u.At), u.SecretID, u.Env); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for chunk := range slices.Chunk(uses, TouchChunk) {
		envs, ids, at := make([]string, len(chunk)), make([]string, len(chunk)), make([]int64, len(chunk))
		for i, u := range chunk {
			envs[i], ids[i], at[i] = u.Env, u.SecretID, micros(u.At)
		}
		query, params := s.f.TouchSecrets(envs, ids, at)
		err := retryDeadlocks(ctx, s.f.IsDeadlock, sleepCtx, func() error {
			_, err := s.db.ExecContext(ctx, query, params...)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// retryDeadlocks runs exec up to touchAttempts times while it fails with a
// deadlock (isDeadlock; nil: never retried), waiting a random 5–20 ms per
// attempt so far between tries (sleep), so that the two flushers that
// deadlocked do not meet again at once.
func retryDeadlocks(ctx context.Context, isDeadlock func(error) bool, sleep func(context.Context, time.Duration) error, exec func() error) error {
	for attempt := 1; ; attempt++ {
		err := exec()
		if err == nil || attempt == touchAttempts || isDeadlock == nil || !isDeadlock(err) {
			return err
		}
		pause := time.Duration(attempt) * (5*time.Millisecond + rand.N(15*time.Millisecond))
		if err := sleep(ctx, pause); err != nil {
			return err
		}
	}
}

// sleepCtx waits d, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// liveEnvs returns which of the environments counts name exist.
func liveEnvs(ctx context.Context, q querier, counts []store.UsageCount) (map[string]bool, error) {
	live := map[string]bool{}
	var a args
	var in []string
	for _, c := range counts {
		if _, seen := live[c.Env]; !seen {
			live[c.Env] = false
			in = append(in, a.add(c.Env))
		}
	}
	if len(in) == 0 {
		return live, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT name FROM environments WHERE name IN (`+strings.Join(in, ", ")+`)`, a...)
	if err != nil {
		return nil, err
	}
	names, err := collect(rows, scanString)
	for _, n := range names {
		live[n] = true
	}
	return live, err
}

// RecordUsage implements store.Store.
func (s *Store) RecordUsage(ctx context.Context, uses []store.SecretUse, counts []store.UsageCount) error {
	if len(uses) == 0 && len(counts) == 0 {
		return nil
	}
	uses = slices.Clone(uses)
	counts = slices.Clone(counts)
	for i := range uses {
		if uses[i].Env == "" {
			uses[i].Env = s.env
		}
	}
	for i := range counts {
		if counts[i].Env == "" {
			counts[i].Env = s.env
		}
	}
	if err := s.touchSecrets(ctx, uses); err != nil {
		return s.mapErr("record usage", err)
	}
	if len(counts) == 0 {
		return nil
	}
	return s.mapErr("record usage", s.inTx(ctx, func(tx *sql.Tx) error {
		// Counts of an environment deleted meanwhile are dropped: kept,
		// they would fail every later flush.
		live, err := liveEnvs(ctx, tx, counts)
		if err != nil {
			return err
		}
		counts = slices.DeleteFunc(counts, func(c store.UsageCount) bool { return !live[c.Env] })
		return addTokenUsage(ctx, tx, &s.f, counts)
	}))
}
