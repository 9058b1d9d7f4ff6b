package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var fixedNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type keySet map[string]struct {
	key crypto.PublicKey
	alg string
}

func (k keySet) Key(_ context.Context, kid string) (crypto.PublicKey, string, error) {
	e, ok := k[kid]
	if !ok {
		return nil, "", errors.New("unknown kid")
	}
	return e.key, e.alg, nil
}

func joseSign(t *testing.T, key any, alg jose.SignatureAlgorithm, kid, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerify(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := keySet{
		"rsa": {rsaKey.Public(), "RS256"},
		"ec":  {ecKey.Public(), "ES256"},
	}
	v, err := New(Config{Issuer: "https://iss", Audience: "https://api", Keys: keys, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	good := func() map[string]any {
		return map[string]any{"iss": "https://iss", "sub": "c1", "client_id": "c1", "aud": "https://api",
			"iat": fixedNow.Unix(), "nbf": fixedNow.Unix(), "exp": fixedNow.Add(5 * time.Minute).Unix(), "jti": "j", "scope": "a b"}
	}
	with := func(k string, val any) map[string]any { c := good(); c[k] = val; return c }
	without := func(k string) map[string]any { c := good(); delete(c, k); return c }

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"valid RS256", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", good()), nil},
		{"valid ES256", joseSign(t, ecKey, jose.ES256, "ec", "at+jwt", good()), nil},
		{"application/at+jwt", joseSign(t, rsaKey, jose.RS256, "rsa", "application/at+jwt", good()), nil},
		{"aud array containing ours", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("aud", []string{"x", "https://api"})), nil},
		{"expired beyond leeway", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("exp", fixedNow.Add(-61*time.Second).Unix())), ErrExpired},
		{"expired within leeway", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("exp", fixedNow.Add(-59*time.Second).Unix())), nil},
		{"nbf in the future", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("nbf", fixedNow.Add(2*time.Minute).Unix())), ErrNotYetValid},
		{"iat in the future", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("iat", fixedNow.Add(2*time.Minute).Unix())), ErrNotYetValid},
		{"no exp", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", without("exp")), ErrMalformed},
		{"wrong issuer", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("iss", "https://iss/")), ErrIssuer},
		{"wrong audience", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("aud", "https://api/other")), ErrAudience},
		{"aud a number", joseSign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("aud", 5)), ErrMalformed},
		{"typ JWT", joseSign(t, rsaKey, jose.RS256, "rsa", "JWT", good()), ErrType},
		{"no typ", joseSign(t, rsaKey, jose.RS256, "rsa", "", good()), ErrType},
		{"unknown kid", joseSign(t, rsaKey, jose.RS256, "nope", "at+jwt", good()), ErrUnknownKey},
		{"signed by another key", joseSign(t, otherRSA, jose.RS256, "rsa", "at+jwt", good()), ErrSignature},
		{"key for another algorithm", joseSign(t, rsaKey, jose.PS256, "rsa", "at+jwt", good()), ErrAlgorithm},
		{"HS256", joseSign(t, []byte("0123456789abcdef0123456789abcdef"), jose.HS256, "rsa", "at+jwt", good()), ErrAlgorithm},
		{"two parts", "a.b", ErrMalformed},
		{"too large", string(make([]byte, MaxTokenSize+1)), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if tc.want == nil {
				if err != nil || c == nil || c.ClientID != "c1" || !c.HasScope("b") || c.HasScope("c") {
					t.Fatalf("Verify = %+v, %v", c, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if c != nil {
				t.Fatal("claims returned with an error")
			}
		})
	}
}

func TestNewRejectsSymmetricAlgorithms(t *testing.T) {
	if _, err := New(Config{Issuer: "i", Audience: "a", Keys: keySet{}, Algorithms: []string{"HS256"}}); err == nil {
		t.Fatal("HS256 accepted in the allow-list")
	}
	if _, err := New(Config{Issuer: "i", Keys: keySet{}}); err == nil {
		t.Fatal("missing audience accepted")
	}
}
