package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
)

// GrantInput grants a client an API's scopes.
type GrantInput struct {
	Audience string   `json:"audience"`
	Scopes   []string `json:"scopes"`
}

// ClientInput creates a client, or replaces its mutable fields (PUT).
// ClientID and ClientSecret import existing credentials (a client migrating
// from another server keeps them); both are otherwise generated.
type ClientInput struct {
	ClientID             string            `json:"client_id,omitempty"`
	ClientSecret         string            `json:"client_secret,omitempty"`
	Name                 string            `json:"name"`
	Description          string            `json:"description"`
	Grants               []GrantInput      `json:"grants"`
	DefaultAudience      string            `json:"default_audience"`
	TokenLifetimeSeconds int64             `json:"token_lifetime_seconds"`
	CustomClaims         map[string]any    `json:"custom_claims,omitempty"`
	Metadata             map[string]string `json:"metadata,omitempty"`
	Disabled             bool              `json:"disabled"`
	RefreshTokens        bool              `json:"refresh_tokens"`
	// TokenReuseMinRemaining turns token reuse on (0: off; see
	// store.Client.TokenReuse).
	TokenReuseMinRemaining float64 `json:"token_reuse_min_remaining,omitempty"`
	// Introspect lists the APIs whose tokens the client may introspect;
	// ["*"] makes it an admin-level introspector.
	Introspect []string `json:"introspect,omitempty"`
	// Quota limits the tokens issued per window (absent: the server's
	// defaults; see QuotaInput).
	Quota QuotaInput `json:"quota"`
	// TokenEndpointAuthMethod is how the client authenticates (see
	// AuthMethods; default client_secret_basic). private_key_jwt and
	// self_signed_tls_client_auth clients register public keys (JWKS or
	// JWKSURI), tls_client_auth ones their certificate's subject (one of
	// the TLSClientAuth… fields), federated ones bind to trust policies
	// (Federation). Such clients get no secret unless AcceptSecrets, for a
	// migration from secrets.
	TokenEndpointAuthMethod     string                   `json:"token_endpoint_auth_method,omitempty"`
	JWKS                        json.RawMessage          `json:"jwks,omitempty"`
	JWKSURI                     string                   `json:"jwks_uri,omitempty"`
	AcceptSecrets               bool                     `json:"accept_secrets"`
	AcceptTokenEndpointAudience bool                     `json:"accept_token_endpoint_audience"`
	Federation                  []FederatedIdentityInput `json:"federation,omitempty"`
	// The subject a tls_client_auth client's certificate must carry
	// (RFC 8705 §2.1.2): exactly one of these, for that method only.
	TLSClientAuthSubjectDN string `json:"tls_client_auth_subject_dn,omitempty"`
	TLSClientAuthSANDNS    string `json:"tls_client_auth_san_dns,omitempty"`
	TLSClientAuthSANURI    string `json:"tls_client_auth_san_uri,omitempty"`
	TLSClientAuthSANIP     string `json:"tls_client_auth_san_ip,omitempty"`
	TLSClientAuthSANEmail  string `json:"tls_client_auth_san_email,omitempty"`
	// TLSClientCertificateBoundAccessTokens binds the client's access
	// tokens to its TLS certificate (RFC 8705 §3), DPoPBoundAccessTokens
	// makes a DPoP proof mandatory on its token requests (RFC 9449 §5.2).
	TLSClientCertificateBoundAccessTokens bool `json:"tls_client_certificate_bound_access_tokens"`
	DPoPBoundAccessTokens                 bool `json:"dpop_bound_access_tokens"`
	// SecretLifetimeSeconds makes the secret created with the client
	// expire after that long (0: never); rotations set their own.
	SecretLifetimeSeconds int64 `json:"secret_lifetime_seconds,omitempty"`
}

// Bounds of a secret's lifetime (when it has one).
const (
	MinSecretLifetime = time.Hour
	MaxSecretLifetime = 3 * 366 * 24 * time.Hour
)

// checkSecretLifetime validates a secret lifetime in seconds (0: never
// expires).
func checkSecretLifetime(v *ValidationError, seconds int64) {
	if seconds != 0 && (seconds < int64(MinSecretLifetime/time.Second) || seconds > int64(MaxSecretLifetime/time.Second)) {
		v.add("secret_lifetime_seconds", "must be 0 (never expires) or between %d (1 hour) and %d (3 years) seconds",
			int64(MinSecretLifetime/time.Second), int64(MaxSecretLifetime/time.Second))
	}
}

