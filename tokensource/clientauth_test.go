package tokensource

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testKeys are generated once per test binary (RSA generation is slow).
var testKeys = sync.OnceValue(func() (k struct {
	rsa   *rsa.PrivateKey
	p256  *ecdsa.PrivateKey
	p384  *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
	rsa1k *rsa.PrivateKey
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsa1k, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		panic(err)
	}
	if k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

const (
	testIssuer   = "https://auth.example"
	testTokenURL = "https://auth.example/oauth/token"
)

// withKey configures private_key_jwt instead of the secret.
func withKey(key crypto.Signer, kid, alg string) func(*Config) {
	return func(c *Config) {
		c.ClientSecret, c.Issuer, c.PrivateKey, c.KeyID, c.SigningAlg = "", testIssuer, key, kid, alg
	}
}

// assertion is a verified private_key_jwt assertion as the server saw it.
type assertion struct {
	alg, kid, typ string
	claims        map[string]any
}

// verifyAssertion checks the client-authentication part of a token request
// made with a private key, verifies the assertion's signature with pub and
// returns it.
func verifyAssertion(t *testing.T, form url.Values, auth string, pub crypto.PublicKey, alg string) assertion {
	t.Helper()
	if auth != "" || form.Get("client_secret") != "" {
		t.Fatalf("a secret was sent too: %q %q", auth, form.Get("client_secret"))
	}
	if form.Get("client_assertion_type") != AssertionTypeJWTBearer || form.Get("client_id") != "m2mc_a" || form.Get("grant_type") != "client_credentials" {
		t.Fatalf("form %v", form)
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("parse (want %s): %v", alg, err)
	}
	var a assertion
	if err := tok.Claims(pub, &a.claims); err != nil {
		t.Fatalf("signature does not verify with the public key: %v", err)
	}
	h := tok.Headers[0]
	a.alg, a.kid = h.Algorithm, h.KeyID
	a.typ, _ = h.ExtraHeaders[jose.HeaderType].(string)
	return a
}

func (a assertion) num(t *testing.T, name string) int64 {
	t.Helper()
	v, ok := a.claims[name].(float64)
	if !ok {
		t.Fatalf("claim %s: %#v, want a number", name, a.claims[name])
	}
	return int64(v)
}

func TestPrivateKeyJWTAssertion(t *testing.T) {
	k := testKeys()
	thumb := func(pub crypto.PublicKey) string {
		tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(tp)
	}
	tests := []struct {
		name             string
		key              crypto.Signer
		kid, alg         string
		wantAlg, wantKid string
	}{
		{"RSA defaults to RS256", k.rsa, "k-rsa", "", "RS256", "k-rsa"},
		{"RSA with PS256", k.rsa, "k-rsa", "PS256", "PS256", "k-rsa"},
		{"P-256 is ES256", k.p256, "k-ec", "", "ES256", "k-ec"},
		{"Ed25519 is EdDSA", k.ed, "k-ed", "", "EdDSA", "k-ed"},
		{"no kid: the RFC 7638 thumbprint", k.p256, "", "ES256", "ES256", thumb(k.p256.Public())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := &tokenServer{expiresIn: 900}
				s := newSource(t, srv, withKey(tc.key, tc.kid, tc.alg))
				if tok, err := s.Token(t.Context()); err != nil || tok.AccessToken != "tok-1" {
					t.Fatalf("%v %v", tok, err)
				}
				a := verifyAssertion(t, srv.forms[0], srv.auths[0], tc.key.Public(), tc.wantAlg)
				if a.alg != tc.wantAlg || a.kid != tc.wantKid || a.typ != "client-authentication+jwt" {
					t.Fatalf("header alg %q kid %q typ %q; want %q %q client-authentication+jwt", a.alg, a.kid, a.typ, tc.wantAlg, tc.wantKid)
				}
				// aud is one JSON string, never an array.
				if a.claims["iss"] != "m2mc_a" || a.claims["sub"] != "m2mc_a" || a.claims["aud"] != testIssuer {
					t.Fatalf("claims %v", a.claims)
				}
				if iat := a.num(t, "iat"); iat != time.Now().Unix() || a.num(t, "exp")-iat != 60 {
					t.Fatalf("iat %d exp %d at %d: want iat now and a 60 s lifetime", iat, a.num(t, "exp"), time.Now().Unix())
				}
				jti, _ := a.claims["jti"].(string)
				if b, err := base64.RawURLEncoding.DecodeString(jti); err != nil || len(b) < 16 {
					t.Fatalf("jti %q: want at least 128 random bits", jti)
				}
				// The other parameters are still sent.
				if f := srv.forms[0]; f.Get("scope") != "orders:read" || f.Get("audience") != "https://api" {
					t.Fatalf("form %v", f)
				}
			})
		})
	}
}

