package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/jws"
	"github.com/m2mauth/m2mauth/tokensource"
)

// tokenStub is a token endpoint that records each request's form and
// Authorization header and answers with a fresh token, or with status.
type tokenStub struct {
	mu     sync.Mutex
	forms  []url.Values
	auths  []string
	status int
}

func (s *tokenStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" || r.ParseForm() != nil {
		http.Error(w, "unexpected request", http.StatusBadRequest)
		return
	}
	s.forms = append(s.forms, r.PostForm)
	s.auths = append(s.auths, r.Header.Get("Authorization"))
	w.Header().Set("Content-Type", "application/json")
	if s.status != 0 {
		w.WriteHeader(s.status)
		fmt.Fprint(w, `{"error":"invalid_client","error_description":"client authentication failed"}`)
		return
	}
	fmt.Fprintf(w, `{"access_token":"at-%d","token_type":"Bearer","expires_in":900,"scope":"orders:read"}`, len(s.forms))
}

func (s *tokenStub) last() (url.Values, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.forms) == 0 {
		return nil, ""
	}
	return s.forms[len(s.forms)-1], s.auths[len(s.auths)-1]
}

func startTokenStub(t *testing.T) (*tokenStub, string) {
	t.Helper()
	stub := &tokenStub{}
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	return stub, srv.URL
}

func writeTestFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifiedAssertion checks a private_key_jwt request and returns the
// assertion's kid, alg and claims after verifying it with pub.
func verifiedAssertion(t *testing.T, form url.Values, auth string, pub crypto.PublicKey, alg jose.SignatureAlgorithm) (kid string, claims map[string]any) {
	t.Helper()
	if auth != "" || form.Get("client_assertion_type") != tokensource.AssertionTypeJWTBearer || form.Get("client_id") != "m2mc_a" {
		t.Fatalf("request: auth %q form %v", auth, form)
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{alg})
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Claims(pub, &claims); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if typ := tok.Headers[0].ExtraHeaders[jose.HeaderType]; typ != "client-authentication+jwt" {
		t.Fatalf("typ %v", typ)
	}
	if claims["iss"] != "m2mc_a" || claims["sub"] != "m2mc_a" || claims["exp"].(float64)-claims["iat"].(float64) != 60 {
		t.Fatalf("claims %v", claims)
	}
	return tok.Headers[0].KeyID, claims
}

