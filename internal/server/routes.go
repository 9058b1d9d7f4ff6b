package server

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/console"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/peer"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/surface"
)

// route is one row of the routes table.
type route struct {
	pattern   string
	handler   http.Handler
	bodyLimit int64 // 0: no body expected (GET); the limit is then 0 bytes
	enabled   bool
}

// surfaces are the token endpoints' handlers.
type surfaces struct {
	standard, adminLogin, introspect, revoke, machine, atm *oauth.Endpoint
}

// routes is the one table of every route the server answers, wrapped in the
// common middleware. A surface switched off has no routes (404).
func (s *Server) routes(sf surfaces, adm *admin.Handler) http.Handler {
	on := s.cfg.SurfaceOn
	table := []route{
		// RFC 6749 §4.4 token endpoint, and the compatibility surfaces.
		// Registered for every method so that a wrong method gets 405 in
		// the surface's own envelope.
		{"/oauth/token", sf.standard, oauth.MaxBodyBytes, on(surface.Standard)},
		{"/v1/oauth/token/machine", sf.machine, oauth.MaxBodyBytes, on(surface.Machine)},
		{"/auth/token", sf.atm, oauth.MaxBodyBytes, on(surface.ATM)},
		// RFC 7662 introspection and RFC 7009 revocation.
		{"/oauth/introspect", sf.introspect, oauth.MaxBodyBytes, on(surface.Standard)},
		{"/oauth/revoke", sf.revoke, oauth.MaxBodyBytes, on(surface.Standard)},
		// The admin login: the standard endpoint for the admin API only,
		// served whichever surfaces are on.
		{"/admin/v1/token", sf.adminLogin, oauth.MaxBodyBytes, true},

		// RFC 7517 key set, under the paths clients look for it.
		{"GET /.well-known/jwks.json", http.HandlerFunc(s.jwks), 0, true},
		{"GET /keys", http.HandlerFunc(s.jwks), 0, true},
		{"GET /auth/.well-known/jwks.json", http.HandlerFunc(s.jwks), 0, on(surface.ATM)},

		// RFC 8414 metadata, under both well-known names.
		{"GET /.well-known/openid-configuration", http.HandlerFunc(s.discovery), 0, true},
		{"GET /.well-known/oauth-authorization-server", http.HandlerFunc(s.discovery), 0, true},

		// The admin API's description (its routes are added below).
		{"GET /admin/v1/openapi.json", http.HandlerFunc(admin.ServeOpenAPI), 0, true},

		{"GET /healthz", http.HandlerFunc(s.healthz), 0, true},
		{"GET /readyz", http.HandlerFunc(s.readyz), 0, true},
		{"/", http.HandlerFunc(notFound), 0, true},
	}
	for _, r := range adm.Routes() {
		table = append(table, route{r.Pattern, adm.Serve(r.Handle), admin.MaxBodyBytes, true})
	}
	// The console's pages, when it is on (--console=false: 404).
	if s.console != nil {
		for _, r := range s.console.Routes() {
			limit := int64(0)
			if strings.HasPrefix(r.Pattern, "POST ") {
				limit = console.MaxBodyBytes
			}
			table = append(table, route{r.Pattern, r.Handler, limit, true})
		}
	}
	mux := http.NewServeMux()
	allowed := map[string][]string{} // path → methods, for 405 answers
	var paths []string
	for _, r := range table {
		if !r.enabled {
			continue
		}
		s.table = append(s.table, r)
		if _, ok := r.handler.(*oauth.Endpoint); ok {
			if s.tokenRoutes == nil {
				s.tokenRoutes = map[string]bool{}
			}
			s.tokenRoutes[r.pattern] = true
		}
		mux.Handle(r.pattern, limitBody(r.bodyLimit, r.handler))
		if method, path, ok := strings.Cut(r.pattern, " "); ok {
			if allowed[path] == nil {
				paths = append(paths, path)
			}
			allowed[path] = append(allowed[path], method)
		}
	}
	// A method-less pattern per path answers other methods with a JSON 405
	// (without it the "/" fallback would answer 404).
	for _, path := range paths {
		if strings.HasPrefix(path, console.Prefix) {
			// The console's paths overlap ("/console/apis/new" and
			// "/console/apis"): another method there is simply not found.
			continue
		}
		mux.Handle(path, methodNotAllowed(allowed[path]))
	}
	// Who the caller is comes first: behind a trusted proxy, the client's
	// address replaces the proxy's before the logs, the traces, the
	// failure limiter and the audit trail see it, and a certificate header
	// from anyone else is dropped.
	pc := &peer.Config{TrustedProxies: s.cfg.TrustedProxyPrefixes, CertHeader: s.cfg.ClientCertHeader}
	return pc.Middleware(s.middleware(mux))
}

