package server

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
)

// TestTLSTokenOverHTTP2: with --tls-cert and --tls-key the listener serves
// HTTPS, negotiates HTTP/2, refuses TLS 1.1, and the token endpoint works
// over it.
func TestTLSTokenOverHTTP2(t *testing.T) {
	ca := newTestCA(t)
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey, _ = testTLSFiles(t, ca, t.TempDir())
	cfg.MetricsAddr = "127.0.0.1:0"
	ts := startServer(t, cfg)
	// The metrics listener stays plain HTTP.
	mr, err := http.Get("http://" + ts.srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mr.Body.Close()
	if mr.StatusCode != http.StatusOK {
		t.Errorf("metrics over plain HTTP: %d", mr.StatusCode)
	}
	if !strings.HasPrefix(ts.srv.cfg.Issuer, "https://") {
		t.Fatalf("issuer %s: want https by default with TLS on", ts.srv.cfg.Issuer)
	}
	id, secret := setupOrders(ts)
	resp, body := ts.tokenForm(id, secret, url.Values{"scope": {"orders:read"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("protocol %s, ALPN %v: want HTTP/2", resp.Proto, resp.TLS)
	}
	if resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS version %x", resp.TLS.Version)
	}
	// An HTTP/1.1-only client still gets in.
	h1 := testHTTPSClient(t, cfg.TLSCert)
	h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	var r1 *http.Response
	r1, err = h1.Get(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	r1.Body.Close()
	if r1.StatusCode != http.StatusOK || r1.ProtoMajor != 1 {
		t.Errorf("HTTP/1.1 client: %d %s", r1.StatusCode, r1.Proto)
	}
	// TLS 1.1 and older are refused.
	addr := strings.TrimPrefix(ts.URL, "https://")
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	// No client certificate is asked for without --tls-client-ca.
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		t.Error("the server asked for a client certificate without --tls-client-ca")
		return &tls.Certificate{}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !strings.Contains(ts.logs.String(), `"scheme":"https","client_certificates_requested":false`) {
		t.Errorf("the startup log does not say https without client certificates:\n%s", ts.logs)
	}
}

// handshakeSerial connects to addr and returns the serial number of the
// certificate the server presents.
func handshakeSerial(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestTLSCertificateReload: a rotated certificate is served on the next
// handshake once the clock has moved a second on; a pair that does not
// load keeps the previous one (logged once, without key material); a
// broken pair at startup is a startup error.
func TestTLSCertificateReload(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	cfg := testConfig(t)
	var first testCert
	cfg.TLSCert, cfg.TLSKey, first = testTLSFiles(t, ca, dir)
	clk := newFakeClock()
	ts := startServerClock(t, cfg, clk.Now)
	addr := strings.TrimPrefix(ts.URL, "https://")
	roots := ca.Pool()
	if got := handshakeSerial(t, addr, roots); got != first.Cert.SerialNumber.String() {
		t.Fatalf("serial %s, want the first certificate's", got)
	}
	// rotate writes a certificate and a key, and moves their modification
	// time on (a file system's clock may be coarser than the test).
	mtime := time.Now()
	rotate := func(certPEM, keyPEM []byte) {
		t.Helper()
		mtime = mtime.Add(time.Minute)
		for f, b := range map[string][]byte{cfg.TLSCert: certPEM, cfg.TLSKey: keyPEM} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(f, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	second := ca.issue(t, nil)
	rotate(second.CertPEM, second.KeyPEM)
	if got := handshakeSerial(t, addr, roots); got != first.Cert.SerialNumber.String() {
		t.Errorf("the files were looked at again within a second (serial %s)", got)
	}
	clk.Advance(tlsReloadCheck)
	if got := handshakeSerial(t, addr, roots); got != second.Cert.SerialNumber.String() {
		t.Fatalf("after the rotation: serial %s, want the second certificate's %s", got, second.Cert.SerialNumber)
	}

	// A certificate with another certificate's key: the second stays.
	third := ca.issue(t, nil)
	rotate(third.CertPEM, first.KeyPEM)
	for range 3 {
		clk.Advance(tlsReloadCheck)
		if got := handshakeSerial(t, addr, roots); got != second.Cert.SerialNumber.String() {
			t.Fatalf("a broken pair: serial %s, want the second certificate's kept", got)
		}
	}
	logs := ts.logs.String()
	if n := strings.Count(logs, "reload TLS certificate"); n != 1 {
		t.Errorf("the failed reload is logged %d times, want once", n)
	}
	for _, k := range [][]byte{first.KeyPEM, second.KeyPEM, third.KeyPEM} {
		body := strings.Split(string(k), "\n")[1]
		if strings.Contains(logs, body) || strings.Contains(logs, "PRIVATE KEY") {
			t.Fatal("the log holds key material")
		}
	}
	// Fixed: the fourth is served.
	fourth := ca.issue(t, nil)
	rotate(fourth.CertPEM, fourth.KeyPEM)
	clk.Advance(tlsReloadCheck)
	if got := handshakeSerial(t, addr, roots); got != fourth.Cert.SerialNumber.String() {
		t.Fatalf("after the fix: serial %s, want the fourth certificate's", got)
	}

	// At startup, the same broken pair is an error.
	bad := testConfig(t)
	bad.Addr = "127.0.0.1:0"
	bad.TLSCert = writeTestFile(t, t.TempDir(), "cert.pem", third.CertPEM)
	bad.TLSKey = writeTestFile(t, t.TempDir(), "key.pem", first.KeyPEM)
	if s, err := New(t.Context(), bad, NewLogger(&syncBuffer{}, "json", "info"), nil); err == nil {
		s.Close()
		t.Fatal("a server started with a certificate and another's key")
	} else if !strings.Contains(err.Error(), "TLS certificate") {
		t.Errorf("startup error %q does not name the TLS certificate", err)
	}
}

// TestTLSClientCertificates: with --tls-client-ca, a client's certificate
// reaches the handler whether or not it chains to the CAs (a self-signed
// one too); a client without one is served all the same; the server's CA
// pool follows the file.
func TestTLSClientCertificates(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey, _ = testTLSFiles(t, ca, dir)
	clientCA := newTestCA(t)
	cfg.TLSClientCA = writeTestFile(t, dir, "client-ca.pem", clientCA.PEM)
	clk := newFakeClock()
	var mu sync.Mutex
	var seen []string // subjects of the peer certificates, "" for none
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				subject := ""
				if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
					subject = r.TLS.PeerCertificates[0].Subject.CommonName
				}
				mu.Lock()
				seen = append(seen, subject)
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	}
	ts := startServerWrapped(t, cfg, clk.Now, Timeouts{}, Options{}, wrap)
	if !strings.Contains(ts.logs.String(), `"scheme":"https","client_certificates_requested":true`) {
		t.Errorf("the startup log does not say client certificates are requested:\n%s", ts.logs)
	}
	issued := clientCA.issue(t, func(c *x509.Certificate) { c.Subject = pkix.Name{CommonName: "issued-client"} })
	self := newSelfSigned(t, func(c *x509.Certificate) { c.Subject = pkix.Name{CommonName: "self-signed-client"} })
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		want  string
	}{
		{"CA-issued", []tls.Certificate{issued.TLS}, "issued-client"},
		{"self-signed", []tls.Certificate{self.TLS}, "self-signed-client"},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			resp, err := testHTTPSClient(t, cfg.TLSCert, tc.certs...).Get(ts.URL + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
				t.Fatalf("%d %s", resp.StatusCode, resp.Proto)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 1 || seen[0] != tc.want {
				t.Errorf("the handler saw %q, want %q", seen, tc.want)
			}
		})
	}
	// The CA pool the authenticator gets follows the file.
	verifies := func(c testCert) bool {
		_, err := c.Cert.Verify(x509.VerifyOptions{Roots: ts.srv.clientCAs(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		return err == nil
	}
	if !verifies(issued) || verifies(self) {
		t.Fatalf("pool: issued verifies %v, self-signed %v", verifies(issued), verifies(self))
	}
	otherCA := newTestCA(t)
	if err := os.WriteFile(cfg.TLSClientCA, otherCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(cfg.TLSClientCA, later, later); err != nil {
		t.Fatal(err)
	}
	clk.Advance(tlsReloadCheck)
	if verifies(issued) || !verifies(otherCA.issue(t, nil)) {
		t.Error("the CA pool was not reloaded")
	}
	// A file without a certificate keeps the pool.
	if err := os.WriteFile(cfg.TLSClientCA, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	later = later.Add(time.Hour)
	if err := os.Chtimes(cfg.TLSClientCA, later, later); err != nil {
		t.Fatal(err)
	}
	clk.Advance(tlsReloadCheck)
	if !verifies(otherCA.issue(t, nil)) {
		t.Error("a broken CA file replaced the pool")
	}
}

// TestDiscoveryMTLS: discovery advertises mtls_endpoint_aliases and
// tls_client_certificate_bound_access_tokens only when client certificates
// can reach the server, at the configured base, following an
// environment's addressing.
func TestDiscoveryMTLS(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	cert, key, _ := testTLSFiles(t, ca, dir)
	caFile := writeTestFile(t, dir, "client-ca.pem", ca.PEM)
	type doc struct {
		Issuer  string            `json:"issuer"`
		Token   string            `json:"token_endpoint"`
		Aliases map[string]string `json:"mtls_endpoint_aliases"`
		Bound   *bool             `json:"tls_client_certificate_bound_access_tokens"`
	}
	for _, tc := range []struct {
		name      string
		mutate    func(*config.Config)
		wantBase  string // "" : no aliases
		wantStage string // the staging environment's base
	}{
		{"TLS without client CAs", func(c *config.Config) { c.TLSCert, c.TLSKey = cert, key }, "", ""},
		{"client CAs: the issuer", func(c *config.Config) {
			c.TLSCert, c.TLSKey, c.TLSClientCA, c.Issuer = cert, key, caFile, "https://auth.example.com"
		}, "https://auth.example.com", "https://auth.example.com/e/staging"},
		{"explicit base", func(c *config.Config) {
			c.TLSCert, c.TLSKey, c.TLSClientCA, c.Issuer, c.MTLSEndpointBase = cert, key, caFile, "https://auth.example.com", "https://mtls.auth.example.com"
		}, "https://mtls.auth.example.com", "https://mtls.auth.example.com/e/staging"},
		{"behind a proxy", func(c *config.Config) {
			c.Issuer, c.TrustedProxies, c.ClientCertHeader, c.MTLSEndpointBase = "https://auth.example.com", []string{"10.0.0.0/8"}, "X-SSL-Client-Cert", "https://mtls.example.com/"
		}, "https://mtls.example.com", "https://mtls.example.com/e/staging"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.mutate(&cfg)
			ts := startServer(t, cfg)
			if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/environments", admin.EnvironmentInput{Name: "staging", DisplayName: "Staging"}); resp.StatusCode != http.StatusCreated {
				t.Fatalf("create environment: %d %s", resp.StatusCode, body)
			}
			for _, env := range []struct{ prefix, base, issuer string }{
				{"", tc.wantBase, ts.srv.cfg.Issuer},
				{"/e/staging", tc.wantStage, ts.srv.cfg.Issuer + "/e/staging"},
			} {
				for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
					req, _ := http.NewRequest(http.MethodGet, ts.URL+env.prefix+path, nil)
					resp, body := ts.do(req)
					var d doc
					if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &d) != nil {
						t.Fatalf("%s%s: %d %s", env.prefix, path, resp.StatusCode, body)
					}
					if d.Issuer != env.issuer || d.Token != env.issuer+"/oauth/token" {
						t.Errorf("%s%s: issuer %s, token endpoint %s", env.prefix, path, d.Issuer, d.Token)
					}
					if env.base == "" {
						if d.Aliases != nil || d.Bound != nil {
							t.Errorf("%s%s: mTLS off, but aliases %v, bound tokens %v", env.prefix, path, d.Aliases, d.Bound)
						}
						continue
					}
					want := map[string]string{
						"token_endpoint":         env.base + "/oauth/token",
						"introspection_endpoint": env.base + "/oauth/introspect",
						"revocation_endpoint":    env.base + "/oauth/revoke",
					}
					if len(d.Aliases) != len(want) {
						t.Errorf("%s%s: aliases %v, want %v", env.prefix, path, d.Aliases, want)
					}
					for k, v := range want {
						if d.Aliases[k] != v {
							t.Errorf("%s%s: aliases %v, want %v", env.prefix, path, d.Aliases, want)
						}
					}
					if d.Bound == nil || !*d.Bound {
						t.Errorf("%s%s: tls_client_certificate_bound_access_tokens %v, want true", env.prefix, path, d.Bound)
					}
				}
			}
		})
	}
}

// TestTrustedProxies: behind a trusted proxy the failure limiter sees the
// client's address from X-Forwarded-For (the peer middleware runs before
// it); from any other address the header is ignored.
func TestTrustedProxies(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	cfg.AuthFailureBurst = 3
	cfg.TrustedProxies = []string{"10.0.0.0/8"}
	clk := newFakeClock() // no bucket refills
	ts := startServerClock(t, cfg, clk.Now)
	fail := func(remote, xff string) int {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader("grant_type=client_credentials"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = remote + ":40000"
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		w := httptest.NewRecorder()
		ts.srv.Handler().ServeHTTP(w, r)
		return w.Code
	}
	const proxy = "10.1.2.3"
	for i := range cfg.AuthFailureBurst {
		if got := fail(proxy, "203.0.113.1"); got != http.StatusUnauthorized {
			t.Fatalf("failure %d through the proxy: %d, want 401", i, got)
		}
	}
	if got := fail(proxy, "203.0.113.1"); got != http.StatusTooManyRequests {
		t.Errorf("client 203.0.113.1 past its burst: %d, want 429", got)
	}
	// Another client behind the same proxy has a bucket of its own.
	if got := fail(proxy, "203.0.113.2"); got != http.StatusUnauthorized {
		t.Errorf("client 203.0.113.2 through the same proxy: %d, want 401", got)
	}
	// What a client writes left of its own address proves nothing.
	if got := fail(proxy, "198.51.100.50, 203.0.113.1"); got != http.StatusTooManyRequests {
		t.Errorf("a forged hop before 203.0.113.1: %d, want 429", got)
	}
	// From an address that is not a trusted proxy, X-Forwarded-For is
	// ignored: the connection's address pays.
	for i := range cfg.AuthFailureBurst {
		if got := fail("192.0.2.1", fmt.Sprintf("203.0.113.%d", 100+i)); got != http.StatusUnauthorized {
			t.Fatalf("failure %d from an untrusted address: %d, want 401", i, got)
		}
	}
	if got := fail("192.0.2.1", "203.0.113.200"); got != http.StatusTooManyRequests {
		t.Errorf("an untrusted address past its burst, with a fresh X-Forwarded-For: %d, want 429", got)
	}
}

// TestMTLSAliasHostRouting: a request to an environment's mTLS endpoint
// alias (config.EnvMTLSEndpointBase) reaches that environment, whatever
// host the alias base has and however environments are addressed; the
// alias base host itself is the default environment's, not one named
// after its first label.
func TestMTLSAliasHostRouting(t *testing.T) {
	const issuer = "https://auth.example.com"
	type want struct {
		host, path string
		status     int
		issuer     string // discovery's issuer, for a 200
	}
	for _, tc := range []struct {
		name, addressing, base string
		requests               []want
	}{
		{"host addressing, alias base on another host", config.EnvByHost, "https://mtls.example.com", []want{
			{"acme.mtls.example.com", "/", 200, "https://acme.auth.example.com"},
			{"ACME.mtls.example.com.:443", "/", 200, "https://acme.auth.example.com"},
			{"mtls.example.com", "/", 200, issuer},
			{"acme.auth.example.com", "/", 200, "https://acme.auth.example.com"},
			{"auth.example.com", "/", 200, issuer},
			{"nope.mtls.example.com", "/", 404, ""},
			{"default.mtls.example.com", "/", 404, ""},
			{"a.acme.mtls.example.com", "/", 404, ""},
		}},
		{"host addressing, alias base under the issuer's host", config.EnvByHost, "https://mtls.auth.example.com", []want{
			{"acme.mtls.auth.example.com", "/", 200, "https://acme.auth.example.com"},
			{"mtls.auth.example.com", "/", 200, issuer},
			{"acme.auth.example.com", "/", 200, "https://acme.auth.example.com"},
			{"auth.example.com", "/", 200, issuer},
			{"default.mtls.auth.example.com", "/", 404, ""},
		}},
		{"host addressing, issuer's host under the alias base", config.EnvByHost, "https://example.com", []want{
			{"acme.example.com", "/", 200, "https://acme.auth.example.com"},
			{"acme.auth.example.com", "/", 200, "https://acme.auth.example.com"},
			{"auth.example.com", "/", 200, issuer},
			{"example.com", "/", 200, issuer},
		}},
		{"path addressing", config.EnvByPath, "https://mtls.example.com", []want{
			{"mtls.example.com", "/e/acme/", 200, issuer + "/e/acme"},
			{"mtls.example.com", "/", 200, issuer},
			{"acme.mtls.example.com", "/", 200, issuer}, // no host addressing: the default
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.LogLevel = "error"
			cfg.Issuer, cfg.EnvAddressing, cfg.MTLSEndpointBase = issuer, tc.addressing, tc.base
			cfg.TrustedProxies, cfg.ClientCertHeader = []string{"10.0.0.0/8"}, "X-SSL-Client-Cert"
			ts := startServer(t, cfg)
			if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/environments", admin.EnvironmentInput{Name: "acme", DisplayName: "Acme"}); resp.StatusCode != http.StatusCreated {
				t.Fatalf("create environment: %d %s", resp.StatusCode, body)
			}
			for _, rq := range tc.requests {
				r := httptest.NewRequest(http.MethodGet, rq.path+".well-known/oauth-authorization-server", nil)
				r.Host = rq.host
				w := httptest.NewRecorder()
				ts.srv.Handler().ServeHTTP(w, r)
				var d struct {
					Issuer  string            `json:"issuer"`
					Aliases map[string]string `json:"mtls_endpoint_aliases"`
				}
				if w.Code != rq.status {
					t.Errorf("%s%s: %d %s, want %d", rq.host, rq.path, w.Code, w.Body, rq.status)
					continue
				}
				if rq.status != 200 {
					continue
				}
				if json.Unmarshal(w.Body.Bytes(), &d) != nil || d.Issuer != rq.issuer {
					t.Errorf("%s%s: issuer %q, want %q", rq.host, rq.path, d.Issuer, rq.issuer)
				}
				// The alias the environment advertises is one this
				// routing brings back to it.
				if alias := d.Aliases["token_endpoint"]; alias == "" {
					t.Errorf("%s%s: no token endpoint alias", rq.host, rq.path)
				}
			}
		})
	}
}
