package tokensource

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// selfSignedCert is a client certificate as self_signed_tls_client_auth
// uses (or as a test CA would issue for tls_client_auth).
func selfSignedCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// mtlsServer is a TLS server that requires a client certificate (any: the
// test checks which one came) and serves a token endpoint and an API.
type mtlsServer struct {
	*httptest.Server
	mu    sync.Mutex
	certs []string // the CommonName of each request's client certificate
	forms []string
	auths []string
}

func startMTLSServer(t *testing.T) *mtlsServer {
	t.Helper()
	m := &mtlsServer{}
	m.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.certs = append(m.certs, r.TLS.PeerCertificates[0].Subject.CommonName)
		m.auths = append(m.auths, r.Header.Get("Authorization"))
		switch r.URL.Path {
		case "/oauth/token":
			b, _ := io.ReadAll(r.Body)
			m.forms = append(m.forms, string(b))
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":900}`, len(m.forms))
		case "/api":
			fmt.Fprint(w, "ok")
		default:
			http.NotFound(w, r)
		}
	}))
	m.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	m.StartTLS()
	t.Cleanup(m.Close)
	return m
}

// trustServer makes the Source's own transport trust the test server's
// certificate (a real deployment's is signed by a CA the system trusts).
func trustServer(t *testing.T, s *Source, srv *httptest.Server) {
	t.Helper()
	if s.tlsTransport == nil {
		t.Fatal("the Source made no transport for the client certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	s.tlsTransport.TLSClientConfig.RootCAs = pool
}

func TestClientCertificate(t *testing.T) {
	billing := selfSignedCert(t, "billing")
	rotated := []tls.Certificate{selfSignedCert(t, "billing-1"), selfSignedCert(t, "billing-2")}
	var calls int
	tests := []struct {
		name      string
		mod       func(*Config)
		wantForm  string
		wantAuth  bool // HTTP Basic with the secret
		reconnect bool // a new connection for the API request
		wantCerts []string
	}{
		{"tls_client_auth", func(c *Config) { c.Certificate = &billing },
			"client_id=m2mc_a&grant_type=client_credentials", false, false, []string{"billing", "billing"}},
		{"a secret and a certificate for bound tokens", func(c *Config) { c.Certificate, c.ClientSecret = &billing, "s" },
			"grant_type=client_credentials", true, false, []string{"billing", "billing"}},
		{"a rotated certificate", func(c *Config) {
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				calls++
				return &rotated[min(calls, 2)-1], nil
			}
		}, "client_id=m2mc_a&grant_type=client_credentials", false, true, []string{"billing-1", "billing-2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startMTLSServer(t)
			cfg := Config{TokenURL: srv.URL + "/oauth/token", ClientID: "m2mc_a"}
			tc.mod(&cfg)
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			trustServer(t, s, srv.Server)
			tok, err := s.Token(t.Context())
			if err != nil || tok.AccessToken != "tok-1" {
				t.Fatalf("%v %v", tok, err)
			}
			// The API requests go through the same transport: the
			// certificate is that of the token request, or the rotated one
			// on a new connection.
			if tc.reconnect {
				s.tlsTransport.CloseIdleConnections()
			}
			api := &http.Client{Transport: s.Transport(nil)}
			resp, err := api.Get(srv.URL + "/api")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("API: %v %v", resp, err)
			}
			resp.Body.Close()
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if srv.forms[0] != tc.wantForm || strings.HasPrefix(srv.auths[0], "Basic ") != tc.wantAuth || srv.auths[1] != "Bearer tok-1" {
				t.Fatalf("token request: form %q auth %q; API auth %q", srv.forms[0], srv.auths[0], srv.auths[1])
			}
			if strings.Join(srv.certs, " ") != strings.Join(tc.wantCerts, " ") {
				t.Fatalf("client certificates %q, want %q", srv.certs, tc.wantCerts)
			}
			if s.HTTPTransport() != s.tlsTransport {
				t.Fatal("HTTPTransport is not the transport with the certificate")
			}
		})
	}
}

// Without the certificate the server's handshake fails: what the tests
// above see is the Source's doing.
func TestNoClientCertificateNoHandshake(t *testing.T) {
	srv := startMTLSServer(t)
	s, err := New(Config{TokenURL: srv.URL + "/oauth/token", ClientID: "m2mc_a", ClientSecret: "s",
		HTTPClient: srv.Client(), MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token(t.Context()); err == nil {
		t.Fatal("a token without a client certificate")
	}
	if s.HTTPTransport() != srv.Client().Transport {
		t.Fatal("HTTPTransport is not HTTPClient's transport")
	}
	if s.tlsTransport != nil {
		t.Fatal("a transport made without a certificate")
	}
}

// A client certificate makes discovery pick the mTLS alias of the token
// endpoint (RFC 8705 §5); without one, the plain endpoint.
func TestDiscoveryMTLSAlias(t *testing.T) {
	cert := selfSignedCert(t, "billing")
	for _, withCert := range []bool{true, false} {
		var got []string
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			got = append(got, r.URL.String())
			body := `{"access_token":"tok","token_type":"Bearer","expires_in":900}`
			if r.URL.Path == "/.well-known/openid-configuration" {
				body = `{"token_endpoint":"https://auth.example/oauth/token","mtls_endpoint_aliases":{"token_endpoint":"https://mtls.auth.example/oauth/token"}}`
			}
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader([]byte(body)))}, nil
		})
		cfg := Config{Issuer: "https://auth.example", ClientID: "a", HTTPClient: &http.Client{Transport: rt}}
		want := "https://mtls.auth.example/oauth/token"
		if withCert {
			cfg.Certificate = &cert
		} else {
			cfg.ClientSecret, want = "s", "https://auth.example/oauth/token"
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Token(t.Context()); err != nil || len(got) != 2 || got[1] != want {
			t.Fatalf("certificate %v: %v, requests %q", withCert, err, got)
		}
	}
}

func TestClientCertificateConfig(t *testing.T) {
	cert := selfSignedCert(t, "billing")
	get := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"certificate without client id", Config{TokenURL: testTokenURL, Certificate: &cert},
			"ClientID is required with a client certificate as the only credential"},
		{"both certificate options", Config{TokenURL: testTokenURL, ClientID: "a", Certificate: &cert, GetClientCertificate: get},
			"Certificate and GetClientCertificate are set"},
		{"nothing", Config{TokenURL: testTokenURL, ClientID: "a"}, "or a client certificate (Certificate or GetClientCertificate) with ClientID"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err %v, want ~ %q", tc.name, err, tc.wantErr)
		}
	}
	// A certificate with an assertion source: the assertion authenticates.
	if _, err := New(Config{TokenURL: testTokenURL, AssertionFile: "/t", GetClientCertificate: get}); err != nil {
		t.Fatal(err)
	}
}
