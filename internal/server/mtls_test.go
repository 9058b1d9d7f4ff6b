package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/peer"
	"github.com/m2mauth/m2mauth/internal/store"
)

// certCall is a request to the server under test that arrives with a
// client certificate: over the connection's TLS, or in a proxy's header.
type certCall struct {
	path   string
	form   url.Values
	chain  []*x509.Certificate // leaf first; sent over TLS
	remote string              // RemoteAddr (default 192.0.2.1:1234)
	header http.Header
	// proxied serves the request behind peer.Config trusting 192.0.2.0/24
	// with the certificate header X-Client-Cert.
	proxied bool
}

const certHeader = "X-Client-Cert"

func (ts *testServer) certDo(c certCall) (int, map[string]any, http.Header) {
	ts.t.Helper()
	if c.path == "" {
		c.path = "/oauth/token"
	}
	if c.form.Get("grant_type") == "" && c.path != "/oauth/introspect" {
		c.form.Set("grant_type", "client_credentials")
	}
	req := httptest.NewRequest(http.MethodPost, ts.URL+c.path, strings.NewReader(c.form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if c.remote != "" {
		req.RemoteAddr = c.remote
	}
	if len(c.chain) > 0 {
		req.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: c.chain}
	}
	h := ts.srv.handler
	if c.proxied {
		pc := &peer.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, CertHeader: certHeader}
		h = pc.Middleware(h)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body, rec.Header()
}

// setClient changes a stored client directly (for what the admin API
// does not take) and drops it from the cache.
func (ts *testServer) setClient(id string, fn func(*store.Client)) {
	ts.t.Helper()
	if _, err := ts.srv.env.Store.UpdateClient(context.Background(), id, func(c *store.Client) error { fn(c); return nil }); err != nil {
		ts.t.Fatal(err)
	}
	ts.srv.env.Clients.Invalidate(id)
}

// mtlsServer is a server with mTLS on (ca's pool) and the orders API.
func mtlsServer(t *testing.T, ca *pipeCA, tweak func(*config.Config)) *testServer {
	t.Helper()
	cfg := testConfig(t)
	if tweak != nil {
		tweak(&cfg)
	}
	pool := ca.pool()
	ts := startServerOptions(t, cfg, nil, Timeouts{}, Options{ClientCAs: func() *x509.CertPool { return pool }})
	ts.createAPI(ordersAPI, 0, "orders:read")
	return ts
}

// tlsClient creates a tls_client_auth client for subject.
func (ts *testServer) tlsClient(subject store.TLSSubject, set func(*store.Client)) string {
	ts.t.Helper()
	id, _ := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	ts.setClient(id, func(c *store.Client) {
		c.AuthMethod, c.TLSSubject = "tls_client_auth", subject
		if set != nil {
			set(c)
		}
	})
	return id
}

func idForm(id string) url.Values { return url.Values{"client_id": {id}} }

func TestTLSClientAuth(t *testing.T) {
	ca := newPipeCA(t)
	ts := mtlsServer(t, ca, nil)
	spiffe, _ := url.Parse("spiffe://example.org/ns/prod/sa/billing")
	good := ca.clientCert(t, func(c *x509.Certificate) {
		c.Subject = pkix.Name{CommonName: "billing, eu", Organization: []string{"Example"}}
		c.DNSNames = []string{"billing.example.com"}
		c.URIs = []*url.URL{spiffe}
		c.IPAddresses = []net.IP{net.ParseIP("10.0.0.7")}
		c.EmailAddresses = []string{"billing@example.com"}
	})
	subjects := map[string]store.TLSSubject{
		"dn":    {Kind: store.TLSSubjectDN, Value: `CN=billing\, eu,O=Example`},
		"dns":   {Kind: store.TLSSubjectDNS, Value: "Billing.Example.com"},
		"uri":   {Kind: store.TLSSubjectURI, Value: spiffe.String()},
		"ip":    {Kind: store.TLSSubjectIP, Value: "10.0.0.7"},
		"email": {Kind: store.TLSSubjectEmail, Value: "billing@example.com"},
	}
	for name, subj := range subjects {
		t.Run("subject "+name, func(t *testing.T) {
			id := ts.tlsClient(subj, nil)
			if code, body, _ := ts.certDo(certCall{form: idForm(id), chain: []*x509.Certificate{good}}); code != 200 || body["token_type"] != "Bearer" {
				t.Fatalf("%d %v", code, body)
			}
			claims := ts.verifyToken(ts.mustCertToken(id, good)).claims
			if _, bound := claims["cnf"]; bound {
				t.Errorf("a client that did not ask got a bound token: %v", claims["cnf"])
			}
		})
	}

	dnClient := ts.tlsClient(subjects["dn"], nil)
	other := newPipeCA(t)
	// An intermediate CA: the leaf chains through it when it is sent.
	interKey := pipeKey(t)
	interTmpl := &x509.Certificate{SerialNumber: pipeSerial(t), Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	inter := pipeCreate(t, interTmpl, ca.cert, &interKey.PublicKey, ca.key)
	viaInter := &pipeCA{cert: inter, key: interKey}
	subjectOf := func(c *x509.Certificate) {
		c.Subject = pkix.Name{CommonName: "billing, eu", Organization: []string{"Example"}}
	}
	refusals := []struct {
		name  string
		id    string
		chain []*x509.Certificate
	}{
		{"wrong subject", dnClient, []*x509.Certificate{ca.clientCert(t, func(c *x509.Certificate) {
			c.Subject = pkix.Name{CommonName: "billing", Organization: []string{"Example"}}
		})}},
		{"untrusted CA", dnClient, []*x509.Certificate{other.clientCert(t, subjectOf)}},
		{"expired", dnClient, []*x509.Certificate{ca.clientCert(t, func(c *x509.Certificate) {
			subjectOf(c)
			c.NotBefore, c.NotAfter = time.Now().Add(-3*time.Hour), time.Now().Add(-time.Hour)
		})}},
		{"server certificate, not a client's", dnClient, []*x509.Certificate{ca.clientCert(t, func(c *x509.Certificate) {
			subjectOf(c)
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		})}},
		{"a CA's certificate (found by the attack)", dnClient, []*x509.Certificate{ca.clientCert(t, func(c *x509.Certificate) {
			subjectOf(c)
			c.IsCA, c.BasicConstraintsValid = true, true
			c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		})}},
		{"a key that does not sign (key usage)", dnClient, []*x509.Certificate{ca.clientCert(t, func(c *x509.Certificate) {
			subjectOf(c)
			c.KeyUsage = x509.KeyUsageKeyEncipherment
		})}},
		{"intermediate not sent", dnClient, []*x509.Certificate{viaInter.clientCert(t, subjectOf)}},
		{"no certificate", dnClient, nil},
		{"unknown client", "m2mc_nobody", []*x509.Certificate{good}},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := ts.certDo(certCall{form: idForm(tc.id), chain: tc.chain})
			if code != 401 || body["error"] != "invalid_client" || body["error_description"] != "client authentication failed" {
				t.Fatalf("%d %v", code, body)
			}
		})
	}
	t.Run("intermediate sent", func(t *testing.T) {
		leaf := viaInter.clientCert(t, subjectOf)
		if code, body, _ := ts.certDo(certCall{form: idForm(dnClient), chain: []*x509.Certificate{leaf, inter}}); code != 200 {
			t.Fatalf("%d %v", code, body)
		}
	})
	t.Run("a client of another method is refused with a certificate", func(t *testing.T) {
		id, _ := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
		if code, body, _ := ts.certDo(certCall{form: idForm(id), chain: []*x509.Certificate{good}}); code != 401 || body["error"] != "invalid_client" {
			t.Fatalf("%d %v", code, body)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		id := ts.tlsClient(subjects["dns"], func(c *store.Client) { c.Disabled = true })
		if code, body, _ := ts.certDo(certCall{form: idForm(id), chain: []*x509.Certificate{good}}); code != 401 || body["error"] != "invalid_client" {
			t.Fatalf("%d %v", code, body)
		}
	})

	pemHeader := http.Header{certHeader: {url.QueryEscape(certPEM(good))}}
	t.Run("certificate header from a trusted proxy", func(t *testing.T) {
		if code, body, _ := ts.certDo(certCall{form: idForm(dnClient), header: pemHeader, proxied: true}); code != 200 {
			t.Fatalf("%d %v", code, body)
		}
	})
	t.Run("certificate header from an untrusted address is ignored", func(t *testing.T) {
		code, body, _ := ts.certDo(certCall{form: idForm(dnClient), header: pemHeader, proxied: true, remote: "198.51.100.7:5000"})
		if code != 401 || body["error"] != "invalid_client" {
			t.Fatalf("%d %v", code, body)
		}
		// Nor without the proxy configuration at all.
		if code, _, _ := ts.certDo(certCall{form: idForm(dnClient), header: pemHeader}); code != 401 {
			t.Fatalf("no proxies trusted: %d", code)
		}
	})
	t.Run("a certificate header that does not parse", func(t *testing.T) {
		code, body, _ := ts.certDo(certCall{form: idForm(dnClient), header: http.Header{certHeader: {"not a certificate"}}, proxied: true})
		if code != 401 || body["error"] != "invalid_client" {
			t.Fatalf("%d %v", code, body)
		}
	})
	t.Run("discovery lists the certificate methods", func(t *testing.T) {
		resp, body := ts.do(mustRequest(t, http.MethodGet, ts.URL+"/.well-known/oauth-authorization-server"))
		var m struct {
			Methods []string `json:"token_endpoint_auth_methods_supported"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil ||
			!slices.Contains(m.Methods, "tls_client_auth") || !slices.Contains(m.Methods, "self_signed_tls_client_auth") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

// mustCertToken gets a token for a certificate client.
func (ts *testServer) mustCertToken(id string, chain ...*x509.Certificate) string {
	ts.t.Helper()
	code, body, _ := ts.certDo(certCall{form: idForm(id), chain: chain})
	tok, _ := body["access_token"].(string)
	if code != 200 || tok == "" {
		ts.t.Fatalf("token: %d %v", code, body)
	}
	return tok
}

func TestMTLSOffByDefault(t *testing.T) {
	ts := startServer(t, testConfig(t))
	resp, body := ts.do(mustRequest(t, http.MethodGet, ts.URL+"/.well-known/oauth-authorization-server"))
	if resp.StatusCode != 200 || strings.Contains(string(body), "tls_client_auth") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestSelfSignedTLSClientAuth(t *testing.T) {
	ts := mtlsServer(t, newPipeCA(t), nil)
	key := pipeKey(t)
	registered := testKey{alg: jose.ES256, kid: "k1", priv: key}
	id, _ := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}},
		TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKS: jwkSet(t, registered)})
	ts.setClient(id, func(c *store.Client) { c.AuthMethod = "self_signed_tls_client_auth" })
	if code, body, _ := ts.certDo(certCall{form: idForm(id), chain: []*x509.Certificate{selfSignedCert(t, key)}}); code != 200 {
		t.Fatalf("registered key: %d %v", code, body)
	}
	for name, cert := range map[string]*x509.Certificate{
		"unregistered key":            selfSignedCert(t, pipeKey(t)),
		"CA-issued, unregistered key": newPipeCA(t).clientCert(t, nil),
	} {
		if code, body, _ := ts.certDo(certCall{form: idForm(id), chain: []*x509.Certificate{cert}}); code != 401 || body["error"] != "invalid_client" {
			t.Errorf("%s: %d %v", name, code, body)
		}
	}
}

func TestCertificateBoundTokens(t *testing.T) {
	ca := newPipeCA(t)
	ts := mtlsServer(t, ca, nil)
	cert := ca.clientCert(t, func(c *x509.Certificate) { c.DNSNames = []string{"svc.example.com"} })
	subject := store.TLSSubject{Kind: store.TLSSubjectDNS, Value: "svc.example.com"}
	bound := ts.tlsClient(subject, func(c *store.Client) { c.CertBoundTokens = true; c.TokenReuse = 0.5 })

	tok := ts.mustCertToken(bound, cert)
	cnf, _ := ts.verifyToken(tok).claims["cnf"].(map[string]any)
	if len(cnf) != 1 || cnf["x5t#S256"] != peer.Thumbprint(cert) {
		t.Fatalf("cnf %v, want x5t#S256 %s", cnf, peer.Thumbprint(cert))
	}
	// A bound token is never reused, even for a client with reuse on.
	if again := ts.mustCertToken(bound, cert); again == tok {
		t.Error("a bound token was reused")
	}

	// Introspection returns the binding.
	introID, introSec := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, Introspect: []string{ordersAPI}})
	code, in := ts.form("/oauth/introspect", introID, introSec, url.Values{"token": {tok}})
	if inCnf, _ := in["cnf"].(map[string]any); code != 200 || in["active"] != true || in["token_type"] != "Bearer" || inCnf["x5t#S256"] != peer.Thumbprint(cert) {
		t.Fatalf("introspection: %d %v", code, in)
	}

	t.Run("a secret client asking for bound tokens, with a certificate", func(t *testing.T) {
		id, sec := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
		ts.setClient(id, func(c *store.Client) { c.CertBoundTokens = true })
		other := newPipeCA(t).clientCert(t, nil) // any certificate: the secret authenticates
		h := http.Header{"Authorization": {"Basic " + basicAuth(id, sec)}}
		code, body, _ := ts.certDo(certCall{form: url.Values{}, chain: []*x509.Certificate{other}, header: h})
		tok, _ := body["access_token"].(string)
		if code != 200 || tok == "" {
			t.Fatalf("%d %v", code, body)
		}
		if cnf, _ := ts.verifyToken(tok).claims["cnf"].(map[string]any); cnf["x5t#S256"] != peer.Thumbprint(other) {
			t.Fatalf("cnf %v", cnf)
		}
		// Without a certificate: refused, saying why.
		code, body, _ = ts.certDo(certCall{form: url.Values{}, header: h})
		if code != 400 || body["error"] != "invalid_request" || !strings.Contains(body["error_description"].(string), "certificate") {
			t.Fatalf("without a certificate: %d %v", code, body)
		}
		// The compatibility surfaces issue no bound tokens: refused there.
		resp, mbody := ts.post("/v1/oauth/token/machine", "application/json", fmt.Sprintf(`{"apiKey":%q,"secretKey":%q}`, id, sec))
		if resp.StatusCode != 400 || strings.Contains(string(mbody), "access_token") || strings.Contains(string(mbody), `"token"`) {
			t.Fatalf("machine surface: %d %s", resp.StatusCode, mbody)
		}
	})
	t.Run("a client that did not ask gets a bearer token", func(t *testing.T) {
		id := ts.tlsClient(subject, nil)
		if _, ok := ts.verifyToken(ts.mustCertToken(id, cert)).claims["cnf"]; ok {
			t.Fatal("bound")
		}
	})
}

func TestCertBoundTokensFlag(t *testing.T) {
	ca := newPipeCA(t)
	ts := mtlsServer(t, ca, func(c *config.Config) { c.CertBoundTokens = true })
	cert := ca.clientCert(t, func(c *x509.Certificate) { c.DNSNames = []string{"svc.example.com"} })
	id := ts.tlsClient(store.TLSSubject{Kind: store.TLSSubjectDNS, Value: "svc.example.com"}, nil)
	cnf, _ := ts.verifyToken(ts.mustCertToken(id, cert)).claims["cnf"].(map[string]any)
	if cnf["x5t#S256"] != peer.Thumbprint(cert) {
		t.Fatalf("cnf %v", cnf)
	}
	// A secret client's token is not bound by the flag (it did not
	// authenticate with the certificate).
	sid, sec := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	code, body, _ := ts.certDo(certCall{form: url.Values{}, chain: []*x509.Certificate{cert}, header: http.Header{"Authorization": {"Basic " + basicAuth(sid, sec)}}})
	if code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	if _, ok := ts.verifyToken(body["access_token"].(string)).claims["cnf"]; ok {
		t.Fatal("a secret client's token was bound")
	}
	// The admin login issues bearer tokens only: with the flag on, a client
	// that authenticated with its certificate is refused there rather than
	// handed an unbound token (found by the review).
	admID := ts.tlsClient(store.TLSSubject{Kind: store.TLSSubjectDNS, Value: "svc.example.com"}, func(c *store.Client) {
		c.Grants = []store.Grant{{Audience: ts.cfg.AdminAudience(), Scopes: []string{admin.AdminScope}}}
	})
	if code, body, _ := ts.certDo(certCall{path: "/admin/v1/token", form: idForm(admID), chain: []*x509.Certificate{cert}}); code != 400 || body["error"] != "unauthorized_client" {
		t.Fatalf("admin login: %d %v", code, body)
	}
}

// Refused certificates cost the sending address, never the named client's
// failure bucket: anyone can send a certificate naming any client.
func TestCertificateFailuresSpareTheClientBucket(t *testing.T) {
	ca := newPipeCA(t)
	ts := mtlsServer(t, ca, func(c *config.Config) { c.AuthFailureRate, c.AuthFailureBurst = 0.001, 3 })
	id, sec := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	wrong := newPipeCA(t).clientCert(t, nil)
	for i, addr := range []string{"203.0.113.1:1", "203.0.113.2:1", "203.0.113.3:1", "203.0.113.4:1", "203.0.113.5:1"} {
		if code, _, _ := ts.certDo(certCall{form: idForm(id), chain: []*x509.Certificate{wrong}, remote: addr}); code != 401 {
			t.Fatalf("attempt %d: %d", i, code)
		}
	}
	h := http.Header{"Authorization": {"Basic " + basicAuth(id, sec)}}
	if code, body, _ := ts.certDo(certCall{form: url.Values{}, header: h, remote: "203.0.113.9:1"}); code != 200 {
		t.Fatalf("the client's own request after certificate failures naming it: %d %v", code, body)
	}
	// The address itself is limited.
	var last int
	for range 5 {
		last, _, _ = ts.certDo(certCall{form: idForm(id), chain: []*x509.Certificate{wrong}, remote: "203.0.113.1:1"})
	}
	if last != 429 {
		t.Fatalf("the failing address: %d, want 429", last)
	}
}

func basicAuth(id, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
}

// A self-signed client's keys may come from its jwks_uri: a key added
// there later is found (the set is fetched again for a certificate whose
// key it lacks, at most once per cooldown).
func TestSelfSignedTLSClientAuthWithJWKSURI(t *testing.T) {
	clock := newFakeClock()
	pool := newPipeCA(t).pool()
	ts := startServerOptions(t, testConfig(t), clock.Now, Timeouts{}, Options{ClientCAs: func() *x509.CertPool { return pool }})
	ts.createAPI(ordersAPI, 0, "orders:read")
	k1, k2 := pipeKey(t), pipeKey(t)
	var mu sync.Mutex
	fetches := 0
	published := jwkSet(t, testKey{alg: jose.ES256, kid: "k1", priv: k1})
	keySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(published)
	}))
	defer keySrv.Close()
	id, _ := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}},
		TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKSURI: keySrv.URL})
	ts.setClient(id, func(c *store.Client) { c.AuthMethod = "self_signed_tls_client_auth" })
	try := func(k *ecdsa.PrivateKey) int {
		code, _, _ := ts.certDo(certCall{form: idForm(id), chain: []*x509.Certificate{selfSignedCert(t, k)}})
		return code
	}
	if code := try(k1); code != 200 {
		t.Fatalf("k1: %d", code)
	}
	if code := try(k2); code != 401 {
		t.Fatalf("k2 before it is published: %d", code)
	}
	mu.Lock()
	published = jwkSet(t, testKey{alg: jose.ES256, kid: "k1", priv: k1}, testKey{alg: jose.ES256, kid: "k2", priv: k2})
	before := fetches
	mu.Unlock()
	if code := try(k2); code != 401 {
		t.Fatalf("k2 within the cooldown: %d", code)
	}
	clock.Advance(31 * time.Second)
	if code := try(k2); code != 200 {
		t.Fatalf("k2 once published, after the cooldown: %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if fetches != before+1 {
		t.Errorf("%d fetches for the new key, want 1", fetches-before)
	}
}