// ClientPatch changes the fields it sets (RFC 7396 merge patch; the HTTP
// layer turns a null into the field's empty value).
type ClientPatch struct {
	Name                   *string            `json:"name,omitempty"`
	Description            *string            `json:"description,omitempty"`
	Grants                 *[]GrantInput      `json:"grants,omitempty"`
	DefaultAudience        *string            `json:"default_audience,omitempty"`
	TokenLifetimeSeconds   *int64             `json:"token_lifetime_seconds,omitempty"`
	CustomClaims           *map[string]any    `json:"custom_claims,omitempty"`
	Metadata               *map[string]string `json:"metadata,omitempty"`
	Disabled               *bool              `json:"disabled,omitempty"`
	RefreshTokens          *bool              `json:"refresh_tokens,omitempty"`
	Introspect             *[]string          `json:"introspect,omitempty"`
	Quota                  *QuotaPatch        `json:"quota,omitempty"`
	TokenReuseMinRemaining *float64           `json:"token_reuse_min_remaining,omitempty"`

	TokenEndpointAuthMethod     *string                   `json:"token_endpoint_auth_method,omitempty"`
	JWKS                        *json.RawMessage          `json:"jwks,omitempty"`
	JWKSURI                     *string                   `json:"jwks_uri,omitempty"`
	AcceptSecrets               *bool                     `json:"accept_secrets,omitempty"`
	AcceptTokenEndpointAudience *bool                     `json:"accept_token_endpoint_audience,omitempty"`
	Federation                  *[]FederatedIdentityInput `json:"federation,omitempty"`

	TLSClientAuthSubjectDN                *string `json:"tls_client_auth_subject_dn,omitempty"`
	TLSClientAuthSANDNS                   *string `json:"tls_client_auth_san_dns,omitempty"`
	TLSClientAuthSANURI                   *string `json:"tls_client_auth_san_uri,omitempty"`
	TLSClientAuthSANIP                    *string `json:"tls_client_auth_san_ip,omitempty"`
	TLSClientAuthSANEmail                 *string `json:"tls_client_auth_san_email,omitempty"`
	TLSClientCertificateBoundAccessTokens *bool   `json:"tls_client_certificate_bound_access_tokens,omitempty"`
	DPoPBoundAccessTokens                 *bool   `json:"dpop_bound_access_tokens,omitempty"`
}

// Patch returns the patch that makes a client match in (PUT semantics).
func (in ClientInput) Patch() ClientPatch {
	grants := in.Grants
	if grants == nil {
		grants = []GrantInput{}
	}
	return ClientPatch{
		Name: &in.Name, Description: &in.Description, Grants: &grants, DefaultAudience: &in.DefaultAudience,
		TokenLifetimeSeconds: &in.TokenLifetimeSeconds, CustomClaims: &in.CustomClaims, Metadata: &in.Metadata, Disabled: &in.Disabled,
		RefreshTokens: &in.RefreshTokens, Introspect: &in.Introspect, Quota: in.Quota.patch(), TokenReuseMinRemaining: &in.TokenReuseMinRemaining,
		TokenEndpointAuthMethod: &in.TokenEndpointAuthMethod, JWKS: &in.JWKS, JWKSURI: &in.JWKSURI, AcceptSecrets: &in.AcceptSecrets,
		AcceptTokenEndpointAudience: &in.AcceptTokenEndpointAudience, Federation: &in.Federation,
		TLSClientAuthSubjectDN: &in.TLSClientAuthSubjectDN, TLSClientAuthSANDNS: &in.TLSClientAuthSANDNS, TLSClientAuthSANURI: &in.TLSClientAuthSANURI,
		TLSClientAuthSANIP: &in.TLSClientAuthSANIP, TLSClientAuthSANEmail: &in.TLSClientAuthSANEmail,
		TLSClientCertificateBoundAccessTokens: &in.TLSClientCertificateBoundAccessTokens, DPoPBoundAccessTokens: &in.DPoPBoundAccessTokens,
	}
}

// QuotaInput is a client's token quota per fixed UTC window. Each limit
// is 0 (the server's default: --quota-per-minute, --quota-per-hour,
// --quota-per-day), -1 (unlimited, whatever the default) or n > 0 tokens.
type QuotaInput struct {
	PerMinute int64 `json:"per_minute"`
	PerHour   int64 `json:"per_hour"`
	PerDay    int64 `json:"per_day"`
}

