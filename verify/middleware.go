package verify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

type claimsKey struct{}

// ClaimsFromContext returns the claims Middleware put in the request context.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// MiddlewareOptions configures Middleware.
type MiddlewareOptions struct {
	// Realm is named in WWW-Authenticate (default "api").
	Realm string
	// OnError, if set, is told why a request was refused (for logging);
	// the token itself is never passed.
	OnError func(r *http.Request, err error)
}

// Middleware returns net/http middleware that requires a valid bearer token
// (RFC 6750 §2.1) and puts its claims in the request context. Failures are
// answered 401 with WWW-Authenticate: Bearer realm="…", plus
// error="invalid_token" when a token was sent (RFC 6750 §3.1).
func Middleware(v *Verifier, opts MiddlewareOptions) func(http.Handler) http.Handler {
	realm := opts.Realm
	if realm == "" {
		realm = "api"
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, present := bearer(r)
			if !present {
				challenge(w, realm, http.StatusUnauthorized, "", "", "")
				return
			}
			claims, err := v.Verify(r.Context(), token)
			if err != nil {
				if opts.OnError != nil {
					opts.OnError(r, err)
				}
				if !errors.Is(err, ErrInvalidToken) {
					// The token could not be judged (online mode, issuer
					// unreachable): not the caller's fault.
					w.Header().Set("Retry-After", "1")
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusServiceUnavailable)
					_, _ = w.Write([]byte(`{"error":"temporarily_unavailable"}` + "\n"))
					return
				}
				desc := "the access token is invalid"
				switch {
				case errors.Is(err, ErrExpired):
					desc = "the access token expired"
				case errors.Is(err, ErrNotYetValid):
					desc = "the access token is not valid yet"
				case errors.Is(err, ErrRevoked):
					desc = "the access token was revoked"
				}
				challenge(w, realm, http.StatusUnauthorized, "invalid_token", desc, "")
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, claims)))
		})
	}
}

// RequireScopes returns middleware, to be placed inside Middleware, that
// answers 403 with error="insufficient_scope" (RFC 6750 §3.1) unless the
// token has every one of scopes.
func RequireScopes(scopes ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, ok := ClaimsFromContext(r.Context())
			if !ok {
				challenge(w, "api", http.StatusUnauthorized, "invalid_token", "no verified token", "")
				return
			}
			for _, s := range scopes {
				if !c.HasScope(s) {
					challenge(w, "api", http.StatusForbidden, "insufficient_scope", "the access token lacks a required scope", strings.Join(scopes, " "))
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bearer extracts the token of an "Authorization: Bearer" header; the
// scheme is case-insensitive (RFC 7235 §2.1).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func challenge(w http.ResponseWriter, realm string, status int, code, desc, scope string) {
	v := `Bearer realm="` + realm + `"`
	if code != "" {
		v += `, error="` + code + `"`
	}
	if desc != "" {
		v += `, error_description="` + desc + `"`
	}
	if scope != "" {
		v += `, scope="` + scope + `"`
	}
	w.Header().Set("WWW-Authenticate", v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]string{"error": code}
	if code == "" {
		body["error"] = "unauthorized"
	}
	if desc != "" {
		body["error_description"] = desc
	}
	_ = json.NewEncoder(w).Encode(body)
}
