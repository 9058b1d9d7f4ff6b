package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
)

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a running server on a loopback port.
type testServer struct {
	t     *testing.T
	URL   string
	cfg   config.Config
	srv   *Server
	logs  *syncBuffer
	stop  func()
	admin AdminCredentials
	token string // admin access token
	// http is the client of do (nil: http.DefaultClient); with TLS on, it
	// trusts the certificate the server starts with and speaks HTTP/2.
	http *http.Client
}

// testConfig returns a config with a fresh data dir.
func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.LogLevel = "debug"
	return cfg
}

// startServer runs a server for cfg (Addr and Issuer are filled in from a
// fresh loopback port unless cfg.Issuer is set) until the test ends or stop
// is called.
func startServer(t *testing.T, cfg config.Config) *testServer {
	t.Helper()
	return startServerClock(t, cfg, nil)
}

// fakeClock is a settable clock for the server under test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startServerClock is startServer with the server's clock (nil: real time).
func startServerClock(t *testing.T, cfg config.Config, now func() time.Time) *testServer {
	t.Helper()
	return startServerWith(t, cfg, now, Timeouts{})
}

// startServerWith is startServerClock with the HTTP server's timeouts.
func startServerWith(t *testing.T, cfg config.Config, now func() time.Time, timeouts Timeouts) *testServer {
	t.Helper()
	return startServerOptions(t, cfg, now, timeouts, Options{})
}

// startServerOptions is startServerWith with the server's options.
func startServerOptions(t *testing.T, cfg config.Config, now func() time.Time, timeouts Timeouts, opts Options) *testServer {
	t.Helper()
	return startServerWrapped(t, cfg, now, timeouts, opts, nil)
}

// startServerWrapped is startServerOptions with wrap (nil: none) around the
// server's handler, to look at requests as the handler gets them.
func startServerWrapped(t *testing.T, cfg config.Config, now func() time.Time, timeouts Timeouts, opts Options, wrap func(http.Handler) http.Handler) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = ln.Addr().String()
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	if cfg.Issuer == "" {
		cfg.Issuer = scheme + "://" + cfg.Addr
	}
	logs := &syncBuffer{}
	srv, err := NewWithOptions(context.Background(), cfg, NewLogger(logs, "json", cfg.LogLevel), now, opts)
	if err != nil {
		ln.Close()
		t.Fatalf("New: %v", err)
	}
	srv.timeouts = timeouts
	if wrap != nil {
		srv.handler = wrap(srv.handler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	ts := &testServer{t: t, URL: scheme + "://" + cfg.Addr, cfg: cfg, srv: srv, logs: logs}
	if cfg.TLSCert != "" {
		ts.http = testHTTPSClient(t, cfg.TLSCert)
	}
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(ts.stop)
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, AdminFile)); err == nil {
		if err := json.Unmarshal(b, &ts.admin); err != nil {
			t.Fatal(err)
		}
		ts.login()
	}
	return ts
}

// testHTTPSClient returns an HTTP/2-capable client trusting the
// certificates in certFile as roots, presenting clientCerts when asked.
func testHTTPSClient(t *testing.T, certFile string, clientCerts ...tls.Certificate) *http.Client {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificate", certFile)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: clientCerts},
		// A custom TLS config turns HTTP/2 off unless asked for.
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// login gets a fresh admin token (the clock may have moved past the last).
func (ts *testServer) login() {
	ts.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/admin/v1/token", strings.NewReader("grant_type=client_credentials&scope=admin%20deployment"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(ts.admin.ClientID, ts.admin.ClientSecret)
	resp, body := ts.do(req)
	var tr tokenResp
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil {
		ts.t.Fatalf("admin login: %d %s", resp.StatusCode, body)
	}
	ts.token = tr.AccessToken
}

// post sends a request and returns the response with its body read.
func (ts *testServer) do(req *http.Request) (*http.Response, []byte) {
	ts.t.Helper()
	c := ts.http
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatal(err)
	}
	return resp, body
}

