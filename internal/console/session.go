package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
)

// Prefixes of the console's random values: a session id (the cookie) and a
// one-time sign-in link's token. Each carries 256 random bits.
const (
	sessionPrefix = "m2mcs_"
	linkPrefix    = "m2mcl_"
	// LinkLifetime is how long a one-time sign-in link works.
	LinkLifetime = 5 * time.Minute
	// touchEvery: a session's last-seen time is written at most this
	// often (the idle expiry is coarse by that much).
	touchEvery = time.Minute
)

// tokenLen is the length of a session id or link token.
var tokenLen = len(secret.GenerateWithPrefix(sessionPrefix))

// Reasons a visitor is sent to the sign-in page (fixed codes: the page
// never shows text from the query).
const (
	whyExpired   = "expired"
	whyRevoked   = "revoked"
	whySignedOut = "signed-out"
	whyLink      = "link"
)

var whyText = map[string]string{
	whyExpired:   "Your session has expired. Sign in again.",
	whyRevoked:   "Your session has ended: its admin client was disabled, deleted, lost the admin scope, or had its tokens revoked.",
	whySignedOut: "You have signed out.",
	whyLink:      "That sign-in link has expired or was already used. Get a new one with the command \"m2mauth console\", or sign in below.",
}

// session is a live console session.
type session struct {
	id, hash string
	clientID string
	csrf     string
}

// checkCSRF compares a form's token with the session's in constant time.
func (s *session) checkCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) == 1
}

// secure reports whether the console's cookie must be Secure: the request
// came over TLS, or the issuer (the public URL) is https behind a proxy.
func secure(r *http.Request, e *env.Env) bool {
	return r.TLS != nil || strings.HasPrefix(e.Issuer, "https://")
}

// cookieName is __Host- prefixed where browsers allow it (Secure, Path=/,
// no Domain): no other host or path can set or shadow it.
func cookieName(secure bool) string {
	if secure {
		return "__Host-m2mauth-console"
	}
	return "m2mauth-console"
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, e *env.Env, value string, maxAge int) {
	sec := secure(r, e)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(sec), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: sec, SameSite: http.SameSiteStrictMode,
	})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request, e *env.Env) {
	c.setCookie(w, r, e, "", -1)
}

// cookieID returns the session id the request's cookie holds ("" if none
// or malformed).
func cookieID(r *http.Request, e *env.Env) string {
	ck, err := r.Cookie(cookieName(secure(r, e)))
	if err != nil || len(ck.Value) != tokenLen || !strings.HasPrefix(ck.Value, sessionPrefix) {
		return ""
	}
	return ck.Value
}

// session returns the request's live session, or nil and the reason it
// has none ("" when it never had one). A session whose admin client is
// gone, disabled, no longer an admin, or had its tokens revoked after the
// session began is deleted: those changes end sessions as they end tokens.
func (c *Console) session(w http.ResponseWriter, r *http.Request) (*session, string, error) {
	ctx := r.Context()
	e := env.FromContext(ctx)
	id := cookieID(r, e)
	if id == "" {
		if _, err := r.Cookie(cookieName(secure(r, e))); err == nil {
			c.clearCookie(w, r, e)
			return nil, whyExpired, nil
		}
		return nil, "", nil
	}
	now := c.now()
	hash := e.Hasher.Hash(id)
	cs, err := e.Store.GetConsoleSession(ctx, hash, now, c.cfg.Idle)
	if errors.Is(err, store.ErrNotFound) {
		c.clearCookie(w, r, e)
		return nil, whyExpired, nil
	}
	if err != nil {
		return nil, "", err
	}
	cl, err := e.Clients.GetClient(ctx, cs.ClientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, "", err
	}
	if err != nil || !admin.IsAdmin(cl, e.AdminAudience()) || cl.TokensRevokedBefore.After(cs.CreatedAt) {
		if err := e.Store.DeleteConsoleSession(ctx, hash); err != nil {
			return nil, "", err
		}
		c.clearCookie(w, r, e)
		return nil, whyRevoked, nil
	}
	// Written at most every touchEvery, and often enough that a session
	// in use never reaches its idle limit between two writes.
	if now.Sub(cs.LastSeenAt) >= min(touchEvery, c.cfg.Idle/4) {
		if err := e.Store.TouchConsoleSession(ctx, hash, now); err != nil {
			c.log.WarnContext(ctx, "console: record session activity", "error", err)
		}
	}
	return &session{id: id, hash: hash, clientID: cs.ClientID, csrf: csrfToken(e, id)}, "", nil
}

