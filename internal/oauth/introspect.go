package oauth

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/issuer"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/tokencache"
	"github.com/m2mauth/m2mauth/verify"
)

// Introspection serves token introspection (RFC 7662) and revocation
// (RFC 7009) for this server's access tokens and refresh tokens.
//
// Like the Service, it works on the request's environment.
type Introspection struct {
	svc *Service
}

// NewIntrospection returns an Introspection authenticating through svc.
func NewIntrospection(svc *Service) *Introspection {
	return &Introspection{svc: svc}
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
	en := env.FromContext(ctx)
	var out inspection
	var issued time.Time
	if strings.HasPrefix(token, secret.RefreshTokenPrefix) {
		rt, err := en.Store.GetRefreshToken(ctx, en.Hasher.Hash(token))
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
		claims, err := verifyCached(ctx, en, token, now)
		if err != nil {
			return out, nil // forged, foreign, expired, or by a removed key
		}
		out.claims, out.owner, out.audience = claims, claims.ClientID, claims.Audience
		_, out.active, err = in.Active(ctx, claims)
		return out, err
	}
	_, active, err := in.clientActive(ctx, out.owner, issued)
	out.active = active
	return out, err
}

// verifyCached is en.Verifier.VerifyBound, answered from en.Verified when
// the exact token was verified before: then only the signature is skipped.
// The key it was verified with must still be the key of its kid (a key
// removed or replaced since refuses it), and exp, nbf and iat are checked
// again at now; a token failing that is dropped and verified in full (and
// refused). Only tokens that verify are stored. Everything Inspect checks
// after the verification (deny-list, client) still runs on every call.
func verifyCached(ctx context.Context, en *env.Env, token string, now time.Time) (*verify.Claims, error) {
	c := en.Verified
	if c == nil {
		return en.Verifier.VerifyBound(ctx, token)
	}
	sum := tokencache.SumOf(token)
	if e, ok := c.Get(sum, now); ok {
		if e.Issuer == en.Issuer && en.Verifier.Recheck(ctx, token, e.Claims, e.Key) == nil {
			return e.Claims, nil
		}
		c.Delete(sum)
	}
	claims, key, err := en.Verifier.VerifyBoundKey(ctx, token)
	if err != nil {
		return nil, err
	}
	// Raw (every claim as sent) is not used here and is most of the
	// memory of an entry.
	claims.Raw = nil
	c.Put(sum, tokencache.Entry{Issuer: en.Issuer, Claims: claims, Key: key}, now)
	return claims, nil
}

// Active reports whether an access token of this server, already verified
// (signature, typ, iss, exp), is still active: its jti is not on the
// deny-list, and its client exists, is enabled and has not revoked every
// token issued before it. It returns the client. Every check is answered
// from memory on the hot path (the deny-list and the client cache); a
// failure to decide is an error.
func (in *Introspection) Active(ctx context.Context, claims *verify.Claims) (store.Client, bool, error) {
	revoked, err := env.FromContext(ctx).Denied.IsRevoked(ctx, claims.JTI)
	if err != nil || revoked {
		return store.Client{}, false, err
	}
	return in.clientActive(ctx, claims.ClientID, claims.IssuedAt)
}

// clientActive reports whether a token issued at issued to client id is
// still active as far as its client goes.
func (in *Introspection) clientActive(ctx context.Context, id string, issued time.Time) (store.Client, bool, error) {
	c, err := env.FromContext(ctx).Clients.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Client{}, false, nil
	}
	if err != nil {
		return store.Client{}, false, err
	}
	if c.Disabled || (!c.TokensRevokedBefore.IsZero() && issued.Before(c.TokensRevokedBefore)) {
		return c, false, nil
	}
	return c, true, nil
}

// parseTokenForm reads an RFC 7662 §2.1 / RFC 7009 §2.1 request: a form
// with token (and an optional token_type_hint, ignored) and the caller's
// credentials.
func parseTokenForm(r *http.Request) (*Request, *Error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, ErrInvalidRequest("Content-Type must be application/x-www-form-urlencoded")
	}
	body, e := ReadBody(r)
	if e != nil {
		return nil, e
	}
	form, e := formParams(body)
	if e != nil {
		return nil, e
	}
	if e := form.onlyOnce(""); e != nil {
		return nil, e
	}
	req := &Request{}
	if e := req.Credentials.read(r, form); e != nil {
		return nil, e
	}
	req.Token, _ = form.single("token")
	return req, nil
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
	// Cnf is the token's binding (RFC 8705 §3.2, RFC 9449 §6.2): a
	// resource server that introspects checks the proof against it.
	Cnf *issuer.Confirmation `json:"cnf,omitempty"`
}

