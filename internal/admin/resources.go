package admin

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// APIResource is an API as the admin API shows it.
type APIResource struct {
	ID         string   `json:"id"`
	Identifier string   `json:"identifier"`
	Name       string   `json:"name"`
	Scopes     []string `json:"scopes"`
	// ScopeDescriptions maps scopes to their descriptions (never null).
	ScopeDescriptions    map[string]string `json:"scope_descriptions"`
	TokenLifetimeSeconds int64             `json:"token_lifetime_seconds"`
	Discoverable         bool              `json:"discoverable"`
	Builtin              bool              `json:"builtin"`
	Version              int64             `json:"version"`
	CreatedAt            time.Time         `json:"created_at"`
	UpdatedAt            time.Time         `json:"updated_at"`
}

func apiResource(a store.API) APIResource {
	out := APIResource{
		ID: a.ID, Identifier: a.Identifier, Name: a.Name, Scopes: a.Scopes, ScopeDescriptions: a.ScopeDescriptions,
		TokenLifetimeSeconds: int64(a.TokenLifetime / time.Second), Discoverable: a.Discoverable, Builtin: a.Builtin != "", Version: a.Version,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
	}
	if out.ScopeDescriptions == nil {
		out.ScopeDescriptions = map[string]string{}
	}
	return out
}

