// Package sqlstore implements store.Store over database/sql for every SQL
// backend. The SQL text is shared (SQLite accepts PostgreSQL's $N
// placeholders); what differs between databases is captured in a Flavor.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// Flavor is what differs between SQL databases.
type Flavor struct {
	Name string
	// MigrationLock is run first inside every migration transaction to
	// serialise concurrent migrators ("" when the transaction itself locks).
	MigrationLock string
	// ForUpdate is appended to a SELECT to lock the rows it reads until the
	// transaction ends ("" when every transaction holds the write lock).
	ForUpdate string
	// KeysLock is run first in a transaction that changes signing keys, to
	// serialise such transactions ("" when every transaction holds the
	// write lock).
	KeysLock string
	// Notify, when set, is run with one argument (the change) inside every
	// transaction that changes a client or an API, so that other replicas
	// learn of the change when it commits.
	Notify string
	// Contains returns a condition: the text column contains the text
	// parameter, case-insensitively.
	Contains func(column, param string) string
	// IsUniqueViolation and IsForeignKeyViolation classify driver errors.
	IsUniqueViolation     func(error) bool
	IsForeignKeyViolation func(error) bool
}

// Change payloads sent through Flavor.Notify.
const (
	ChangeClientPrefix = "client:" // + client id
	ChangeAPIPrefix    = "api:"    // + API identifier
	ChangeKeys         = "keys"
	// ChangeRevokedPrefix + the token's expiry (Unix microseconds) + ":" +
	// its jti: an access token was revoked.
	ChangeRevokedPrefix = "revoked:"
)

// Store is a store.Store backed by a SQL database.
type Store struct {
	db *sql.DB
	f  Flavor
}

var _ store.Store = (*Store)(nil)

// New returns a Store using db, which must already be migrated.
func New(db *sql.DB, f Flavor) *Store { return &Store{db: db, f: f} }

// DB returns the underlying database handle.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// mapErr turns constraint violations into store sentinels.
func (s *Store) mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%s: %w", op, err)
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	case s.f.IsUniqueViolation(err), s.f.IsForeignKeyViolation(err):
		return fmt.Errorf("%s: %w: %v", op, store.ErrConflict, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// micros converts a time to the stored form; the zero time is 0.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros is the inverse of micros, in UTC.
func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func joinScopes(s []string) string { return strings.Join(s, " ") }

func splitScopes(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, " ")
}

// querier is what reads need: the database or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (s *Store) notify(ctx context.Context, q querier, change string) error {
	if s.f.Notify == "" {
		return nil
	}
	_, err := q.ExecContext(ctx, s.f.Notify, change)
	return err
}

// args builds a positional argument list for dynamic SQL.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// page appends the filter, order and limit common to listings.
func (s *Store) page(q *strings.Builder, a *args, key, name string, opts store.ListOptions, extra []string) {
	conds := extra
	if opts.After != "" {
		conds = append(conds, key+" > "+a.add(opts.After))
	}
	if opts.NameContains != "" {
		conds = append(conds, s.f.Contains(name, a.add(opts.NameContains)))
	}
	if len(conds) > 0 {
		q.WriteString(" WHERE " + strings.Join(conds, " AND "))
	}
	q.WriteString(" ORDER BY " + key)
	if opts.Limit > 0 {
		q.WriteString(" LIMIT " + a.add(opts.Limit))
	}
}

// ---- APIs ----

const apiColumns = `id, identifier, name, scopes, token_lifetime_ms, discoverable, COALESCE(builtin, ''), version, created_at, updated_at`

func scanAPI(row interface{ Scan(...any) error }) (store.API, error) {
	var a store.API
	var scopes string
	var lifetimeMS, created, updated int64
	err := row.Scan(&a.ID, &a.Identifier, &a.Name, &scopes, &lifetimeMS, &a.Discoverable, &a.Builtin, &a.Version, &created, &updated)
	a.Scopes = splitScopes(scopes)
	a.TokenLifetime = time.Duration(lifetimeMS) * time.Millisecond
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	return a, err
}

