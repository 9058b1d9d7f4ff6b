package server

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store"
)

// route is one row of the routes table.
type route struct {
	pattern   string
	handler   http.Handler
	bodyLimit int64 // 0: no body expected (GET); the limit is then 0 bytes
}

// routes is the one table of every route the server answers, wrapped in the
// common middleware.
func (s *Server) routes(tokens *oauth.Handler, adm *admin.Handler) http.Handler {
	table := []route{
		// RFC 6749 §4.4 token endpoint. Registered for every method so that
		// a wrong method gets 405 in the OAuth error envelope.
		{"/oauth/token", http.HandlerFunc(tokens.Token), oauth.MaxBodyBytes},

		// RFC 7517 key set, under the three paths clients look for it.
		{"GET /.well-known/jwks.json", http.HandlerFunc(s.jwks), 0},
		{"GET /keys", http.HandlerFunc(s.jwks), 0},
		{"GET /auth/.well-known/jwks.json", http.HandlerFunc(s.jwks), 0},

		// RFC 8414 metadata, under both well-known names.
		{"GET /.well-known/openid-configuration", http.HandlerFunc(s.discovery), 0},
		{"GET /.well-known/oauth-authorization-server", http.HandlerFunc(s.discovery), 0},

		// The admin API's description (its routes are added below).
		{"GET /admin/v1/openapi.json", http.HandlerFunc(admin.ServeOpenAPI), 0},

		{"GET /healthz", http.HandlerFunc(s.healthz), 0},
		{"GET /readyz", http.HandlerFunc(s.readyz), 0},
		{"/", http.HandlerFunc(notFound), 0},
	}
	for _, r := range adm.Routes() {
		table = append(table, route{r.Pattern, adm.Serve(r.Handle), admin.MaxBodyBytes})
	}
	mux := http.NewServeMux()
	allowed := map[string][]string{} // path → methods, for 405 answers
	var paths []string
	for _, r := range table {
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
		mux.Handle(path, methodNotAllowed(allowed[path]))
	}
	return s.middleware(mux)
}

func methodNotAllowed(methods []string) http.Handler {
	if slices.Contains(methods, http.MethodGet) {
		methods = append(methods, http.MethodHead)
	}
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed", "error_description": "allowed: " + allow})
	})
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
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "no such endpoint"})
}

func writeJSON(w http.ResponseWriter, status int, v any) { oauth.WriteJSON(w, status, v) }

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	body, etag := s.keys.JWKS()
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
// advertised, and response_types_supported is empty.
type metadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	AccessTokenSigningAlgs            []string `json:"access_token_signing_alg_values_supported"`
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	apis, err := s.store.ListAPIs(r.Context(), store.ListOptions{})
	if err != nil {
		s.log.ErrorContext(r.Context(), "discovery: list APIs", "error", err)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	scopes := []string{}
	for _, a := range apis {
		for _, sc := range a.Scopes {
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
	}
	slices.Sort(scopes)
	iss := s.cfg.Issuer
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, metadata{
		Issuer:                            iss,
		TokenEndpoint:                     iss + "/oauth/token",
		JWKSURI:                           iss + "/.well-known/jwks.json",
		ScopesSupported:                   scopes,
		ResponseTypesSupported:            []string{},
		GrantTypesSupported:               []string{oauth.GrantClientCredentials},
		TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post"},
		AccessTokenSigningAlgs:            s.keys.Algorithms(),
	})
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
