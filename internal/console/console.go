// Package console is the admin console: server-rendered pages (html/template
// and embed.FS, one stylesheet, a little vanilla JavaScript for
// enhancements only) through which an administrator manages APIs,
// applications, signing keys and revocations in a browser. It acts through
// the same service layer as the admin API, as the admin client its session
// belongs to.
//
// Every action works without JavaScript: plain forms, POST-redirect-GET,
// state changed only by POST. Sessions are server-side (the store), so
// every replica accepts them; each request re-checks the admin client, so
// disabling it or revoking its tokens ends its sessions.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the console is served.
const Prefix = "/console/"

// MaxBodyBytes caps a console form (an application's inline JWK Set is
// the largest field).
const MaxBodyBytes = 256 << 10

// keyManager runs the signing key lifecycle (the admin API's, shared).
type keyManager interface {
	List(ctx context.Context, maxTokenLifetime time.Duration) ([]keys.KeyInfo, error)
	Rotate(ctx context.Context, alg string) (store.SigningKey, error)
	Revoke(ctx context.Context, kid string) (string, error)
}

// revoker revokes any live token of this server.
type revoker interface {
	RevokeAny(ctx context.Context, token string) (bool, error)
}

// signer proves a client by id and secret, through the token endpoint's
// failure limiter.
type signer interface {
	SignIn(r *http.Request, clientID, secret string) (store.Client, *oauth.Error)
}

// Config holds the console's dependencies. The store, the client cache,
// the hasher, the issuer and the verifier come from the environment a
// page acts in (env.FromContext, set by the page wrapper to the one the
// session views); the request's own (its host's) is the entry environment.
type Config struct {
	Service *admin.Service
	// Envs finds environments by name: a session's home environment (its
	// admin client's, where the session is stored) and the one it views.
	// Nil: only the request's own environment exists.
	Envs env.Resolver
	// Environments manages the deployment's environments, for deployment
	// admins (nil: the default environment's store).
	Environments environments
	Keys         keyManager
	// MaxTokenLifetime tells how long tokens a key signed may live.
	MaxTokenLifetime time.Duration
	Revoker          revoker
	SignIn           signer
	// Flush writes pending usage (secret last use, token counts) before a
	// page shows it (may be nil).
	Flush func(context.Context) error
	// Idle and MaxAge bound a session: it ends after Idle without a
	// request and MaxAge after sign-in.
	Idle, MaxAge time.Duration
	Log          *slog.Logger
	Now          func() time.Time
}

// Console serves the console's pages.
type Console struct {
	cfg   Config
	svc   *admin.Service
	log   *slog.Logger
	now   func() time.Time
	pages map[string]*template.Template
}

// New returns a Console, its templates parsed.
func New(cfg Config) (*Console, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Its records say they came through the console (the caller, the
	// admin client, is added to every record of a request by the server).
	c := &Console{cfg: cfg, svc: cfg.Service, log: cfg.Log.With("via", "console"), now: cfg.Now, pages: map[string]*template.Template{}}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs(c.now)).ParseFS(templateFS, "templates/layout.html", name)
		if err != nil {
			return nil, err
		}
		c.pages[base] = t
	}
	return c, nil
}

// Route is one console route.
type Route struct {
	Pattern string
	Handler http.Handler
}

