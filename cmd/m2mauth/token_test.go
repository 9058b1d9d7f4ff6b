package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
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
		{"no credential", append(srv, "--client-id", "a"), nil, "a client credential is required: --client-secret, --private-key or --assertion-file"},
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
	for _, want := range []string{"--private-key", "$M2MAUTH_PRIVATE_KEY_FILE", "--key-id", "--alg", "--assertion-file", "--assertion-type", "--assertion-audience"} {
		if r.code != 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("token --help lacks %q: %+v", want, r)
		}
	}
}