// Every request carries a new assertion, with the clock of its own time:
// retries after a 5xx, the background early refresh and a fetch after
// Invalidate. AssertionAudience and AssertionLifetime change aud and exp.
func TestPrivateKeyJWTFreshAssertionEveryRequest(t *testing.T) {
	k := testKeys()
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 1000, script: []resp{{status: 503, header: map[string]string{"Retry-After": "2"}}}}
		s := newSource(t, srv, withKey(k.ed, "k1", ""), func(c *Config) {
			c.AssertionAudience, c.AssertionLifetime = testTokenURL, 30*time.Second
		})
		start := time.Now().Unix()
		if tok, err := s.Token(t.Context()); err != nil || tok.AccessToken != "tok-2" {
			t.Fatalf("%v %v", tok, err)
		}
		time.Sleep(800 * time.Second) // past the refresh point
		s.Token(t.Context())
		synctest.Wait()
		tok, _ := s.Token(t.Context())
		if tok.AccessToken != "tok-3" {
			t.Fatalf("early refresh: %s", tok.AccessToken)
		}
		time.Sleep(5 * time.Second)
		s.Invalidate(tok)
		if tok, _ := s.Token(t.Context()); tok.AccessToken != "tok-4" {
			t.Fatalf("after Invalidate: %s", tok.AccessToken)
		}
		wantIat := []int64{start, start + 2, start + 802, start + 807}
		if len(srv.forms) != len(wantIat) {
			t.Fatalf("%d requests, want %d", len(srv.forms), len(wantIat))
		}
		seen := map[string]bool{}
		for i, f := range srv.forms {
			a := verifyAssertion(t, f, srv.auths[i], k.ed.Public(), "EdDSA")
			jti, _ := a.claims["jti"].(string)
			if jti == "" || seen[jti] {
				t.Fatalf("request %d: jti %q reused or missing", i, jti)
			}
			seen[jti] = true
			if iat := a.num(t, "iat"); iat != wantIat[i] || a.num(t, "exp") != iat+30 || a.claims["aud"] != testTokenURL {
				t.Fatalf("request %d: iat %d exp %d aud %v; want iat %d, exp iat+30, aud %s", i, iat, a.num(t, "exp"), a.claims["aud"], wantIat[i], testTokenURL)
			}
		}
	})
}

// writeFile writes a test file and returns its path.
func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func jwkOf(key any, kid, alg string) []byte {
	b, err := json.Marshal(&jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg})
	if err != nil {
		panic(err)
	}
	return b
}