func methodNotAllowed(methods []string) http.Handler {
	if slices.Contains(methods, http.MethodGet) {
		methods = append(methods, http.MethodHead)
	}
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		if isAdminPath(r) {
			admin.WriteProblem(w, http.StatusMethodNotAllowed, "allowed: "+allow)
			return
		}
		if isConsolePath(r) {
			console.WriteError(w, http.StatusMethodNotAllowed, "This page does not accept that method.")
			return
		}
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed", "error_description": "allowed: " + allow})
	})
}

// isAdminPath reports whether r is for the admin API, whose errors are
// RFC 9457 problems.
func isAdminPath(r *http.Request) bool {
	p := path.Clean(r.URL.Path)
	return p == "/admin" || strings.HasPrefix(p, "/admin/")
}

// isConsolePath reports whether r is for the console, whose errors are
// pages.
func isConsolePath(r *http.Request) bool {
	p := path.Clean(r.URL.Path)
	return p == "/console" || strings.HasPrefix(p, "/console/")
}

// limitBody caps the request body; reads beyond it fail with
// *http.MaxBytesError, which each surface renders in its own envelope.
func limitBody(n int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, n)
		h.ServeHTTP(w, r)
	})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	failure{http.StatusNotFound, "not_found", "no such endpoint", "There is no such page."}.write(w, r)
}

// unavailable answers 503: the database did not answer in time.
func unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "1")
	failure{http.StatusServiceUnavailable, "temporarily_unavailable", "the database is unavailable; retry", "The database is unavailable. Try again in a moment."}.write(w, r)
}

// failure is an answer the server gives before any surface's handler runs,
// written in the envelope of the surface r's path names: a problem for the
// admin API, a page for the console, an OAuth error otherwise.
type failure struct {
	status            int
	code, description string
	page              string // the console's text
}

func (f failure) write(w http.ResponseWriter, r *http.Request) {
	switch {
	case isAdminPath(r):
		admin.WriteProblem(w, f.status, f.description)
	case isConsolePath(r):
		console.WriteError(w, f.status, f.page)
	default:
		writeJSON(w, f.status, map[string]string{"error": f.code, "error_description": f.description})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) { oauth.WriteJSON(w, status, v) }

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	body, etag := env.FromContext(r.Context()).Keys.JWKS()
	h := w.Header()
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(s.cfg.JWKSMaxAge.Seconds())))
	h.Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// metadata is the RFC 8414 §2 authorization server metadata. Every member
// is true of this server: there is no authorization endpoint, so none is
// advertised, and the RFC 8414 document's response_types_supported is
// empty.
type metadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	AccessTokenSigningAlgs            []string `json:"access_token_signing_alg_values_supported"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	IntrospectionAuthMethods          []string `json:"introspection_endpoint_auth_methods_supported"`
	IntrospectionAuthSigningAlgs      []string `json:"introspection_endpoint_auth_signing_alg_values_supported,omitempty"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	RevocationAuthMethods             []string `json:"revocation_endpoint_auth_methods_supported"`
	RevocationAuthSigningAlgs         []string `json:"revocation_endpoint_auth_signing_alg_values_supported,omitempty"`
	// RFC 9449 §5.1: the token endpoint takes DPoP proofs of these.
	DPoPSigningAlgs []string `json:"dpop_signing_alg_values_supported"`

	// RFC 8705 §5 and §3.3, only when client certificates can reach the
	// server (config.MTLS): where a client authenticating with one sends
	// its requests, and that tokens can be bound to it.
	MTLSEndpointAliases      *mtlsAliases `json:"mtls_endpoint_aliases,omitempty"`
	TLSCertBoundAccessTokens bool         `json:"tls_client_certificate_bound_access_tokens,omitempty"`

	// OpenID Connect Discovery 1.0 §3 requires these of
	// /.well-known/openid-configuration, and libraries that read that
	// document rely on them (go-oidc takes the algorithms its verifier
	// accepts from id_token_signing_alg_values_supported). The server
	// issues no ID tokens: the algorithms are those its tokens are signed
	// with, plus RS256, which the specification requires listed.
	IDTokenSigningAlgs    []string `json:"id_token_signing_alg_values_supported,omitempty"`
	SubjectTypesSupported []string `json:"subject_types_supported,omitempty"`
}

