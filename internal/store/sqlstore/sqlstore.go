// Package sqlstore implements store.Store over database/sql for every SQL
// backend. The SQL text is shared (SQLite accepts PostgreSQL's $N
// placeholders); what differs between databases is captured in a Flavor.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
	// IsUniqueViolation and IsForeignKeyViolation classify driver errors.
	IsUniqueViolation     func(error) bool
	IsForeignKeyViolation func(error) bool
}

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

// ---- APIs ----

const apiColumns = `id, identifier, name, scopes, token_lifetime_ms, COALESCE(builtin, ''), created_at, updated_at`

func scanAPI(row interface{ Scan(...any) error }) (store.API, error) {
	var a store.API
	var scopes string
	var lifetimeMS, created, updated int64
	err := row.Scan(&a.ID, &a.Identifier, &a.Name, &scopes, &lifetimeMS, &a.Builtin, &created, &updated)
	a.Scopes = splitScopes(scopes)
	a.TokenLifetime = time.Duration(lifetimeMS) * time.Millisecond
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	return a, err
}

func insertAPI(ctx context.Context, ex execer, a store.API) error {
	var builtin any
	if a.Builtin != "" {
		builtin = a.Builtin
	}
	_, err := ex.ExecContext(ctx, `INSERT INTO apis (id, identifier, name, scopes, token_lifetime_ms, builtin, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		a.ID, a.Identifier, a.Name, joinScopes(a.Scopes), a.TokenLifetime.Milliseconds(), builtin, micros(a.CreatedAt), micros(a.UpdatedAt))
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
func (s *Store) ListAPIs(ctx context.Context) ([]store.API, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+apiColumns+` FROM apis ORDER BY identifier`)
	if err != nil {
		return nil, s.mapErr("list apis", err)
	}
	defer rows.Close()
	apis := []store.API{}
	for rows.Next() {
		a, err := scanAPI(rows)
		if err != nil {
			return nil, s.mapErr("list apis", err)
		}
		apis = append(apis, a)
	}
	return apis, s.mapErr("list apis", rows.Err())
}

// DeleteAPI implements store.Store.
func (s *Store) DeleteAPI(ctx context.Context, identifier string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var builtin string
		err := tx.QueryRowContext(ctx, `SELECT COALESCE(builtin, '') FROM apis WHERE identifier = $1`, identifier).Scan(&builtin)
		if err != nil {
			return s.mapErr("delete api", err)
		}
		if builtin != "" {
			return fmt.Errorf("delete api: %w: the %s API is built in", store.ErrConflict, builtin)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM client_grants WHERE api_identifier = $1`, identifier).Scan(&n); err != nil {
			return s.mapErr("delete api", err)
		}
		if n > 0 {
			return fmt.Errorf("delete api: %w: %d client(s) hold a grant for it", store.ErrConflict, n)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM apis WHERE identifier = $1`, identifier)
		return s.mapErr("delete api", err)
	})
}

// ---- clients ----

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertClient(ctx context.Context, ex execer, c store.Client) error {
	_, err := ex.ExecContext(ctx, `INSERT INTO clients (id, name, description, default_audience, token_lifetime_ms, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		c.ID, c.Name, c.Description, c.DefaultAudience, c.TokenLifetime.Milliseconds(), micros(c.CreatedAt), micros(c.UpdatedAt))
	if err != nil {
		return err
	}
	for _, g := range c.Grants {
		if _, err := ex.ExecContext(ctx, `INSERT INTO client_grants (client_id, api_identifier, scopes) VALUES ($1, $2, $3)`,
			c.ID, g.Audience, joinScopes(g.Scopes)); err != nil {
			return err
		}
	}
	for _, sec := range c.Secrets {
		if _, err := ex.ExecContext(ctx, `INSERT INTO client_secrets (id, client_id, hash, hint, created_at, expires_at, last_used_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			sec.ID, c.ID, sec.Hash, sec.Hint, micros(sec.CreatedAt), micros(sec.ExpiresAt), micros(sec.LastUsedAt)); err != nil {
			return err
		}
	}
	return nil
}

// CreateClient implements store.Store.
func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	return s.mapErr("create client", s.inTx(ctx, func(tx *sql.Tx) error { return insertClient(ctx, tx, c) }))
}

const clientColumns = `c.id, c.name, c.description, c.default_audience, c.token_lifetime_ms, c.created_at, c.updated_at`

// GetClient implements store.Store. It is on the token hot path: one query
// for the client with its secrets, one for its grants with their APIs'
// lifetimes.
func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+clientColumns+`,
			COALESCE(s.id, ''), COALESCE(s.hash, ''), COALESCE(s.hint, ''),
			COALESCE(s.created_at, 0), COALESCE(s.expires_at, 0), COALESCE(s.last_used_at, 0)
		FROM clients c LEFT JOIN client_secrets s ON s.client_id = c.id
		WHERE c.id = $1 ORDER BY s.created_at, s.id`, id)
	if err != nil {
		return store.Client{}, s.mapErr("get client", err)
	}
	var c store.Client
	found := false
	for rows.Next() {
		var lifetimeMS, created, updated int64
		var sec store.Secret
		var sCreated, sExpires, sUsed int64
		if err := rows.Scan(&c.ID, &c.Name, &c.Description, &c.DefaultAudience, &lifetimeMS, &created, &updated,
			&sec.ID, &sec.Hash, &sec.Hint, &sCreated, &sExpires, &sUsed); err != nil {
			rows.Close()
			return store.Client{}, s.mapErr("get client", err)
		}
		found = true
		c.TokenLifetime = time.Duration(lifetimeMS) * time.Millisecond
		c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
		if sec.ID != "" {
			sec.CreatedAt, sec.ExpiresAt, sec.LastUsedAt = fromMicros(sCreated), fromMicros(sExpires), fromMicros(sUsed)
			c.Secrets = append(c.Secrets, sec)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return store.Client{}, s.mapErr("get client", err)
	}
	// The grants query runs even for an unknown client, so that an unknown
	// client id costs the token endpoint the same as a wrong secret.
	grants, err := s.grants(ctx, `WHERE g.client_id = $1`, id)
	if err != nil {
		return store.Client{}, err
	}
	if !found {
		return store.Client{}, fmt.Errorf("get client: %w", store.ErrNotFound)
	}
	c.Grants = grants[id]
	if c.Secrets == nil {
		c.Secrets = []store.Secret{}
	}
	if c.Grants == nil {
		c.Grants = []store.Grant{}
	}
	return c, nil
}

// grants loads grants (with their API's lifetime) keyed by client id.
func (s *Store) grants(ctx context.Context, where string, args ...any) (map[string][]store.Grant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT g.client_id, g.api_identifier, g.scopes, a.token_lifetime_ms
		FROM client_grants g JOIN apis a ON a.identifier = g.api_identifier `+where+`
		ORDER BY g.client_id, g.api_identifier`, args...)
	if err != nil {
		return nil, s.mapErr("get grants", err)
	}
	defer rows.Close()
	out := map[string][]store.Grant{}
	for rows.Next() {
		var clientID, scopes string
		var g store.Grant
		var lifetimeMS int64
		if err := rows.Scan(&clientID, &g.Audience, &scopes, &lifetimeMS); err != nil {
			return nil, s.mapErr("get grants", err)
		}
		g.Scopes = splitScopes(scopes)
		g.APITokenLifetime = time.Duration(lifetimeMS) * time.Millisecond
		out[clientID] = append(out[clientID], g)
	}
	return out, s.mapErr("get grants", rows.Err())
}

// ListClients implements store.Store.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+clientColumns+` FROM clients c ORDER BY c.id`)
	if err != nil {
		return nil, s.mapErr("list clients", err)
	}
	clients := []store.Client{}
	index := map[string]int{}
	for rows.Next() {
		var c store.Client
		var lifetimeMS, created, updated int64
		if err := rows.Scan(&c.ID, &c.Name, &c.Description, &c.DefaultAudience, &lifetimeMS, &created, &updated); err != nil {
			rows.Close()
			return nil, s.mapErr("list clients", err)
		}
		c.TokenLifetime = time.Duration(lifetimeMS) * time.Millisecond
		c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
		c.Grants, c.Secrets = []store.Grant{}, []store.Secret{}
		index[c.ID] = len(clients)
		clients = append(clients, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, s.mapErr("list clients", err)
	}
	grants, err := s.grants(ctx, "")
	if err != nil {
		return nil, err
	}
	for id, gs := range grants {
		if i, ok := index[id]; ok {
			clients[i].Grants = gs
		}
	}
	srows, err := s.db.QueryContext(ctx, `SELECT client_id, id, hash, hint, created_at, expires_at, last_used_at
		FROM client_secrets ORDER BY client_id, created_at, id`)
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
		if i, ok := index[clientID]; ok {
			clients[i].Secrets = append(clients[i].Secrets, sec)
		}
	}
	return clients, s.mapErr("list clients", srows.Err())
}

// DeleteClient implements store.Store.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM clients WHERE id = $1`, id)
	if err != nil {
		return s.mapErr("delete client", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return s.mapErr("delete client", err)
	} else if n == 0 {
		return fmt.Errorf("delete client: %w", store.ErrNotFound)
	}
	return nil
}

// ---- signing keys ----

// CreateSigningKey implements store.Store. The partial unique index on
// state = 'active' makes "insert an active key unless one exists" atomic.
func (s *Store) CreateSigningKey(ctx context.Context, k store.SigningKey) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys
		(kid, alg, state, private_key, public_jwk, master_key_id, created_at, activated_at, retired_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		k.KID, k.Alg, k.State, k.Private, string(k.PublicJWK), k.MasterKeyID,
		micros(k.CreatedAt), micros(k.ActivatedAt), micros(k.RetiredAt))
	if err != nil {
		return false, s.mapErr("create signing key", err)
	}
	n, err := res.RowsAffected()
	return n == 1, s.mapErr("create signing key", err)
}

