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

// session is a live console session. It is stored in its admin client's
// environment (home) and acts in the environment it views.
type session struct {
	id, hash string // the cookie's value ("<home>.<random>") and its keyed hash
	clientID string
	csrf     string
	// entry is the environment the request came in on (its host), which
	// the cookie belongs to.
	entry *env.Env
	// home is the admin client's environment, where the session is
	// stored; viewing the one it acts in (home unless a deployment admin
	// switched).
	home, viewing *env.Env
	// deployment: the client is a deployment admin, who may view any
	// environment.
	deployment bool
	// notice tells why the session is back in its home environment ("" if
	// it is not).
	notice string
	// header is what the layout shows of the environments.
	header envHeader
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

// A session id and a link token are "<home env>.<prefix><random>": the
// environment whose store holds the row, then the random value.
// Environment names cannot hold a dot. The whole value is hashed, so a
// value whose environment part was changed matches no row anywhere.
func envToken(home, prefix string) string {
	return home + "." + secret.GenerateWithPrefix(prefix)
}

// splitToken returns the environment part of a session id or link token
// of this prefix (ok false if malformed).
func splitToken(value, prefix string) (home string, ok bool) {
	home, rnd, found := strings.Cut(value, ".")
	if !found || !validEnvName(home) || len(rnd) != tokenLen || !strings.HasPrefix(rnd, prefix) {
		return "", false
	}
	return home, true
}

// cookieID returns the session id the request's cookie holds and its
// environment part ("" if none or malformed).
func cookieID(r *http.Request, entry *env.Env) (id, home string) {
	ck, err := r.Cookie(cookieName(secure(r, entry)))
	if err != nil {
		return "", ""
	}
	home, ok := splitToken(ck.Value, sessionPrefix)
	if !ok {
		return "", ""
	}
	return ck.Value, home
}

// session returns the request's live session, or nil and the reason it
// has none ("" when it never had one). The session is looked up in the
// environment its id names, and its admin client re-checked there: a
// session whose client is gone, disabled, no longer an admin, or had its
// tokens revoked after the session began is deleted (those changes end
// sessions as they end tokens). An id naming an environment that does not
// exist, or whose row is not in it, is no session.
func (c *Console) session(w http.ResponseWriter, r *http.Request) (*session, string, error) {
	ctx := r.Context()
	entry := env.FromContext(ctx)
	id, homeName := cookieID(r, entry)
	if id == "" {
		if _, err := r.Cookie(cookieName(secure(r, entry))); err == nil {
			c.clearCookie(w, r, entry)
			return nil, whyExpired, nil
		}
		return nil, "", nil
	}
	home, err := c.envNamed(ctx, homeName)
	if errors.Is(err, store.ErrNotFound) {
		// Its environment was deleted (and its sessions with it).
		c.clearCookie(w, r, entry)
		return nil, whyExpired, nil
	}
	if err != nil {
		return nil, "", err
	}
	now := c.now()
	hash := home.Hasher.Hash(id)
	cs, err := home.Store.GetConsoleSession(ctx, hash, now, c.cfg.Idle)
	if errors.Is(err, store.ErrNotFound) {
		c.clearCookie(w, r, entry)
		return nil, whyExpired, nil
	}
	if err != nil {
		return nil, "", err
	}
	cl, err := home.Clients.GetClient(ctx, cs.ClientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, "", err
	}
	if err != nil || !admin.IsAdmin(cl, home.AdminAudience()) || cl.TokensRevokedBefore.After(cs.CreatedAt) {
		if err := home.Store.DeleteConsoleSession(ctx, hash); err != nil {
			return nil, "", err
		}
		c.clearCookie(w, r, entry)
		return nil, whyRevoked, nil
	}
	// Written at most every touchEvery, and often enough that a session
	// in use never reaches its idle limit between two writes.
	if now.Sub(cs.LastSeenAt) >= min(touchEvery, c.cfg.Idle/4) {
		if err := home.Store.TouchConsoleSession(ctx, hash, now); err != nil {
			c.log.WarnContext(ctx, "console: record session activity", "error", err)
		}
	}
	s := &session{id: id, hash: hash, clientID: cs.ClientID, csrf: csrfToken(home, id),
		entry: entry, home: home, viewing: home, deployment: isDeploymentAdmin(cl, home)}
	if v := cs.Viewing; v != "" && v != envName(home) {
		switch ve, err := c.envNamed(ctx, v); {
		case !s.deployment:
			// The client lost the deployment scope: it sees its own
			// environment only.
			s.notice = "Your admin client is no longer a deployment admin: you are back in its own environment, " + envName(home) + "."
		case errors.Is(err, store.ErrNotFound):
			s.notice = "The environment " + v + " you were viewing no longer exists: you are back in " + envName(home) + "."
		case err != nil:
			return nil, "", err
		default:
			s.viewing = ve
		}
		if s.notice != "" {
			if err := home.Store.SetConsoleSessionViewing(ctx, hash, ""); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, "", err
			}
		}
	}
	return s, "", nil
}