// SecretResource describes a client secret; the secret itself is never shown
// after it was created.
type SecretResource struct {
	ID         string     `json:"id"`
	Hint       string     `json:"hint"`
	Status     string     `json:"status"` // active, expiring, expired
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// ClientResource is a client as the admin API shows it. ClientSecret and
// SecretID are set only in the response that created the secret.
type ClientResource struct {
	ClientID               string            `json:"client_id"`
	ClientSecret           string            `json:"client_secret,omitempty"`
	SecretID               string            `json:"secret_id,omitempty"`
	Name                   string            `json:"name"`
	Description            string            `json:"description"`
	Grants                 []GrantInput      `json:"grants"`
	DefaultAudience        string            `json:"default_audience"`
	TokenLifetimeSeconds   int64             `json:"token_lifetime_seconds"`
	Disabled               bool              `json:"disabled"`
	RefreshTokens          bool              `json:"refresh_tokens"`
	Introspect             []string          `json:"introspect"`
	TokensRevokedBefore    *time.Time        `json:"tokens_revoked_before"`
	Quota                  QuotaInput        `json:"quota"`
	TokenReuseMinRemaining float64           `json:"token_reuse_min_remaining"`
	CustomClaims           map[string]any    `json:"custom_claims"`
	Metadata               map[string]string `json:"metadata"`
	// How the client authenticates (see ClientInput).
	TokenEndpointAuthMethod     string                   `json:"token_endpoint_auth_method"`
	JWKS                        json.RawMessage          `json:"jwks"`
	JWKSURI                     string                   `json:"jwks_uri"`
	AcceptSecrets               bool                     `json:"accept_secrets"`
	AcceptTokenEndpointAudience bool                     `json:"accept_token_endpoint_audience"`
	Federation                  []FederatedIdentityInput `json:"federation"`
	// The certificate subject of a tls_client_auth client: only the one
	// parameter it registered appears.
	TLSClientAuthSubjectDN                string           `json:"tls_client_auth_subject_dn,omitempty"`
	TLSClientAuthSANDNS                   string           `json:"tls_client_auth_san_dns,omitempty"`
	TLSClientAuthSANURI                   string           `json:"tls_client_auth_san_uri,omitempty"`
	TLSClientAuthSANIP                    string           `json:"tls_client_auth_san_ip,omitempty"`
	TLSClientAuthSANEmail                 string           `json:"tls_client_auth_san_email,omitempty"`
	TLSClientCertificateBoundAccessTokens bool             `json:"tls_client_certificate_bound_access_tokens"`
	DPoPBoundAccessTokens                 bool             `json:"dpop_bound_access_tokens"`
	Secrets                               []SecretResource `json:"secrets"`
	Version                               int64            `json:"version"`
	CreatedAt                             time.Time        `json:"created_at"`
	UpdatedAt                             time.Time        `json:"updated_at"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func clientResource(c store.Client, now time.Time) ClientResource {
	out := ClientResource{
		ClientID: c.ID, Name: c.Name, Description: c.Description, DefaultAudience: c.DefaultAudience,
		TokenLifetimeSeconds: int64(c.TokenLifetime / time.Second), Disabled: c.Disabled, RefreshTokens: c.RefreshTokens, TokenReuseMinRemaining: c.TokenReuse,
		Introspect: c.Introspect, TokensRevokedBefore: optTime(c.TokensRevokedBefore),
		Quota:        QuotaInput{PerMinute: c.Quota.PerMinute, PerHour: c.Quota.PerHour, PerDay: c.Quota.PerDay},
		CustomClaims: c.CustomClaims, Metadata: c.Metadata, Version: c.Version,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, Grants: []GrantInput{}, Secrets: []SecretResource{},
		TokenEndpointAuthMethod: c.Method(), JWKSURI: c.JWKSURI, AcceptSecrets: c.AcceptSecrets,
		AcceptTokenEndpointAudience: c.AcceptTokenEndpointAudience, Federation: federationInput(c.Federation),
		TLSClientCertificateBoundAccessTokens: c.CertBoundTokens, DPoPBoundAccessTokens: c.DPoPBoundTokens,
	}
	out.setTLSSubject(c.TLSSubject)
	if len(c.JWKS) > 0 {
		out.JWKS = json.RawMessage(c.JWKS)
	}
	if out.CustomClaims == nil {
		out.CustomClaims = map[string]any{}
	}
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	if out.Introspect == nil {
		out.Introspect = []string{}
	}
	for _, g := range c.Grants {
		out.Grants = append(out.Grants, GrantInput{Audience: g.Audience, Scopes: g.Scopes})
	}
	for _, s := range c.Secrets {
		status := "active"
		switch {
		case !s.Live(now):
			status = "expired"
		case !s.ExpiresAt.IsZero():
			status = "expiring"
		}
		out.Secrets = append(out.Secrets, SecretResource{ID: s.ID, Hint: s.Hint, Status: status, CreatedAt: s.CreatedAt,
			ExpiresAt: optTime(s.ExpiresAt), LastUsedAt: optTime(s.LastUsedAt)})
	}
	return out
}

// ListResponse is one page of a listing.
type ListResponse[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// listOptions reads ?limit, ?cursor, ?name and ?audience.
func listOptions(r *http.Request) (store.ListOptions, error) {
	q := r.URL.Query()
	var opts store.ListOptions
	var v ValidationError
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxPageSize {
			v.add("limit", "must be a number from 1 to %d", MaxPageSize)
		}
		opts.Limit = n
	}
	if c := q.Get("cursor"); c != "" {
		after, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			v.add("cursor", "is not a cursor this server returned")
		}
		opts.After = string(after)
	}
	opts.NameContains = q.Get("name")
	opts.Audience = q.Get("audience")
	return opts, v.err()
}

func cursor(key string) string {
	if key == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

func (h *Handler) writeResource(w http.ResponseWriter, status int, version int64, v any) {
	w.Header().Set("ETag", ETag(version))
	writeJSON(w, status, "application/json", v)
}

// decodePatch reads a merge-patch body (RFC 7396) into p: members set to
// null are replaced by the empty value named in empties.
func decodePatch(r *http.Request, p any, empties map[string]string) error {
	var members map[string]json.RawMessage
	if err := decode(r, &members); err != nil {
		return err
	}
	if members == nil {
		return &requestError{http.StatusBadRequest, "the body must be a JSON object"}
	}
	for k, v := range members {
		if string(v) == "null" {
			if empty, ok := empties[k]; ok {
				members[k] = json.RawMessage(empty)
			}
		}
	}
	b, _ := json.Marshal(members)
	return decodeReader(bytes.NewReader(b), p)
}