// csrfToken is bound to the session: a keyed hash of its id, so that it
// needs no storage and changes with every session.
func csrfToken(e *env.Env, id string) string {
	return strings.TrimPrefix(e.Hasher.Hash("csrf:"+id), "hmac-sha256$")
}

// startSession signs clientID in: a new session id (a session the browser
// held before is ended, so a planted id cannot be carried into the new
// session), stored as a keyed hash, in a cookie.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, clientID string) error {
	ctx := r.Context()
	e := env.FromContext(ctx)
	if old := cookieID(r, e); old != "" {
		if err := e.Store.DeleteConsoleSession(ctx, e.Hasher.Hash(old)); err != nil {
			return err
		}
	}
	id := secret.GenerateWithPrefix(sessionPrefix)
	now := c.now()
	if err := e.Store.CreateConsoleSession(ctx, store.ConsoleSession{
		IDHash: e.Hasher.Hash(id), ClientID: clientID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(c.cfg.MaxAge),
	}); err != nil {
		return err
	}
	c.setCookie(w, r, e, id, int(c.cfg.MaxAge/time.Second))
	c.log.InfoContext(ctx, "console: signed in", "client_id", clientID)
	return nil
}

// NewLink creates a one-time sign-in link for the admin client clientID,
// valid for LinkLifetime. It is the admin API's answer to `m2mauth
// console`; the link is shown to the caller only, never logged.
func (c *Console) NewLink(ctx context.Context, clientID string) (string, time.Time, error) {
	e := env.FromContext(ctx)
	token := secret.GenerateWithPrefix(linkPrefix)
	expires := c.now().Add(LinkLifetime)
	if err := e.Store.CreateConsoleLink(ctx, e.Hasher.Hash(token), clientID, expires); err != nil {
		return "", time.Time{}, err
	}
	return e.Issuer + Prefix + "link?token=" + token, expires, nil
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if s, _, err := c.session(w, r); err == nil && s != nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	v := &view{Title: "Sign in", Form: url.Values{"next": {r.URL.Query().Get("next")}}, Data: humanDuration(LinkLifetime)}
	v.Alert = whyText[r.URL.Query().Get("why")]
	if r.URL.Query().Get("why") == whySignedOut {
		v.Alert, v.Flash = "", whyText[whySignedOut]
	}
	c.render(w, r, http.StatusOK, "signin", v)
}

