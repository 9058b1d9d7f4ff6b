// Package store defines m2mauth's domain records (APIs, clients, their
// secrets and grants, signing keys) and the Store interface every storage
// backend implements. Backends live in sub-packages (sqlite, postgres) and
// all pass the conformance suite in storetest.
package store

import (
	"context"
	"errors"
	"iter"
	"strconv"
	"time"
)

// Sentinel errors callers branch on. Backends wrap them with %w.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness or reference constraint prevents the write
	// (duplicate identifier, API still granted to a client, grant to a
	// missing API).
	ErrConflict = errors.New("conflict")
)

// API is a resource server that tokens are issued for. Its Identifier is the
// value of the token's aud claim.
type API struct {
	ID         string
	Identifier string
	Name       string
	Scopes     []string
	// ScopeDescriptions maps some of Scopes to a human-readable
	// description. Never nil when read; a scope the API stops defining
	// loses its description with it (UpdateAPI drops it).
	ScopeDescriptions map[string]string
	TokenLifetime     time.Duration // 0: the server default
	// Discoverable APIs have their scopes listed in the discovery
	// documents' scopes_supported.
	Discoverable bool
	// Builtin names a server-managed API ("admin"); empty for user APIs.
	Builtin string
	// Version increases with every change (optimistic concurrency).
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Grant lets a client request tokens for one API with a subset of its scopes.
type Grant struct {
	Audience string // API identifier
	Scopes   []string
	// APITokenLifetime is the granted API's own token lifetime, filled in on
	// reads so the token endpoint needs no second lookup. Ignored on writes.
	APITokenLifetime time.Duration
}

// Secret is one client secret. Only its keyed hash is stored.
type Secret struct {
	ID         string
	Hash       string // "alg$…", see package secret
	Hint       string // a short, non-secret prefix to recognise it by
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastUsedAt time.Time // zero: never used
}

// Client is an application that authenticates with the client-credentials
// grant.
type Client struct {
	ID              string
	Name            string
	Description     string
	DefaultAudience string        // empty: none
	TokenLifetime   time.Duration // 0: the API's or the server default
	Disabled        bool
	// RefreshTokens lets the client receive refresh tokens (off by default).
	RefreshTokens bool
	// TokenReuse (0: off, else in (0, 1)): while the client's last token
	// for the same audience and scopes has more than this fraction of its
	// lifetime left, the token endpoint returns it again.
	TokenReuse float64
	// Introspect lists the audiences whose tokens the client may
	// introspect; "*" means all (an admin-level introspector).
	Introspect []string
	// TokensRevokedBefore revokes every token of the client issued before
	// it (zero: none).
	TokensRevokedBefore time.Time
	// Quota bounds how many access tokens the client is issued per minute,
	// hour and day (zero: the server's defaults).
	Quota Quota
	// CustomClaims are static claims added to every token; they never
	// override registered claims.
	CustomClaims map[string]any
	Metadata     map[string]string
	// AuthMethod is how the client authenticates
	// (token_endpoint_auth_method): "client_secret_basic" (also when
	// empty) or "client_secret_post" (shared secrets), "private_key_jwt"
	// (its own keys), "federated" (a token of a trusted external issuer).
	AuthMethod string
	// JWKS (a JWK Set, as JSON) or JWKSURI holds a private_key_jwt
	// client's public keys.
	JWKS    []byte
	JWKSURI string
	// AcceptSecrets lets a private_key_jwt or federated client still
	// authenticate with its secrets (while it migrates away from them).
	AcceptSecrets bool
	// AcceptTokenEndpointAudience accepts client assertions whose aud is
	// the token endpoint URL rather than the issuer (RFC 7523 §3's older
	// wording, which some libraries follow by default).
	AcceptTokenEndpointAudience bool
	// Federation binds a federated client to the workload identities it
	// stands for.
	Federation []FederatedIdentity
	// TLSSubject is what a tls_client_auth client's certificate must name
	// (RFC 8705 §2.1.2); zero for other methods.
	TLSSubject TLSSubject
	// CertBoundTokens (tls_client_certificate_bound_access_tokens, RFC
	// 8705 §3.4): the client's access tokens are bound to the certificate
	// it presents, and a request without one is refused.
	CertBoundTokens bool
	// DPoPBoundTokens (dpop_bound_access_tokens, RFC 9449 §5.2): every token
	// request of the client must carry a DPoP proof.
	DPoPBoundTokens bool
	Grants          []Grant
	Secrets         []Secret
	// Version increases with every change (optimistic concurrency).
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TLS subject kinds: which RFC 8705 §2.1.2 metadata parameter a
// tls_client_auth client registered.
const (
	TLSSubjectDN    = "dn"    // tls_client_auth_subject_dn (RFC 4514 string)
	TLSSubjectDNS   = "dns"   // tls_client_auth_san_dns
	TLSSubjectURI   = "uri"   // tls_client_auth_san_uri (a SPIFFE ID fits here)
	TLSSubjectIP    = "ip"    // tls_client_auth_san_ip
	TLSSubjectEmail = "email" // tls_client_auth_san_email
)

// TLSSubject is the one name a tls_client_auth client's certificate must
// carry: Kind is one of the TLSSubject* constants, "" for none.
type TLSSubject struct {
	Kind, Value string
}

// Quota limits a client's token issuance per fixed UTC window. Each limit
// is 0 (the server's default for that window), QuotaUnlimited (no limit,
// whatever the default) or a positive number of tokens.
type Quota struct {
	PerMinute, PerHour, PerDay int64
}

// Describe names each limit the quota sets, in window order: "10" or
// "unlimited", then sep, then the window ("10/minute", "unlimited per
// day"). Limits left to the server's default are left out.
func (q Quota) Describe(sep string) []string {
	var parts []string
	for _, w := range [3]struct {
		name string
		n    int64
	}{{"minute", q.PerMinute}, {"hour", q.PerHour}, {"day", q.PerDay}} {
		switch {
		case w.n > 0:
			parts = append(parts, strconv.FormatInt(w.n, 10)+sep+w.name)
		case w.n < 0:
			parts = append(parts, "unlimited"+sep+w.name)
		}
	}
	return parts
}

// QuotaUnlimited is a Quota limit that lifts the server's default.
const QuotaUnlimited = -1

// QuotaReservation asks a client's shared quota counters for tokens: the
// counters of the windows (minute, hour, day, UTC) starting at Starts,
// whose limits are Limits (≤ 0: none).
type QuotaReservation struct {
	ClientID string
	Starts   [3]time.Time
	Limits   [3]int64
	// Want is how many tokens to reserve (the grant may be fewer).
	Want int64
	// Return gives back, first, tokens reserved earlier and never issued,
	// in the windows starting at ReturnStarts (those that are over are
	// left alone).
	Return       int64
	ReturnStarts [3]time.Time
}

// DefaultAuthMethod is the token_endpoint_auth_method of a client that
// names none (RFC 7591 §2).
const DefaultAuthMethod = "client_secret_basic"

// Method returns how the client authenticates: AuthMethod, or
// DefaultAuthMethod when it is empty.
func (c *Client) Method() string {
	if c.AuthMethod == "" {
		return DefaultAuthMethod
	}
	return c.AuthMethod
}

// FederatedIdentity binds a client to the tokens of a trust policy's
// issuer whose subject matches Subject (exact, or a pattern where '*'
// matches any run of characters) and whose claims have the given values
// (names may be dotted paths into nested objects: kubernetes.io.namespace).
type FederatedIdentity struct {
	Policy  string            `json:"policy"`
	Subject string            `json:"subject"`
	Claims  map[string]string `json:"claims,omitempty"`
}

// Kinds of trust policy.
const (
	TrustJWT    = "jwt"    // an OpenID-style issuer: Kubernetes, CI providers
	TrustSPIFFE = "spiffe" // a SPIFFE trust domain's JWT-SVIDs
)

// TrustPolicy is a trusted external issuer of workload identities.
type TrustPolicy struct {
	Name        string
	Kind        string // TrustJWT or TrustSPIFFE
	Issuer      string // the tokens' iss; for SPIFFE, the trust domain (spiffe://example.org)
	Description string
	// The issuer's keys: a JWKS URL, the JWKS of its OpenID discovery
	// document (Discovery), or a static JWK Set (for clusters whose keys
	// are not published).
	JWKSURI    string
	Discovery  bool
	JWKS       []byte
	Algorithms []string
	// Audience is the aud its tokens must carry (naming this server).
	Audience string
	// MaxTokenAge bounds now - iat; MaxTokenLifetime bounds exp - iat.
	MaxTokenAge      time.Duration
	MaxTokenLifetime time.Duration
	// SingleUse accepts a token with a jti once; RequireJTI refuses tokens
	// without one.
	SingleUse  bool
	RequireJTI bool
	Version    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// RefreshToken is one refresh token, stored by its keyed hash. Redeeming it
// spends it and creates its successor in the same family.
type RefreshToken struct {
	Hash      string
	FamilyID  string
	ClientID  string
	Audience  []string
	Scopes    []string
	CreatedAt time.Time
	ExpiresAt time.Time // absolute: the family's, unchanged by rotation
	UsedAt    time.Time
	RevokedAt time.Time
	// DPoP: the family began with a DPoP-bound access token, so every
	// refresh must prove a DPoP key too (RFC 9449 §5): otherwise a stolen
	// refresh token would turn into bearer tokens where a refresh needs no
	// client authentication (the ATM surface's).
	DPoP bool
}

// Revocation is a revoked access token, kept until it expires.
type Revocation struct {
	JTI       string
	ClientID  string
	ExpiresAt time.Time
	RevokedAt time.Time
}

// ErrTokenSpent: a refresh token was presented again after it was spent or
// its family revoked. Its family is now revoked.
var ErrTokenSpent = errors.New("refresh token already used or revoked")

// Live reports whether the secret authenticates at instant now.
func (s Secret) Live(now time.Time) bool { return s.ExpiresAt.IsZero() || now.Before(s.ExpiresAt) }

// ListOptions pages and filters a listing. Results are ordered by key (a
// client's id, an API's identifier); After is the last key of the previous
// page.
type ListOptions struct {
	Limit        int    // 0: no limit
	After        string // exclusive lower bound on the key
	NameContains string // case-insensitive substring of the name
	Audience     string // clients only: holding a grant for this API
}

// DefaultEnv is the name of the default environment: the one every
// database has, served at the deployment's own issuer URL, holding what
// existed before environments did.
const DefaultEnv = "default"

// Environment is one authorization server of a deployment: its APIs,
// clients, keys, tokens and everything else live in it and in no other.
type Environment struct {
	Name        string // its key: the path segment or host label that addresses it
	DisplayName string
	// SigningAlg and KeyRotationPeriod override the deployment's settings
	// for its signing keys ("" and 0: the deployment's).
	SigningAlg        string
	KeyRotationPeriod time.Duration
	// KeyWorkAt is when its signing keys next need maintenance (zero:
	// now). Key maintenance visits only environments that are due.
	KeyWorkAt time.Time
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Key states in a signing key's lifecycle.
const (
	KeyNext    = "next"    // published, not yet signing
	KeyActive  = "active"  // signing (at most one)
	KeyRetired = "retired" // published until its last token expires
)

// SigningKey is a token signing key. Private holds the private key encrypted
// under the master key identified by MasterKeyID; it is never stored clear.
type SigningKey struct {
	KID         string
	Alg         string
	State       string
	Private     []byte
	PublicJWK   []byte // the public JWK as published in the JWKS
	MasterKeyID string
	CreatedAt   time.Time
	ActivateAt  time.Time // next keys: when it starts signing
	ActivatedAt time.Time
	RetiredAt   time.Time
	RemoveAt    time.Time // retired keys: when it is unpublished
}

// KeyUpdate is a change to the signing keys made in one transaction:
// deletions first, then updates (keys leaving the active state before the
// one entering it), then inserts. Meta entries are set too (for re-sealed
// secrets).
type KeyUpdate struct {
	Insert []SigningKey
	Update []SigningKey
	Delete []string
	Meta   map[string]string
}

// Empty reports whether the update changes nothing.
func (u KeyUpdate) Empty() bool {
	return len(u.Insert)+len(u.Update)+len(u.Delete)+len(u.Meta) == 0
}

// Bootstrap is what a first start creates: the built-in admin API and the
// bootstrap admin client that may use it, for the issuer recorded in the
// database (meta key MetaIssuer).
type Bootstrap struct {
	Issuer      string
	AdminAPI    API
	AdminClient Client
}

// MetaIssuer is the meta key of the issuer the database belongs to.
const MetaIssuer = "issuer"

// ConsoleSession is a signed-in session of the admin console. Its id is
// never stored: only IDHash, a keyed hash of it.
type ConsoleSession struct {
	IDHash   string
	ClientID string // the admin client the session acts as
	// CreatedAt is compared with the client's TokensRevokedBefore: revoking
	// the client's tokens ends its sessions too.
	CreatedAt  time.Time
	LastSeenAt time.Time // the idle expiry counts from here
	ExpiresAt  time.Time // absolute expiry
	// Viewing is the environment the session acts in ("": the one it is
	// stored in, its admin client's).
	Viewing string
}

// Counts are the sizes of a deployment's registries.
type Counts struct {
	APIs            int // the built-in admin API included
	Clients         int
	DisabledClients int
}

// SecretExpiry is a client whose secrets all expire: the last one at
// ExpiresAt.
type SecretExpiry struct {
	ClientID   string
	ClientName string
	ExpiresAt  time.Time
}

// SecretAge is the creation time of a client's oldest live secret.
type SecretAge struct {
	ClientID  string
	CreatedAt time.Time
}

// UsageCount is how many access tokens a client was issued in one hour.
type UsageCount struct {
	// Env is the client's environment (RecordUsage only; "" and every
	// other method: the store's).
	Env      string
	ClientID string
	Hour     time.Time // the start of the hour, UTC
	// Minute is the start of the minute the count belongs to (RecordUsage
	// and AddTokenUsage: zero when not counted per minute;
	// RecentTokenUsage: the first minute with tokens).
	Minute time.Time
	Tokens int64
}

// SecretUse is when a secret of an environment last authenticated.
type SecretUse struct {
	Env, SecretID string
	At            time.Time
}

// Kinds of audit event.
const (
	AuditAdmin       = "admin"        // a management change
	AuditTokenIssued = "token_issued" // an access token issued
	AuditAuthFailed  = "auth_failed"  // a failed client authentication
	// AuditTokenRefused is an authenticated client refused a token: over
	// its issuance quota.
	AuditTokenRefused = "token_refused"
)

// AuditEvent is one entry of the audit trail. It never holds a secret, a
// token or a hash: Diff carries only allow-listed fields.
type AuditEvent struct {
	// ID orders events: it sorts as their times do (time first), and is
	// unique across replicas.
	ID   string
	Time time.Time
	// Env is the environment the event happened in (AppendAuditEvents:
	// "" means the store's).
	Env      string
	Kind     string // AuditAdmin, AuditTokenIssued or AuditAuthFailed
	Actor    string // admin client id, "console:<client id>", "system", or the client of a token event
	SourceIP string
	Action   string // client.create, key.rotate, token.issue, …
	// TargetType and TargetID name what changed (client, api, key, …).
	TargetType string
	TargetID   string
	// Diff is a JSON object of the changed fields, each {"before", "after"}
	// (nil: none).
	Diff []byte
	// ClientID is the client the event concerns (token events; admin
	// events on a client), so that a client's whole trail is one filter.
	ClientID string
	// Surface, Grant and Outcome describe a token event.
	Surface string
	Grant   string
	Outcome string
}

// AuditFilter selects audit events; empty fields select everything.
type AuditFilter struct {
	ClientID string
	// Action matches exactly, or as a prefix when it ends in "*"
	// ("client.*").
	Action     string
	Kind       string
	Actor      string
	TargetType string
	TargetID   string
	Since      time.Time // inclusive
	Until      time.Time // exclusive
	// Before is the ID of the last event of the previous page: the
	// listing is newest first.
	Before string
	// After lists events newer than this ID instead, oldest first (to
	// follow the trail).
	After string
	Limit int // 0: no limit
}

// Store is the persistence interface. It is the one wide interface in the
// project because the backend is chosen at run time.
type Store interface {
	// CreateAPI stores a new API. ErrConflict if the identifier is taken.
	// Descriptions of scopes the API does not define are not stored.
	CreateAPI(ctx context.Context, api API) error
	// GetAPI returns the API with this identifier.
	GetAPI(ctx context.Context, identifier string) (API, error)
	// ListAPIs returns APIs ordered by identifier.
	ListAPIs(ctx context.Context, opts ListOptions) ([]API, error)
	// UpdateAPI applies fn to the API inside a transaction that holds it
	// locked, and stores the result with Version+1. fn may return an error
	// to abort. The identifier cannot change. Scopes removed from the API
	// are removed from every grant, and every client whose grant loses one
	// has its tokens revoked: TokensRevokedBefore moves up to revokeBefore
	// (never back) and its refresh tokens are revoked at that instant. The
	// descriptions of scopes the API no longer defines are dropped.
	UpdateAPI(ctx context.Context, identifier string, revokeBefore time.Time, fn func(*API) error) (API, error)
	// DeleteAPI removes an API. ErrConflict when it is built in, or while
	// a client holds a grant for it unless force, which removes the grants
	// and revokes the tokens of their clients as UpdateAPI does.
	DeleteAPI(ctx context.Context, identifier string, force bool, revokeBefore time.Time) error

	// CreateClient stores a client with its grants and secrets in one
	// transaction. ErrConflict if the id is or ever was taken, or a grant
	// names a missing API.
	CreateClient(ctx context.Context, c Client) error
	// GetClient returns a client with its grants and secrets.
	GetClient(ctx context.Context, id string) (Client, error)
	// ClientIDs calls fn with the id of every client, in no particular
	// order, streaming (it holds no more than a row at a time).
	ClientIDs(ctx context.Context, fn func(id string)) error
	// GrantHolderIDs calls fn with the id of every client holding a grant
	// for the API audience, by id, streaming.
	GrantHolderIDs(ctx context.Context, audience string, fn func(id string)) error
	// ListClients returns clients (with grants and secrets) ordered by id.
	ListClients(ctx context.Context, opts ListOptions) ([]Client, error)
	// UpdateClient applies fn to the client inside a transaction that holds
	// it locked, and stores the result (fields, grants, secrets) with
	// Version+1. fn may return an error to abort. The id cannot change and
	// secrets' LastUsedAt is not written (see TouchSecrets).
	UpdateClient(ctx context.Context, id string, fn func(*Client) error) (Client, error)
	// DeleteClient removes a client, its grants and its secrets, and
	// records its id, deleted at instant at, so that it is never used again.
	DeleteClient(ctx context.Context, id string, at time.Time) error
	// CreateRefreshToken stores a new refresh token (the first of a family).
	CreateRefreshToken(ctx context.Context, t RefreshToken) error
	// RedeemRefreshToken spends the live token with this hash and stores
	// the successor next returns, in one transaction; an error from next
	// aborts it (the token stays live). A token that is unknown or expired
	// is ErrNotFound; a spent or revoked one is ErrTokenSpent, and its whole
	// family is revoked.
	RedeemRefreshToken(ctx context.Context, hash string, now time.Time, next func(RefreshToken) (RefreshToken, error)) (RefreshToken, error)
	// DeleteExpiredRefreshTokens removes tokens that expired before t.
	DeleteExpiredRefreshTokens(ctx context.Context, before time.Time) (int, error)
	// GetRefreshToken returns the token with this hash, spent or not.
	GetRefreshToken(ctx context.Context, hash string) (RefreshToken, error)
	// RevokeRefreshFamily revokes every token of a family.
	RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error
	// RevokeClientRefreshTokens revokes every refresh token of a client.
	RevokeClientRefreshTokens(ctx context.Context, clientID string, now time.Time) error

	// RevokeToken adds an access token to the deny-list (idempotent) and
	// announces it to every replica.
	RevokeToken(ctx context.Context, r Revocation) error
	// IsRevoked reports whether the jti is on the deny-list.
	IsRevoked(ctx context.Context, jti string) (bool, error)
	// ListRevocations returns revocations not yet expired at now, newest
	// first (by RevokedAt, then by JTI), starting after the entry after
	// (nil: from the newest), at most limit of them (0: all).
	ListRevocations(ctx context.Context, now time.Time, after *Revocation, limit int) ([]Revocation, error)
	// DeleteExpiredRevocations removes revocations of tokens expired before t.
	DeleteExpiredRevocations(ctx context.Context, before time.Time) (int, error)

	// FederatedIdentities returns the federation of every client that has
	// one, by client id.
	FederatedIdentities(ctx context.Context) (map[string][]FederatedIdentity, error)

	// CreateTrustPolicy stores a trust policy. ErrConflict if its name or
	// issuer is taken.
	CreateTrustPolicy(ctx context.Context, p TrustPolicy) error
	// GetTrustPolicy returns the trust policy with this name.
	GetTrustPolicy(ctx context.Context, name string) (TrustPolicy, error)
	// ListTrustPolicies returns every trust policy, by name.
	ListTrustPolicies(ctx context.Context) ([]TrustPolicy, error)
	// UpdateTrustPolicy applies fn to the policy inside a transaction that
	// holds it locked and stores the result with Version+1.
	UpdateTrustPolicy(ctx context.Context, name string, fn func(*TrustPolicy) error) (TrustPolicy, error)
	// DeleteTrustPolicy removes a policy. ErrConflict while a client's
	// federation names it.
	DeleteTrustPolicy(ctx context.Context, name string) error

	// UseAssertionID records that the client assertion identified by key
	// (a hash of its issuer and jti) was accepted, until expires; fresh is
	// false when it already was: a replay. Safe under concurrency and
	// across replicas: of concurrent calls with one key, exactly one is
	// fresh.
	UseAssertionID(ctx context.Context, key string, expires time.Time) (fresh bool, err error)
	// DeleteExpiredAssertionIDs removes ids of assertions expired before t.
	DeleteExpiredAssertionIDs(ctx context.Context, before time.Time) (int, error)

	// TouchSecrets records when secrets were last used (batched; ids that no
	// longer exist are ignored, and a time never moves backwards).
	TouchSecrets(ctx context.Context, lastUsed map[string]time.Time) error
	// RecordUsage is TouchSecrets and AddTokenUsage for any number of
	// environments at once (each value names its own): a flush costs the
	// same however many environments issued tokens. The counts are added
	// in one transaction; the last-used times may be written before them,
	// in transactions of their own (on PostgreSQL, one statement per
	// 1,000 secrets), so a failed call may have recorded some times and
	// none of the counts. Calling it again with the same values is safe:
	// a time never moves backwards.
	RecordUsage(ctx context.Context, uses []SecretUse, counts []UsageCount) error

	// AddTokenUsage adds issued-token counts to the per-client hourly
	// totals (batched; every replica adds its own).
	AddTokenUsage(ctx context.Context, counts []UsageCount) error
	// TokenUsageByHour returns the totals of every client per hour, of
	// hours starting at or after since, by hour (ClientID empty).
	TokenUsageByHour(ctx context.Context, since time.Time) ([]UsageCount, error)
	// TopTokenClients returns the limit clients issued the most tokens in
	// hours starting at or after since, most first (Hour zero).
	TopTokenClients(ctx context.Context, since time.Time, limit int) ([]UsageCount, error)
	// TokenUsage returns the hourly totals of the given clients, of hours
	// starting at or after since, by client then hour.
	TokenUsage(ctx context.Context, since time.Time, clientIDs []string) ([]UsageCount, error)
	// DeleteTokenUsage removes totals of hours starting before t.
	DeleteTokenUsage(ctx context.Context, before time.Time) (int, error)
	// RecentTokenUsage returns, for every client issued at least min
	// tokens in minutes starting at or after since, the tokens and the
	// first such minute (Minute), by client id.
	RecentTokenUsage(ctx context.Context, since time.Time, min int64) ([]UsageCount, error)
	// DeleteTokenMinutes removes per-minute counts of minutes starting
	// before t, in every environment.
	DeleteTokenMinutes(ctx context.Context, before time.Time) (int, error)

	// ReserveQuota reserves up to r.Want tokens of a client's quota in one
	// atomic step, shared by every replica: it grants as many as every
	// limited window still has room for (never more), counts them in all
	// three windows, and returns the grant and each window's count after
	// it. A window starting later than the stored one starts from 0; one
	// starting earlier (a replica whose clock lags) counts into the stored.
	ReserveQuota(ctx context.Context, r QuotaReservation) (granted int64, used [3]int64, err error)

	// AppendAuditEvents stores audit events in one transaction; each names
	// its environment (Env; "": the store's). Audit events are not
	// deleted with their environment: the trail of what was done in an
	// environment outlives it, until the retention deletes it.
	AppendAuditEvents(ctx context.Context, events []AuditEvent) error
	// ListAuditEvents lists this store's environment's audit events that
	// match f: newest first (by ID), or oldest first after f.After.
	ListAuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// DeleteAuditEvents removes the events of every environment older
	// than before (retention).
	DeleteAuditEvents(ctx context.Context, before time.Time) (int, error)

	// Counts counts APIs and clients.
	Counts(ctx context.Context) (Counts, error)
	// ExpiringSecrets returns clients whose every secret expires, the last
	// one after from and at or before to: soonest first, at most limit.
	ExpiringSecrets(ctx context.Context, from, to time.Time, limit int) ([]SecretExpiry, error)
	// OldestSecrets returns, per client, the creation time of its oldest
	// secret live at now (unexpired): the clients whose is oldest first
	// (ties by client id), at most limit.
	OldestSecrets(ctx context.Context, now time.Time, limit int) ([]SecretAge, error)

	// CreateConsoleSession stores a new console session.
	CreateConsoleSession(ctx context.Context, s ConsoleSession) error
	// GetConsoleSession returns the session whose id has this hash,
	// ErrNotFound when there is none or it has expired at now (idle longer
	// than idle, or past its absolute expiry).
	GetConsoleSession(ctx context.Context, idHash string, now time.Time, idle time.Duration) (ConsoleSession, error)
	// TouchConsoleSession moves a session's LastSeenAt up to t (never back).
	TouchConsoleSession(ctx context.Context, idHash string, t time.Time) error
	// SetConsoleSessionViewing sets the environment a session acts in
	// (ErrNotFound if there is no such session).
	SetConsoleSessionViewing(ctx context.Context, idHash, viewing string) error
	// DeleteConsoleSession removes a session (sign-out); no error if absent.
	DeleteConsoleSession(ctx context.Context, idHash string) error
	// DeleteExpiredConsoleSessions removes sessions expired at now.
	DeleteExpiredConsoleSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error)
	// CreateConsoleLink stores a one-time sign-in link (by a keyed hash of
	// its token) for an admin client, valid until expires; the session it
	// starts acts in the environment viewing ("": the client's own).
	CreateConsoleLink(ctx context.Context, hash, clientID, viewing string, expires time.Time) error
	// UseConsoleLink spends a link: it returns its client and environment
	// to view and removes it, so that of concurrent calls with one hash
	// (on any replica) exactly one succeeds. ErrNotFound when unknown,
	// spent or expired at now.
	UseConsoleLink(ctx context.Context, hash string, now time.Time) (clientID, viewing string, err error)
	// DeleteExpiredConsoleLinks removes links expired before t.
	DeleteExpiredConsoleLinks(ctx context.Context, before time.Time) (int, error)

	// CreateSigningKey stores a key. A key in state active is stored only
	// if no other key is active; created reports whether it was stored.
	CreateSigningKey(ctx context.Context, k SigningKey) (created bool, err error)
	// ListSigningKeys returns every key, newest first.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// UpdateSigningKeys calls fn with every key (newest first) and the
	// meta table inside a transaction that holds the key set locked, and
	// applies the update fn returns. Concurrent callers (several replicas)
	// run one after the other, each seeing the previous one's result.
	UpdateSigningKeys(ctx context.Context, fn func(keys []SigningKey, meta func(string) string) (KeyUpdate, error)) error

	// InitBootstrap creates the built-in admin API and the bootstrap admin
	// client exactly once per database, even when several processes call
	// it at once, and records b.Issuer; created reports whether this call
	// did it. Later calls record b.Issuer and move the built-in API to
	// b.AdminAPI.Identifier, carrying its grants along (the caller has
	// checked that an issuer change is deliberate).
	InitBootstrap(ctx context.Context, b Bootstrap) (created bool, err error)

	// GetMeta returns the value stored under key (ErrNotFound if none).
	GetMeta(ctx context.Context, key string) (string, error)

	// EnsureMeta stores value under key unless the key already has one,
	// and returns the value stored; concurrent callers all see the winner's.
	EnsureMeta(ctx context.Context, key, value string) (string, error)

	// Env is the name of the environment this store is scoped to: every
	// method above reads and writes that environment's data only, except
	// the DeleteExpired… methods, which clean up every environment, and
	// the meta table, which belongs to the deployment.
	Env() string
	// InEnv returns the same database scoped to the environment named
	// (which need not exist: writes to a missing environment fail with
	// ErrConflict, reads find nothing).
	InEnv(name string) Store

	// CreateEnvironment creates an environment (ErrConflict if the name is
	// taken).
	CreateEnvironment(ctx context.Context, e Environment) error
	// GetEnvironment returns the environment named (ErrNotFound if none).
	GetEnvironment(ctx context.Context, name string) (Environment, error)
	// ListEnvironments lists environments by name; NameContains matches
	// the name or the display name.
	ListEnvironments(ctx context.Context, opts ListOptions) ([]Environment, error)
	// UpdateEnvironment applies fn to the environment inside a transaction
	// and stores the result with its version incremented.
	UpdateEnvironment(ctx context.Context, name string, fn func(*Environment) error) (Environment, error)
	// DeleteEnvironment deletes the environment and everything in it, if
	// its version is still version (ErrConflict otherwise; ErrNotFound if
	// it does not exist). The default environment cannot be deleted.
	DeleteEnvironment(ctx context.Context, name string, version int64) error
	// KeyWorkDue returns up to limit names of environments whose key work
	// is due at now, most overdue first.
	KeyWorkDue(ctx context.Context, now time.Time, limit int) ([]string, error)
	// SetKeyWorkAt records when this store's environment next needs key
	// maintenance.
	SetKeyWorkAt(ctx context.Context, at time.Time) error

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the backend's resources.
	Close() error
}

// BulkClients is implemented by stores that insert many clients at once,
// far faster than CreateClient one by one: for seeding benchmarks
// ("m2mauth bench seed"), never on a server's path. The clients go into the
// store's environment, with their grants (whose APIs must exist) and
// secrets, in large batches, each its own transaction: a failure leaves the
// batches before it. No change is announced to running replicas, whose id
// filters do not learn the new ids: restart them afterwards. Ids that exist,
// or belonged to a deleted client, fail with ErrConflict.
type BulkClients interface {
	InsertClients(ctx context.Context, clients iter.Seq[Client]) (int, error)
}
