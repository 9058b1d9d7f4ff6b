package oauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/issuer"
	"github.com/m2mauth/m2mauth/internal/scope"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/telemetry"
	"github.com/m2mauth/m2mauth/verify"
)

// Policy holds the server-wide token lifetime rules.
type Policy struct {
	DefaultLifetime time.Duration // when neither client nor API sets one
	MaxLifetime     time.Duration // cap on every token
	// RefreshLifetime is the absolute lifetime of a refresh token family,
	// counted from the client-credentials grant that started it.
	RefreshLifetime time.Duration
	// IdentityScopes are OpenID Connect scopes (openid, profile, email)
	// that clients written for OpenID providers request out of habit. They
	// mean nothing in a client-credentials grant: accepted, never granting
	// anything, and never in the token (an API defining a scope of that
	// name keeps it: granted API scopes come first). "openid" is echoed in
	// the response's scope, as OpenID providers answer.
	IdentityScopes []string
	// CertBoundTokens binds the access token of every request whose
	// client authenticated with a certificate to that certificate (RFC
	// 8705 §3), whatever the client's own setting.
	CertBoundTokens bool
}

// Service is the surface-independent core of the token endpoint: it
// authenticates callers through the client-authentication registry and
// decides and issues tokens for them.
//
// Everything it reads or writes (clients, refresh tokens, signing keys, the
// issuer identifier) belongs to the request's environment (env.Env, from
// the request's context): the Service itself holds only the rules.
type Service struct {
	auth   *ClientAuth
	policy Policy
	now    func() time.Time
	reuse  *reuseCache
}

// NewService returns a Service authenticating clients with auth.
func NewService(auth *ClientAuth, policy Policy, now func() time.Time) *Service {
	return &Service{auth: auth, policy: policy, now: now, reuse: newReuseCache()}
}

// AuthMethods are the client authentication methods the server supports.
func (s *Service) AuthMethods() []string { return s.auth.Methods() }

// AuthSigningAlgs are the algorithms client assertions may use.
func (s *Service) AuthSigningAlgs() []string { return s.auth.SigningAlgs() }

// TokenResponse is an issued access token with what every surface reports.
type TokenResponse struct {
	AccessToken  string
	ExpiresIn    int64 // seconds
	ExpiresAt    time.Time
	Scopes       []string
	ClientID     string
	RefreshToken string // only for clients with refresh tokens enabled
	// Echo are identity scopes the response's scope names before the
	// token's (OpenID Connect's openid); they are not in the token.
	Echo []string
	// Alg is the algorithm of the key that signed the access token, JTI
	// its id and Audience its aud (for observers; no surface renders them).
	Alg      string
	JTI      string
	Audience []string
	// Reused: the token was issued before and handed out again (token
	// reuse), not signed for this request.
	Reused bool
	// TokenType is "Bearer", or "DPoP" for a token bound to a DPoP key
	// (RFC 9449 §5); Cnf is the token's binding (nil: none).
	TokenType string
	Cnf       *issuer.Confirmation
}

// Token types (RFC 6749 §7.1, RFC 9449 §5).
const (
	TokenTypeBearer = "Bearer"
	TokenTypeDPoP   = "DPoP"
)

// authenticate proves the caller of req: through the registry, or, for
// the ATM surface's refresh request that names its client without a
// secret, by the client id alone (the refresh token is the credential).
func (s *Service) authenticate(ctx context.Context, req *Request) (Caller, *Error) {
	if req.PublicRefresh && req.GrantType == GrantRefreshToken && req.Credentials.Secret == "" {
		c, e := s.identify(ctx, req.Credentials.ClientID)
		return Caller{Client: c}, e
	}
	return s.auth.Authenticate(ctx, req.Credentials)
}

// checkGrant refuses, before authentication, a request for a grant the
// server does not have or without what the grant needs.
func checkGrant(req *Request) *Error {
	switch req.GrantType {
	case GrantClientCredentials:
		return nil
	case GrantRefreshToken:
		if req.RefreshToken == "" {
			return ErrInvalidRequest("refresh_token is required")
		}
		return nil
	}
	return newError(http.StatusBadRequest, CodeUnsupportedGrantType, "supported grant types: client_credentials, refresh_token")
}