// Routes returns the console's routes, for the server's routes table. Pages
// behind sign-in are wrapped by page (session, CSRF on POST); the rest by
// public.
func (c *Console) Routes() []Route {
	static, _ := fs.Sub(staticFS, "static")
	return []Route{
		{"GET /{$}", http.RedirectHandler(Prefix, http.StatusFound)},
		{"GET /console", http.RedirectHandler(Prefix, http.StatusFound)},
		{"GET /console/static/", c.public(http.StripPrefix("/console/static/", staticFiles(static)).ServeHTTP)},

		{"GET /console/sign-in", c.public(c.signInPage)},
		{"POST /console/sign-in", c.public(c.signIn)},
		{"GET /console/link", c.public(c.linkPage)},
		{"POST /console/link", c.public(c.useLink)},
		{"POST /console/sign-out", c.pageAnyEnv(c.signOut)},
		{"POST /console/environment", c.pageAnyEnv(c.switchEnv)},
		{"GET /console/environments", c.page(c.envList)},
		{"POST /console/environments", c.page(c.envCreate)},
		{"GET /console/environment/{name}/delete", c.page(c.envDeleteConfirm)},
		{"POST /console/environment/{name}/delete", c.page(c.envDelete)},

		{"GET /console/{$}", c.page(c.overview)},

		{"GET /console/apis", c.page(c.apiList)},
		{"GET /console/apis/new", c.page(c.apiNew)},
		{"POST /console/apis", c.page(c.apiCreate)},
		{"GET /console/api/{identifier}", c.page(c.apiShow)},
		{"POST /console/api/{identifier}", c.page(c.apiUpdate)},
		{"GET /console/api/{identifier}/delete", c.page(c.apiDeleteConfirm)},
		{"POST /console/api/{identifier}/delete", c.page(c.apiDelete)},

		{"GET /console/apps", c.page(c.appList)},
		{"GET /console/apps/new", c.page(c.appNew)},
		{"POST /console/apps", c.page(c.appCreate)},
		{"GET /console/app/{id}", c.page(c.appShow)},
		{"GET /console/app/{id}/edit", c.page(c.appEdit)},
		{"POST /console/app/{id}/edit", c.page(c.appUpdate)},
		{"POST /console/app/{id}/secrets", c.page(c.appRotateSecret)},
		{"POST /console/app/{id}/secrets/{secret}/revoke", c.page(c.appRevokeSecret)},
		{"POST /console/app/{id}/disable", c.page(c.appDisable)},
		{"POST /console/app/{id}/enable", c.page(c.appEnable)},
		{"POST /console/app/{id}/revoke-tokens", c.page(c.appRevokeTokens)},
		{"GET /console/app/{id}/delete", c.page(c.appDeleteConfirm)},
		{"POST /console/app/{id}/delete", c.page(c.appDelete)},

		{"GET /console/keys", c.page(c.keyList)},
		{"POST /console/keys/rotate", c.page(c.keyRotate)},
		{"GET /console/keys/{kid}/revoke", c.page(c.keyRevokeConfirm)},
		{"POST /console/keys/{kid}/revoke", c.page(c.keyRevoke)},

		{"GET /console/revocations", c.page(c.revocationList)},
		{"POST /console/revocations", c.page(c.revocationAdd)},
		{"GET /console/audit", c.page(c.auditList)},

		{"GET /console/tester", c.page(c.testerPage)},
		{"POST /console/tester", c.page(c.testerCheck)},
	}
}

// staticFiles serves the embedded assets. They change only with the
// binary, so browsers revalidate them (no-cache) and get 304s.
func staticFiles(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st, err := fs.Stat(fsys, r.URL.Path); r.URL.Path == "" || err != nil || st.IsDir() {
			WriteError(w, http.StatusNotFound, "There is no such file.")
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// securityHeaders are set on every console answer: no inline script, no
// framing, no referrer (a one-time link's query must not leak), no caching
// of pages that may show a secret.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
}

// crossOrigin refuses state-changing requests that a browser marks as
// coming from another origin (Sec-Fetch-Site, Origin): a cross-site form
// post never reaches a handler, signed in or not.
var crossOrigin = http.NewCrossOriginProtection()

// public wraps a handler that needs no session.
func (c *Console) public(fn func(w http.ResponseWriter, r *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		if err := crossOrigin.Check(r); err != nil {
			c.renderError(w, r, http.StatusForbidden, "This form was sent from another site, so it was refused. Open the console directly and try again.")
			return
		}
		fn(w, r)
	})
}

// pageFunc is a handler behind sign-in; an error it returns is rendered
// by renderFailure, the one place page errors are written.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session) error

// page wraps a handler behind sign-in: the session must be live and its
// admin client still an admin, and a POST must carry the session's CSRF
// token and the environment the session views (a form of a page shown
// before another tab switched environments is refused). The handler runs
// as the session's client (admin.WithCaller) in the environment it views
// (env.NewContext).
func (c *Console) page(fn pageFunc) http.Handler { return c.wrap(fn, true) }

// pageAnyEnv is page for a form that acts the same whichever environment
// its page showed (sign-out, the environment switcher).
func (c *Console) pageAnyEnv(fn pageFunc) http.Handler { return c.wrap(fn, false) }

func (c *Console) wrap(fn pageFunc, checkEnv bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		if err := crossOrigin.Check(r); err != nil {
			c.renderError(w, r, http.StatusForbidden, "This form was sent from another site, so it was refused. Open the console directly and try again.")
			return
		}
		// The form is read first (capped by the routes table): an
		// oversized one is refused as such, signed in or not.
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				c.renderFailure(w, r, nil, formError(err))
				return
			}
		}
		s, reason, err := c.session(w, r)
		if err != nil {
			c.renderFailure(w, r, nil, err)
			return
		}
		if s == nil {
			if r.Method == http.MethodGet {
				c.toSignIn(w, r, reason, r.URL.RequestURI())
			} else {
				c.toSignIn(w, r, reason, "")
			}
			return
		}
		if err := c.envHeader(r.Context(), s); err != nil {
			c.renderFailure(w, r, nil, err)
			return
		}
		if r.Method == http.MethodPost {
			if !s.checkCSRF(r.PostForm.Get("csrf")) {
				c.renderError(w, r, http.StatusForbidden, "This form has expired or did not come from this console. Reload the page and try again.")
				return
			}
			if sent, now := r.PostForm.Get("env"), envName(s.viewing); checkEnv && sent != now {
				c.staleEnv(w, r, s, sent, now)
				return
			}
		}
		withCaller := admin.WithCaller
		if s.deployment {
			// The log tells a deployment admin from a client with the
			// same id in the environment viewed.
			withCaller = admin.WithDeploymentCaller
		}
		ctx := env.NewContext(withCaller(r.Context(), s.clientID), s.viewing)
		ctx = audit.WithActor(ctx, admin.ConsoleActor(ctx, s.clientID, s.deployment), r.RemoteAddr)
		r = r.WithContext(ctx)
		if err := fn(w, r, s); err != nil {
			c.renderFailure(w, r, s, err)
		}
	})
}