func TestTokenWithPrivateKey(t *testing.T) {
	stub, srvURL := startTokenStub(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	pemFile := writeTestFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))

	r := cli(t, nil, "token", "--server", srvURL+"/", "--client-id", "m2mc_a", "--private-key", pemFile, "--key-id", "k1",
		"--scopes", "orders:read", "--audience", "https://api.example.com")
	if r.code != 0 || r.stdout != "at-1\n" {
		t.Fatalf("token --private-key: %+v", r)
	}
	form, auth := stub.last()
	kid, claims := verifiedAssertion(t, form, auth, ec.Public(), jose.ES256)
	// aud is the issuer (the server URL without the trailing slash), one string.
	if kid != "k1" || claims["aud"] != srvURL || form.Get("scope") != "orders:read" || form.Get("audience") != "https://api.example.com" {
		t.Fatalf("kid %q claims %v form %v", kid, claims, form)
	}

	// An Ed25519 JWK from the environment, another audience, --json.
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	jwk, _ := json.Marshal(&jose.JSONWebKey{Key: ed, KeyID: "ed-1"})
	jwkFile := writeTestFile(t, "key.jwk", jwk)
	vars := map[string]string{"M2MAUTH_SERVER": srvURL, "M2MAUTH_CLIENT_ID": "m2mc_a", "M2MAUTH_PRIVATE_KEY_FILE": jwkFile, "M2MAUTH_ASSERTION_ALG": "EdDSA"}
	r = cli(t, vars, "token", "--assertion-audience", srvURL+"/oauth/token", "--json")
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Scope       string `json:"scope"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &tok) != nil || tok.AccessToken != "at-2" || tok.TokenType != "Bearer" || tok.ExpiresIn != 900 || tok.Scope != "orders:read" {
		t.Fatalf("token --json with a JWK: %+v", r)
	}
	form, auth = stub.last()
	if kid, claims := verifiedAssertion(t, form, auth, ed.Public(), jose.EdDSA); kid != "ed-1" || claims["aud"] != srvURL+"/oauth/token" {
		t.Fatalf("kid %q claims %v", kid, claims)
	}

	// The server refuses: the OAuth error is printed.
	stub.status = http.StatusUnauthorized
	r = cli(t, nil, "token", "--server", srvURL, "--client-id", "m2mc_a", "--private-key", pemFile)
	if r.code != 1 || !strings.Contains(r.stderr, "invalid_client") {
		t.Fatalf("refused: %+v", r)
	}
}

func TestTokenWithAssertionFile(t *testing.T) {
	stub, srvURL := startTokenStub(t)
	enc := base64.RawURLEncoding.EncodeToString
	svid := enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(`{"sub":"spiffe://example.org/billing"}`)) + "." + enc([]byte("sig"))
	file := writeTestFile(t, "svid", []byte(svid+"\n"))

	r := cli(t, nil, "token", "--server", srvURL, "--assertion-file", file, "--assertion-type", "jwt-spiffe")
	form, auth := stub.last()
	if r.code != 0 || r.stdout != "at-1\n" || auth != "" || form.Get("client_assertion") != svid ||
		form.Get("client_assertion_type") != tokensource.AssertionTypeSPIFFE || form.Has("client_id") {
		t.Fatalf("token --assertion-file: %+v, auth %q form %v", r, auth, form)
	}
	// The default type, with a client id.
	r = cli(t, nil, "token", "--server", srvURL, "--assertion-file", file, "--client-id", "m2mc_a")
	form, _ = stub.last()
	if r.code != 0 || form.Get("client_assertion_type") != tokensource.AssertionTypeJWTBearer || form.Get("client_id") != "m2mc_a" {
		t.Fatalf("jwt-bearer: %+v, form %v", r, form)
	}
}

func TestTokenFlagValidation(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(ec.Public())
	pubFile := writeTestFile(t, "pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	privDER, _ := x509.MarshalECPrivateKey(ec)
	privFile := writeTestFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: privDER}))
	srv := []string{"--server", "http://127.0.0.1:1"}
	tests := []struct {
		name    string
		args    []string
		vars    map[string]string
		wantErr string
	}{
		{"no server", []string{"--client-id", "a", "--client-secret", "s"}, nil, "--server is required"},
		{"no credential", append(srv, "--client-id", "a"), nil, "a client credential is required: --client-secret, --private-key, --assertion-file or --cert (tls_client_auth)"},
		{"secret and key", append(srv, "--client-id", "a", "--client-secret", "s", "--private-key", "k.pem"), nil,
			"give exactly one client credential, not --client-secret and --private-key"},
		{"a secret left in the environment", append(srv, "--client-id", "a", "--assertion-file", "/t"), map[string]string{"M2MAUTH_CLIENT_SECRET": "s"},
			"not --assertion-file and --client-secret (from $M2MAUTH_CLIENT_SECRET)"},
		{"secret without client id", append(srv, "--client-secret", "s"), nil, "--client-id is required with --client-secret"},
		{"key without client id", append(srv, "--private-key", pubFile), nil, "--client-id is required with --private-key"},
		{"key id without a key", append(srv, "--client-id", "a", "--client-secret", "s", "--key-id", "k"), nil, "--key-id applies only with --private-key"},
		{"alg from the environment without a key", append(srv, "--assertion-file", "/t"), map[string]string{"M2MAUTH_ASSERTION_ALG": "ES256"},
			"--alg (from $M2MAUTH_ASSERTION_ALG) applies only with --private-key"},
		{"assertion audience with a file", append(srv, "--assertion-file", "/t", "--assertion-audience", "x"), nil, "--assertion-audience applies only with --private-key"},
		{"assertion type without a file", append(srv, "--client-id", "a", "--client-secret", "s", "--assertion-type", "jwt-spiffe"), nil, "--assertion-type applies only with --assertion-file"},
		{"unknown assertion type", append(srv, "--assertion-file", "/t", "--assertion-type", "spiffe"), nil, `--assertion-type "spiffe": want jwt-bearer or jwt-spiffe`},
		{"public key", append(srv, "--client-id", "a", "--private-key", pubFile), nil, "the private key is needed to sign"},
		{"alg that does not fit", append(srv, "--client-id", "a", "--private-key", privFile, "--alg", "RS256"), nil, `algorithm "RS256" does not fit this key: want ES256`},
		{"missing key file", append(srv, "--client-id", "a", "--private-key", pubFile+"x"), nil, "no such file"},
		{"missing assertion file", append(srv, "--assertion-file", filepath.Join(t.TempDir(), "none")), nil, "no such file"},
		{"a public key as the DPoP key, from the environment", append(srv, "--client-id", "a", "--client-secret", "s"), map[string]string{"M2MAUTH_DPOP_KEY_FILE": pubFile},
			"--dpop-key (from $M2MAUTH_DPOP_KEY_FILE): tokensource: private key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.vars, append([]string{"token"}, tc.args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("got %+v; want exit 1, stderr ~ %q", r, tc.wantErr)
			}
		})
	}
	r := cli(t, nil, "token", "--help")
	for _, want := range []string{"--private-key", "$M2MAUTH_PRIVATE_KEY_FILE", "--key-id", "--alg", "--assertion-file", "--assertion-type", "--assertion-audience",
		"--cert", "$M2MAUTH_CLIENT_CERT", "--key", "$M2MAUTH_CLIENT_KEY", "--cacert", "--dpop-key", "$M2MAUTH_DPOP_KEY_FILE"} {
		if r.code != 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("token --help lacks %q: %+v", want, r)
		}
	}
}

// startTLSTokenStub is the token stub behind TLS that asks for a client
// certificate, and the file of its CA certificate (for --cacert). Its
// discovery names an mTLS alias of the token endpoint, where requests with
// a certificate must go. certs records the CommonName of each token
// request's client certificate ("-": none) and the path it went to.
func startTLSTokenStub(t *testing.T) (stub *tokenStub, srvURL, caFile string, certs func() []string) {
	t.Helper()
	stub = &tokenStub{}
	var mu sync.Mutex
	var cns []string
	var srv *httptest.Server
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer":%q,"token_endpoint":"%[1]s/oauth/token","mtls_endpoint_aliases":{"token_endpoint":"%[1]s/mtls/oauth/token"}}`, srv.URL)
			return
		}
		cn := "-"
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		mu.Lock()
		cns = append(cns, cn+" "+r.URL.Path)
		mu.Unlock()
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/mtls")
		stub.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshake without --cacert
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = writeTestFile(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return stub, srv.URL, caFile, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(cns)
	}
}