// grant issues the token an authenticated caller asked for.
func (s *Service) grant(ctx context.Context, caller Caller, req *Request) (*TokenResponse, *Error) {
	if req.GrantType == GrantRefreshToken {
		return s.refreshGrant(ctx, caller.Client, req)
	}
	return s.clientCredentials(ctx, caller.Client, req)
}

func (s *Service) clientCredentials(ctx context.Context, c store.Client, req *Request) (*TokenResponse, *Error) {
	_, span := telemetry.Start(ctx, spanPolicy)
	d, e := s.decide(c, req)
	endSpan(span, e)
	if e != nil {
		return nil, e
	}
	aud, scopes := d.aud, d.scopes
	var resp *TokenResponse
	if c.TokenReuse > 0 && req.Cnf == nil {
		// A bound token is never reused: the next request may prove
		// another key or certificate, and a token bound to the last one
		// would be useless to it (or, worse, handed to its holder).
		resp, e = s.issueOrReuse(ctx, c, &d)
	} else {
		resp, e = s.issue(ctx, c, aud, scopes, d.lifetime, req.Cnf)
	}
	if e != nil {
		return nil, e
	}
	if d.openid {
		resp.Echo = []string{ScopeOpenID}
	}
	if !c.RefreshTokens {
		return resp, nil
	}
	// RFC 6749 §4.4.3: not by default; this client opted in.
	now := s.now().UTC()
	plain := secret.GenerateWithPrefix(secret.RefreshTokenPrefix)
	en := env.FromContext(ctx)
	err := en.Store.CreateRefreshToken(ctx, store.RefreshToken{
		Hash: en.Hasher.Hash(plain), FamilyID: secret.NewID("rtf_"), ClientID: c.ID, Audience: aud, Scopes: scopes,
		CreatedAt: now, ExpiresAt: now.Add(s.policy.RefreshLifetime), DPoP: req.Cnf != nil && req.Cnf.JKT != "",
	})
	if err != nil {
		return nil, ErrUnavailable(err)
	}
	resp.RefreshToken = plain
	return resp, nil
}

// refreshGrant implements RFC 6749 §6: the refresh token must belong to the
// client and be live; it is spent and replaced by a new one of the same
// family (same audience, scopes and absolute expiry). The new access token
// is for the family's audience, and for its scopes or a requested subset,
// as far as the client's grants still allow. A spent token presented again
// revokes the whole family.
func (s *Service) refreshGrant(ctx context.Context, c store.Client, req *Request) (*TokenResponse, *Error) {
	if !c.RefreshTokens {
		return nil, newError(http.StatusBadRequest, CodeUnauthorizedClient, "refresh tokens are not enabled for this client")
	}
	now := s.now().UTC()
	plain := secret.GenerateWithPrefix(secret.RefreshTokenPrefix)
	var d decision
	en := env.FromContext(ctx)
	_, err := en.Store.RedeemRefreshToken(ctx, en.Hasher.Hash(req.RefreshToken), now, func(rt store.RefreshToken) (store.RefreshToken, error) {
		// A token issued before the client's cutoff is revoked with the
		// access tokens of its time, whether or not the family was also
		// marked revoked (that is a second write, after the cutoff's).
		if rt.ClientID != c.ID || rt.CreatedAt.Before(c.TokensRevokedBefore) {
			return store.RefreshToken{}, newError(http.StatusBadRequest, CodeInvalidGrant, "the refresh token is invalid, expired or revoked")
		}
		if rt.DPoP && (req.Cnf == nil || req.Cnf.JKT == "") {
			// Begun with DPoP, the family stays DPoP (found by the attack:
			// the ATM surface's refresh, which needs no client secret and
			// cannot carry a proof, turned it into bearer tokens).
			return store.RefreshToken{}, errDPoP("this refresh token was issued with a DPoP-bound access token: refresh it at the standard token endpoint with a DPoP proof")
		}
		if len(req.Resources) > 0 && !sameSet(scope.Dedupe(req.Resources), rt.Audience) {
			return store.RefreshToken{}, newError(http.StatusBadRequest, CodeInvalidTarget, "a refresh token is for the audience it was issued for")
		}
		want := req.Scopes
		if want == nil {
			want = rt.Scopes
		}
		// Identity scopes, as at the first grant, mean nothing here.
		want = slices.DeleteFunc(slices.Clone(want), func(sc string) bool {
			return !slices.Contains(rt.Scopes, sc) && slices.Contains(s.policy.IdentityScopes, sc)
		})
		for _, sc := range want {
			if !slices.Contains(rt.Scopes, sc) {
				return store.RefreshToken{}, newError(http.StatusBadRequest, CodeInvalidScope, "scope %s exceeds the scopes of the refresh token", sc)
			}
		}
		var de *Error
		_, span := telemetry.Start(ctx, spanPolicy)
		d, de = s.decide(c, &Request{Resources: rt.Audience, Scopes: want})
		endSpan(span, de)
		if de != nil {
			return store.RefreshToken{}, de
		}
		next := rt
		next.Hash, next.CreatedAt, next.UsedAt, next.RevokedAt = en.Hasher.Hash(plain), now, time.Time{}, time.Time{}
		return next, nil
	})
	var pe *Error
	switch {
	case errors.As(err, &pe):
		return nil, pe
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrTokenSpent):
		return nil, newError(http.StatusBadRequest, CodeInvalidGrant, "the refresh token is invalid, expired or revoked")
	case err != nil:
		return nil, ErrUnavailable(err)
	}
	// The new access token is bound to what this request proves (RFC 9449
	// §5, RFC 8705 §3), not to what the first grant's request proved.
	resp, e := s.issue(ctx, c, d.aud, d.scopes, d.lifetime, req.Cnf)
	if e != nil {
		return nil, e
	}
	resp.RefreshToken = plain
	return resp, nil
}

