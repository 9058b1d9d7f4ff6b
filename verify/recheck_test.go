package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Recheck accepts the claims of a verified token while its key is still
// the one of its kid and its times hold, and refuses them otherwise.
func TestRecheck(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	claims := map[string]any{"iss": "https://iss", "sub": "c1", "client_id": "c1", "aud": "https://api",
		"iat": fixedNow.Unix(), "nbf": fixedNow.Unix(), "exp": fixedNow.Add(5 * time.Minute).Unix(), "jti": "j"}
	tok := joseSign(t, key, jose.ES256, "ec", "at+jwt", claims)
	tests := []struct {
		name string
		keys keySet // the key set at the re-check
		at   time.Duration
		want error
	}{
		{"unchanged", keySet{"ec": {key.Public(), "ES256"}}, 0, nil},
		{"within the leeway after exp", keySet{"ec": {key.Public(), "ES256"}}, 5*time.Minute + 59*time.Second, nil},
		{"expired", keySet{"ec": {key.Public(), "ES256"}}, 6 * time.Minute, ErrExpired},
		{"key removed", keySet{}, 0, ErrUnknownKey},
		{"another key under the kid", keySet{"ec": {other.Public(), "ES256"}}, 0, ErrUnknownKey},
		{"the key now for another alg", keySet{"ec": {key.Public(), "RS256"}}, 0, ErrAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks := keySet{"ec": {key.Public(), "ES256"}}
			now := fixedNow
			v, err := New(Config{Issuer: "https://iss", AnyAudience: true, Keys: KeySourceFunc(func(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
				return ks.Key(ctx, kid)
			}), Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			c, k, err := v.VerifyBoundKey(context.Background(), tok)
			if err != nil || k.ID != "ec" || k.Alg != "ES256" || !key.PublicKey.Equal(k.Public) {
				t.Fatalf("VerifyBoundKey: %v, %+v", err, k)
			}
			ks, now = tc.keys, fixedNow.Add(tc.at)
			if err := v.Recheck(context.Background(), tok, c, k); !errors.Is(err, tc.want) {
				t.Fatalf("Recheck = %v, want %v", err, tc.want)
			}
		})
	}
}
