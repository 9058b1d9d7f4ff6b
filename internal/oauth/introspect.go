package oauth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/verify"
)

// tokenChecker verifies this server's access tokens (signature, typ, iss,
// exp, nbf, iat; any audience).
type tokenChecker interface {
	Verify(ctx context.Context, token string) (*verify.Claims, error)
}

// revocationStore holds the deny-list and the refresh tokens.
type revocationStore interface {
	IsRevoked(ctx context.Context, jti string) (bool, error)
	RevokeToken(ctx context.Context, r store.Revocation) error
	GetRefreshToken(ctx context.Context, hash string) (store.RefreshToken, error)
	RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error
}

// Introspection serves token introspection (RFC 7662) and revocation
// (RFC 7009) for this server's access tokens and refresh tokens.
type Introspection struct {
	issuer  string
	svc     *Service
	tokens  tokenChecker
	store   revocationStore
	limiter *FailureLimiter
	log     *slog.Logger
}

// NewIntrospection returns an Introspection for the tokens of issuer;
// limiter may be nil.
func NewIntrospection(issuer string, svc *Service, tokens tokenChecker, st revocationStore, limiter *FailureLimiter, log *slog.Logger) *Introspection {
	return &Introspection{issuer: issuer, svc: svc, tokens: tokens, store: st, limiter: limiter, log: log}
}

// inspection is what the server knows of a presented token.
type inspection struct {
	active   bool
	refresh  bool
	owner    string // the client the token was issued to ("" if unknown)
	claims   *verify.Claims
	rt       store.RefreshToken
	audience []string
}

// Inspect decides whether a token is active: a genuine, unexpired token of
// this server that is not revoked (by jti, by its client's revocation
// cutoff, or, for a refresh token, by use or family revocation), whose
// client exists and is enabled. Anything else is inactive; a database
// failure is an error.
func (in *Introspection) Inspect(ctx context.Context, token string) (inspection, error) {
	now := in.svc.now()
	var out inspection
	var issued time.Time
	if strings.HasPrefix(token, secret.RefreshTokenPrefix) {
		rt, err := in.store.GetRefreshToken(ctx, in.svc.hasher.Hash(token))
		if errors.Is(err, store.ErrNotFound) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out.refresh, out.rt, out.owner, out.audience = true, rt, rt.ClientID, rt.Audience
		if !rt.UsedAt.IsZero() || !rt.RevokedAt.IsZero() || !now.Before(rt.ExpiresAt) {
			return out, nil
		}
		issued = rt.CreatedAt
	} else {
		claims, err := in.tokens.Verify(ctx, token)
		if err != nil {
			return out, nil // forged, foreign, expired, or by a removed key
		}
		out.claims, out.owner, out.audience = claims, claims.ClientID, claims.Audience
		revoked, err := in.store.IsRevoked(ctx, claims.JTI)
		if err != nil {
			return out, err
		}
		if revoked {
			return out, nil
		}
		issued = claims.IssuedAt
	}
	c, err := in.svc.clients.GetClient(ctx, out.owner)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	if c.Disabled || (!c.TokensRevokedBefore.IsZero() && issued.Before(c.TokensRevokedBefore)) {
		return out, nil
	}
	out.active = true
	return out, nil
}

// readForm reads an RFC 7662/7009 request: a form with token (and an
// optional token_type_hint, ignored) and the caller's credentials.
func (in *Introspection) readForm(r *http.Request) (token string, caller store.Client, e *Error) {
	if r.Method != http.MethodPost {
		return "", caller, newError(http.StatusMethodNotAllowed, CodeInvalidRequest, "only POST")
	}
	if in.limiter.Blocked(r) {
		return "", caller, ErrTooManyRequests()
	}
	mt := r.Header.Get("Content-Type")
	if !strings.HasPrefix(mt, "application/x-www-form-urlencoded") {
		return "", caller, ErrInvalidRequest("Content-Type must be application/x-www-form-urlencoded")
	}
	body, e := ReadBody(r)
	if e != nil {
		return "", caller, e
	}
	form, e := formParams(body)
	if e != nil {
		return "", caller, e
	}
	for name, vs := range form {
		if len(vs) > 1 {
			return "", caller, ErrInvalidRequest("parameter %s is given more than once", name)
		}
	}
	var fields [3]string
	for i, name := range []string{"client_id", "client_secret", "token"} {
		fields[i], _ = form.single(name)
	}
	req := &TokenRequest{}
	if e := req.setCredentials(r.Header.Get("Authorization"), fields[0], fields[1]); e != nil {
		return "", caller, e
	}
	caller, e = in.svc.Authenticate(r.Context(), req.ClientID, req.ClientSecret)
	if e != nil {
		in.limiter.Record(r, e)
		return "", caller, e
	}
	token = fields[2]
	if token == "" {
		return "", caller, ErrInvalidRequest("token is required")
	}
	return token, caller, nil
}