// MaxQuota is the largest limit a quota may set.
const MaxQuota = 1_000_000_000

func (q QuotaInput) quota() store.Quota {
	return store.Quota{PerMinute: q.PerMinute, PerHour: q.PerHour, PerDay: q.PerDay}
}

// patch is the patch that sets every limit to q's (PUT semantics).
func (q QuotaInput) patch() *QuotaPatch {
	v := q.quota()
	return &QuotaPatch{PerMinute: &v.PerMinute, PerHour: &v.PerHour, PerDay: &v.PerDay}
}

// QuotaPatch changes the limits it sets; a limit set to null goes back to
// the server's default (RFC 7396), as does "quota": null for all three.
type QuotaPatch struct {
	PerMinute, PerHour, PerDay *int64
}

// UnmarshalJSON reads a merge patch of a quota: its members may be null.
func (p *QuotaPatch) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, raw := range m {
		var v *int64
		if err := json.Unmarshal(raw, &v); err != nil {
			// The decoder puts "quota." before the field.
			return &json.UnmarshalTypeError{Value: string(raw), Type: reflect.TypeFor[int64](), Field: k}
		}
		n := int64(0)
		if v != nil {
			n = *v
		}
		switch k {
		case "per_minute":
			p.PerMinute = &n
		case "per_hour":
			p.PerHour = &n
		case "per_day":
			p.PerDay = &n
		default:
			return fmt.Errorf("json: unknown field %q", "quota."+k) // as the decoder words it
		}
	}
	return nil
}

// apply sets the limits p names.
func (p *QuotaPatch) apply(q *store.Quota) {
	for _, f := range []struct {
		v   *int64
		dst *int64
	}{{p.PerMinute, &q.PerMinute}, {p.PerHour, &q.PerHour}, {p.PerDay, &q.PerDay}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
}

// checkQuota validates a quota's limits.
func checkQuota(v *ValidationError, q store.Quota) {
	for _, f := range []struct {
		name string
		n    int64
	}{{"quota.per_minute", q.PerMinute}, {"quota.per_hour", q.PerHour}, {"quota.per_day", q.PerDay}} {
		if f.n < store.QuotaUnlimited || f.n > MaxQuota {
			v.add(f.name, "must be 0 (the server's default), -1 (unlimited) or 1 to %d tokens", MaxQuota)
		}
	}
}

// registeredClaims may never be set as custom claims (RFC 7519 §4.1,
// RFC 9068 §2.2, and JOSE-sensitive names).
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "scp",
	"auth_time", "acr", "amr", "cnf", "act", "may_act", "typ", "azp", "roles", "groups", "entitlements"}

// resolveGrants checks each grant against its API.
func (s *Service) resolveGrants(ctx context.Context, v *ValidationError, in []GrantInput) ([]store.Grant, error) {
	if len(in) > maxGrants {
		v.add("grants", "at most %d grants", maxGrants)
		return nil, nil
	}
	grants := make([]store.Grant, 0, len(in))
	for i, g := range in {
		field := fmt.Sprintf("grants[%d]", i)
		if slices.ContainsFunc(in[:i], func(o GrantInput) bool { return o.Audience == g.Audience }) {
			v.add(field+".audience", "API %q is granted twice", g.Audience)
			continue
		}
		api, err := s.st(ctx).GetAPI(ctx, g.Audience)
		if err != nil {
			if isNotFound(err) {
				v.add(field+".audience", "no API has identifier %q", g.Audience)
				continue
			}
			return nil, err
		}
		if len(g.Scopes) > maxScopes {
			v.add(field+".scopes", "at most %d scopes", maxScopes)
			continue
		}
		scopes := dedupe(g.Scopes)
		for _, sc := range scopes {
			if !slices.Contains(api.Scopes, sc) {
				v.add(field+".scopes", "API %q does not define scope %q", g.Audience, sc)
			}
		}
		grants = append(grants, store.Grant{Audience: g.Audience, Scopes: scopes})
	}
	return grants, nil
}