func insertAPI(ctx context.Context, q querier, a store.API) error {
	var builtin any
	if a.Builtin != "" {
		builtin = a.Builtin
	}
	_, err := q.ExecContext(ctx, `INSERT INTO apis (id, identifier, name, scopes, token_lifetime_ms, discoverable, builtin, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9)`,
		a.ID, a.Identifier, a.Name, joinScopes(a.Scopes), a.TokenLifetime.Milliseconds(), a.Discoverable, builtin, micros(a.CreatedAt), micros(a.UpdatedAt))
	return err
}

// CreateAPI implements store.Store.
func (s *Store) CreateAPI(ctx context.Context, a store.API) error {
	return s.mapErr("create api", insertAPI(ctx, s.db, a))
}

// GetAPI implements store.Store.
func (s *Store) GetAPI(ctx context.Context, identifier string) (store.API, error) {
	a, err := scanAPI(s.db.QueryRowContext(ctx, `SELECT `+apiColumns+` FROM apis WHERE identifier = $1`, identifier))
	return a, s.mapErr("get api", err)
}

// ListAPIs implements store.Store.
func (s *Store) ListAPIs(ctx context.Context, opts store.ListOptions) ([]store.API, error) {
	var q strings.Builder
	var a args
	q.WriteString(`SELECT ` + apiColumns + ` FROM apis`)
	s.page(&q, &a, "identifier", "name", opts, nil)
	rows, err := s.db.QueryContext(ctx, q.String(), a...)
	if err != nil {
		return nil, s.mapErr("list apis", err)
	}
	defer rows.Close()
	apis := []store.API{}
	for rows.Next() {
		api, err := scanAPI(rows)
		if err != nil {
			return nil, s.mapErr("list apis", err)
		}
		apis = append(apis, api)
	}
	return apis, s.mapErr("list apis", rows.Err())
}

// UpdateAPI implements store.Store.
func (s *Store) UpdateAPI(ctx context.Context, identifier string, fn func(*store.API) error) (store.API, error) {
	var out store.API
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanAPI(tx.QueryRowContext(ctx, `SELECT `+apiColumns+` FROM apis WHERE identifier = $1`+s.f.ForUpdate, identifier))
		if err != nil {
			return err
		}
		next := cur
		next.Scopes = append([]string(nil), cur.Scopes...)
		if err := fn(&next); err != nil {
			return err
		}
		if next.Identifier != cur.Identifier || next.ID != cur.ID || next.Builtin != cur.Builtin {
			return fmt.Errorf("%w: an API's identifier cannot change", store.ErrConflict)
		}
		next.Version = cur.Version + 1
		if _, err := tx.ExecContext(ctx, `UPDATE apis SET name = $1, scopes = $2, token_lifetime_ms = $3, discoverable = $4, version = $5, updated_at = $6 WHERE identifier = $7`,
			next.Name, joinScopes(next.Scopes), next.TokenLifetime.Milliseconds(), next.Discoverable, next.Version, micros(next.UpdatedAt), identifier); err != nil {
			return err
		}
		if err := pruneGrants(ctx, tx, identifier, next.Scopes); err != nil {
			return err
		}
		out = next
		return s.notify(ctx, tx, ChangeAPIPrefix+identifier)
	})
	return out, s.mapErr("update api", err)
}