// ListSigningKeys implements store.Store.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, alg, state, private_key, public_jwk, master_key_id, created_at, activated_at, retired_at
		FROM signing_keys ORDER BY created_at DESC, kid`)
	if err != nil {
		return nil, s.mapErr("list signing keys", err)
	}
	defer rows.Close()
	keys := []store.SigningKey{}
	for rows.Next() {
		var k store.SigningKey
		var pub string
		var created, activated, retired int64
		if err := rows.Scan(&k.KID, &k.Alg, &k.State, &k.Private, &pub, &k.MasterKeyID, &created, &activated, &retired); err != nil {
			return nil, s.mapErr("list signing keys", err)
		}
		k.PublicJWK = []byte(pub)
		k.CreatedAt, k.ActivatedAt, k.RetiredAt = fromMicros(created), fromMicros(activated), fromMicros(retired)
		keys = append(keys, k)
	}
	return keys, s.mapErr("list signing keys", rows.Err())
}

// ---- bootstrap ----

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
		if n == 0 {
			_, err := tx.ExecContext(ctx, `UPDATE apis SET identifier = $1, updated_at = $2 WHERE builtin = $3 AND identifier <> $1`,
				b.AdminAPI.Identifier, micros(b.AdminAPI.UpdatedAt), b.AdminAPI.Builtin)
			return err
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

// EnsureMeta implements store.Store.
func (s *Store) EnsureMeta(ctx context.Context, key, value string) (string, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING`, key, value); err != nil {
		return "", s.mapErr("ensure meta", err)
	}
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = $1`, key).Scan(&v)
	return v, s.mapErr("ensure meta", err)
}
