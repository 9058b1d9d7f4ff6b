package verify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/dpop"
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
		{"missing scope", "Bearer " + noScope, 403, `Bearer realm="orders", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:read"`},
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

// RequireScopes answers a token presented with the DPoP scheme with a DPoP
// challenge (RFC 9449 §7.1 with RFC 6750 §3.1's insufficient_scope and
// scope, and algs), naming the realm and algorithms of the Middleware the
// token came through; a bearer token still gets the Bearer challenge.
func TestRequireScopesDPoP(t *testing.T) {
	k := getKeys(t)
	c := getClientKeys(t)
	v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}, &clock{t: testNow}, JWKSOptions{})
	h := Middleware(v, MiddlewareOptions{Realm: "orders", DPoP: DPoPOptions{Algorithms: []string{"ES256", "EdDSA"}}})(
		RequireScopes("orders:read", "orders:audit")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := ClaimsFromContext(r.Context())
			fmt.Fprint(w, c.Subject)
		})))
	jkt := map[string]string{"jkt": jktOf(t, c.dpop)}
	both := boundToken(t, jkt, "scope", "orders:read orders:audit")
	one := boundToken(t, jkt)
	plain := boundToken(t, nil)
	tests := []struct {
		name, scheme, token string
		status              int
		challenge           string
	}{
		{"DPoP, missing scope", "DPoP", one, 403, `DPoP realm="orders", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:read orders:audit", algs="ES256 EdDSA"`},
		{"DPoP scheme in another case, missing scope", "dpop", one, 403, `DPoP realm="orders", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:read orders:audit", algs="ES256 EdDSA"`},
		{"DPoP, every scope", "DPoP", both, 200, ""},
		{"Bearer, missing scope", "Bearer", plain, 403, `Bearer realm="orders", error="insufficient_scope", error_description="the access token lacks a required scope", scope="orders:read orders:audit"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/data", nil)
			r.Host = "api.example"
			r.Header.Set("Authorization", tc.scheme+" "+tc.token)
			if tc.scheme != "Bearer" {
				r.Header.Set("DPoP", proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: tc.token}))
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Header().Values("WWW-Authenticate"); w.Code != tc.status || len(got) > 1 || w.Header().Get("WWW-Authenticate") != tc.challenge {
				t.Fatalf("%d %q, want %d %q", w.Code, got, tc.status, tc.challenge)
			}
			var body map[string]string
			switch {
			case tc.status == 200:
				if w.Body.String() != "m2mc_a" {
					t.Fatalf("body %q", w.Body.String())
				}
			case json.Unmarshal(w.Body.Bytes(), &body) != nil || body["error"] != "insufficient_scope":
				t.Fatalf("body %q", w.Body.String())
			}
		})
	}
}