// csrfToken is bound to the session: a keyed hash of its id, so that it
// needs no storage and changes with every session.
func csrfToken(e *env.Env, id string) string {
	return strings.TrimPrefix(e.Hasher.Hash("csrf:"+id), "hmac-sha256$")
}

// startSession signs clientID of the environment home in, viewing the
// environment viewing ("": home): a new session id (a session the browser
// held before is ended, so a planted id cannot be carried into the new
// session), stored as a keyed hash in home's store, in a cookie of the
// request's host.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, home *env.Env, clientID, viewing, method string) error {
	ctx := r.Context()
	entry := env.FromContext(ctx)
	if old, oldHome := cookieID(r, entry); old != "" {
		oe, err := c.envNamed(ctx, oldHome)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil {
			if err := oe.Store.DeleteConsoleSession(ctx, oe.Hasher.Hash(old)); err != nil {
				return err
			}
		}
	}
	if viewing == envName(home) {
		viewing = ""
	}
	id := envToken(envName(home), sessionPrefix)
	now := c.now()
	if err := home.Store.CreateConsoleSession(ctx, store.ConsoleSession{
		IDHash: home.Hasher.Hash(id), ClientID: clientID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(c.cfg.MaxAge), Viewing: viewing,
	}); err != nil {
		return err
	}
	c.setCookie(w, r, entry, id, int(c.cfg.MaxAge/time.Second))
	c.log.InfoContext(ctx, "console: signed in", "client_id", clientID, "env", envName(home))
	c.svc.RecordConsole(ctx, "console.sign_in", envName(home), clientID, method, r.RemoteAddr)
	return nil
}

// NewLinkIn makes a one-time sign-in link for clientID, an admin client of
// environment home (the admin API knows which from how the caller
// authenticated): the link is stored in home and signs clientID in there,
// viewing the request's environment.
func (c *Console) NewLinkIn(ctx context.Context, clientID, home string) (string, time.Time, error) {
	e := env.FromContext(ctx)
	he, err := c.envNamed(ctx, home)
	if err != nil {
		return "", time.Time{}, err
	}
	viewing := envName(e)
	if viewing == home {
		viewing = ""
	}
	token := envToken(home, linkPrefix)
	expires := c.now().Add(LinkLifetime)
	if err := he.Store.CreateConsoleLink(ctx, he.Hasher.Hash(token), clientID, viewing, expires); err != nil {
		return "", time.Time{}, err
	}
	return origin(e.Issuer) + Prefix + "link?token=" + token, expires, nil
}

// origin is the scheme and host of an issuer URL: the console is served at
// the root of the host only (an environment addressed by path has its
// console there).
func origin(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return strings.TrimSuffix(issuer, "/")
	}
	return u.Scheme + "://" + u.Host
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if s, _, err := c.session(w, r); err == nil && s != nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	q := r.URL.Query()
	v := &view{Title: "Sign in", Form: url.Values{"next": {q.Get("next")}, "environment": {envName(env.FromContext(r.Context()))}}, Data: humanDuration(LinkLifetime)}
	v.Alert = whyText[q.Get("why")]
	if q.Get("why") == whySignedOut {
		v.Alert, v.Flash = "", whyText[whySignedOut]
	}
	c.render(w, r, http.StatusOK, "signin", v)
}

