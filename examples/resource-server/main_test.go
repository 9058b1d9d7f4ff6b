package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/server"
	"github.com/m2mauth/m2mauth/tokensource"
)

// The example API accepts the server's tokens, answers 403 without the
// scope, and 401 to forged and malformed tokens.
func TestExampleAPI(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = ln.Addr().String(), t.TempDir()
	srv, err := server.New(context.Background(), cfg, server.NewLogger(io.Discard, "json", "error"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	issuer := "http://" + cfg.Addr

	// Set up an API and two clients through the admin API.
	adminTok := tokenFor(t, issuer+"/admin/v1/token", adminCreds(t, cfg.DataDir), "")
	call := func(path string, in any) map[string]any {
		b, _ := json.Marshal(in)
		req, _ := http.NewRequest(http.MethodPost, issuer+path, strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+adminTok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	const api = "https://api.example.com"
	call("/admin/v1/apis", admin.APIInput{Identifier: api, Name: "Orders", Scopes: []string{"orders:read", "orders:write"}})
	reader := call("/admin/v1/clients", admin.ClientInput{Name: "reader", DefaultAudience: api, Grants: []admin.GrantInput{{Audience: api, Scopes: []string{"orders:read"}}}})
	writer := call("/admin/v1/clients", admin.ClientInput{Name: "writer", DefaultAudience: api, Grants: []admin.GrantInput{{Audience: api, Scopes: []string{"orders:write"}}}})

	h, err := newHandler(issuer, api, []string{"orders:read"}, senderOptions{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	rs := httptest.NewServer(h)
	defer rs.Close()

	// The reader calls the API through tokensource's transport.
	src, _ := tokensource.New(tokensource.Config{Issuer: issuer, ClientID: reader["client_id"].(string), ClientSecret: reader["client_secret"].(string)})
	client := &http.Client{Transport: src.Transport(nil)}
	resp, err := client.Get(rs.URL + "/api/data")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reader: %v %v", resp, err)
	}
	var body map[string]string
	json.NewDecoder(resp.Body).Decode(&body)
	if body["message"] != "Authenticated successfully" || body["sub"] != reader["client_id"] {
		t.Fatalf("body %v", body)
	}

	get := func(authz string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, rs.URL+"/api/data", nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	writerTok := tokenFor(t, issuer+"/oauth/token", [2]string{writer["client_id"].(string), writer["client_secret"].(string)}, "")
	if st, ch := get("Bearer " + writerTok); st != 403 || !strings.Contains(ch, `error="insufficient_scope"`) {
		t.Fatalf("without the scope: %d %s", st, ch)
	}
	// Forged and malformed tokens, built from a genuine one.
	good := tokenFor(t, issuer+"/oauth/token", [2]string{reader["client_id"].(string), reader["client_secret"].(string)}, "")
	parts := strings.Split(good, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	with := func(old, new string) string { return enc(strings.Replace(string(claims), old, new, 1)) }
	adminAud := parts[0] + "." + enc(strings.Replace(string(claims), api, issuer+"/admin", 1)) + "." + parts[2]
	for name, tok := range map[string]string{
		"alg none":           enc(`{"alg":"none","typ":"at+jwt"}`) + "." + parts[1] + ".",
		"alg none, no sig":   enc(`{"alg":"none","typ":"at+jwt"}`) + "." + parts[1],
		"HS256":              enc(strings.Replace(string(hdr), "RS256", "HS256", 1)) + "." + parts[1] + "." + parts[2],
		"scope raised":       parts[0] + "." + with("orders:read", "orders:read orders:write") + "." + parts[2],
		"subject changed":    parts[0] + "." + with(reader["client_id"].(string), writer["client_id"].(string)) + "." + parts[2],
		"audience changed":   adminAud,
		"signature stripped": parts[0] + "." + parts[1] + ".",
		"two parts":          parts[0] + "." + parts[1],
		"five parts":         good + ".a.b",
		"padding":            parts[0] + "=." + parts[1] + "." + parts[2],
		"kid unknown":        enc(strings.Replace(string(hdr), `"kid":"`, `"kid":"x`, 1)) + "." + parts[1] + "." + parts[2],
		"typ JWT":            enc(strings.Replace(string(hdr), "at+jwt", "JWT", 1)) + "." + parts[1] + "." + parts[2],
		"garbage":            "not-a-token",
		"1 MiB":              good + strings.Repeat("A", 1<<20),
	} {
		if st, ch := get("Bearer " + tok); st != 401 || !strings.Contains(ch, `error="invalid_token"`) {
			t.Errorf("%s: %d %s", name, st, ch)
		}
	}
	if st, ch := get(""); st != 401 || strings.Contains(ch, "error=") {
		t.Errorf("no token: %d %s", st, ch)
	}

	// --require-dpop and --require-mtls refuse the reader's bearer token.
	for _, tc := range []struct {
		name      string
		o         senderOptions
		challenge string
	}{
		{"require-dpop", senderOptions{requireDPoP: true}, `DPoP realm="` + api + `", error="invalid_token", error_description="this API takes DPoP-bound access tokens only, with the DPoP scheme and a proof", algs="ES256 RS256 PS256 EdDSA"`},
		{"require-mtls", senderOptions{requireMTLS: true}, `Bearer realm="` + api + `", error="invalid_token", error_description="this API requires certificate-bound access tokens"`},
	} {
		h, err := newHandler(issuer, api, nil, tc.o, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "/api/data", nil)
		r.Header.Set("Authorization", "Bearer "+good)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 401 || w.Header().Get("WWW-Authenticate") != tc.challenge {
			t.Errorf("%s: %d %q", tc.name, w.Code, w.Header().Values("WWW-Authenticate"))
		}
	}
	for _, o := range []senderOptions{{trustedProxies: "10.0.0.0/8,nonsense"}, {publicOrigin: "api.example.com"}, {publicOrigin: "https://"}} {
		if _, err := newHandler(issuer, api, nil, o, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func adminCreds(t *testing.T, dir string) [2]string {
	var c server.AdminCredentials
	b, err := os.ReadFile(dir + "/" + server.AdminFile)
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &c)
	return [2]string{c.ClientID, c.ClientSecret}
}

func tokenFor(t *testing.T, endpoint string, creds [2]string, scope string) string {
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(creds[0], creds[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("token from %s: %v %v", endpoint, resp, err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tr)
	return tr.AccessToken
}