// pruneGrants removes from every grant for api the scopes it no longer
// defines, bumping the version of each client it changes.
func pruneGrants(ctx context.Context, tx *sql.Tx, api string, defined []string) error {
	rows, err := tx.QueryContext(ctx, `SELECT client_id, scopes FROM client_grants WHERE api_identifier = $1`, api)
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
		if _, err := tx.ExecContext(ctx, `UPDATE client_grants SET scopes = $1 WHERE client_id = $2 AND api_identifier = $3`, c.scopes, c.client, api); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE clients SET version = version + 1 WHERE id = $1`, c.client); err != nil {
			return err
		}
	}
	return nil
}

// DeleteAPI implements store.Store.
func (s *Store) DeleteAPI(ctx context.Context, identifier string, force bool) error {
	return s.mapErr("delete api", s.inTx(ctx, func(tx *sql.Tx) error {
		var builtin string
		err := tx.QueryRowContext(ctx, `SELECT COALESCE(builtin, '') FROM apis WHERE identifier = $1`+s.f.ForUpdate, identifier).Scan(&builtin)
		if err != nil {
			return err
		}
		if builtin != "" {
			return fmt.Errorf("%w: the %s API is built in", store.ErrConflict, builtin)
		}
		if force {
			if _, err := tx.ExecContext(ctx, `UPDATE clients SET version = version + 1, default_audience = CASE WHEN default_audience = $1 THEN '' ELSE default_audience END
				WHERE id IN (SELECT client_id FROM client_grants WHERE api_identifier = $1)`, identifier); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM client_grants WHERE api_identifier = $1`, identifier); err != nil {
				return err
			}
		} else {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM client_grants WHERE api_identifier = $1`, identifier).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%w: %d client(s) hold a grant for it", store.ErrConflict, n)
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM apis WHERE identifier = $1`, identifier); err != nil {
			return err
		}
		return s.notify(ctx, tx, ChangeAPIPrefix+identifier)
	}))
}

// ---- clients ----

func marshalMap[M ~map[string]V, V any](m M) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func insertClient(ctx context.Context, q querier, c store.Client) error {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM client_tombstones WHERE id = $1`, c.ID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w: client id %s belonged to a deleted client", store.ErrConflict, c.ID)
	}
	_, err := q.ExecContext(ctx, `INSERT INTO clients (id, name, description, default_audience, token_lifetime_ms, disabled, refresh_tokens, custom_claims, metadata, introspect, tokens_revoked_before, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $13)`,
		c.ID, c.Name, c.Description, c.DefaultAudience, c.TokenLifetime.Milliseconds(), c.Disabled, c.RefreshTokens,
		marshalMap(c.CustomClaims), marshalMap(c.Metadata), joinScopes(c.Introspect), micros(c.TokensRevokedBefore), micros(c.CreatedAt), micros(c.UpdatedAt))
	if err != nil {
		return err
	}
	if err := insertGrants(ctx, q, c.ID, c.Grants); err != nil {
		return err
	}
	for _, sec := range c.Secrets {
		if err := insertSecret(ctx, q, c.ID, sec); err != nil {
			return err
		}
	}
	return nil
}

func insertGrants(ctx context.Context, q querier, clientID string, grants []store.Grant) error {
	for _, g := range grants {
		if _, err := q.ExecContext(ctx, `INSERT INTO client_grants (client_id, api_identifier, scopes) VALUES ($1, $2, $3)`,
			clientID, g.Audience, joinScopes(g.Scopes)); err != nil {
			return err
		}
	}
	return nil
}

func insertSecret(ctx context.Context, q querier, clientID string, sec store.Secret) error {
	_, err := q.ExecContext(ctx, `INSERT INTO client_secrets (id, client_id, hash, hint, created_at, expires_at, last_used_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		sec.ID, clientID, sec.Hash, sec.Hint, micros(sec.CreatedAt), micros(sec.ExpiresAt), micros(sec.LastUsedAt))
	return err
}

// CreateClient implements store.Store.
func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	return s.mapErr("create client", s.inTx(ctx, func(tx *sql.Tx) error {
		if err := insertClient(ctx, tx, c); err != nil {
			return err
		}
		// Replicas may hold "no such client" for this id.
		return s.notify(ctx, tx, ChangeClientPrefix+c.ID)
	}))
}