// Limits on the sign-in form's fields (an id or secret longer than these
// is not one).
const maxCredential = 512

// signIn checks an admin client's id and secret in the environment the
// form names (the request's by default) and signs it in there.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.renderFailure(w, r, nil, formError(err))
		return
	}
	f := r.PostForm
	id, sec, next := strings.TrimSpace(f.Get("client_id")), strings.TrimSpace(f.Get("client_secret")), f.Get("next")
	envField := strings.TrimSpace(f.Get("environment"))
	if envField == "" {
		envField = envName(env.FromContext(r.Context()))
	}
	v := &view{Title: "Sign in", Form: url.Values{"client_id": {id}, "next": {next}, "environment": {envField}}, Errors: map[string]string{}, Data: humanDuration(LinkLifetime)}
	if !validEnvName(envField) {
		v.Errors["environment"] = "An environment's name is lowercase letters, digits and dashes, such as default or staging."
	}
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
	wrong := func() {
		v.Alert = "The environment, client id or secret is wrong, or this client does not sign in with a secret."
		c.render(w, r, http.StatusUnauthorized, "signin", v)
	}
	home, err := c.envNamed(r.Context(), envField)
	if errors.Is(err, store.ErrNotFound) {
		// Said as a wrong credential: the form does not tell which
		// environments exist.
		wrong()
		return
	}
	if err != nil {
		c.renderFailure(w, r, nil, err)
		return
	}
	cl, oe := c.cfg.SignIn.SignIn(r.WithContext(env.NewContext(r.Context(), home)), id, sec)
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
		wrong()
		return
	}
	if !admin.IsAdmin(cl, home.AdminAudience()) {
		v.Alert = "This client is not an admin: only a client granted the admin scope on its environment's admin API can use the console."
		c.render(w, r, http.StatusForbidden, "signin", v)
		return
	}
	if err := c.startSession(w, r, home, cl.ID, "", "secret"); err != nil {
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
	if _, ok := splitToken(token, linkPrefix); !ok {
		c.toSignIn(w, r, whyLink, "")
		return
	}
	c.render(w, r, http.StatusOK, "link", &view{Title: "Sign in", Form: url.Values{"token": {token}}})
}

// useLink spends a link in the environment its token names and signs its
// admin client in there, viewing the environment the link was made for.
func (c *Console) useLink(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.renderFailure(w, r, nil, formError(err))
		return
	}
	token := r.PostForm.Get("token")
	homeName, ok := splitToken(token, linkPrefix)
	if !ok {
		c.toSignIn(w, r, whyLink, "")
		return
	}
	ctx := r.Context()
	home, err := c.envNamed(ctx, homeName)
	if errors.Is(err, store.ErrNotFound) {
		c.toSignIn(w, r, whyLink, "")
		return
	}
	if err != nil {
		c.renderFailure(w, r, nil, err)
		return
	}
	clientID, viewing, err := home.Store.UseConsoleLink(ctx, home.Hasher.Hash(token), c.now())
	if errors.Is(err, store.ErrNotFound) {
		c.toSignIn(w, r, whyLink, "")
		return
	}
	if err != nil {
		c.renderFailure(w, r, nil, err)
		return
	}
	// The client may have lost its rights since the link was made.
	cl, err := home.Clients.GetClient(ctx, clientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.renderFailure(w, r, nil, err)
		return
	}
	if err != nil || !admin.IsAdmin(cl, home.AdminAudience()) {
		c.toSignIn(w, r, whyRevoked, "")
		return
	}
	if !isDeploymentAdmin(cl, home) {
		viewing = ""
	}
	if err := c.startSession(w, r, home, clientID, viewing, "link"); err != nil {
		c.renderFailure(w, r, nil, err)
		return
	}
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := s.home.Store.DeleteConsoleSession(r.Context(), s.hash); err != nil {
		return err
	}
	c.clearCookie(w, r, s.entry)
	c.svc.RecordConsole(r.Context(), "console.sign_out", envName(s.home), s.clientID, "", r.RemoteAddr)
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
