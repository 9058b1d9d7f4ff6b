package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// compact joins a literal header, claims and signature into a token.
func compact(header, claims, sig string) string {
	return b64(header) + "." + b64(claims) + "." + b64(sig)
}

var (
	keysOnce sync.Once
	testRSA  *rsa.PrivateKey
	testEC   *ecdsa.PrivateKey
	testEd   ed25519.PrivateKey
)

func testKeys(t testing.TB) (*rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		testRSA, _ = rsa.GenerateKey(rand.Reader, 2048)
		testEC, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, testEd, _ = ed25519.GenerateKey(rand.Reader)
	})
	return testRSA, testEC, testEd
}

// signed returns a token over header and claims signed with key for alg.
func signed(t testing.TB, header, claims, alg string, key crypto.Signer) string {
	t.Helper()
	input := b64(header) + "." + b64(claims)
	h := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if alg == "PS256" {
			sig, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
		}
	case *ecdsa.PrivateKey:
		r, s, e := ecdsa.Sign(rand.Reader, k, h[:])
		sig, err = make([]byte, 64), e
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestParseHeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
		want   Header
	}{
		{"plain", `{"alg":"RS256","kid":"k1","typ":"JWT"}`, Header{Alg: "RS256", Kid: "k1", Typ: "JWT"}},
		{"no members", `{}`, Header{}},
		{"escaped values", `{"alg":"ES\u0032\u00356","kid":"a\/b"}`, Header{Alg: "ES256", Kid: "a/b"}},
		{"embedded jwk", `{"alg":"ES256","jwk":{"kty":"EC"}}`, Header{Alg: "ES256", JWK: true}},
		{"jku", `{"alg":"RS256","jku":"https://evil.example/jwks"}`, Header{Alg: "RS256", JKU: true}},
		{"x5c", `{"alg":"RS256","x5c":["MIIB"]}`, Header{Alg: "RS256", X5C: true}},
		{"x5u", `{"alg":"RS256","x5u":"https://evil.example/cert"}`, Header{Alg: "RS256", X5U: true}},
		{"x5t", `{"alg":"RS256","x5t":"AAAA"}`, Header{Alg: "RS256", X5T: true}},
		{"x5t#S256", `{"alg":"RS256","x5t#S256":"AAAA"}`, Header{Alg: "RS256", X5T: true}},
		{"a null jwk still counts", `{"alg":"RS256","jwk":null}`, Header{Alg: "RS256", JWK: true}},
		{"every reference", `{"alg":"EdDSA","jwk":{},"jku":"u","x5c":[],"x5u":"u","x5t":"t"}`, Header{Alg: "EdDSA", JWK: true, JKU: true, X5C: true, X5U: true, X5T: true}},
		{"Ed25519 (RFC 9864) reads as EdDSA", `{"alg":"Ed25519"}`, Header{Alg: "EdDSA"}},
		{"Ed448 stays itself (and is refused by VerifySignature)", `{"alg":"Ed448"}`, Header{Alg: "Ed448"}},
		{"names are exact: JWK is not jwk", `{"alg":"RS256","JWK":{}}`, Header{Alg: "RS256"}},
		{"other members ignored", `{"alg":"RS256","cty":"x","exp2":1}`, Header{Alg: "RS256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse(compact(tc.header, `{"sub":"a"}`, "sig"), 1<<10)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Header != tc.want {
				t.Fatalf("header = %+v, want %+v", tok.Header, tc.want)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	good := compact(`{"alg":"RS256"}`, `{"sub":"a"}`, "sig")
	parts := strings.Split(good, ".")
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"over the size cap", good + strings.Repeat("A", 64)},
		{"empty", ""},
		{"two parts", parts[0] + "." + parts[1]},
		{"four parts", good + ".x"},
		{"empty header", "." + parts[1] + "." + parts[2]},
		{"empty signature", parts[0] + "." + parts[1] + "."},
		{"padding", parts[0] + "=." + parts[1] + "." + parts[2]},
		{"standard alphabet", parts[0] + "." + parts[1] + "." + "a+/b"},
		{"non-zero trailing bits", parts[0] + "." + parts[1] + "." + "AB"},
		// encoding/base64 skips CR and LF even in strict mode.
		{"line feed in the header", parts[0][:2] + "\n" + parts[0][2:] + "." + parts[1] + "." + parts[2]},
		{"carriage return in the payload", parts[0] + "." + parts[1] + "\r." + parts[2]},
		{"CRLF in the signature", parts[0] + "." + parts[1] + "." + parts[2][:1] + "\r\n" + parts[2][1:]},
		{"only a line feed as the signature", parts[0] + "." + parts[1] + ".\n"},
		{"space", parts[0] + " ." + parts[1] + "." + parts[2]},
		{"header not an object", compact(`["alg"]`, `{}`, "s")},
		{"claims not an object", compact(`{"alg":"RS256"}`, `"sub"`, "s")},
		{"claims invalid JSON", compact(`{"alg":"RS256"}`, `{"sub":}`, "s")},
		{"invalid UTF-8", compact(`{"alg":"RS256"}`, "{\"sub\":\"\xff\"}", "s")},
		{"repeated alg", compact(`{"alg":"RS256","alg":"none"}`, `{}`, "s")},
		{"case-variant alg", compact(`{"alg":"RS256","ALG":"none"}`, `{}`, "s")},
		{"escaped repeat", compact(`{"alg":"RS256","\u0061lg":"none"}`, `{}`, "s")},
		{"repeated claim", compact(`{"alg":"RS256"}`, `{"sub":"a","sub":"b"}`, "s")},
		{"crit", compact(`{"alg":"RS256","crit":["x"],"x":1}`, `{}`, "s")},
		{"b64", compact(`{"alg":"RS256","b64":false}`, `{}`, "s")},
		{"alg not a string", compact(`{"alg":256}`, `{}`, "s")},
		{"kid not a string", compact(`{"alg":"RS256","kid":null}`, `{}`, "s")},
		{"typ not a string", compact(`{"alg":"RS256","typ":["JWT"]}`, `{}`, "s")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Parse(tc.token, len(good)+8) // room for the cases that add a byte or two
			if tok != nil || !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Parse = %v, %v; want ErrMalformed", tok, err)
			}
		})
	}
	if _, err := Parse(good, len(good)); err != nil {
		t.Fatalf("a token exactly at the cap: %v", err)
	}
}