const clientColumns = `c.id, c.name, c.description, c.default_audience, c.token_lifetime_ms, c.disabled, c.refresh_tokens, c.custom_claims, c.metadata, c.introspect, c.tokens_revoked_before, c.version, c.created_at, c.updated_at`

func scanClient(row interface{ Scan(...any) error }, extra ...any) (store.Client, error) {
	c, j, err := scanClientRow(row, extra...)
	if err != nil {
		return c, err
	}
	return c, j.decodeInto(&c)
}

// clientJSON holds a client row's JSON columns, still encoded.
type clientJSON struct{ claims, meta string }

// scanClientRow scans a client row, leaving its JSON columns encoded.
func scanClientRow(row interface{ Scan(...any) error }, extra ...any) (store.Client, clientJSON, error) {
	var c store.Client
	var j clientJSON
	var lifetimeMS, created, updated, revokedBefore int64
	var introspect string
	dest := append([]any{&c.ID, &c.Name, &c.Description, &c.DefaultAudience, &lifetimeMS, &c.Disabled, &c.RefreshTokens, &j.claims, &j.meta, &introspect, &revokedBefore, &c.Version, &created, &updated}, extra...)
	if err := row.Scan(dest...); err != nil {
		return c, j, err
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
	return nil
}

// GetClient implements store.Store. It is on the token hot path (on a cache
// miss): one query for the client with its secrets, one for its grants with
// their APIs' lifetimes.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := s.getClient(ctx, s.db, id, "")
	return c, s.mapErr("get client", err)
}