func (s *Service) issue(ctx context.Context, c store.Client, aud, scopes []string, lifetime time.Duration, cnf *issuer.Confirmation) (*TokenResponse, *Error) {
	resp, _, e := s.sign(ctx, c, aud, scopes, lifetime, cnf)
	return resp, e
}

// issueOrReuse returns the client's last token for the same decision
// again while it may be (see reuse.go), else signs one and keeps it.
func (s *Service) issueOrReuse(ctx context.Context, c store.Client, d *decision) (*TokenResponse, *Error) {
	en := env.FromContext(ctx)
	if resp, ok := s.reuse.get(en, &c, d, s.now()); ok {
		return resp, nil
	}
	resp, tok, e := s.sign(ctx, c, d.aud, d.scopes, d.lifetime, nil)
	if e == nil {
		s.reuse.put(en, &c, d, tok.JTI, tok.Signer, tok.IssuedAt, resp)
	}
	return resp, e
}

// sign signs the access token (the pipeline's sign step).
func (s *Service) sign(ctx context.Context, c store.Client, aud, scopes []string, lifetime time.Duration, cnf *issuer.Confirmation) (resp *TokenResponse, tok issuer.Token, e *Error) {
	_, span := telemetry.Start(ctx, spanSign)
	defer func() { endSpan(span, e) }()
	// NotIssuedBefore: a client whose tokens were revoked within this
	// second has its cutoff at the next whole second, and a token signed
	// now (iat in whole seconds) would be revoked at birth.
	tok, err := env.FromContext(ctx).Tokens.Issue(issuer.Request{ClientID: c.ID, Audience: aud, Scopes: scopes, Lifetime: lifetime, Extra: c.CustomClaims,
		NotIssuedBefore: c.TokensRevokedBefore, Cnf: cnf})
	if err != nil {
		return nil, tok, ErrServer(err)
	}
	if len(tok.Raw) > verify.MaxTokenSize {
		// Resource servers (verify among them) refuse larger tokens: say
		// so now rather than hand out a token nothing accepts.
		return nil, tok, newError(http.StatusBadRequest, CodeInvalidScope,
			"the token would be %d bytes, more than the %d resource servers accept: request fewer scopes or audiences", len(tok.Raw), verify.MaxTokenSize)
	}
	return &TokenResponse{
		AccessToken: tok.Raw,
		ExpiresIn:   int64(tok.ExpiresAt.Sub(tok.IssuedAt) / time.Second),
		ExpiresAt:   tok.ExpiresAt,
		Scopes:      scopes,
		ClientID:    c.ID,
		Alg:         tok.Alg,
		JTI:         tok.JTI,
		Audience:    aud,
		TokenType:   tokenType(cnf),
		Cnf:         cnf,
	}, tok, nil
}

