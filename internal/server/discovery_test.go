package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestDiscovery(t *testing.T) {
	cfg := testConfig(t)
	cfg.Issuer = "https://auth.example.com/tenant-a"
	clk := newFakeClock()
	ts := startServerClock(t, cfg, clk.Now)
	ts.createAPI("https://private.example", 0, "private:read")
	// The issuer is a public URL, not the listener's: every advertised URL
	// must be built from it.
	docs := map[string]map[string]any{}
	fetch := func() {
		for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
			req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
			resp, body := ts.do(req)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			docs[path] = m
		}
	}
	fetch()
	both := map[string]any{
		"issuer":                                "https://auth.example.com/tenant-a",
		"token_endpoint":                        "https://auth.example.com/tenant-a/oauth/token",
		"jwks_uri":                              "https://auth.example.com/tenant-a/.well-known/jwks.json",
		"grant_types_supported":                 []any{"client_credentials", "refresh_token"},
		"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []any{"RS256", "PS256", "ES256", "EdDSA", "Ed25519"},
		"access_token_signing_alg_values_supported":        []any{"RS256"},
		// Only the identity scopes: no API is discoverable yet, and the
		// built-in admin API never is.
		"scopes_supported": []any{"email", "openid", "profile"},
	}
	oidc := map[string]any{
		"response_types_supported":              []any{"none"},
		"subject_types_supported":               []any{"public"},
		"id_token_signing_alg_values_supported": []any{"RS256"},
	}
	oauth := map[string]any{"response_types_supported": []any{}, "subject_types_supported": nil, "id_token_signing_alg_values_supported": nil}
	check := func(path string, want map[string]any) {
		for k, v := range want {
			got, _ := json.Marshal(docs[path][k])
			exp, _ := json.Marshal(v)
			if string(got) != string(exp) {
				t.Errorf("%s: %s = %s, want %s", path, k, got, exp)
			}
		}
		if _, ok := docs[path]["authorization_endpoint"]; ok {
			t.Errorf("%s advertises an authorization endpoint the server does not have", path)
		}
	}
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		check(path, both)
	}
	check("/.well-known/openid-configuration", oidc)
	check("/.well-known/oauth-authorization-server", oauth)

	// An API marked discoverable has its scopes listed (within the
	// documents' short server-side cache).
	ts.adminDo(http.MethodPost, "/admin/v1/apis", map[string]any{"identifier": "https://public.example", "name": "public",
		"scopes": []string{"public:read", "openid"}, "discoverable": true})
	clk.Advance(discoveryTTL)
	ts.login()
	fetch()
	check("/.well-known/oauth-authorization-server", map[string]any{"scopes_supported": []any{"email", "openid", "profile", "public:read"}})
}

func TestJWKSAliasesAndCaching(t *testing.T) {
	ts := startServer(t, testConfig(t))
	var first string
	var etag string
	for _, path := range []string{"/.well-known/jwks.json", "/keys", "/auth/.well-known/jwks.json"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		resp, body := ts.do(req)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=300" {
			t.Errorf("%s: Cache-Control %q", path, cc)
		}
		if first == "" {
			first, etag = string(body), resp.Header.Get("ETag")
		} else if string(body) != first || resp.Header.Get("ETag") != etag {
			t.Errorf("%s serves a different document", path)
		}
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal([]byte(first), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s", first)
	}
	k := set.Keys[0]
	for _, member := range []string{"kty", "use", "kid", "alg", "n", "e"} {
		if k[member] == "" {
			t.Errorf("JWK lacks %s", member)
		}
	}
	if k["kty"] != "RSA" || k["use"] != "sig" || k["alg"] != "RS256" || k["e"] != "AQAB" {
		t.Errorf("JWK %v", k)
	}
	if _, private := k["d"]; private {
		t.Fatal("the JWKS publishes a private key")
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/keys", nil)
	req.Header.Set("If-None-Match", etag)
	if resp, _ := ts.do(req); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
}

func TestUnknownPathsAndMethods(t *testing.T) {
	ts := startServer(t, testConfig(t))
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope", 404},
		{"POST", "/.well-known/jwks.json", 405},
		{"GET", "/healthz", 200},
		{"GET", "/readyz", 200},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(""))
		resp, body := ts.do(req)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.want)
		}
		if resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s %s: no X-Request-Id", tc.method, tc.path)
		}
	}
}