// writeClientCert writes a self-signed client certificate and its key as
// PEM files.
func writeClientCert(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	return writeTestFile(t, cn+".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		writeTestFile(t, cn+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

func TestTokenWithClientCertificate(t *testing.T) {
	stub, srvURL, caFile, certs := startTLSTokenStub(t)
	certFile, keyFile := writeClientCert(t, "billing")

	// tls_client_auth: the certificate is the credential, client_id names
	// the client; the request goes to the mTLS alias of discovery.
	r := cli(t, nil, "token", "--server", srvURL, "--client-id", "m2mc_a", "--cert", certFile, "--key", keyFile, "--cacert", caFile)
	form, auth := stub.last()
	if r.code != 0 || r.stdout != "at-1\n" || auth != "" || form.Encode() != "client_id=m2mc_a&grant_type=client_credentials" {
		t.Fatalf("token --cert: %+v, auth %q form %v", r, auth, form)
	}
	// A secret from the environment, and the certificate and its key in
	// one file (from the environment too): HTTP Basic, and the certificate
	// is presented for a bound token.
	both := writeTestFile(t, "both.pem", append(must(os.ReadFile(certFile)), must(os.ReadFile(keyFile))...))
	vars := map[string]string{"M2MAUTH_CLIENT_SECRET": "s", "M2MAUTH_CLIENT_CERT": both, "M2MAUTH_CACERT": caFile}
	r = cli(t, vars, "token", "--server", srvURL, "--client-id", "m2mc_a", "--json")
	form, auth = stub.last()
	if r.code != 0 || !strings.Contains(r.stdout, `"token_type": "Bearer"`) || !strings.HasPrefix(auth, "Basic ") || form.Has("client_id") {
		t.Fatalf("token --client-secret --cert: %+v, auth %q form %v", r, auth, form)
	}
	if got := certs(); strings.Join(got, ", ") != "billing /mtls/oauth/token, billing /mtls/oauth/token" {
		t.Fatalf("client certificates and endpoints %q", got)
	}
	// A secret and only --cacert: no certificate, the plain endpoint.
	r = cli(t, nil, "token", "--server", srvURL, "--client-id", "m2mc_a", "--client-secret", "s", "--cacert", caFile)
	if got := certs(); r.code != 0 || len(got) != 3 || got[2] != "- /oauth/token" {
		t.Fatalf("--cacert alone: %+v, certificates %q", r, got)
	}
	// Without --cacert the server's certificate is not trusted.
	r = cli(t, nil, "token", "--server", srvURL, "--client-id", "m2mc_a", "--cert", certFile, "--key", keyFile)
	if r.code != 1 || !strings.Contains(r.stderr, "certificate") || len(certs()) != 3 {
		t.Fatalf("without --cacert: %+v", r)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestTokenClientCertificateFlags(t *testing.T) {
	certFile, keyFile := writeClientCert(t, "billing")
	srv := []string{"--server", "https://127.0.0.1:1"}
	tests := []struct {
		name    string
		args    []string
		vars    map[string]string
		wantErr string
	}{
		{"key without cert", append(srv, "--client-id", "a", "--client-secret", "s", "--key", keyFile), nil, "--key applies only with --cert"},
		{"key from the environment without cert", append(srv, "--client-id", "a", "--client-secret", "s"), map[string]string{"M2MAUTH_CLIENT_KEY": keyFile},
			"--key (from $M2MAUTH_CLIENT_KEY) applies only with --cert"},
		{"cert alone without client id", append(srv, "--cert", certFile, "--key", keyFile), nil,
			"--client-id is required with --cert as the only credential (tls_client_auth)"},
		{"cert from the environment without client id", srv, map[string]string{"M2MAUTH_CLIENT_CERT": certFile},
			"--client-id is required with --cert (from $M2MAUTH_CLIENT_CERT) as the only credential"},
		{"cert without its key", append(srv, "--client-id", "a", "--cert", certFile), nil, "--cert: tls: "},
		{"key that does not match", append(srv, "--client-id", "a", "--cert", certFile, "--key", writeTestFile(t, "other.key", func() []byte {
			_, k := writeClientCert(t, "other")
			return must(os.ReadFile(k))
		}())), nil, "--cert: tls: private key does not match public key"},
		{"not a CA file", append(srv, "--client-id", "a", "--client-secret", "s", "--cacert", keyFile), nil, "--cacert: no PEM certificate in the file"},
		{"missing CA file", append(srv, "--client-id", "a", "--client-secret", "s", "--cacert", keyFile+"x"), nil, "--cacert: open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.vars, append([]string{"token"}, tc.args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("got %+v; want exit 1, stderr ~ %q", r, tc.wantErr)
			}
		})
	}
}

// dpopTokenStub is a token endpoint that checks DPoP proofs: with one it
// answers a DPoP token (bearer: a Bearer one anyway), and with nonce set it
// first asks for that nonce. jkts records the thumbprint of each proof.
type dpopTokenStub struct {
	mu       sync.Mutex
	url      string
	nonce    string
	bearer   bool
	requests int
	jkts     []string
	errs     []string
}

func (s *dpopTokenStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	w.Header().Set("Content-Type", "application/json")
	p, err := dpop.Check(r.Header.Get("DPoP"), dpop.Request{Method: r.Method, URL: s.url + r.URL.Path}, time.Now(), dpop.Options{})
	if err != nil {
		s.errs = append(s.errs, err.Error())
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":%q,"error_description":%q}`, err.Code, err.Description)
		return
	}
	if s.nonce != "" && p.Nonce != s.nonce {
		w.Header().Set("DPoP-Nonce", s.nonce)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"use_dpop_nonce"}`)
		return
	}
	s.jkts = append(s.jkts, p.JKT)
	typ := "DPoP"
	if s.bearer {
		typ = "Bearer"
	}
	fmt.Fprintf(w, `{"access_token":"at-%d","token_type":%q,"expires_in":900}`, s.requests, typ)
}

func TestTokenWithDPoPKey(t *testing.T) {
	stub := &dpopTokenStub{}
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	stub.url = srv.URL
	keyFile := filepath.Join(t.TempDir(), "dpop.pem")

	// No key file yet: a P-256 key is written, 0600, and said so.
	r := cli(t, nil, "token", "--server", srv.URL, "--client-id", "m2mc_a", "--client-secret", "s", "--dpop-key", keyFile, "--json")
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &tok) != nil || tok.TokenType != "DPoP" || tok.AccessToken != "at-1" ||
		r.stderr != "wrote a new DPoP key (ECDSA P-256) to "+keyFile+"\n" {
		t.Fatalf("token --dpop-key: %+v (errors %q)", r, stub.errs)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	thumb := cli(t, nil, "dpop", "thumbprint", "--key", keyFile)
	if thumb.code != 0 || strings.TrimSpace(thumb.stdout) != stub.jkts[0] {
		t.Fatalf("dpop thumbprint %+v, token bound to %q", thumb, stub.jkts[0])
	}

	// The key from the environment is reused; the server asks for a nonce
	// first; a private_key_jwt client.
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	pemFile := writeTestFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	stub.nonce = "n-1"
	r = cli(t, map[string]string{"M2MAUTH_DPOP_KEY_FILE": keyFile}, "token", "--server", srv.URL, "--client-id", "m2mc_a", "--private-key", pemFile)
	if r.code != 0 || r.stdout != "at-3\n" || r.stderr != "" || len(stub.jkts) != 2 || stub.jkts[1] != stub.jkts[0] {
		t.Fatalf("token with the same key and a nonce: %+v, jkts %q", r, stub.jkts)
	}

	// A server that answers Bearer: printed, with a note (after its nonce
	// challenge: a new Source knows no nonce).
	stub.bearer = true
	r = cli(t, nil, "token", "--server", srv.URL, "--client-id", "m2mc_a", "--client-secret", "s", "--dpop-key", keyFile)
	if r.code != 0 || r.stdout != "at-5\n" || !strings.Contains(r.stderr, "token type Bearer: the token is not bound to the DPoP key") {
		t.Fatalf("Bearer answer: %+v", r)
	}

	// A file that is not a key is not overwritten.
	bad := writeTestFile(t, "bad.pem", []byte("not a key"))
	r = cli(t, nil, "token", "--server", srv.URL, "--client-id", "m2mc_a", "--client-secret", "s", "--dpop-key", bad)
	if b, _ := os.ReadFile(bad); r.code != 1 || !strings.Contains(r.stderr, "--dpop-key: ") || string(b) != "not a key" {
		t.Fatalf("a bad key file: %+v", r)
	}
}

func TestDPoPProof(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	keyFile := writeTestFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	jwk, _ := json.Marshal(&jose.JSONWebKey{Key: ed})
	jwkFile := writeTestFile(t, "key.jwk", jwk)
	tokenFile := writeTestFile(t, "token", []byte("at-1\n"))
	wantJKT := func(pub crypto.PublicKey) string {
		j, err := jws.Thumbprint(pub)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}

	tests := []struct {
		name string
		args []string
		vars map[string]string
		req  dpop.Request
		jkt  string
		alg  string
		// nonce in the proof
		nonce string
	}{
		{"API request with a token", []string{"--key", keyFile, "--method", "POST", "--url", "https://API.example.com:443/orders?page=2", "--token", "at-1"}, nil,
			dpop.Request{Method: "POST", URL: "https://api.example.com/orders", AccessToken: "at-1"}, wantJKT(ec.Public()), "ES256", ""},
		{"token file, JWK key from the environment, nonce", []string{"--url", "https://api.example.com/orders", "--token-file", tokenFile, "--nonce", "n-1"},
			map[string]string{"M2MAUTH_DPOP_KEY_FILE": jwkFile},
			dpop.Request{Method: "GET", URL: "https://api.example.com/orders", AccessToken: "at-1"}, wantJKT(ed.Public()), "EdDSA", "n-1"},
		{"token endpoint", []string{"--key", keyFile, "--method", "POST", "--url", "https://auth.example.com/oauth/token"}, nil,
			dpop.Request{Method: "POST", URL: "https://auth.example.com/oauth/token"}, wantJKT(ec.Public()), "ES256", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.vars, append([]string{"dpop", "proof"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("%+v", r)
			}
			p, err := dpop.Check(strings.TrimSpace(r.stdout), tc.req, time.Now(), dpop.Options{})
			if err != nil || p.JKT != tc.jkt || p.Alg != tc.alg || p.Nonce != tc.nonce {
				t.Fatalf("proof %+v: %v", p, err)
			}
			// A proof for another method does not pass.
			other := tc.req
			other.Method = "DELETE"
			if _, err := dpop.Check(strings.TrimSpace(r.stdout), other, time.Now(), dpop.Options{}); err == nil {
				t.Fatal("the proof passes for another method")
			}
		})
	}
	// Without --token there is no ath: a resource server refuses it.
	r := cli(t, nil, "dpop", "proof", "--key", keyFile, "--url", "https://api.example.com/orders")
	if _, err := dpop.Check(strings.TrimSpace(r.stdout), dpop.Request{Method: "GET", URL: "https://api.example.com/orders", AccessToken: "at-1"}, time.Now(), dpop.Options{}); err == nil {
		t.Fatal("a proof without ath accepted with a token")
	}

	missing := filepath.Join(t.TempDir(), "none.pem")
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no key", []string{"proof", "--url", "https://a/b"}, "--key is required"},
		{"no url", []string{"proof", "--key", keyFile}, "--url is required"},
		{"both tokens", []string{"proof", "--key", keyFile, "--url", "https://a/b", "--token", "t", "--token-file", tokenFile}, "give --token or --token-file, not both"},
		{"not an http URL", []string{"proof", "--key", keyFile, "--url", "ftp://a/b"}, "not an absolute http or https URL"},
		{"missing key file", []string{"proof", "--key", missing, "--url", "https://a/b"}, "no such file"},
		{"empty token file", []string{"proof", "--key", keyFile, "--url", "https://a/b", "--token-file", writeTestFile(t, "empty", []byte("\n"))}, "empty"},
		{"thumbprint without key", []string{"thumbprint"}, "--key is required"},
		{"thumbprint of a missing key", []string{"thumbprint", "--key", missing}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, nil, append([]string{"dpop"}, tc.args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("got %+v; want exit 1, stderr ~ %q", r, tc.wantErr)
			}
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("dpop proof created a key")
	}
	if r := cli(t, nil, "dpop", "thumbprint", "--key", jwkFile); r.code != 0 || strings.TrimSpace(r.stdout) != wantJKT(ed.Public()) {
		t.Fatalf("thumbprint of a JWK: %+v", r)
	}
	if r := cli(t, nil, "dpop", "--help"); r.code != 0 || !strings.Contains(r.stderr, "proof") || !strings.Contains(r.stderr, "thumbprint") {
		t.Fatalf("dpop --help: %+v", r)
	}
	if r := cli(t, nil, "dpop", "proof", "--help"); r.code != 0 || !strings.Contains(r.stderr, "$M2MAUTH_DPOP_KEY_FILE") || !strings.Contains(r.stderr, "curl") {
		t.Fatalf("dpop proof --help: %+v", r)
	}
}