// staleEnv refuses a form that was shown in another environment than the
// one the session views now: nothing is changed.
func (c *Console) staleEnv(w http.ResponseWriter, r *http.Request, s *session, sent, now string) {
	msg := "This form was filled in on a page of the environment " + strconv.Quote(sent) + ", but this session now views the environment " +
		strconv.Quote(now) + " (it was switched, perhaps in another tab or window). Nothing was changed. Switch back to " + strconv.Quote(sent) +
		" with the environment menu at the top and submit the form again, or carry on in " + strconv.Quote(now) + "."
	if sent == "" {
		msg = "This form did not say which environment it was for, so it was refused and nothing was changed. Reload the page and try again."
	}
	_ = c.show(w, r, s, http.StatusConflict, "error", &view{Title: "Environment changed", Data: msg})
}

// toSignIn redirects to the sign-in page, telling why (a fixed code, never
// caller text) and where to return afterwards.
func (c *Console) toSignIn(w http.ResponseWriter, r *http.Request, reason, next string) {
	q := url.Values{}
	if reason != "" {
		q.Set("why", reason)
	}
	if safeNext(next) {
		q.Set("next", next)
	}
	target := Prefix + "sign-in"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// safeNext accepts a return path only inside the console: no scheme, no
// host, no backslash or line break, no escaped path (%2e%2e), and already
// clean ("/console/../x" would be cleaned by the redirect into "/x").
func safeNext(next string) bool {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.RawPath != "" ||
		strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return false
	}
	p := u.Path
	if clean := path.Clean(p); clean != p && clean+"/" != p {
		return false
	}
	return strings.HasPrefix(p, Prefix) && !strings.HasPrefix(p, Prefix+"sign-") && !strings.HasPrefix(p, Prefix+"link")
}

// formError turns a form that could not be read into a page error.
func formError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &pageError{status: http.StatusRequestEntityTooLarge, msg: "The form is too large."}
	}
	return &pageError{status: http.StatusBadRequest, msg: "The form could not be read."}
}

// pageError is a failure with a status and a message for a person.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

// renderFailure renders the error a page handler returned: the one place
// page errors are written. Validation errors are the handlers' to show
// next to their fields; one reaching here is shown as a list.
func (c *Console) renderFailure(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var pe *pageError
	var ve *admin.ValidationError
	var ce *admin.ConflictError
	switch {
	case errors.As(err, &pe):
		c.renderError(w, r, pe.status, pe.msg)
	case errors.Is(err, store.ErrNotFound):
		c.renderError(w, r, http.StatusNotFound, "There is no such item. It may have been deleted.")
	case errors.As(err, &ve):
		c.renderError(w, r, http.StatusBadRequest, ve.Error())
	case errors.As(err, &ce):
		c.renderError(w, r, http.StatusConflict, ce.Detail)
	case errors.Is(err, admin.ErrPreconditionFailed), errors.Is(err, store.ErrConflict):
		c.renderError(w, r, http.StatusConflict, "Someone else changed this item while you were editing it. Reload the page and try again.")
	case errors.Is(err, context.DeadlineExceeded):
		c.log.ErrorContext(r.Context(), "console request timed out", "error", err)
		c.renderError(w, r, http.StatusServiceUnavailable, "The server took too long to answer, probably because the database is slow or unreachable. Try again shortly.")
	default:
		c.log.ErrorContext(r.Context(), "console request failed", "error", err)
		c.renderError(w, r, http.StatusInternalServerError, serverErrorText)
	}
}

// serverErrorText is what a person sees of an unexpected failure.
const serverErrorText = "Something went wrong on the server. The details are in the server log."

// renderError shows a message on the error page.
func (c *Console) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", &view{Title: http.StatusText(status), Data: msg})
}

// WriteError answers a console path the router refused (404, 405) with a
// plain page in the console's style, under the console's headers.
func WriteError(w http.ResponseWriter, status int, msg string) {
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = plainError.Execute(w, struct {
		Status int
		Title  string
		Msg    string
	}{status, http.StatusText(status), msg})
}

var plainError = template.Must(template.New("e").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8">` +
	`<meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Title}} · m2mauth console</title>` +
	`<link rel="stylesheet" href="/console/static/console.css"></head><body class="public"><main><section class="card narrow">` +
	`<h1>{{.Status}} {{.Title}}</h1><p>{{.Msg}}</p><p><a class="button" href="/console/">Back to the console</a></p></section></main></body></html>`))