// introspect answers an introspection request (RFC 7662 §2.2). The caller
// must be a client with the introspection permission; it learns about
// tokens for its own audiences only ("*": all). Every inactive or hidden
// token is exactly {"active":false}.
func (in *Introspection) introspect(ctx context.Context, caller Caller, req *Request) (Result, *Error) {
	if req.Token == "" {
		return Result{}, ErrInvalidRequest("token is required")
	}
	if len(caller.Client.Introspect) == 0 {
		return Result{}, newError(http.StatusForbidden, CodeUnauthorizedClient, "this client may not introspect tokens")
	}
	got, err := in.Inspect(ctx, req.Token)
	if err != nil {
		return Result{}, ErrUnavailable(err)
	}
	allowed := caller.Client.Introspect
	visible := slices.Contains(allowed, "*") || slices.ContainsFunc(got.audience, func(a string) bool { return slices.Contains(allowed, a) })
	if !got.active || !visible {
		return Result{Body: introspectionResponse{Active: false}}, nil
	}
	out := introspectionResponse{Active: true, ClientID: got.owner, Sub: got.owner, Iss: env.FromContext(ctx).Issuer}
	if len(got.audience) == 1 {
		out.Aud = got.audience[0]
	} else {
		out.Aud = got.audience
	}
	if got.refresh {
		out.Scope, out.Exp, out.Iat, out.TokenType = strings.Join(got.rt.Scopes, " "), got.rt.ExpiresAt.Unix(), got.rt.CreatedAt.Unix(), "refresh_token"
	} else {
		c := got.claims
		out.Scope, out.Exp, out.Iat, out.Nbf, out.JTI, out.TokenType = strings.Join(c.Scopes, " "), c.ExpiresAt.Unix(), c.IssuedAt.Unix(), c.NotBefore.Unix(), c.JTI, TokenTypeBearer
		out.Iss, out.Sub = c.Issuer, c.Subject
		if c.Cnf.Bound() {
			// Read and checked by VerifyBound (our own signed claim:
			// custom claims never set cnf).
			cnf := c.Cnf
			out.Cnf, out.TokenType = &cnf, tokenType(&cnf)
		}
	}
	return Result{Body: out}, nil
}

// revokeOwn answers a revocation request (RFC 7009 §2.2): a client
// revokes its own access token (its jti is denied until it expires) or
// refresh token (with its family). A token of another client is refused;
// an unknown, invalid or already revoked token is answered 200.
func (in *Introspection) revokeOwn(ctx context.Context, caller Caller, req *Request) (Result, *Error) {
	if req.Token == "" {
		return Result{}, ErrInvalidRequest("token is required")
	}
	got, err := in.Inspect(ctx, req.Token)
	if err != nil {
		return Result{}, ErrUnavailable(err)
	}
	if got.owner == "" || !got.active {
		return Result{}, nil
	}
	if got.owner != caller.Client.ID {
		return Result{}, newError(http.StatusBadRequest, CodeUnauthorizedClient, "the token was not issued to this client")
	}
	if err := in.revoke(ctx, got); err != nil {
		return Result{}, ErrUnavailable(err)
	}
	return Result{Revoked: true}, nil
}

// RevokeAny revokes a token whoever it belongs to (for administrators). It
// reports whether there was a live token to revoke.
func (in *Introspection) RevokeAny(ctx context.Context, token string) (bool, error) {
	r, err := in.RevokeAnyToken(ctx, token)
	return r.Revoked, err
}

// Revoked tells what RevokeAnyToken revoked: an access token by its jti,
// or a refresh token's family by its id (never the token itself).
type Revoked struct {
	Revoked  bool
	ID       string // the jti, or the refresh family's id
	ClientID string
	Refresh  bool
}

// RevokeAnyToken is RevokeAny, telling what it revoked.
func (in *Introspection) RevokeAnyToken(ctx context.Context, token string) (Revoked, error) {
	got, err := in.Inspect(ctx, token)
	if err != nil || !got.active {
		return Revoked{}, err
	}
	r := Revoked{Revoked: true, ID: got.claims.JTI, ClientID: got.owner, Refresh: got.refresh}
	if got.refresh {
		r.ID = got.rt.FamilyID
	}
	return r, in.revoke(ctx, got)
}

func (in *Introspection) revoke(ctx context.Context, got inspection) error {
	now := in.svc.now()
	en := env.FromContext(ctx)
	if got.refresh {
		return en.Store.RevokeRefreshFamily(ctx, got.rt.FamilyID, now)
	}
	if err := en.Store.RevokeToken(ctx, store.Revocation{JTI: got.claims.JTI, ClientID: got.owner, ExpiresAt: got.claims.ExpiresAt, RevokedAt: now}); err != nil {
		return err
	}
	// Every replica learns it through the change feed; this one at once.
	en.Denied.Add(got.claims.JTI, got.claims.ExpiresAt)
	return nil
}