func TestParseClaims(t *testing.T) {
	token := compact(`{"alg":"ES256","typ":"JWT"}`, `{"iss":"https://a.example","aud":["x","y"],"exp":1700000000,"n":null}`, "sig")
	tok, err := Parse(token, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range tok.Claims {
		names = append(names, string(m.Name))
	}
	if got := strings.Join(names, ","); got != "iss,aud,exp,n" {
		t.Fatalf("claims in order %s", got)
	}
	if string(tok.SigningInput) != token[:strings.LastIndexByte(token, '.')] || string(tok.Signature) != "sig" {
		t.Fatalf("signing input %q, signature %q", tok.SigningInput, tok.Signature)
	}
	for _, tc := range []struct {
		name, raw string
		ok        bool
	}{
		{"iss", `"https://a.example"`, true},
		{"aud", `["x","y"]`, true},
		{"exp", `1700000000`, true},
		{"n", `null`, true},
		{"ISS", "", false},
		{"sub", "", false},
	} {
		raw, ok := tok.Claim(tc.name)
		if ok != tc.ok || string(raw) != tc.raw {
			t.Errorf("Claim(%q) = %q, %v; want %q, %v", tc.name, raw, ok, tc.raw, tc.ok)
		}
	}
}

func TestVerifySignature(t *testing.T) {
	rsaKey, ecKey, edKey := testKeys(t)
	weakEC, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	claims := `{"sub":"a"}`
	for _, tc := range []struct {
		name string
		alg  string
		sign crypto.Signer // signs the token (for alg)
		key  crypto.PublicKey
		want error
	}{
		{"RS256", "RS256", rsaKey, rsaKey.Public(), nil},
		{"PS256", "PS256", rsaKey, rsaKey.Public(), nil},
		{"ES256", "ES256", ecKey, ecKey.Public(), nil},
		{"EdDSA", "EdDSA", edKey, edKey.Public(), nil},
		{"RS256 signature checked as PS256", "PS256", nil, rsaKey.Public(), ErrSignature},
		{"RS256 with an EC key", "RS256", rsaKey, ecKey.Public(), ErrAlgorithm},
		{"ES256 with an RSA key", "ES256", ecKey, rsaKey.Public(), ErrAlgorithm},
		{"ES256 with a P-384 key", "ES256", ecKey, weakEC.Public(), ErrAlgorithm},
		{"EdDSA with an RSA key", "EdDSA", edKey, rsaKey.Public(), ErrAlgorithm},
		{"ES256 with a private key", "ES256", ecKey, ecKey, ErrAlgorithm},
		{"nil RSA key", "RS256", rsaKey, (*rsa.PublicKey)(nil), ErrAlgorithm},
		{"nil EC key", "ES256", ecKey, (*ecdsa.PublicKey)(nil), ErrAlgorithm},
		{"short Ed25519 key", "EdDSA", edKey, ed25519.PublicKey(make([]byte, 31)), ErrAlgorithm},
		{"HS256", "HS256", rsaKey, rsaKey.Public(), ErrAlgorithm},
		{"none", "none", rsaKey, rsaKey.Public(), ErrAlgorithm},
		{"RS384", "RS384", rsaKey, rsaKey.Public(), ErrAlgorithm},
		{"lower-case alg", "rs256", rsaKey, rsaKey.Public(), ErrAlgorithm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := `{"alg":"` + tc.alg + `"}`
			signAlg := tc.alg
			signer := tc.sign
			if signer == nil { // an RS256 signature under a PS256 header
				signAlg, signer = "RS256", rsaKey
			}
			token := signed(t, header, claims, signAlg, signer)
			tok, err := Parse(token, 1<<12)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.VerifyWith(tc.key); !errors.Is(err, tc.want) || (err != nil) != (tc.want != nil) {
				t.Fatalf("VerifyWith = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				return
			}
			// A tampered signing input or signature fails.
			input := append([]byte{}, tok.SigningInput...)
			input[len(input)-1] ^= 1
			if err := VerifySignature(tc.alg, tc.key, input, tok.Signature); !errors.Is(err, ErrSignature) {
				t.Errorf("tampered input: %v", err)
			}
			sig := append([]byte{}, tok.Signature...)
			sig[0] ^= 1
			if err := VerifySignature(tc.alg, tc.key, tok.SigningInput, sig); !errors.Is(err, ErrSignature) {
				t.Errorf("tampered signature: %v", err)
			}
		})
	}
}