// Limits on the sign-in form's fields (an id or secret longer than these
// is not one).
const maxCredential = 512

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.renderFailure(w, r, nil, formError(err))
		return
	}
	f := r.PostForm
	id, sec, next := strings.TrimSpace(f.Get("client_id")), strings.TrimSpace(f.Get("client_secret")), f.Get("next")
	v := &view{Title: "Sign in", Form: url.Values{"client_id": {id}, "next": {next}}, Errors: map[string]string{}, Data: humanDuration(LinkLifetime)}
	if id == "" || len(id) > maxCredential {
		v.Errors["client_id"] = "Enter the admin client's id (client_id in admin.json)."
	}
	if sec == "" || len(sec) > maxCredential {
		v.Errors["client_secret"] = "Enter the admin client's secret (client_secret in admin.json)."
	}
	if len(v.Errors) > 0 {
		c.render(w, r, http.StatusBadRequest, "signin", v)
		return
	}
	cl, oe := c.cfg.SignIn.SignIn(r, id, sec)
	switch {
	case oe == nil:
	case oe.Status == http.StatusTooManyRequests:
		v.Alert = "Too many failed sign-ins from your address or for this client. Wait a minute, then try again."
		c.render(w, r, http.StatusTooManyRequests, "signin", v)
		return
	case oe.Status >= 500:
		c.renderFailure(w, r, nil, oe.Err)
		return
	default:
		v.Alert = "The client id or secret is wrong, or this client does not sign in with a secret."
		c.render(w, r, http.StatusUnauthorized, "signin", v)
		return
	}
	if !admin.IsAdmin(cl, env.FromContext(r.Context()).AdminAudience()) {
		v.Alert = "This client is not an admin: only a client granted the admin scope on the admin API can use the console."
		c.render(w, r, http.StatusForbidden, "signin", v)
		return
	}
	if err := c.startSession(w, r, cl.ID); err != nil {
		c.renderFailure(w, r, nil, err)
		return
	}
	if !safeNext(next) {
		next = Prefix
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// linkPage shows a button that spends the link: GET changes nothing (a
// link preview or a prefetch must not use it up).
func (c *Console) linkPage(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	if len(token) != tokenLen || !strings.HasPrefix(token, linkPrefix) {
		c.toSignIn(w, r, whyLink, "")
		return
	}
	c.render(w, r, http.StatusOK, "link", &view{Title: "Sign in", Form: url.Values{"token": {token}}})
}

func (c *Console) useLink(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.renderFailure(w, r, nil, formError(err))
		return
	}
	token := r.PostForm.Get("token")
	if len(token) != tokenLen || !strings.HasPrefix(token, linkPrefix) {
		c.toSignIn(w, r, whyLink, "")
		return
	}
	ctx := r.Context()
	e := env.FromContext(ctx)
	clientID, err := e.Store.UseConsoleLink(ctx, e.Hasher.Hash(token), c.now())
	if errors.Is(err, store.ErrNotFound) {
		c.toSignIn(w, r, whyLink, "")
		return
	}
	if err != nil {
		c.renderFailure(w, r, nil, err)
		return
	}
	// The client may have lost its rights since the link was made.
	cl, err := e.Clients.GetClient(ctx, clientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.renderFailure(w, r, nil, err)
		return
	}
	if err != nil || !admin.IsAdmin(cl, e.AdminAudience()) {
		c.toSignIn(w, r, whyRevoked, "")
		return
	}
	if err := c.startSession(w, r, clientID); err != nil {
		c.renderFailure(w, r, nil, err)
		return
	}
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) error {
	e := env.FromContext(r.Context())
	if err := e.Store.DeleteConsoleSession(r.Context(), s.hash); err != nil {
		return err
	}
	c.clearCookie(w, r, e)
	c.toSignIn(w, r, whySignedOut, "")
	return nil
}

// formNoncePrefix marks a one-time form's nonce: a create form carries
// one, so that a double click or a reload of the page its POST answered
// does not create a second application (and hand out a second secret).
const formNoncePrefix = "m2mcf_"

// formNonceLifetime is how long a used nonce is remembered.
const formNonceLifetime = 24 * time.Hour

func newFormNonce() string { return secret.GenerateWithPrefix(formNoncePrefix) }

// claimFormNonce reports whether this submission is the first of its form,
// on any replica (the store's single-use record, shared with client
// assertions' ids under a key of its own).
func (c *Console) claimFormNonce(ctx context.Context, nonce string) (bool, error) {
	if len(nonce) != tokenLen || !strings.HasPrefix(nonce, formNoncePrefix) {
		return false, nil
	}
	e := env.FromContext(ctx)
	return e.Store.UseAssertionID(ctx, "console-form:"+e.Hasher.Hash(nonce), c.now().Add(formNonceLifetime))
}
