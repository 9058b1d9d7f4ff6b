package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// jwk returns the JWK of key (public or private) with the given members.
func jwk(t testing.TB, key any, kid, alg, use string) string {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: use}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// with returns the JSON object obj with member name set to the raw value.
func with(t testing.TB, obj, name, raw string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(obj), &m); err != nil {
		t.Fatal(err)
	}
	m[name] = json.RawMessage(raw)
	b, _ := json.Marshal(m)
	return string(b)
}

func b64Int(n *big.Int) string { return b64(string(n.Bytes())) }

func TestParseKey(t *testing.T) {
	rsaKey, ecKey, edKey := testKeys(t)
	weakRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaJWK := jwk(t, rsaKey.Public(), "r1", "RS256", "sig")
	offCurve := fmt.Sprintf(`{"kty":"EC","crv":"P-256","kid":"off","x":"%s","y":"%s"}`, b64(string(make([]byte, 32))), b64(string(append(make([]byte, 31), 1))))
	for _, tc := range []struct {
		name string
		jwk  string
		want error // nil: accepted
		kid  string
		alg  string
		key  crypto.PublicKey
	}{
		{"RSA", rsaJWK, nil, "r1", "RS256", rsaKey.Public()},
		{"RSA for PS256", jwk(t, rsaKey.Public(), "r2", "PS256", ""), nil, "r2", "PS256", rsaKey.Public()},
		{"RSA without kid or alg", jwk(t, rsaKey.Public(), "", "", ""), nil, "", "", rsaKey.Public()},
		{"P-256", jwk(t, ecKey.Public(), "e1", "ES256", "sig"), nil, "e1", "ES256", ecKey.Public()},
		{"Ed25519", jwk(t, edKey.Public(), "o1", "EdDSA", "sig"), nil, "o1", "EdDSA", edKey.Public()},
		{"alg Ed25519 (RFC 9864) reads as EdDSA", jwk(t, edKey.Public(), "o1", "Ed25519", "sig"), nil, "o1", "EdDSA", edKey.Public()},
		{"another use than enc", with(t, rsaJWK, "use", `"jwt-svid"`), nil, "r1", "RS256", rsaKey.Public()},

		{"RSA private key", jwk(t, rsaKey, "r1", "RS256", "sig"), ErrPrivateKey, "", "", nil},
		{"EC private key", jwk(t, ecKey, "e1", "ES256", "sig"), ErrPrivateKey, "", "", nil},
		{"Ed25519 private key", jwk(t, edKey, "o1", "EdDSA", "sig"), ErrPrivateKey, "", "", nil},
		{"d alone, even null", with(t, rsaJWK, "d", `null`), ErrPrivateKey, "", "", nil},
		{"an RSA prime", with(t, rsaJWK, "p", `"AQAB"`), ErrPrivateKey, "", "", nil},
		{"symmetric key", `{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}`, ErrPrivateKey, "", "", nil},

		{"RSA 1024 bits", jwk(t, weakRSA.Public(), "w", "RS256", "sig"), ErrInvalidKey, "", "", nil},
		{"RSA exponent 1", fmt.Sprintf(`{"kty":"RSA","n":"%s","e":"AQ"}`, b64Int(rsaKey.N)), ErrInvalidKey, "", "", nil},
		{"RSA even exponent", fmt.Sprintf(`{"kty":"RSA","n":"%s","e":"AQAA"}`, b64Int(rsaKey.N)), ErrInvalidKey, "", "", nil},
		{"RSA even modulus", fmt.Sprintf(`{"kty":"RSA","n":"%s","e":"AQAB"}`, b64Int(new(big.Int).Add(rsaKey.N, big.NewInt(1)))), ErrInvalidKey, "", "", nil},
		{"EC point off the curve", offCurve, ErrInvalidKey, "", "", nil},
		{"alg of another key type", jwk(t, ecKey.Public(), "e1", "RS256", "sig"), ErrInvalidKey, "", "", nil},
		{"EdDSA on an RSA key", jwk(t, rsaKey.Public(), "r1", "EdDSA", ""), ErrInvalidKey, "", "", nil},
		{"no kty", `{"n":"AQAB","e":"AQAB"}`, ErrInvalidKey, "", "", nil},
		{"RSA without n", `{"kty":"RSA","e":"AQAB"}`, ErrInvalidKey, "", "", nil},
		{"kid not a string", with(t, rsaJWK, "kid", `7`), ErrInvalidKey, "", "", nil},
		{"not JSON", `{"kty":`, ErrInvalidKey, "", "", nil},
		{"an array", `[]`, ErrInvalidKey, "", "", nil},

		{"use enc", jwk(t, rsaKey.Public(), "enc", "", "enc"), ErrUnsupportedKey, "", "", nil},
		{"a SPIFFE X.509 authority", jwk(t, rsaKey.Public(), "x", "", "x509-svid"), ErrUnsupportedKey, "", "", nil},
		{"RSA-OAEP", with(t, rsaJWK, "alg", `"RSA-OAEP"`), ErrUnsupportedKey, "", "", nil},
		{"RS384", with(t, rsaJWK, "alg", `"RS384"`), ErrUnsupportedKey, "", "", nil},
		{"P-384", jwk(t, p384.Public(), "e3", "", ""), ErrUnsupportedKey, "", "", nil},
		{"X25519", `{"kty":"OKP","crv":"X25519","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}`, ErrUnsupportedKey, "", "", nil},
		{"unknown kty", `{"kty":"AKP","alg":"ML-DSA-44","pub":"AAAA"}`, ErrUnsupportedKey, "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey([]byte(tc.jwk))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if k.Kid != tc.kid || k.Alg != tc.alg || !publicEqual(k.Key, tc.key) {
					t.Fatalf("ParseKey = %+v, want kid %q alg %q key %T", k, tc.kid, tc.alg, tc.key)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidKey) || k.Key != nil {
				t.Fatalf("ParseKey = %+v, %v; want %v", k, err, tc.want)
			}
			if tc.want != ErrUnsupportedKey && errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("%v: refused as unsupported (a set would ignore it), want %v", err, tc.want)
			}
		})
	}
}