// tokenForm posts a form token request with Basic credentials (id != "").
func (ts *testServer) tokenForm(id, secret string, form url.Values) (*http.Response, []byte) {
	ts.t.Helper()
	if form.Get("grant_type") == "" {
		form.Set("grant_type", "client_credentials")
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return ts.do(req)
}

type tokenResp struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

func (ts *testServer) mustToken(id, secret string, form url.Values) string {
	ts.t.Helper()
	resp, body := ts.tokenForm(id, secret, form)
	if resp.StatusCode != http.StatusOK {
		ts.t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	var tr tokenResp
	if err := json.Unmarshal(body, &tr); err != nil {
		ts.t.Fatal(err)
	}
	return tr.AccessToken
}

// adminDo calls the admin API with the bootstrap admin's token. Extra
// headers come in name, value pairs.
func (ts *testServer) adminDo(method, path string, in any, headers ...string) (*http.Response, []byte) {
	ts.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		if raw, ok := in.(string); ok {
			b = []byte(raw)
		}
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, ts.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+ts.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return ts.do(req)
}

// client reads a client through the admin API.
func (ts *testServer) client(id string) (admin.ClientResource, string) {
	ts.t.Helper()
	resp, body := ts.adminDo(http.MethodGet, "/admin/v1/clients/"+id, nil)
	if resp.StatusCode != http.StatusOK {
		ts.t.Fatalf("get client: %d %s", resp.StatusCode, body)
	}
	var c admin.ClientResource
	if err := json.Unmarshal(body, &c); err != nil {
		ts.t.Fatal(err)
	}
	return c, resp.Header.Get("ETag")
}

// tokenStatus returns the status of a client-credentials request.
func (ts *testServer) tokenStatus(id, secret string, form url.Values) (int, string) {
	ts.t.Helper()
	resp, body := ts.tokenForm(id, secret, form)
	var e struct{ Error string }
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e.Error
}

func (ts *testServer) createAPI(identifier string, lifetime time.Duration, scopes ...string) {
	ts.t.Helper()
	resp, body := ts.adminDo(http.MethodPost, "/admin/v1/apis", admin.APIInput{
		Identifier: identifier, Name: "API " + identifier, Scopes: scopes, TokenLifetimeSeconds: int64(lifetime / time.Second)})
	if resp.StatusCode != http.StatusCreated {
		ts.t.Fatalf("create API: %d %s", resp.StatusCode, body)
	}
}

func (ts *testServer) createClient(in admin.ClientInput) (id, secret string) {
	ts.t.Helper()
	if in.Name == "" {
		in.Name = "test client"
	}
	resp, body := ts.adminDo(http.MethodPost, "/admin/v1/clients", in)
	if resp.StatusCode != http.StatusCreated {
		ts.t.Fatalf("create client: %d %s", resp.StatusCode, body)
	}
	var c admin.ClientResource
	if err := json.Unmarshal(body, &c); err != nil {
		ts.t.Fatal(err)
	}
	return c.ClientID, c.ClientSecret
}

// jwks fetches the published key set.
func (ts *testServer) jwks() jose.JSONWebKeySet {
	ts.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/.well-known/jwks.json", nil)
	resp, body := ts.do(req)
	if resp.StatusCode != http.StatusOK {
		ts.t.Fatalf("jwks: %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		ts.t.Fatal(err)
	}
	return set
}

// verified is a token checked with go-jose, independently of our code.
type verified struct {
	header jose.Header
	claims map[string]any
}

// verifyToken checks raw's RS256 signature against the server's JWKS with
// go-jose and returns its header and claims.
func (ts *testServer) verifyToken(raw string) verified {
	ts.t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		ts.t.Fatalf("parse token: %v", err)
	}
	h := jws.Signatures[0].Protected
	set := ts.jwks()
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		ts.t.Fatalf("kid %q: %d keys in the JWKS", h.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		ts.t.Fatalf("signature does not verify against the JWKS: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		ts.t.Fatal(err)
	}
	return verified{header: h, claims: claims}
}

func base64URL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// parseJWTPayload decodes the claims of a compact JWT into v (unverified).
func parseJWTPayload(t *testing.T, token string, v any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWT: %d parts", len(parts))
	}
	b, err := base64URL(parts[1])
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		t.Fatalf("token payload: %v", err)
	}
}