// validateClient checks a client's final state.
func validateClient(v *ValidationError, c *store.Client) {
	checkText(v, "name", c.Name, true, maxNameLen)
	checkText(v, "description", c.Description, false, maxDescLen)
	checkQuota(v, c.Quota)
	if !(c.TokenReuse >= 0 && c.TokenReuse < 1) {
		v.add("token_reuse_min_remaining", "must be 0 (off) or a fraction of a token's lifetime, at least 0 and under 1")
	}
	if c.DefaultAudience != "" && !slices.ContainsFunc(c.Grants, func(g store.Grant) bool { return g.Audience == c.DefaultAudience }) {
		v.add("default_audience", "must be one of the granted APIs")
	}
	for name := range c.CustomClaims {
		if slices.Contains(registeredClaims, name) || name == "" {
			v.add("custom_claims", "%q is a registered claim and cannot be set", name)
		}
	}
	if b, _ := json.Marshal(c.CustomClaims); len(b) > maxClaimsJSON {
		v.add("custom_claims", "at most %d bytes of JSON", maxClaimsJSON)
	}
	if len(c.Metadata) > maxMetadata {
		v.add("metadata", "at most %d entries", maxMetadata)
	}
	for k, val := range c.Metadata {
		if k == "" || utf8.RuneCountInString(k)+utf8.RuneCountInString(val) > maxMetadataLen || !utf8.ValidString(k+val) {
			v.add("metadata", "keys must be non-empty and each entry at most %d characters of UTF-8", maxMetadataLen)
			break
		}
	}
}