// mtlsAliases are the endpoints of RFC 8705 §5 that take a client
// certificate.
type mtlsAliases struct {
	TokenEndpoint         string `json:"token_endpoint"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
}

// responseTypeNone is the one response type value (OAuth 2.0 Multiple
// Response Types §4) that names no flow: OpenID Connect Discovery requires
// a non-empty response_types_supported, and the server has no
// authorization endpoint to run a flow at.
const responseTypeNone = "none"

// discoveryTTL is how long the scope list behind the discovery documents
// is kept: they are served to anyone, so a flood of requests must not
// reach the database.
const discoveryTTL = 10 * time.Second

// discoveryScopes returns scopes_supported: the identity scopes the token
// endpoint accepts and the scopes of the APIs marked discoverable, never
// the others (a scope name can say more than an operator wants said).
func (s *Server) discoveryScopes(ctx context.Context) ([]string, error) {
	now := s.now()
	en := env.FromContext(ctx)
	l := s.envs.peek(en.Name)
	if l == nil || l.env != en {
		// Unloaded meanwhile: nothing to keep the list in.
		l = &loadedEnv{env: en}
	}
	l.discoveryMu.Lock()
	defer l.discoveryMu.Unlock()
	if l.discoveryScopes != nil && now.Before(l.discoveryUntil) {
		return l.discoveryScopes, nil
	}
	apis, err := en.Store.ListAPIs(ctx, store.ListOptions{})
	if err != nil {
		return nil, err
	}
	scopes := slices.Clone(s.cfg.IdentityScopes)
	for _, a := range apis {
		if a.Discoverable {
			scopes = append(scopes, a.Scopes...)
		}
	}
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	if scopes == nil {
		scopes = []string{}
	}
	l.discoveryScopes, l.discoveryUntil = scopes, now.Add(discoveryTTL)
	return scopes, nil
}

// dpopAlgs are the DPoP proof algorithms, for discovery.
var dpopAlgs = oauth.DPoPAlgs()

func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	scopes, err := s.discoveryScopes(r.Context())
	if err != nil {
		s.log.ErrorContext(r.Context(), "discovery: list APIs", "error", err)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	en := env.FromContext(r.Context())
	iss := en.Issuer
	m := metadata{
		Issuer:                            iss,
		TokenEndpoint:                     iss + "/oauth/token",
		JWKSURI:                           iss + "/.well-known/jwks.json",
		ScopesSupported:                   scopes,
		ResponseTypesSupported:            []string{},
		GrantTypesSupported:               []string{oauth.GrantClientCredentials, oauth.GrantRefreshToken},
		TokenEndpointAuthMethodsSupported: s.authMethods,
		TokenEndpointAuthSigningAlgs:      s.authAlgs,
		IntrospectionAuthSigningAlgs:      s.authAlgs,
		RevocationAuthSigningAlgs:         s.authAlgs,
		AccessTokenSigningAlgs:            en.Keys.Algorithms(),
		IntrospectionEndpoint:             iss + "/oauth/introspect",
		IntrospectionAuthMethods:          s.authMethods,
		RevocationEndpoint:                iss + "/oauth/revoke",
		RevocationAuthMethods:             s.authMethods,
		DPoPSigningAlgs:                   dpopAlgs,
	}
	if base := s.cfg.EnvMTLSEndpointBase(en.Name); base != "" {
		// The environment's aliases follow its issuer's addressing.
		m.MTLSEndpointAliases = &mtlsAliases{
			TokenEndpoint:         base + "/oauth/token",
			IntrospectionEndpoint: base + "/oauth/introspect",
			RevocationEndpoint:    base + "/oauth/revoke",
		}
		m.TLSCertBoundAccessTokens = true
	}
	if strings.HasSuffix(r.URL.Path, "/openid-configuration") {
		m.ResponseTypesSupported = []string{responseTypeNone}
		m.SubjectTypesSupported = []string{"public"}
		m.IDTokenSigningAlgs = m.AccessTokenSigningAlgs
		if !slices.Contains(m.IDTokenSigningAlgs, "RS256") {
			m.IDTokenSigningAlgs = append(slices.Clone(m.IDTokenSigningAlgs), "RS256")
		}
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Ping(r.Context()); err != nil {
		s.log.WarnContext(r.Context(), "readiness: database unreachable", "error", fmt.Sprint(err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "database unreachable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