func TestPrivateKeyFile(t *testing.T) {
	k := testKeys()
	pkcs8 := func(key any) []byte { return pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(key))) }
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	tests := []struct {
		name             string
		file             []byte
		cfgKid, cfgAlg   string
		pub              crypto.PublicKey
		wantAlg, wantKid string // wantKid "" means the thumbprint
	}{
		{"PKCS#8 RSA", pkcs8(k.rsa), "kid-1", "", k.rsa.Public(), "RS256", "kid-1"},
		{"PKCS#8 RSA with PS256", pkcs8(k.rsa), "kid-1", "PS256", k.rsa.Public(), "PS256", "kid-1"},
		{"PKCS#1 RSA", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa)), "", "", k.rsa.Public(), "RS256", ""},
		{"SEC1 P-256 after EC PARAMETERS", append(ecParams, pemOf("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(k.p256)))...), "", "", k.p256.Public(), "ES256", ""},
		{"PKCS#8 Ed25519", pkcs8(k.ed), "", "", k.ed.Public(), "EdDSA", ""},
		{"JWK with kid and alg", jwkOf(k.rsa, "jwk-1", "PS256"), "", "", k.rsa.Public(), "PS256", "jwk-1"},
		{"JWK without kid", jwkOf(k.p256, "", ""), "", "", k.p256.Public(), "ES256", ""},
		{"JWK Ed25519, kid from the config", jwkOf(k.ed, "jwk-ed", ""), "cfg-kid", "", k.ed.Public(), "EdDSA", "cfg-kid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "key", tc.file)
			wantKid := tc.wantKid
			if wantKid == "" {
				tp, _ := (&jose.JSONWebKey{Key: tc.pub}).Thumbprint(crypto.SHA256)
				wantKid = base64.RawURLEncoding.EncodeToString(tp)
			}
			synctest.Test(t, func(t *testing.T) {
				srv := &tokenServer{expiresIn: 900}
				s := newSource(t, srv, func(c *Config) {
					c.ClientSecret, c.Issuer, c.PrivateKeyFile, c.KeyID, c.SigningAlg = "", testIssuer, path, tc.cfgKid, tc.cfgAlg
				})
				if _, err := s.Token(t.Context()); err != nil {
					t.Fatal(err)
				}
				a := verifyAssertion(t, srv.forms[0], srv.auths[0], tc.pub, tc.wantAlg)
				if a.alg != tc.wantAlg || a.kid != wantKid {
					t.Fatalf("alg %q kid %q; want %q %q", a.alg, a.kid, tc.wantAlg, wantKid)
				}
			})
		})
	}
}