// identify finds an enabled client without a secret: for the ATM surface's
// refresh request, where the refresh token itself (256 bits, bound to the
// client) is the credential.
func (s *Service) identify(ctx context.Context, id string) (store.Client, *Error) {
	if id == "" || len(id) > maxCredentialLen {
		return store.Client{}, errInvalidClient("")
	}
	c, err := env.FromContext(ctx).Clients.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, errInvalidClient("")
	}
	if err != nil {
		return store.Client{}, ErrUnavailable(err)
	}
	if c.Disabled {
		e := newError(http.StatusUnauthorized, CodeInvalidClient, "the client is disabled")
		e.client = c.ID
		return store.Client{}, e
	}
	return c, nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// ScopeOpenID is the OpenID Connect scope, echoed when requested.
const ScopeOpenID = "openid"

// decision is what a token is issued for.
type decision struct {
	aud, scopes []string
	lifetime    time.Duration
	openid      bool // the openid identity scope was requested
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
// allowed scopes. Identity scopes (Policy.IdentityScopes) that are not
// allowed API scopes are accepted and left out of the token; a request for
// identity scopes only gets a token without API scopes.
//
// Lifetime: the client's, else the shortest of the APIs', else the server
// default; always capped by the server maximum.
func (s *Service) decide(c store.Client, req *Request) (d decision, e *Error) {
	d.aud = scope.Dedupe(req.Resources)
	if len(d.aud) == 0 {
		switch {
		case c.DefaultAudience != "":
			d.aud = []string{c.DefaultAudience}
		case len(c.Grants) == 1:
			d.aud = []string{c.Grants[0].Audience}
		case len(c.Grants) == 0:
			return d, newError(http.StatusBadRequest, CodeInvalidTarget, "the client is not granted any API")
		default:
			return d, newError(http.StatusBadRequest, CodeInvalidTarget,
				"audience is required: the client is granted several APIs and has no default audience")
		}
	}
	var allowed []string
	for i, a := range d.aud {
		g, ok := grantFor(c, a)
		if !ok {
			return d, newError(http.StatusBadRequest, CodeInvalidTarget, "the requested audience is unknown or not granted to this client")
		}
		if i == 0 {
			allowed = slices.Clone(g.Scopes)
		} else {
			allowed = slices.DeleteFunc(allowed, func(s string) bool { return !slices.Contains(g.Scopes, s) })
		}
		if g.APITokenLifetime > 0 && (d.lifetime == 0 || g.APITokenLifetime < d.lifetime) {
			d.lifetime = g.APITokenLifetime
		}
	}
	if req.Scopes == nil {
		d.scopes = allowed
	} else {
		d.scopes = req.Scopes
		copied := false // d.scopes is a copy without the identity scopes
		for i, sc := range req.Scopes {
			switch {
			case slices.Contains(allowed, sc):
				if copied {
					d.scopes = append(d.scopes, sc)
				}
			case slices.Contains(s.policy.IdentityScopes, sc):
				if !copied {
					d.scopes, copied = slices.Clone(req.Scopes[:i]), true
				}
				d.openid = d.openid || sc == ScopeOpenID
			default:
				// Scope tokens were validated by parseScope, so echoing is safe.
				return d, newError(http.StatusBadRequest, CodeInvalidScope, "scope %s is not granted to this client for the requested audience", sc)
			}
		}
	}
	if c.TokenLifetime > 0 {
		d.lifetime = c.TokenLifetime
	}
	if d.lifetime == 0 {
		d.lifetime = s.policy.DefaultLifetime
	}
	if d.lifetime > s.policy.MaxLifetime {
		d.lifetime = s.policy.MaxLifetime
	}
	return d, nil
}

func grantFor(c store.Client, audience string) (store.Grant, bool) {
	for _, g := range c.Grants {
		if g.Audience == audience {
			return g, true
		}
	}
	return store.Grant{}, false
}

// tokenType is the token_type of a token with binding cnf: DPoP for a
// DPoP-bound token (RFC 9449 §5), else Bearer (a certificate-bound token is
// still sent as a Bearer token, RFC 8705 §3).
func tokenType(cnf *issuer.Confirmation) string {
	if cnf != nil && cnf.JKT != "" {
		return TokenTypeDPoP
	}
	return TokenTypeBearer
}
