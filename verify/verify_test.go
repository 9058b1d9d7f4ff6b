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

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

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

func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, kid, typ string, claims map[string]any) string {
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
	v, err := New(Config{Issuer: "https://iss", Audience: "https://api", Keys: keys, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	good := func() map[string]any {
		return map[string]any{"iss": "https://iss", "sub": "c1", "client_id": "c1", "aud": "https://api",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "j", "scope": "a b"}
	}
	with := func(k string, val any) map[string]any { c := good(); c[k] = val; return c }
	without := func(k string) map[string]any { c := good(); delete(c, k); return c }

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"valid RS256", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", good()), nil},
		{"valid ES256", sign(t, ecKey, jose.ES256, "ec", "at+jwt", good()), nil},
		{"application/at+jwt", sign(t, rsaKey, jose.RS256, "rsa", "application/at+jwt", good()), nil},
		{"aud array containing ours", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("aud", []string{"x", "https://api"})), nil},
		{"expired beyond leeway", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("exp", now.Add(-61*time.Second).Unix())), ErrExpired},
		{"expired within leeway", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("exp", now.Add(-59*time.Second).Unix())), nil},
		{"nbf in the future", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("nbf", now.Add(2*time.Minute).Unix())), ErrNotYetValid},
		{"iat in the future", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("iat", now.Add(2*time.Minute).Unix())), ErrNotYetValid},
		{"no exp", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", without("exp")), ErrMalformed},
		{"wrong issuer", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("iss", "https://iss/")), ErrIssuer},
		{"wrong audience", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("aud", "https://api/other")), ErrAudience},
		{"aud a number", sign(t, rsaKey, jose.RS256, "rsa", "at+jwt", with("aud", 5)), ErrMalformed},
		{"typ JWT", sign(t, rsaKey, jose.RS256, "rsa", "JWT", good()), ErrType},
		{"no typ", sign(t, rsaKey, jose.RS256, "rsa", "", good()), ErrType},
		{"unknown kid", sign(t, rsaKey, jose.RS256, "nope", "at+jwt", good()), ErrUnknownKey},
		{"signed by another key", sign(t, otherRSA, jose.RS256, "rsa", "at+jwt", good()), ErrSignature},
		{"key for another algorithm", sign(t, rsaKey, jose.PS256, "rsa", "at+jwt", good()), ErrAlgorithm},
		{"HS256", sign(t, []byte("0123456789abcdef0123456789abcdef"), jose.HS256, "rsa", "at+jwt", good()), ErrAlgorithm},
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
