package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/jws"
)

// t0 is the tests' clock.
var t0 = time.Unix(1_800_000_000, 0)

const (
	testURL   = "https://as.example/oauth/token"
	testToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
)

var (
	keysOnce sync.Once
	ecKey    *ecdsa.PrivateKey
	ecKey2   *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
	rsaKey   *rsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ecKey2, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf is the public JWK of key as a JSON object.
func jwkOf(t testing.TB, key crypto.Signer) map[string]any {
	t.Helper()
	_, raw, err := publicJWK(key.Public(), "")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// goodHeader and goodClaims are a valid proof's parts for a POST to
// testURL at t0, signed by signer.
func goodHeader(t testing.TB, signer crypto.Signer, alg string) map[string]any {
	return map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": jwkOf(t, signer)}
}

func goodClaims() map[string]any {
	return map[string]any{"jti": "jti-1", "htm": "POST", "htu": testURL, "iat": t0.Unix()}
}

// craft signs header and claims with key for alg, whatever they say.
func craft(t testing.TB, key crypto.Signer, alg string, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(c)
	sig, err := sign(key, alg, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// with returns a copy of m with the given members set (nil value: removed).
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestCheckAttacks(t *testing.T) {
	testKeys(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	nonces := NewNonces(secret, 5*time.Minute, func() time.Time { return t0 })
	stale := NewNonces(secret, 5*time.Minute, func() time.Time { return t0.Add(-10 * time.Minute) }).Current()
	forged := NewNonces([]byte("another secret of 32 bytes......"), 5*time.Minute, func() time.Time { return t0 }).Current()
	ath := AccessTokenHash(testToken)
	tokenReq := Request{Method: "POST", URL: testURL}
	apiReq := Request{Method: "GET", URL: "https://api.example/data", AccessToken: testToken}
	apiClaims := with(goodClaims(), "htm", "GET", "htu", "https://api.example/data", "ath", ath)
	es := func(h, c map[string]any) func(t *testing.T) string {
		return func(t *testing.T) string { return craft(t, ecKey, "ES256", h, c) }
	}
	esH := goodHeader(t, ecKey, "ES256")
	d, err := ecKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	privJWK := with(jwkOf(t, ecKey), "d", b64(d))

	tests := []struct {
		name  string
		proof func(t *testing.T) string
		req   Request
		opts  Options
		code  string // "" for accepted
		desc  string
	}{
		{name: "valid ES256", proof: es(esH, goodClaims()), req: tokenReq},
		{name: "valid at a resource server", proof: es(esH, apiClaims), req: apiReq},
		{name: "wrong htm", proof: es(esH, with(goodClaims(), "htm", "GET")), req: tokenReq, code: CodeInvalidProof, desc: descHTM},
		{name: "htm in another case", proof: es(esH, with(goodClaims(), "htm", "post")), req: tokenReq, code: CodeInvalidProof, desc: descHTM},
		{name: "htm not a string", proof: es(esH, with(goodClaims(), "htm", 1)), req: tokenReq, code: CodeInvalidProof, desc: descHTM},
		{name: "missing htm", proof: es(esH, with(goodClaims(), "htm", nil)), req: tokenReq, code: CodeInvalidProof, desc: descHTM},
		{name: "wrong htu path", proof: es(esH, with(goodClaims(), "htu", "https://as.example/oauth/revoke")), req: tokenReq, code: CodeInvalidProof, desc: descHTU},
		{name: "wrong htu host", proof: es(esH, with(goodClaims(), "htu", "https://evil.example/oauth/token")), req: tokenReq, code: CodeInvalidProof, desc: descHTU},
		{name: "wrong htu scheme", proof: es(esH, with(goodClaims(), "htu", "http://as.example/oauth/token")), req: tokenReq, code: CodeInvalidProof, desc: descHTU},
		{name: "wrong htu port", proof: es(esH, with(goodClaims(), "htu", "https://as.example:8443/oauth/token")), req: tokenReq, code: CodeInvalidProof, desc: descHTU},
		{name: "missing htu", proof: es(esH, with(goodClaims(), "htu", nil)), req: tokenReq, code: CodeInvalidProof, desc: descHTU},
		{name: "htu not a URL", proof: es(esH, with(goodClaims(), "htu", "/oauth/token")), req: tokenReq, code: CodeInvalidProof, desc: descHTU},
		{name: "htu with another query is fine", proof: es(esH, with(goodClaims(), "htu", testURL+"?a=b#frag")), req: Request{Method: "POST", URL: testURL + "?c=d"}},
		{name: "htu naming the mTLS alias", proof: es(esH, with(goodClaims(), "htu", "https://mtls.as.example/oauth/token")), req: Request{Method: "POST", URL: testURL, AltURL: "https://mtls.as.example/oauth/token"}},
		{name: "htu naming neither URL nor alias", proof: es(esH, with(goodClaims(), "htu", "https://evil.example/oauth/token")), req: Request{Method: "POST", URL: testURL, AltURL: "https://mtls.as.example/oauth/token"}, code: CodeInvalidProof, desc: descHTU},
		{name: "htu normalised", proof: es(esH, with(goodClaims(), "htu", "HTTPS://AS.example:443/oauth/./x/../%74oken")), req: tokenReq},
		{name: "request URL unusable", proof: es(esH, goodClaims()), req: Request{Method: "POST", URL: "/oauth/token"}, code: CodeInvalidProof, desc: descRequestURL},
		{name: "old iat", proof: es(esH, with(goodClaims(), "iat", t0.Unix()-61)), req: tokenReq, code: CodeInvalidProof, desc: descOld},
		{name: "iat at max age", proof: es(esH, with(goodClaims(), "iat", t0.Unix()-60)), req: tokenReq},
		{name: "old iat under a longer max age", proof: es(esH, with(goodClaims(), "iat", t0.Unix()-100)), req: tokenReq, opts: Options{MaxAge: 2 * time.Minute}},
		{name: "future iat", proof: es(esH, with(goodClaims(), "iat", t0.Unix()+6)), req: tokenReq, code: CodeInvalidProof, desc: descFuture},
		{name: "iat within leeway", proof: es(esH, with(goodClaims(), "iat", t0.Unix()+5)), req: tokenReq},
		{name: "iat a string", proof: es(esH, with(goodClaims(), "iat", "1800000000")), req: tokenReq, code: CodeInvalidProof, desc: descIAT},
		{name: "missing iat", proof: es(esH, with(goodClaims(), "iat", nil)), req: tokenReq, code: CodeInvalidProof, desc: descIAT},
		{name: "missing jti", proof: es(esH, with(goodClaims(), "jti", nil)), req: tokenReq, code: CodeInvalidProof, desc: descJTI},
		{name: "empty jti", proof: es(esH, with(goodClaims(), "jti", "")), req: tokenReq, code: CodeInvalidProof, desc: descJTI},
		{name: "jti a number", proof: es(esH, with(goodClaims(), "jti", 7)), req: tokenReq, code: CodeInvalidProof, desc: descJTI},
		{name: "jti too long", proof: es(esH, with(goodClaims(), "jti", strings.Repeat("j", MaxJTILength+1))), req: tokenReq, code: CodeInvalidProof, desc: descJTI},
		{name: "jti at the limit", proof: es(esH, with(goodClaims(), "jti", strings.Repeat("j", MaxJTILength))), req: tokenReq},
		{
			name: "alg none",
			proof: func(t *testing.T) string {
				h, _ := json.Marshal(with(esH, "alg", "none"))
				c, _ := json.Marshal(goodClaims())
				return b64(h) + "." + b64(c) + "." + b64([]byte("x"))
			},
			req: tokenReq, opts: Options{Algs: []string{"none", "ES256"}}, code: CodeInvalidProof, desc: descAlg,
		},
		{
			name: "alg none without signature",
			proof: func(t *testing.T) string {
				h, _ := json.Marshal(with(esH, "alg", "none"))
				c, _ := json.Marshal(goodClaims())
				return b64(h) + "." + b64(c) + "."
			},
			req: tokenReq, code: CodeInvalidProof, desc: descMalformed,
		},
		{
			name: "HS256 keyed with the jwk",
			proof: func(t *testing.T) string {
				jwk, _ := json.Marshal(jwkOf(t, ecKey))
				h, _ := json.Marshal(with(esH, "alg", "HS256"))
				c, _ := json.Marshal(goodClaims())
				input := b64(h) + "." + b64(c)
				m := hmac.New(sha256.New, jwk)
				m.Write([]byte(input))
				return input + "." + b64(m.Sum(nil))
			},
			req: tokenReq, opts: Options{Algs: []string{"HS256", "ES256"}}, code: CodeInvalidProof, desc: descAlg,
		},
		{name: "alg not in the allow-list", proof: func(t *testing.T) string {
			return craft(t, edKey, "EdDSA", goodHeader(t, edKey, "EdDSA"), goodClaims())
		}, req: tokenReq, opts: Options{Algs: []string{"ES256"}}, code: CodeInvalidProof, desc: descAlg},
		{name: "alg unknown", proof: es(with(esH, "alg", "ES512"), goodClaims()), req: tokenReq, opts: Options{Algs: []string{"ES512"}}, code: CodeInvalidProof, desc: descKeyAlg},
		{name: "private key in jwk", proof: es(with(esH, "jwk", privJWK), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descPrivateJWK},
		{name: "symmetric jwk", proof: es(with(esH, "jwk", map[string]any{"kty": "oct", "k": "c2VjcmV0"}), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descPrivateJWK},
		{name: "missing jwk", proof: es(with(esH, "jwk", nil), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descNoJWK},
		{name: "jwk not an object", proof: es(with(esH, "jwk", "key"), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descBadJWK},
		{name: "jwk of another curve", proof: es(with(esH, "jwk", with(jwkOf(t, ecKey), "crv", "P-384")), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descBadJWK},
		{name: "jwk not fitting alg", proof: es(with(esH, "jwk", jwkOf(t, edKey)), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descKeyAlg},
		{name: "jwk with another alg", proof: es(with(esH, "jwk", with(jwkOf(t, rsaKey), "alg", "PS256"), "alg", "RS256"), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descKeyAlg},
		{name: "wrong typ", proof: es(with(esH, "typ", "JWT"), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descTyp},
		{name: "typ in another case", proof: es(with(esH, "typ", "DPoP+JWT"), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descTyp},
		{name: "missing typ", proof: es(with(esH, "typ", nil), goodClaims()), req: tokenReq, code: CodeInvalidProof, desc: descTyp},
		{name: "signed by another key than the jwk", proof: func(t *testing.T) string {
			return craft(t, ecKey2, "ES256", esH, goodClaims())
		}, req: tokenReq, code: CodeInvalidProof, desc: descSignature},
		{name: "tampered claims", proof: func(t *testing.T) string {
			p := craft(t, ecKey, "ES256", esH, goodClaims())
			parts := strings.Split(p, ".")
			c, _ := json.Marshal(with(goodClaims(), "htu", "https://as.example/other"))
			return parts[0] + "." + b64(c) + "." + parts[2]
		}, req: Request{Method: "POST", URL: "https://as.example/other"}, code: CodeInvalidProof, desc: descSignature},
		{name: "missing ath", proof: es(esH, with(apiClaims, "ath", nil)), req: apiReq, code: CodeInvalidProof, desc: descATH},
		{name: "wrong ath", proof: es(esH, with(apiClaims, "ath", AccessTokenHash("another token"))), req: apiReq, code: CodeInvalidProof, desc: descATH},
		{name: "ath not a string", proof: es(esH, with(apiClaims, "ath", 1)), req: apiReq, code: CodeInvalidProof, desc: descATH},
		{name: "ath as the token itself", proof: es(esH, with(apiClaims, "ath", testToken)), req: apiReq, code: CodeInvalidProof, desc: descATH},
		{name: "ath at the token endpoint is ignored", proof: es(esH, with(goodClaims(), "ath", ath)), req: tokenReq},
		{name: "missing nonce", proof: es(esH, goodClaims()), req: tokenReq, opts: Options{Nonces: nonces}, code: CodeUseNonce, desc: descNonceMissing},
		{name: "stale nonce", proof: es(esH, with(goodClaims(), "nonce", stale)), req: tokenReq, opts: Options{Nonces: nonces}, code: CodeUseNonce, desc: descNonceInvalid},
		{name: "forged nonce", proof: es(esH, with(goodClaims(), "nonce", forged)), req: tokenReq, opts: Options{Nonces: nonces}, code: CodeUseNonce, desc: descNonceInvalid},
		{name: "nonce not a string", proof: es(esH, with(goodClaims(), "nonce", 5)), req: tokenReq, opts: Options{Nonces: nonces}, code: CodeUseNonce, desc: descNonceMissing},
		{name: "valid nonce", proof: es(esH, with(goodClaims(), "nonce", nonces.Current())), req: tokenReq, opts: Options{Nonces: nonces}},
		{name: "nonce ignored when not required", proof: es(esH, with(goodClaims(), "nonce", forged)), req: tokenReq},
		{name: "bad proof with a missing nonce is invalid", proof: es(esH, with(goodClaims(), "htm", "GET")), req: tokenReq, opts: Options{Nonces: nonces}, code: CodeInvalidProof, desc: descHTM},
		{name: "oversized", proof: es(esH, with(goodClaims(), "pad", strings.Repeat("p", MaxProofSize))), req: tokenReq, code: CodeInvalidProof, desc: descTooLarge},
		{name: "garbage", proof: func(*testing.T) string { return "not a proof" }, req: tokenReq, code: CodeInvalidProof, desc: descMalformed},
		{name: "empty", proof: func(*testing.T) string { return "" }, req: tokenReq, code: CodeInvalidProof, desc: descMalformed},
		{name: "four parts", proof: func(t *testing.T) string { return craft(t, ecKey, "ES256", esH, goodClaims()) + ".x" }, req: tokenReq, code: CodeInvalidProof, desc: descMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proof := tt.proof(t)
			p, err := Check(proof, tt.req, t0, tt.opts)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if want, _ := jws.Thumbprint(ecKey.Public()); p.Alg == "ES256" && p.JKT != want {
					t.Errorf("JKT %q, want %q", p.JKT, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if err.Code != tt.code || err.Description != tt.desc {
				t.Errorf("got %q %q, want %q %q", err.Code, err.Description, tt.code, tt.desc)
			}
			if p != (Proof{}) {
				t.Errorf("refused with a proof: %+v", p)
			}
		})
	}
}

func TestNewProofRoundTrip(t *testing.T) {
	testKeys(t)
	for _, tt := range []struct {
		alg  string
		key  crypto.Signer
		want string // ProofOptions.Alg
	}{
		{"ES256", ecKey, ""},
		{"EdDSA", edKey, ""},
		{"RS256", rsaKey, ""},
		{"PS256", rsaKey, "PS256"},
	} {
		t.Run(tt.alg, func(t *testing.T) {
			nonces := NewNonces([]byte("0123456789abcdef"), 0, func() time.Time { return t0 })
			proof, err := NewProof(tt.key, "GET", "https://API.example:443/v1/items?page=2#x", ProofOptions{
				AccessToken: testToken, Nonce: nonces.Current(), Now: t0, Alg: tt.want,
			})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jws.Parse(proof, MaxProofSize)
			if err != nil {
				t.Fatal(err)
			}
			if htu, _ := tok.Claim("htu"); string(htu) != `"https://api.example/v1/items"` {
				t.Errorf("htu %s, want the normalised URL without query", htu)
			}
			jti, _ := tok.Claim("jti")
			if s, _ := jws.String(jti); len(s) < 22 {
				t.Errorf("jti %q: not 128 random bits", s)
			}
			req := Request{Method: "GET", URL: "https://api.example/v1/items?other", AccessToken: testToken}
			p, cerr := Check(proof, req, t0.Add(10*time.Second), Options{Nonces: nonces})
			if cerr != nil {
				t.Fatal(cerr)
			}
			wantJKT, _ := jws.Thumbprint(tt.key.Public())
			if p.JKT != wantJKT || p.Alg != tt.alg || !p.IssuedAt.Equal(t0) || p.Nonce != nonces.Current() || p.JTI == "" {
				t.Errorf("got %+v, want jkt %s alg %s iat %v", p, wantJKT, tt.alg, t0)
			}
			again, _ := NewProof(tt.key, "GET", "https://api.example/v1/items", ProofOptions{Now: t0, Alg: tt.want})
			if p2, _ := Check(again, Request{Method: "GET", URL: "https://api.example/v1/items"}, t0, Options{}); p2.JTI == p.JTI || ReplayKey(p2) == ReplayKey(p) {
				t.Errorf("two proofs share jti %q", p.JTI)
			}
		})
	}
}

func TestNewProofRefuses(t *testing.T) {
	testKeys(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tt := range []struct {
		name        string
		key         crypto.Signer
		method, url string
		alg         string
	}{
		{"P-384 key", p384, "GET", testURL, ""},
		{"no key", nil, "GET", testURL, ""},
		{"PS256 with an EC key", ecKey, "GET", testURL, "PS256"},
		{"relative URL", ecKey, "GET", "/oauth/token", ""},
		{"no method", ecKey, "", testURL, ""},
		{"a lower-case method (htm is compared as sent)", ecKey, "post", testURL, ""},
		{"a method with a space", ecKey, "GE T", testURL, ""},
		{"RSA under 2048 bits (found by the attack)", rsa1024, "GET", testURL, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := NewProof(tt.key, tt.method, tt.url, ProofOptions{Alg: tt.alg}); err == nil {
				t.Fatalf("made %q", p)
			}
		})
	}
}

func TestNormalizeURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://as.example/oauth/token", "https://as.example/oauth/token"},
		{"HTTPS://AS.Example:443/oauth/token?x=1#f", "https://as.example/oauth/token"},
		{"http://as.example:80", "http://as.example/"},
		{"http://as.example:443/", "http://as.example:443/"},
		{"https://as.example:00443/", "https://as.example/"},
		{"https://as.example:8443/a", "https://as.example:8443/a"},
		{"https://[::1]:443/a", "https://[::1]/a"},
		{"https://[::1]:8443/a", "https://[::1]:8443/a"},
		{"https://as.example/a/./b/../c", "https://as.example/a/c"},
		{"https://as.example/%7euser/%2fx%2Fy/%41", "https://as.example/~user/%2Fx%2Fy/A"},
		{"https://as.example/a%2e%2E/b", "https://as.example/a../b"},
		{"https://as.example/../../a", "https://as.example/a"},
		{"https://as.example/a/..", "https://as.example/"},
		{"https://as.example/CaSe", "https://as.example/CaSe"},
	} {
		got, err := NormalizeURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "/oauth/token", "as.example/x", "ftp://as.example/", "https://user:pw@as.example/", "https:opaque", "https://", "https://:443/", "https://as.example/%zz"} {
		if got, err := NormalizeURL(bad); err == nil {
			t.Errorf("NormalizeURL(%q) = %q, want an error", bad, got)
		}
	}
}

func TestReplayKey(t *testing.T) {
	a := ReplayKey(Proof{JKT: "k1", JTI: "j"})
	for _, other := range []Proof{{JKT: "k2", JTI: "j"}, {JKT: "k1", JTI: "j2"}, {JKT: "k1j", JTI: ""}} {
		if ReplayKey(other) == a {
			t.Errorf("ReplayKey(%+v) collides with k1/j", other)
		}
	}
	if ReplayKey(Proof{JKT: "k1", JTI: "j", Nonce: "n"}) != a {
		t.Error("ReplayKey depends on more than jkt and jti")
	}
}

func TestReplayUntil(t *testing.T) {
	p := Proof{IssuedAt: t0}
	if got := (Options{}).ReplayUntil(p); !got.Equal(t0.Add(65 * time.Second)) {
		t.Errorf("default ReplayUntil %v", got)
	}
	if got := (Options{MaxAge: time.Minute, Leeway: time.Second}).ReplayUntil(p); !got.Equal(t0.Add(61 * time.Second)) {
		t.Errorf("ReplayUntil %v", got)
	}
}

func BenchmarkCheck(b *testing.B) {
	testKeys(b)
	for _, tt := range []struct {
		alg string
		key crypto.Signer
	}{{"ES256", ecKey}, {"EdDSA", edKey}} {
		b.Run(tt.alg, func(b *testing.B) {
			proof, err := NewProof(tt.key, "GET", "https://api.example/data", ProofOptions{AccessToken: testToken, Now: t0})
			if err != nil {
				b.Fatal(err)
			}
			req := Request{Method: "GET", URL: "https://api.example/data", AccessToken: testToken}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Check(proof, req, t0, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