// introspectionResponse is RFC 7662 §2.2.
type introspectionResponse struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Aud       any    `json:"aud,omitempty"`
	Iss       string `json:"iss,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Nbf       int64  `json:"nbf,omitempty"`
	JTI       string `json:"jti,omitempty"`
	TokenType string `json:"token_type,omitempty"`
}

// Introspect serves POST /oauth/introspect (RFC 7662). The caller must be a
// client with the introspection permission; it learns about tokens for its
// own audiences only ("*": all). Every inactive or hidden token is exactly
// {"active":false}.
func (in *Introspection) Introspect(w http.ResponseWriter, r *http.Request) {
	NoStore(w)
	token, caller, e := in.readForm(r)
	if e != nil {
		in.fail(w, r, e)
		return
	}
	if len(caller.Introspect) == 0 {
		in.fail(w, r, newError(http.StatusForbidden, CodeUnauthorizedClient, "this client may not introspect tokens"))
		return
	}
	got, err := in.Inspect(r.Context(), token)
	if err != nil {
		in.fail(w, r, ErrUnavailable(err))
		return
	}
	allAudiences := slices.Contains(caller.Introspect, "*")
	visible := allAudiences || slices.ContainsFunc(got.audience, func(a string) bool { return slices.Contains(caller.Introspect, a) })
	if !got.active || !visible {
		WriteJSON(w, http.StatusOK, introspectionResponse{Active: false})
		return
	}
	out := introspectionResponse{Active: true, ClientID: got.owner, Sub: got.owner, Iss: in.issuer}
	if len(got.audience) == 1 {
		out.Aud = got.audience[0]
	} else {
		out.Aud = got.audience
	}
	if got.refresh {
		out.Scope, out.Exp, out.Iat, out.TokenType = strings.Join(got.rt.Scopes, " "), got.rt.ExpiresAt.Unix(), got.rt.CreatedAt.Unix(), "refresh_token"
	} else {
		c := got.claims
		out.Scope, out.Exp, out.Iat, out.Nbf, out.JTI, out.TokenType = strings.Join(c.Scopes, " "), c.ExpiresAt.Unix(), c.IssuedAt.Unix(), c.NotBefore.Unix(), c.JTI, "Bearer"
		out.Iss, out.Sub = c.Issuer, c.Subject
	}
	WriteJSON(w, http.StatusOK, out)
}

// Revoke serves POST /oauth/revoke (RFC 7009): a client revokes its own
// access token (its jti is denied until it expires) or refresh token (with
// its family). A token of another client is refused; an unknown, invalid or
// already revoked token is answered 200 (RFC 7009 §2.2).
func (in *Introspection) Revoke(w http.ResponseWriter, r *http.Request) {
	NoStore(w)
	token, caller, e := in.readForm(r)
	if e != nil {
		in.fail(w, r, e)
		return
	}
	got, err := in.Inspect(r.Context(), token)
	if err != nil {
		in.fail(w, r, ErrUnavailable(err))
		return
	}
	if got.owner == "" || !got.active {
		w.WriteHeader(http.StatusOK)
		return
	}
	if got.owner != caller.ID {
		in.fail(w, r, newError(http.StatusBadRequest, CodeUnauthorizedClient, "the token was not issued to this client"))
		return
	}
	if err := in.revoke(r.Context(), got); err != nil {
		in.fail(w, r, ErrUnavailable(err))
		return
	}
	in.log.InfoContext(r.Context(), "token revoked", "client_id", caller.ID, "refresh", got.refresh)
	w.WriteHeader(http.StatusOK)
}

// RevokeAny revokes a token whoever it belongs to (for administrators). It
// reports whether there was a live token to revoke.
func (in *Introspection) RevokeAny(ctx context.Context, token string) (bool, error) {
	got, err := in.Inspect(ctx, token)
	if err != nil || !got.active {
		return false, err
	}
	return true, in.revoke(ctx, got)
}

func (in *Introspection) revoke(ctx context.Context, got inspection) error {
	now := in.svc.now()
	if got.refresh {
		return in.store.RevokeRefreshFamily(ctx, got.rt.FamilyID, now)
	}
	return in.store.RevokeToken(ctx, store.Revocation{JTI: got.claims.JTI, ClientID: got.owner, ExpiresAt: got.claims.ExpiresAt, RevokedAt: now})
}

func (in *Introspection) fail(w http.ResponseWriter, r *http.Request, e *Error) {
	if e.Status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	LogError(in.log, r, e, "introspection", "")
	WriteError(w, e)
}
