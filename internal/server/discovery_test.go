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
	ts := startServer(t, cfg)
	// The issuer is a public URL, not the listener's: every advertised URL
	// must be built from it.
	var docs []string
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		resp, body := ts.do(req)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		docs = append(docs, string(body))
	}
	if docs[0] != docs[1] {
		t.Error("the two metadata documents differ")
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(docs[0]), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                "https://auth.example.com/tenant-a",
		"token_endpoint":                        "https://auth.example.com/tenant-a/oauth/token",
		"jwks_uri":                              "https://auth.example.com/tenant-a/.well-known/jwks.json",
		"grant_types_supported":                 []any{"client_credentials", "refresh_token"},
		"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"response_types_supported":              []any{},
		"scopes_supported":                      []any{"admin"},
	}
	for k, v := range want {
		got, _ := json.Marshal(m[k])
		exp, _ := json.Marshal(v)
		if string(got) != string(exp) {
			t.Errorf("%s = %s, want %s", k, got, exp)
		}
	}
	if _, ok := m["authorization_endpoint"]; ok {
		t.Error("advertises an authorization endpoint the server does not have")
	}
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