func TestPrivateKeyRefused(t *testing.T) {
	k := testKeys()
	pub := func(key any) []byte { return pemOf("PUBLIC KEY", must(x509.MarshalPKIXPublicKey(key))) }
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1}})
	secretJWK := []byte(`{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}`)
	secp256k1 := []byte(`{"kty":"EC","crv":"secp256k1","x":"AAAA","y":"AAAA","d":"AAAA"}`)
	tests := []struct {
		name    string
		file    []byte
		alg     string
		wantErr string
	}{
		{"public key PEM", pub(k.rsa.Public()), "", `only ["PUBLIC KEY"]`},
		{"public JWK", jwkOf(k.p256.Public(), "k", ""), "", "a public JWK"},
		{"P-384 SEC1", pemOf("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(k.p384))), "", "unsupported curve P-384"},
		{"P-384 JWK", jwkOf(k.p384, "k", ""), "", "unsupported curve P-384"},
		{"secp256k1 JWK", secp256k1, "", "not a usable JWK"},
		{"symmetric JWK", secretJWK, "", "want an RSA, EC P-256 or Ed25519 private key"},
		{"JWK set", []byte(`{"keys":[` + string(jwkOf(k.p256, "k", "")) + `]}`), "", "a JWK set"},
		{"encrypted PEM", encrypted, "", "decrypt it first"},
		{"RSA of 1024 bits", pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(k.rsa1k))), "", "RSA key of 1024 bits"},
		{"ES256 with an RSA key", pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(k.rsa))), "ES256", `algorithm "ES256" does not fit this key: want RS256 or PS256`},
		{"RS384 is not offered", pemOf("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(k.rsa))), "RS384", `algorithm "RS384" does not fit`},
		{"EdDSA JWK asking ES256", jwkOf(k.ed, "k", "ES256"), "", `algorithm "ES256" does not fit this key: want EdDSA`},
		{"neither PEM nor JWK", []byte("hello"), "", "neither PEM nor a JWK"},
		{"empty", nil, "", "neither PEM nor a JWK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "key", tc.file)
			_, err := New(Config{TokenURL: testTokenURL, Issuer: testIssuer, ClientID: "m2mc_a", PrivateKeyFile: path, SigningAlg: tc.alg})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want ~ %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), "tokensource: ") {
				t.Fatalf("err %v without the package prefix", err)
			}
		})
	}
	if _, err := New(Config{TokenURL: testTokenURL, Issuer: testIssuer, ClientID: "m2mc_a", PrivateKeyFile: filepath.Join(t.TempDir(), "none")}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// jwtLike is a compact JWS that is not verified by anything here.
func jwtLike(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"k8s"}`)) + "." + enc([]byte(payload)) + "." + enc([]byte("sig"))
}

// The assertion file is read for every token request: Kubernetes rotates a
// projected service-account token on disk.
func TestAssertionFileIsReadOnEveryRequest(t *testing.T) {
	path := writeFile(t, "token", []byte(jwtLike(`{"sub":"system:serviceaccount:ns:a","n":1}`)+"\n"))
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 1000}
		s := newSource(t, srv, func(c *Config) { c.ClientID, c.ClientSecret, c.AssertionFile = "", "", path })
		if _, err := s.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		f := srv.forms[0]
		if f.Get("client_assertion") != jwtLike(`{"sub":"system:serviceaccount:ns:a","n":1}`) || f.Get("client_assertion_type") != AssertionTypeJWTBearer || f.Has("client_id") || srv.auths[0] != "" {
			t.Fatalf("first request: %v auth %q", f, srv.auths[0])
		}
		// The kubelet replaces the token (atomically, through a rename).
		next := writeFile(t, "next", []byte(jwtLike(`{"sub":"system:serviceaccount:ns:a","n":2}`)))
		if err := os.Rename(next, path); err != nil {
			t.Fatal(err)
		}
		time.Sleep(800 * time.Second) // the early refresh reads the new one
		s.Token(t.Context())
		synctest.Wait()
		if got := srv.forms[1].Get("client_assertion"); got != jwtLike(`{"sub":"system:serviceaccount:ns:a","n":2}`) {
			t.Fatalf("early refresh sent %q", got)
		}
		// Once more after the API refused the token: read again.
		if err := os.WriteFile(path, []byte(jwtLike(`{"n":3}`)), 0o600); err != nil {
			t.Fatal(err)
		}
		tok, _ := s.Token(t.Context())
		s.Invalidate(tok)
		if _, err := s.Token(t.Context()); err != nil || srv.forms[2].Get("client_assertion") != jwtLike(`{"n":3}`) {
			t.Fatalf("after Invalidate: %v %v", srv.forms[2], err)
		}
		// A file that is gone is an error of that call, not retried.
		os.Remove(path)
		s.Invalidate(s.tok)
		if _, err := s.Token(t.Context()); !errors.Is(err, os.ErrNotExist) || srv.count() != 3 {
			t.Fatalf("missing file: %v after %d requests", err, srv.count())
		}
	})
}

func TestAssertionTypeAndClientID(t *testing.T) {
	path := writeFile(t, "svid", []byte(jwtLike(`{"sub":"spiffe://example.org/ns/a"}`)))
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 900}
		s := newSource(t, srv, func(c *Config) { c.ClientSecret, c.AssertionFile, c.AssertionType = "", path, AssertionTypeSPIFFE })
		if _, err := s.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		if f := srv.forms[0]; f.Get("client_assertion_type") != AssertionTypeSPIFFE || f.Get("client_id") != "m2mc_a" {
			t.Fatalf("form %v", f)
		}
	})
}

// A failing assertion callback fails that Token call at once: no retries,
// no backoff, no request to the token endpoint.
func TestAssertionFuncErrorsAreNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 900}
		boom := errors.New("metadata service unavailable")
		var calls int
		var ret string
		var retErr error
		s := newSource(t, srv, func(c *Config) {
			c.ClientSecret = ""
			c.AssertionFunc = func(ctx context.Context) (string, error) {
				calls++
				return ret, retErr
			}
		})
		retErr = boom
		start := time.Now()
		if _, err := s.Token(t.Context()); !errors.Is(err, boom) || calls != 1 || srv.count() != 0 || time.Since(start) != 0 {
			t.Fatalf("err %v after %d calls, %d requests, %s", err, calls, srv.count(), time.Since(start))
		}
		// Something that is not a JWT is refused without being quoted.
		ret, retErr = "ghp_notajwt secret value", nil
		if _, err := s.Token(t.Context()); err == nil || strings.Contains(err.Error(), "secret") || calls != 2 || srv.count() != 0 {
			t.Fatalf("not a JWT: %v after %d calls", err, calls)
		}
		ret = jwtLike(`{"sub":"repo:o/r:ref:refs/heads/main"}`)
		if tok, err := s.Token(t.Context()); err != nil || tok.AccessToken != "tok-1" || srv.forms[0].Get("client_assertion") != ret {
			t.Fatalf("%v %v", tok, err)
		}
	})
}

func TestClientAuthenticationConfig(t *testing.T) {
	k := testKeys()
	fn := func(context.Context) (string, error) { return "", nil }
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"none", func(c *Config) { c.ClientSecret = "" }, "no client authentication"},
		{"secret and key", func(c *Config) { c.PrivateKey = k.ed }, "ClientSecret and PrivateKey are set: set exactly one"},
		{"secret and file", func(c *Config) { c.AssertionFile = "/var/run/token" }, "ClientSecret and AssertionFile are set"},
		{"key and func", func(c *Config) { c.ClientSecret, c.PrivateKey, c.AssertionFunc = "", k.ed, fn }, "PrivateKey and AssertionFunc are set"},
		{"key and key file", func(c *Config) { c.ClientSecret, c.PrivateKey, c.PrivateKeyFile = "", k.ed, "/k.pem" }, "PrivateKey and PrivateKeyFile are set"},
		{"file and func", func(c *Config) { c.ClientSecret, c.AssertionFile, c.AssertionFunc = "", "/t", fn }, "AssertionFile and AssertionFunc are set"},
		{"secret without id", func(c *Config) { c.ClientID = "" }, "ClientID is required with ClientSecret"},
		{"key without id", func(c *Config) { c.ClientID, c.ClientSecret, c.PrivateKey = "", "", k.ed }, "ClientID is required with a private key"},
		{"key without audience", func(c *Config) { c.ClientSecret, c.PrivateKey = "", k.ed }, "set Issuer"},
		{"lifetime too long", func(c *Config) {
			c.ClientSecret, c.Issuer, c.PrivateKey, c.AssertionLifetime = "", testIssuer, k.ed, 10*time.Minute
		}, "AssertionLifetime 10m0s: want 1s to 5m0s"},
		{"negative lifetime", func(c *Config) {
			c.ClientSecret, c.Issuer, c.PrivateKey, c.AssertionLifetime = "", testIssuer, k.ed, -time.Second
		}, "AssertionLifetime -1s"},
		{"key options with a secret", func(c *Config) { c.KeyID = "k" }, "KeyID applies only to private_key_jwt"},
		{"audience with an assertion file", func(c *Config) { c.ClientSecret, c.AssertionFile, c.AssertionAudience = "", "/t", "x" }, "AssertionAudience applies only"},
		{"assertion type with a key", func(c *Config) {
			c.ClientSecret, c.Issuer, c.PrivateKey, c.AssertionType = "", testIssuer, k.ed, AssertionTypeSPIFFE
		}, "AssertionType applies only to AssertionFile or AssertionFunc"},
		{"unknown assertion type", func(c *Config) { c.ClientSecret, c.AssertionFile, c.AssertionType = "", "/t", "jwt-spiffe" }, `AssertionType "jwt-spiffe"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{TokenURL: testTokenURL, ClientID: "m2mc_a", ClientSecret: "s"}
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want ~ %q", err, tc.wantErr)
			}
		})
	}
	// Each kind alone is accepted; ClientID is optional with an assertion source.
	for _, cfg := range []Config{
		{TokenURL: testTokenURL, ClientID: "a", ClientSecret: "s"},
		{TokenURL: testTokenURL, Issuer: testIssuer, ClientID: "a", PrivateKey: k.p256, AssertionLifetime: MaxAssertionLifetime},
		{TokenURL: testTokenURL, AssertionFile: "/var/run/secrets/tokens/m2mauth"},
		{Issuer: testIssuer, AssertionFunc: fn, AssertionType: AssertionTypeSPIFFE},
	} {
		if _, err := New(cfg); err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}