func (s *Store) getClient(ctx context.Context, q querier, id, lock string) (store.Client, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+clientColumns+`,
			COALESCE(s.id, ''), COALESCE(s.hash, ''), COALESCE(s.hint, ''),
			COALESCE(s.created_at, 0), COALESCE(s.expires_at, 0), COALESCE(s.last_used_at, 0)
		FROM clients c LEFT JOIN client_secrets s ON s.client_id = c.id
		WHERE c.id = $1 ORDER BY s.created_at, s.id`+lock, id)
	if err != nil {
		return store.Client{}, err
	}
	var c store.Client
	found := false
	for rows.Next() {
		var sec store.Secret
		var sCreated, sExpires, sUsed int64
		// One row per secret: the client's columns repeat; decode its JSON once.
		row, j, err := scanClientRow(rows, &sec.ID, &sec.Hash, &sec.Hint, &sCreated, &sExpires, &sUsed)
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
	// The grants query runs even for an unknown client, so that an unknown
	// client id costs the token endpoint the same as a wrong secret.
	grants, err := loadGrants(ctx, q, []string{id})
	if err != nil {
		return store.Client{}, err
	}
	if !found {
		return store.Client{}, store.ErrNotFound
	}
	if g := grants[id]; g != nil {
		c.Grants = g
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

// loadGrants loads the grants (with their API's lifetime) of clients.
func loadGrants(ctx context.Context, q querier, clientIDs []string) (map[string][]store.Grant, error) {
	out := map[string][]store.Grant{}
	if len(clientIDs) == 0 {
		return out, nil
	}
	var a args
	rows, err := q.QueryContext(ctx, `SELECT g.client_id, g.api_identifier, g.scopes, a.token_lifetime_ms
		FROM client_grants g JOIN apis a ON a.identifier = g.api_identifier
		WHERE g.client_id IN `+inList(&a, clientIDs)+` ORDER BY g.client_id, g.api_identifier`, a...)
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
	var extra []string
	if opts.Audience != "" {
		extra = append(extra, `EXISTS (SELECT 1 FROM client_grants g WHERE g.client_id = c.id AND g.api_identifier = `+a.add(opts.Audience)+`)`)
	}
	q.WriteString(`SELECT ` + clientColumns + ` FROM clients c`)
	s.page(&q, &a, "c.id", "c.name", opts, extra)
	rows, err := s.db.QueryContext(ctx, q.String(), a...)
	if err != nil {
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
	grants, err := loadGrants(ctx, s.db, ids)
	if err != nil {
		return nil, s.mapErr("list clients", err)
	}
	for id, gs := range grants {
		clients[index[id]].Grants = gs
	}
	var sa args
	srows, err := s.db.QueryContext(ctx, `SELECT client_id, id, hash, hint, created_at, expires_at, last_used_at
		FROM client_secrets WHERE client_id IN `+inList(&sa, ids)+` ORDER BY client_id, created_at, id`, sa...)
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
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM clients`)
	if err != nil {
		return s.mapErr("client ids", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return s.mapErr("client ids", err)
		}
		fn(id)
	}
	return s.mapErr("client ids", rows.Err())
}

// UpdateClient implements store.Store.
func (s *Store) UpdateClient(ctx context.Context, id string, fn func(*store.Client) error) (store.Client, error) {
	var out store.Client
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Lock the client row first: concurrent updates of one client
		// run one after the other, each seeing the previous one's result.
		var version int64
		if err := tx.QueryRowContext(ctx, `SELECT version FROM clients WHERE id = $1`+s.f.ForUpdate, id).Scan(&version); err != nil {
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
				version = $11, updated_at = $12 WHERE id = $13`,
			next.Name, next.Description, next.DefaultAudience, next.TokenLifetime.Milliseconds(), next.Disabled, next.RefreshTokens,
			marshalMap(next.CustomClaims), marshalMap(next.Metadata), joinScopes(next.Introspect), micros(next.TokensRevokedBefore),
			next.Version, micros(next.UpdatedAt), id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM client_grants WHERE client_id = $1`, id); err != nil {
			return err
		}
		if err := insertGrants(ctx, tx, id, next.Grants); err != nil {
			return err
		}
		if err := syncSecrets(ctx, tx, id, cur.Secrets, next.Secrets); err != nil {
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
func syncSecrets(ctx context.Context, tx *sql.Tx, clientID string, before, after []store.Secret) error {
	old := map[string]store.Secret{}
	for _, s := range before {
		old[s.ID] = s
	}
	for _, s := range after {
		prev, ok := old[s.ID]
		delete(old, s.ID)
		switch {
		case !ok:
			if err := insertSecret(ctx, tx, clientID, s); err != nil {
				return err
			}
		case !prev.ExpiresAt.Equal(s.ExpiresAt):
			if _, err := tx.ExecContext(ctx, `UPDATE client_secrets SET expires_at = $1 WHERE id = $2 AND client_id = $3`,
				micros(s.ExpiresAt), s.ID, clientID); err != nil {
				return err
			}
		}
	}
	for id := range old {
		if _, err := tx.ExecContext(ctx, `DELETE FROM client_secrets WHERE id = $1 AND client_id = $2`, id, clientID); err != nil {
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
	return out
}

// DeleteClient implements store.Store.
func (s *Store) DeleteClient(ctx context.Context, id string, at time.Time) error {
	return s.mapErr("delete client", s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO client_tombstones (id, deleted_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			id, micros(at)); err != nil {
			return err
		}
		return s.notify(ctx, tx, ChangeClientPrefix+id)
	}))
}

// TouchSecrets implements store.Store. Last-use times are not propagated to
// other replicas: they are informational and never affect authentication.
func (s *Store) TouchSecrets(ctx context.Context, lastUsed map[string]time.Time) error {
	if len(lastUsed) == 0 {
		return nil
	}
	return s.mapErr("touch secrets", s.inTx(ctx, func(tx *sql.Tx) error {
		for id, t := range lastUsed {
			if _, err := tx.ExecContext(ctx, `UPDATE client_secrets SET last_used_at = $1 WHERE id = $2 AND last_used_at < $1`, micros(t), id); err != nil {
				return err
			}
		}
		return nil
	}))
}

// ---- signing keys ----

const keyColumns = `kid, alg, state, private_key, public_jwk, master_key_id, created_at, activate_at, activated_at, retired_at, remove_at`

func insertKey(ctx context.Context, q querier, k store.SigningKey, onConflict string) (sql.Result, error) {
	return q.ExecContext(ctx, `INSERT INTO signing_keys (`+keyColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`+onConflict,
		k.KID, k.Alg, k.State, k.Private, string(k.PublicJWK), k.MasterKeyID,
		micros(k.CreatedAt), micros(k.ActivateAt), micros(k.ActivatedAt), micros(k.RetiredAt), micros(k.RemoveAt))
}

// CreateSigningKey implements store.Store. The partial unique index on
// state = 'active' makes "insert an active key unless one exists" atomic.
func (s *Store) CreateSigningKey(ctx context.Context, k store.SigningKey) (bool, error) {
	res, err := insertKey(ctx, s.db, k, " ON CONFLICT DO NOTHING")
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
	keys, err := listKeys(ctx, s.db)
	return keys, s.mapErr("list signing keys", err)
}

func listKeys(ctx context.Context, q querier) ([]store.SigningKey, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+keyColumns+` FROM signing_keys ORDER BY created_at DESC, kid`)
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

// UpdateSigningKeys implements store.Store.
func (s *Store) UpdateSigningKeys(ctx context.Context, fn func([]store.SigningKey, func(string) string) (store.KeyUpdate, error)) error {
	return s.mapErr("update signing keys", s.inTx(ctx, func(tx *sql.Tx) error {
		if s.f.KeysLock != "" {
			if _, err := tx.ExecContext(ctx, s.f.KeysLock); err != nil {
				return err
			}
		}
		keys, err := listKeys(ctx, tx)
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
			if _, err := tx.ExecContext(ctx, `DELETE FROM signing_keys WHERE kid = $1`, kid); err != nil {
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
					activate_at = $4, activated_at = $5, retired_at = $6, remove_at = $7 WHERE kid = $8`,
				k.State, k.Private, k.MasterKeyID, micros(k.ActivateAt), micros(k.ActivatedAt), micros(k.RetiredAt), micros(k.RemoveAt), k.KID); err != nil {
				return err
			}
		}
		for _, k := range u.Insert {
			if _, err := insertKey(ctx, tx, k, ""); err != nil {
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

// ---- bootstrap and meta ----

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
			if err := tx.QueryRowContext(ctx, `SELECT identifier FROM apis WHERE builtin = $1`, b.AdminAPI.Builtin).Scan(&cur); err != nil {
				return err
			}
			if cur == b.AdminAPI.Identifier {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE apis SET identifier = $1, updated_at = $2, version = version + 1 WHERE builtin = $3`,
				b.AdminAPI.Identifier, micros(b.AdminAPI.UpdatedAt), b.AdminAPI.Builtin); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE clients SET default_audience = $1, version = version + 1 WHERE default_audience = $2`,
				b.AdminAPI.Identifier, cur); err != nil {
				return err
			}
			return s.notify(ctx, tx, ChangeAPIPrefix+b.AdminAPI.Identifier)
		}
		created = true
		if err := insertAPI(ctx, tx, b.AdminAPI); err != nil {
			return err
		}
		return insertClient(ctx, tx, b.AdminClient)
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

// ---- refresh tokens ----

const refreshColumns = `hash, family_id, client_id, audience, scopes, created_at, expires_at, used_at, revoked_at`

func insertRefresh(ctx context.Context, q querier, t store.RefreshToken) error {
	_, err := q.ExecContext(ctx, `INSERT INTO refresh_tokens (`+refreshColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0)`,
		t.Hash, t.FamilyID, t.ClientID, joinScopes(t.Audience), joinScopes(t.Scopes), micros(t.CreatedAt), micros(t.ExpiresAt))
	return err
}

// CreateRefreshToken implements store.Store.
func (s *Store) CreateRefreshToken(ctx context.Context, t store.RefreshToken) error {
	return s.mapErr("create refresh token", insertRefresh(ctx, s.db, t))
}

// RedeemRefreshToken implements store.Store.
func (s *Store) RedeemRefreshToken(ctx context.Context, hash string, now time.Time, next func(store.RefreshToken) (store.RefreshToken, error)) (store.RefreshToken, error) {
	var cur store.RefreshToken
	spent := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if cur, err = scanRefresh(tx.QueryRowContext(ctx, `SELECT `+refreshColumns+` FROM refresh_tokens WHERE hash = $1`+s.f.ForUpdate, hash)); err != nil {
			return err
		}
		if !now.Before(cur.ExpiresAt) {
			return store.ErrNotFound
		}
		if !cur.UsedAt.IsZero() || !cur.RevokedAt.IsZero() {
			// Replay of a spent token: someone holds a copy. Revoke the
			// family, and commit that.
			spent = true
			_, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at = 0`, micros(now), cur.FamilyID)
			return err
		}
		succ, err := next(cur)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2`, micros(now), hash); err != nil {
			return err
		}
		return insertRefresh(ctx, tx, succ)
	})
	if err == nil && spent {
		err = store.ErrTokenSpent
	}
	return cur, s.mapErr("redeem refresh token", err)
}

// DeleteExpiredRefreshTokens implements store.Store.
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
	err := row.Scan(&t.Hash, &t.FamilyID, &t.ClientID, &aud, &scopes, &created, &expires, &used, &revoked)
	t.Audience, t.Scopes = splitScopes(aud), splitScopes(scopes)
	t.CreatedAt, t.ExpiresAt, t.UsedAt, t.RevokedAt = fromMicros(created), fromMicros(expires), fromMicros(used), fromMicros(revoked)
	return t, err
}

// GetRefreshToken implements store.Store.
func (s *Store) GetRefreshToken(ctx context.Context, hash string) (store.RefreshToken, error) {
	t, err := scanRefresh(s.db.QueryRowContext(ctx, `SELECT `+refreshColumns+` FROM refresh_tokens WHERE hash = $1`, hash))
	return t, s.mapErr("get refresh token", err)
}

// RevokeRefreshFamily implements store.Store.
func (s *Store) RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at = 0`, micros(now), familyID)
	return s.mapErr("revoke refresh family", err)
}

// RevokeClientRefreshTokens implements store.Store.
func (s *Store) RevokeClientRefreshTokens(ctx context.Context, clientID string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at = 0`, micros(now), clientID)
	return s.mapErr("revoke client refresh tokens", err)
}

// ---- access token revocations ----

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, r store.Revocation) error {
	return s.mapErr("revoke token", s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO revocations (jti, client_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			r.JTI, r.ClientID, micros(r.ExpiresAt), micros(r.RevokedAt)); err != nil {
			return err
		}
		return s.notify(ctx, tx, ChangeRevokedPrefix+strconv.FormatInt(micros(r.ExpiresAt), 10)+":"+r.JTI)
	}))
}

// IsRevoked implements store.Store.
func (s *Store) IsRevoked(ctx context.Context, jti string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM revocations WHERE jti = $1`, jti).Scan(&n)
	return n > 0, s.mapErr("is revoked", err)
}

// ListRevocations implements store.Store.
func (s *Store) ListRevocations(ctx context.Context, now time.Time, after *store.Revocation, limit int) ([]store.Revocation, error) {
	var q strings.Builder
	a := args{}
	q.WriteString(`SELECT jti, client_id, expires_at, revoked_at FROM revocations WHERE expires_at > ` + a.add(micros(now)))
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

// DeleteExpiredRevocations implements store.Store.
func (s *Store) DeleteExpiredRevocations(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM revocations WHERE expires_at < $1`, micros(before))
	if err != nil {
		return 0, s.mapErr("delete expired revocations", err)
	}
	n, err := res.RowsAffected()
	return int(n), s.mapErr("delete expired revocations", err)
}
