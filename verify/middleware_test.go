package verify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestMiddleware(t *testing.T) {
	k := getKeys(t)
	f := &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}
	v := newTestVerifier(t, f, &clock{t: testNow}, JWKSOptions{})
	var logged []error
	h := Middleware(v, MiddlewareOptions{Realm: "orders", OnError: func(_ *http.Request, err error) { logged = append(logged, err) }})(
		RequireScopes("orders:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := ClaimsFromContext(r.Context())
			fmt.Fprint(w, c.Subject)
		})))
	good := sign(t, hdr("RS256", "rsa"), mustJSON(goodClaims()), "RS256", k.rsa)
	noScope := sign(t, hdr("RS256", "rsa"), claimsWith("scope", "orders:write"), "RS256", k.rsa)
	expired := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(-time.Hour).Unix()), "RS256", k.rsa)
	tests := []struct {
		name, authz string
		status      int
		challenge   string
	}{
		{"no credentials", "", 401, `Bearer realm="orders"`},
		{"basic credentials", "Basic YTpi", 401, `Bearer realm="orders"`},
		{"empty bearer", "Bearer ", 401, `Bearer realm="orders"`},
		{"garbage", "Bearer abc", 401, `Bearer realm="orders", error="invalid_token", error_description="the access token is invalid"`},
		{"expired", "Bearer " + expired, 401, `Bearer realm="orders", error="invalid_token", error_description="the access token expired"`},
		{"missing scope", "Bearer " + noScope, 403, `Bearer realm="api", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:read"`},
		{"valid", "Bearer " + good, 200, ""},
		{"scheme in another case", "bEaReR " + good, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/data", nil)
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status || w.Header().Get("WWW-Authenticate") != tc.challenge {
				t.Fatalf("%d %q, want %d %q", w.Code, w.Header().Get("WWW-Authenticate"), tc.status, tc.challenge)
			}
			if tc.status == 200 && w.Body.String() != "m2mc_a" {
				t.Fatalf("claims not in the context: %q", w.Body.String())
			}
			if tc.status != 200 {
				var body map[string]string
				if json.Unmarshal(w.Body.Bytes(), &body) != nil || body["error"] == "" {
					t.Fatalf("body %q", w.Body.String())
				}
			}
		})
	}
	if len(logged) != 2 {
		t.Errorf("OnError called %d times, want 2 (garbage, expired)", len(logged))
	}
}