// CreateClient validates and stores a new client and returns its secret in
// clear: the only time it is available.
func (s *Service) CreateClient(ctx context.Context, in ClientInput) (store.Client, string, error) {
	var v ValidationError
	id, plain := in.ClientID, in.ClientSecret
	if id != "" {
		switch {
		case !validIdentifier(id) || len(id) > 128 || strings.HasPrefix(id, secret.SecretPrefix):
			v.add("client_id", "must be 1 to 128 printable ASCII characters without spaces")
		case strings.Contains(id, ":"):
			// HTTP Basic separates id and secret with the first ':': a
			// client sending its id unencoded (as most do) could not name it.
			v.add("client_id", "must not contain ':', which HTTP Basic authentication cannot carry unencoded")
		}
	} else {
		id = secret.NewID(secret.ClientIDPrefix)
		if plain != "" {
			v.add("client_secret", "an imported secret needs the client_id it belongs to")
		}
	}
	// Only a client that authenticates with secrets (or accepts them
	// while it migrates) gets one.
	withSecret := IsSecretMethod(in.TokenEndpointAuthMethod) || in.AcceptSecrets
	switch {
	case plain != "" && !withSecret:
		v.add("client_secret", "a %s client has no secret (set accept_secrets to import one while it migrates)", in.TokenEndpointAuthMethod)
	case plain != "":
		if len(plain) < MinImportedSecretLen || len(plain) > 512 || strings.ContainsFunc(plain, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
			v.add("client_secret", "an imported secret must be %d to 512 printable characters without spaces", MinImportedSecretLen)
		}
	case withSecret:
		plain = secret.Generate()
	}
	if err := s.checkFederationPolicies(ctx, &v, in.Federation); err != nil {
		return store.Client{}, "", err
	}
	checkLifetime(&v, "token_lifetime_seconds", in.TokenLifetimeSeconds)
	checkSecretLifetime(&v, in.SecretLifetimeSeconds)
	if in.SecretLifetimeSeconds != 0 && !withSecret {
		v.add("secret_lifetime_seconds", "a %s client has no secret", in.TokenEndpointAuthMethod)
	}
	if err := s.checkIntrospect(ctx, &v, in.Introspect); err != nil {
		return store.Client{}, "", err
	}
	grants, err := s.resolveGrants(ctx, &v, in.Grants)
	if err != nil {
		return store.Client{}, "", err
	}
	now := s.now().UTC()
	c := store.Client{
		ID: id, Name: in.Name, Description: in.Description,
		DefaultAudience: in.DefaultAudience, TokenLifetime: time.Duration(in.TokenLifetimeSeconds) * time.Second,
		Disabled: in.Disabled, RefreshTokens: in.RefreshTokens, CustomClaims: in.CustomClaims, Metadata: in.Metadata, TokenReuse: in.TokenReuseMinRemaining,
		Introspect: dedupe(in.Introspect), Quota: in.Quota.quota(),
		Grants:     grants,
		Secrets:    []store.Secret{},
		AuthMethod: in.TokenEndpointAuthMethod, JWKS: rawJWKS(in.JWKS), JWKSURI: in.JWKSURI, AcceptSecrets: in.AcceptSecrets,
		AcceptTokenEndpointAudience: in.AcceptTokenEndpointAudience, Federation: federation(in.Federation),
		TLSSubject: tlsSubject(&v, in.tlsSubjectValues()), CertBoundTokens: in.TLSClientCertificateBoundAccessTokens, DPoPBoundTokens: in.DPoPBoundAccessTokens,
		Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	if plain != "" {
		c.Secrets = append(c.Secrets, s.newSecret(ctx, plain, now, time.Duration(in.SecretLifetimeSeconds)*time.Second))
	}
	validateClient(&v, &c)
	validateClientAuth(&v, &c, now)
	if err := v.err(); err != nil {
		return store.Client{}, "", err
	}
	if err := s.st(ctx).CreateClient(ctx, c); err != nil {
		return store.Client{}, "", mapConflict(err, "the client id is taken (ids of deleted clients are never reused), or a granted API was deleted meanwhile")
	}
	s.inv(ctx).Invalidate(c.ID)
	action := "client.create"
	if in.ClientSecret != "" {
		action = "client.import"
	}
	s.record(ctx, action, targetClient, c.ID, audit.Diff(nil, clientFields(c)))
	return c, plain, nil
}

// newSecret is the stored form of a new secret, expiring after lifetime
// (0: never).
func (s *Service) newSecret(ctx context.Context, plain string, now time.Time, lifetime time.Duration) store.Secret {
	sec := store.Secret{ID: secret.NewID("sec_"), Hash: s.hasherFor(ctx).Hash(plain), Hint: secret.Hint(plain), CreatedAt: now}
	if lifetime > 0 {
		sec.ExpiresAt = now.Add(lifetime)
	}
	return sec
}

// GetClient returns one client.
func (s *Service) GetClient(ctx context.Context, id string) (store.Client, error) {
	return s.st(ctx).GetClient(ctx, id)
}

// ListClients returns one page of clients.
func (s *Service) ListClients(ctx context.Context, opts store.ListOptions) (Page[store.Client], error) {
	limit := clampLimit(opts.Limit)
	opts.Limit = limit + 1
	clients, err := s.st(ctx).ListClients(ctx, opts)
	if err != nil {
		return Page[store.Client]{}, err
	}
	return pageOf(clients, limit, func(c store.Client) string { return c.ID }), nil
}

// UpdateClient applies a patch to a client.
func (s *Service) UpdateClient(ctx context.Context, id, ifMatch string, p ClientPatch) (store.Client, error) {
	var v ValidationError
	var grants []store.Grant
	if p.Grants != nil {
		var err error
		if grants, err = s.resolveGrants(ctx, &v, *p.Grants); err != nil {
			return store.Client{}, err
		}
	}
	if p.TokenLifetimeSeconds != nil {
		checkLifetime(&v, "token_lifetime_seconds", *p.TokenLifetimeSeconds)
	}
	if p.Introspect != nil {
		if err := s.checkIntrospect(ctx, &v, *p.Introspect); err != nil {
			return store.Client{}, err
		}
	}
	if p.Federation != nil {
		if err := s.checkFederationPolicies(ctx, &v, *p.Federation); err != nil {
			return store.Client{}, err
		}
	}
	if err := v.err(); err != nil {
		return store.Client{}, err
	}
	var revokeRefresh bool
	var prev store.Client
	c, err := s.st(ctx).UpdateClient(ctx, id, func(c *store.Client) error {
		if err := checkMatch(ifMatch, c.Version); err != nil {
			return err
		}
		prev = *c
		before := store.Client{Disabled: c.Disabled, RefreshTokens: c.RefreshTokens, Grants: c.Grants}
		if p.Name != nil {
			c.Name = *p.Name
		}
		if p.Description != nil {
			c.Description = *p.Description
		}
		if p.Grants != nil {
			c.Grants = grants
		}
		if p.DefaultAudience != nil {
			c.DefaultAudience = *p.DefaultAudience
		}
		if p.TokenLifetimeSeconds != nil {
			c.TokenLifetime = time.Duration(*p.TokenLifetimeSeconds) * time.Second
		}
		if p.CustomClaims != nil {
			c.CustomClaims = *p.CustomClaims
		}
		if p.Metadata != nil {
			c.Metadata = *p.Metadata
		}
		if p.Disabled != nil {
			c.Disabled = *p.Disabled
		}
		if p.RefreshTokens != nil {
			c.RefreshTokens = *p.RefreshTokens
		}
		if p.Introspect != nil {
			c.Introspect = dedupe(*p.Introspect)
		}
		if p.Quota != nil {
			p.Quota.apply(&c.Quota)
		}
		if p.TokenReuseMinRemaining != nil {
			c.TokenReuse = *p.TokenReuseMinRemaining
		}
		if p.TokenEndpointAuthMethod != nil {
			c.AuthMethod = *p.TokenEndpointAuthMethod
		}
		if p.JWKS != nil {
			c.JWKS = rawJWKS(*p.JWKS)
		}
		if p.JWKSURI != nil {
			c.JWKSURI = *p.JWKSURI
		}
		if p.AcceptSecrets != nil {
			c.AcceptSecrets = *p.AcceptSecrets
		}
		if p.AcceptTokenEndpointAudience != nil {
			c.AcceptTokenEndpointAudience = *p.AcceptTokenEndpointAudience
		}
		if p.Federation != nil {
			c.Federation = federation(*p.Federation)
		}
		if p.TLSClientCertificateBoundAccessTokens != nil {
			c.CertBoundTokens = *p.TLSClientCertificateBoundAccessTokens
		}
		if p.DPoPBoundAccessTokens != nil {
			c.DPoPBoundTokens = *p.DPoPBoundAccessTokens
		}
		var v ValidationError
		subject := subjectValues(c.TLSSubject)
		p.applyTLSSubject(&subject)
		c.TLSSubject = tlsSubject(&v, subject)
		validateClient(&v, c)
		validateClientAuth(&v, c, s.now())
		if err := v.err(); err != nil {
			return err
		}
		now := s.now().UTC()
		// Taking rights away revokes the tokens issued under them, for
		// good: disabling the client, removing a grant or a granted scope
		// sets the client's cutoff, so that re-enabling or granting again
		// later does not bring back tokens issued before (a stolen token
		// would come back with them). Refresh tokens go too, and when
		// refresh tokens are turned off.
		if narrowed(before, *c) {
			c.TokensRevokedBefore = cutoff(now)
			revokeRefresh = true
		}
		if before.RefreshTokens && !c.RefreshTokens {
			revokeRefresh = true
		}
		c.UpdatedAt = now
		return nil
	})
	if err != nil {
		return store.Client{}, mapConflict(err, "a granted API was deleted meanwhile")
	}
	if revokeRefresh {
		if err := s.st(ctx).RevokeClientRefreshTokens(ctx, id, s.now().UTC()); err != nil {
			return store.Client{}, err
		}
	}
	s.inv(ctx).Invalidate(id)
	s.record(ctx, "client.update", targetClient, id, audit.Diff(clientFields(prev), clientFields(c)))
	return c, nil
}

// narrowed reports whether after takes rights away from before: the
// client is disabled, or loses a grant or a granted scope.
func narrowed(before, after store.Client) bool {
	if after.Disabled && !before.Disabled {
		return true
	}
	for _, g := range before.Grants {
		i := slices.IndexFunc(after.Grants, func(n store.Grant) bool { return n.Audience == g.Audience })
		if i < 0 {
			return true
		}
		for _, sc := range g.Scopes {
			if !slices.Contains(after.Grants[i].Scopes, sc) {
				return true
			}
		}
	}
	return false
}

// cutoff is the revocation instant for tokens issued up to now: tokens
// carry whole seconds, so everything issued in this second or before.
func cutoff(now time.Time) time.Time { return now.Truncate(time.Second).Add(time.Second) }

// checkIntrospect validates an introspection permission: "*" alone, or
// identifiers of existing APIs.
func (s *Service) checkIntrospect(ctx context.Context, v *ValidationError, auds []string) error {
	if len(auds) > maxGrants {
		v.add("introspect", "at most %d APIs", maxGrants)
		return nil
	}
	for _, a := range auds {
		if a == "*" {
			if len(auds) > 1 {
				v.add("introspect", `"*" (every API) stands alone`)
			}
			continue
		}
		if _, err := s.st(ctx).GetAPI(ctx, a); isNotFound(err) {
			v.add("introspect", "no API has identifier %q", a)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// RevokeClientTokens revokes every token the client was issued until now:
// access tokens by their issue time (introspection answers inactive), and
// every refresh token. New tokens can be issued as before.
func (s *Service) RevokeClientTokens(ctx context.Context, id string) (store.Client, error) {
	now := s.now().UTC()
	var prev store.Client
	c, err := s.st(ctx).UpdateClient(ctx, id, func(c *store.Client) error {
		prev = *c
		c.TokensRevokedBefore = cutoff(now)
		c.UpdatedAt = now
		return nil
	})
	if err != nil {
		return store.Client{}, err
	}
	if err := s.st(ctx).RevokeClientRefreshTokens(ctx, id, now); err != nil {
		return store.Client{}, err
	}
	s.inv(ctx).Invalidate(id)
	s.record(ctx, "client.tokens.revoke", targetClient, id, audit.Diff(clientFields(prev), clientFields(c)))
	return c, nil
}

// RotateSecret adds a new secret (returned in clear, once) and makes the
// client's other live secrets expire after grace (0: at once). A client
// holds at most MaxLiveSecrets live secrets: while a rotated-out secret is
// still in its grace period, another rotation is refused with a conflict.
//
// A rotation is always conditional: on ifMatch when the caller sent one,
// else on the version of the client this call read first. So of several
// rotations that read the same version, exactly one wins whatever the
// grace, and no caller is handed a secret that a concurrent rotation
// killed at once. Secrets that no longer authenticate are pruned.
func (s *Service) RotateSecret(ctx context.Context, id, ifMatch string, grace, lifetime time.Duration) (store.Client, store.Secret, string, error) {
	var v ValidationError
	if grace < 0 || grace > 90*24*time.Hour {
		v.add("grace_seconds", "must be between 0 and 90 days")
	}
	checkSecretLifetime(&v, int64(lifetime/time.Second))
	if lifetime > 0 && lifetime <= grace {
		v.add("secret_lifetime_seconds", "must be longer than the grace period, or the new secret would expire before the old one")
	}
	if err := v.err(); err != nil {
		return store.Client{}, store.Secret{}, "", err
	}
	guarded := ifMatch == ""
	if guarded {
		cur, err := s.st(ctx).GetClient(ctx, id)
		if err != nil {
			return store.Client{}, store.Secret{}, "", err
		}
		ifMatch = ETag(cur.Version)
	}
	plain := secret.Generate()
	var added store.Secret
	var prev store.Client
	c, err := s.st(ctx).UpdateClient(ctx, id, func(c *store.Client) error {
		if err := checkMatch(ifMatch, c.Version); err != nil {
			return err
		}
		prev = *c
		if !usesSecrets(c) {
			return &ConflictError{"the client authenticates with " + c.AuthMethod + " and has no secrets (set accept_secrets while it migrates)"}
		}
		now := s.now().UTC()
		live := 0
		var until time.Time
		for _, sec := range c.Secrets {
			if sec.Live(now) {
				live++
				if !sec.ExpiresAt.IsZero() && (until.IsZero() || sec.ExpiresAt.Before(until)) {
					until = sec.ExpiresAt
				}
			}
		}
		if live >= MaxLiveSecrets {
			msg := fmt.Sprintf("the client already has %d live secrets: revoke one first", live)
			if !until.IsZero() {
				msg += ", or wait until " + until.Format(time.RFC3339) + " when the rotated-out one expires"
			}
			return &ConflictError{msg}
		}
		// A rotation without If-Match must not end, at once, a secret
		// another rotation handed out a moment ago (two rotations that
		// overlap): with a grace under MinSecretAge, a secret younger than
		// that is kept. A caller that names the version it saw (If-Match)
		// knows what it ends.
		if guarded && grace < MinSecretAge {
			for _, sec := range c.Secrets {
				if sec.Live(now) && now.Sub(sec.CreatedAt) < MinSecretAge {
					return &ConflictError{fmt.Sprintf("the client's current secret was created %s ago: a rotation with a grace under %s would end it at once; retry in a few seconds, give a longer grace, or send If-Match with the version you mean to rotate",
						now.Sub(sec.CreatedAt).Round(time.Millisecond), MinSecretAge)}
				}
			}
		}
		expire := now.Add(grace)
		kept := liveSecrets(c.Secrets, now)
		for i, sec := range kept {
			if sec.ExpiresAt.IsZero() || sec.ExpiresAt.After(expire) {
				kept[i].ExpiresAt = expire
			}
		}
		added = s.newSecret(ctx, plain, now, lifetime)
		c.Secrets = append(kept, added)
		c.UpdatedAt = now
		return nil
	})
	if err != nil {
		return store.Client{}, store.Secret{}, "", err
	}
	s.inv(ctx).Invalidate(id)
	s.record(ctx, "client.secret.rotate", targetClient, id, audit.Diff(clientFields(prev), clientFields(c)))
	return c, added, plain, nil
}

// MinSecretAge is how long a new secret is safe from a rotation without
// If-Match that would end it at once.
const MinSecretAge = 5 * time.Second

// liveSecrets returns the secrets that still authenticate at now: expired
// ones are pruned whenever a client's secrets change.
func liveSecrets(secrets []store.Secret, now time.Time) []store.Secret {
	out := make([]store.Secret, 0, len(secrets)+1)
	for _, sec := range secrets {
		if sec.Live(now) {
			out = append(out, sec)
		}
	}
	return out
}

// RevokeSecret removes one secret at once.
func (s *Service) RevokeSecret(ctx context.Context, id, ifMatch, secretID string) (store.Client, error) {
	var prev store.Client
	c, err := s.st(ctx).UpdateClient(ctx, id, func(c *store.Client) error {
		if err := checkMatch(ifMatch, c.Version); err != nil {
			return err
		}
		prev = *c
		i := slices.IndexFunc(c.Secrets, func(sec store.Secret) bool { return sec.ID == secretID })
		if i < 0 {
			return fmt.Errorf("secret %s: %w", secretID, store.ErrNotFound)
		}
		now := s.now().UTC()
		c.Secrets = liveSecrets(slices.Delete(c.Secrets, i, i+1), now)
		c.UpdatedAt = now
		return nil
	})
	if err != nil {
		return store.Client{}, err
	}
	s.inv(ctx).Invalidate(id)
	s.record(ctx, "client.secret.revoke", targetClient, id, audit.Diff(clientFields(prev), clientFields(c)))
	return c, nil
}

// DeleteClient deletes a client and its secrets; its id is never reused.
func (s *Service) DeleteClient(ctx context.Context, id, ifMatch string) error {
	c, err := s.st(ctx).GetClient(ctx, id)
	if err != nil {
		return err
	}
	if err := checkMatch(ifMatch, c.Version); err != nil {
		return err
	}
	if err := s.st(ctx).DeleteClient(ctx, id, s.now().UTC()); err != nil {
		return err
	}
	s.inv(ctx).Invalidate(id)
	s.record(ctx, "client.delete", targetClient, id, audit.Diff(clientFields(c), nil))
	return nil
}

// Built-in admin API: its scopes, and the Builtin tag of its row. Every
// environment's admin API has the scope admin; the default environment's
// has deployment too, which makes the admins holding it deployment admins
// (see IsDeploymentAdmin).
const (
	AdminScope      = "admin"
	DeploymentScope = "deployment"
	adminBuiltin    = "admin"
)

// DeploymentAdminScopes are the scopes of a deployment admin on the
// default environment's admin API: those of the bootstrap admin, and of an
// admin client created to regain access (m2mauth admin recover).
func DeploymentAdminScopes() []string { return []string{AdminScope, DeploymentScope} }

// Bootstrap creates the default environment's built-in admin API
// (identifier adminAudience, scopes admin and deployment) and the bootstrap
// admin client, a deployment admin, once per database. It returns the client's
// credentials when this call created them; created is false when they
// already existed (made by an earlier start or another replica).
//
// prepare, when not nil, is given the new client's credentials before
// anything is committed, so that the caller can save them first: a crash
// after the commit then cannot lose them. An error from prepare aborts the
// bootstrap with nothing committed.
func (s *Service) Bootstrap(ctx context.Context, issuer, adminAudience string, prepare func(clientID, clientSecret string) error) (clientID, clientSecret string, created bool, err error) {
	now := s.now().UTC()
	plain := secret.Generate()
	api := store.API{
		ID: secret.NewID("api_"), Identifier: adminAudience, Name: "m2mauth admin API",
		Scopes: DeploymentAdminScopes(), TokenLifetime: 15 * time.Minute, Builtin: adminBuiltin, Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	c := store.Client{
		ID: secret.NewID(secret.ClientIDPrefix), Name: "bootstrap admin", Description: "created on first start; manages this server and its environments",
		DefaultAudience: adminAudience, Grants: []store.Grant{{Audience: adminAudience, Scopes: DeploymentAdminScopes()}},
		Secrets: []store.Secret{s.newSecret(ctx, plain, now, 0)},
		Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	if prepare != nil {
		if err := prepare(c.ID, plain); err != nil {
			return "", "", false, err
		}
	}
	created, err = s.store.InitBootstrap(ctx, store.Bootstrap{Issuer: issuer, AdminAPI: api, AdminClient: c})
	if err != nil || !created {
		return "", "", false, err
	}
	return c.ID, plain, true, nil
}
