package oauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/m2mauth/m2mauth/internal/issuer"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
)

// clientGetter reads a client with its secrets and grants.
type clientGetter interface {
	GetClient(ctx context.Context, id string) (store.Client, error)
}

// tokenIssuer signs access tokens.
type tokenIssuer interface {
	Issue(r issuer.Request) (issuer.Token, error)
}

// Policy holds the server-wide token lifetime rules.
type Policy struct {
	DefaultLifetime time.Duration // when neither client nor API sets one
	MaxLifetime     time.Duration // cap on every token
}

// Service is the surface-independent token endpoint: every surface parses
// its own envelope into a TokenRequest, calls Token and renders the result.
type Service struct {
	clients clientGetter
	hasher  *secret.Hasher
	issuer  tokenIssuer
	policy  Policy
	now     func() time.Time
	usage   *UsageRecorder
}

// NewService returns a Service. usage (may be nil) learns which secret each
// successful authentication used.
func NewService(clients clientGetter, hasher *secret.Hasher, iss tokenIssuer, policy Policy, now func() time.Time, usage *UsageRecorder) *Service {
	return &Service{clients: clients, hasher: hasher, issuer: iss, policy: policy, now: now, usage: usage}
}

// TokenResponse is an issued access token with what every surface reports.
type TokenResponse struct {
	AccessToken string
	ExpiresIn   int64 // seconds
	ExpiresAt   time.Time
	Scopes      []string
	ClientID    string
}

// Token handles a token request whose envelope has been parsed.
func (s *Service) Token(ctx context.Context, req *TokenRequest) (*TokenResponse, *Error) {
	if req.GrantType != GrantClientCredentials {
		return nil, newError(http.StatusBadRequest, CodeUnsupportedGrantType, "only the client_credentials grant is supported")
	}
	c, e := s.Authenticate(ctx, req.ClientID, req.ClientSecret)
	if e != nil {
		return nil, e
	}
	aud, scopes, lifetime, e := s.decide(c, req)
	if e != nil {
		return nil, e
	}
	tok, err := s.issuer.Issue(issuer.Request{ClientID: c.ID, Audience: aud, Scopes: scopes, Lifetime: lifetime, Extra: c.CustomClaims})
	if err != nil {
		return nil, ErrServer(err)
	}
	return &TokenResponse{
		AccessToken: tok.Raw,
		ExpiresIn:   int64(tok.ExpiresAt.Sub(tok.IssuedAt) / time.Second),
		ExpiresAt:   tok.ExpiresAt,
		Scopes:      scopes,
		ClientID:    c.ID,
	}, nil
}

// Authenticate checks a client's id and secret (RFC 6749 §2.3.1). Every
// failure is the same invalid_client answer after the same work: a store
// lookup and one keyed hash per live secret. A database failure is
// ErrUnavailable, never invalid_client. A disabled client is refused even
// with the right secret.
func (s *Service) Authenticate(ctx context.Context, id, sec string) (store.Client, *Error) {
	if len(sec) > maxCredentialLen {
		sec = sec[:maxCredentialLen]
	}
	if id == "" || sec == "" || len(id) > maxCredentialLen {
		s.hasher.VerifyNothing(sec)
		return store.Client{}, errInvalidClient()
	}
	c, err := s.clients.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		s.hasher.VerifyNothing(sec)
		return store.Client{}, errInvalidClient()
	}
	if err != nil {
		return store.Client{}, ErrUnavailable(err)
	}
	now := s.now()
	matched, tried := "", false
	for _, cs := range c.Secrets {
		if !cs.Live(now) {
			continue
		}
		tried = true
		if s.hasher.Verify(sec, cs.Hash) {
			matched = cs.ID
		}
	}
	if !tried {
		s.hasher.VerifyNothing(sec)
	}
	if matched == "" {
		return store.Client{}, errInvalidClient()
	}
	if c.Disabled {
		return store.Client{}, newError(http.StatusUnauthorized, CodeInvalidClient, "the client is disabled")
	}
	if s.usage != nil {
		s.usage.Record(matched, now)
	}
	return c, nil
}

// decide picks the audience, scopes and lifetime of the token.
//
// Audience (RFC 8707): the requested resources, else the client's default
// audience, else its only granted API. Every requested resource must be
// granted. With several resources the token is usable at each of them, so a
// scope is allowed only if it is granted on every one (the intersection).
//
// Scopes (RFC 6749 §3.3): every requested scope must be allowed, otherwise
// invalid_scope (never a silently narrowed token); none requested means all
// allowed scopes.
//
// Lifetime: the client's, else the shortest of the APIs', else the server
// default; always capped by the server maximum.
func (s *Service) decide(c store.Client, req *TokenRequest) (aud, scopes []string, lifetime time.Duration, e *Error) {
	aud = dedupe(req.Resources)
	if len(aud) == 0 {
		switch {
		case c.DefaultAudience != "":
			aud = []string{c.DefaultAudience}
		case len(c.Grants) == 1:
			aud = []string{c.Grants[0].Audience}
		case len(c.Grants) == 0:
			return nil, nil, 0, newError(http.StatusBadRequest, CodeInvalidTarget, "the client is not granted any API")
		default:
			return nil, nil, 0, newError(http.StatusBadRequest, CodeInvalidTarget,
				"audience is required: the client is granted several APIs and has no default audience")
		}
	}
	var allowed []string
	for i, a := range aud {
		g, ok := grantFor(c, a)
		if !ok {
			return nil, nil, 0, newError(http.StatusBadRequest, CodeInvalidTarget, "the requested audience is unknown or not granted to this client")
		}
		if i == 0 {
			allowed = slices.Clone(g.Scopes)
		} else {
			allowed = slices.DeleteFunc(allowed, func(s string) bool { return !slices.Contains(g.Scopes, s) })
		}
		if g.APITokenLifetime > 0 && (lifetime == 0 || g.APITokenLifetime < lifetime) {
			lifetime = g.APITokenLifetime
		}
	}
	if req.Scopes == nil {
		scopes = allowed
	} else {
		for _, sc := range req.Scopes {
			if !slices.Contains(allowed, sc) {
				// Scope tokens were validated by ParseScope, so echoing is safe.
				return nil, nil, 0, newError(http.StatusBadRequest, CodeInvalidScope, "scope %s is not granted to this client for the requested audience", sc)
			}
		}
		scopes = req.Scopes
	}
	if c.TokenLifetime > 0 {
		lifetime = c.TokenLifetime
	}
	if lifetime == 0 {
		lifetime = s.policy.DefaultLifetime
	}
	if lifetime > s.policy.MaxLifetime {
		lifetime = s.policy.MaxLifetime
	}
	return aud, scopes, lifetime, nil
}

func grantFor(c store.Client, audience string) (store.Grant, bool) {
	for _, g := range c.Grants {
		if g.Audience == audience {
			return g, true
		}
	}
	return store.Grant{}, false
}

func dedupe(in []string) []string {
	var out []string
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