// A refused private key does not end up in the error message.
func TestParseKeyErrorHoldsNoSecret(t *testing.T) {
	_, ecKey, _ := testKeys(t)
	raw, err := ecKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := b64(string(raw))
	_, err = ParseKey([]byte(jwk(t, ecKey, "e1", "ES256", "sig")))
	if err == nil || !strings.Contains(jwk(t, ecKey, "e1", "ES256", "sig"), d) || strings.Contains(err.Error(), d) {
		t.Fatalf("err = %v", err)
	}
}

func publicEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func TestParseKeySet(t *testing.T) {
	rsaKey, ecKey, edKey := testKeys(t)
	weakRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r := jwk(t, rsaKey.Public(), "r", "RS256", "sig")
	e := jwk(t, ecKey.Public(), "e", "ES256", "sig")
	o := jwk(t, edKey.Public(), "o", "", "")
	set := func(keys ...string) string { return `{"keys":[` + strings.Join(keys, ",") + `]}` }
	for _, tc := range []struct {
		name string
		body string
		max  int
		kids []string // nil: refused
	}{
		{"order kept", set(o, r, e), 3, []string{"o", "r", "e"}},
		{"other members of the set ignored", `{"keys":[` + e + `],"issuer":"x"}`, 3, []string{"e"}},
		{"unsupported keys ignored", set(jwk(t, rsaKey.Public(), "enc", "RSA-OAEP", "enc"), r, jwk(t, p384.Public(), "p384", "", ""), `{"kty":"AKP"}`), 4, []string{"r"}},
		{"keys without kid kept", set(jwk(t, rsaKey.Public(), "", "", ""), jwk(t, ecKey.Public(), "", "", "")), 2, []string{"", ""}},
		{"one kid, a supported and an ignored key", set(r, jwk(t, rsaKey.Public(), "r", "", "enc")), 2, []string{"r"}},
		{"a SPIFFE bundle: the X.509 authority ignored", set(jwk(t, rsaKey.Public(), "", "", "x509-svid"), jwk(t, ecKey.Public(), "j", "", "jwt-svid")), 2, []string{"j"}},

		{"duplicate kid", set(r, jwk(t, ecKey.Public(), "r", "", "")), 2, nil},
		{"a private key", set(r, jwk(t, ecKey, "e", "ES256", "sig")), 2, nil},
		{"a weak key", set(r, jwk(t, weakRSA.Public(), "w", "RS256", "")), 2, nil},
		{"a malformed key", set(r, `{"kty":"EC","crv":"P-256"}`), 2, nil},
		{"a key that is not an object", set(r, `"r"`), 2, nil},
		{"more than maxKeys", set(r, e, o), 2, nil},
		{"ignored keys count toward maxKeys", set(r, `{"kty":"AKP"}`), 1, nil},
		{"no supported key", set(jwk(t, p384.Public(), "p384", "", "")), 1, nil},
		{"empty", `{"keys":[]}`, 1, nil},
		{"no keys member", `{"kid":"r"}`, 1, nil},
		{"keys null", `{"keys":null}`, 1, nil},
		{"keys an object", `{"keys":` + r + `}`, 1, nil},
		{"keys repeated", `{"keys":[` + r + `],"keys":[` + e + `]}`, 2, nil},
		{"a single JWK", r, 1, nil},
		{"not JSON", `{"keys":[`, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseKeySet([]byte(tc.body), tc.max)
			if tc.kids == nil {
				if keys != nil || !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("ParseKeySet = %d keys, %v; want refused", len(keys), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, k := range keys {
				kids = append(kids, k.Kid)
			}
			if !slices.Equal(kids, tc.kids) {
				t.Fatalf("kids %q, want %q", kids, tc.kids)
			}
		})
	}
}

// RFC 7638 §3.1 (RSA) and RFC 8037 Appendix A.3 (Ed25519).
func TestThumbprint(t *testing.T) {
	for _, tc := range []struct {
		name, jwk, want string
	}{
		{"RFC 7638 §3.1", `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`,
			"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
		{"RFC 8037 A.3", `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`,
			"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey([]byte(tc.jwk))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Thumbprint(k.Key)
			if err != nil || got != tc.want {
				t.Fatalf("Thumbprint = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// An EC thumbprint covers crv, kty, x, y and nothing else (RFC 7638
	// §3.2), so kid, alg and use do not change it.
	_, ecKey, _ := testKeys(t)
	a, _ := Thumbprint(ecKey.Public())
	k, err := ParseKey([]byte(jwk(t, ecKey.Public(), "other", "ES256", "sig")))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := Thumbprint(k.Key); a == "" || a != b {
		t.Fatalf("EC thumbprints %q and %q", a, b)
	}
	for _, bad := range []crypto.PublicKey{ecKey, []byte("secret"), nil, (*rsa.PublicKey)(nil), (*ecdsa.PublicKey)(nil), ed25519.PublicKey(make([]byte, 16))} {
		if tp, err := Thumbprint(bad); err == nil {
			t.Errorf("Thumbprint(%T) = %q", bad, tp)
		}
	}
}

// TestThumbprintAgreesWithGoJose: the hand-written members give go-jose's
// thumbprint for every key kind, at a fraction of its allocations (go-jose:
// about forty).
func TestThumbprintAgreesWithGoJose(t *testing.T) {
	rsaKey, ecKey, edKey := testKeys(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	odd, _ := rsa.GenerateKey(rand.Reader, 2048)
	odd.E = 3
	for _, pub := range []crypto.PublicKey{rsaKey.Public(), ecKey.Public(), edKey.Public(), p384.Public(), p521.Public(), &odd.PublicKey} {
		want, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Thumbprint(pub)
		if err != nil || got != base64.RawURLEncoding.EncodeToString(want) {
			t.Errorf("%T: %q (%v), go-jose %q", pub, got, err, base64.RawURLEncoding.EncodeToString(want))
		}
		if n := testing.AllocsPerRun(20, func() { _, _ = Thumbprint(pub) }); n > 10 {
			t.Errorf("%T: %v allocations", pub, n)
		}
	}
}

func TestAlgorithmsFor(t *testing.T) {
	rsaKey, ecKey, edKey := testKeys(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, tc := range []struct {
		name string
		key  crypto.PublicKey
		want []string
	}{
		{"RSA", rsaKey.Public(), []string{"RS256", "PS256"}},
		{"P-256", ecKey.Public(), []string{"ES256"}},
		{"Ed25519", edKey.Public(), []string{"EdDSA"}},
		{"P-384", p384.Public(), nil},
		{"RSA private key", rsaKey, nil},
		{"short Ed25519", ed25519.PublicKey(make([]byte, 16)), nil},
		{"bytes", []byte("k"), nil},
		{"nil", nil, nil},
		{"nil EC", (*ecdsa.PublicKey)(nil), nil},
		{"nil RSA", (*rsa.PublicKey)(nil), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := AlgorithmsFor(tc.key); !slices.Equal(got, tc.want) {
				t.Fatalf("AlgorithmsFor = %q, want %q", got, tc.want)
			}
		})
	}
	// Each result is the caller's own.
	AlgorithmsFor(rsaKey.Public())[0] = "none"
	if got := AlgorithmsFor(rsaKey.Public()); got[0] != "RS256" {
		t.Fatalf("AlgorithmsFor shares its slice: %q", got)
	}
}
