package oauth

import (
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/m2mauth/m2mauth/internal/jws"
)

// TestDummyKeysSpendASignatureCheck checks that each algorithm's dummy key
// is a usable key of that algorithm, so that a refused assertion spends a
// real signature check on it (ErrSignature) rather than failing at once on
// the key (ErrAlgorithm).
func TestDummyKeysSpendASignatureCheck(t *testing.T) {
	sigLen := map[string]int{"RS256": 256, "PS256": 256, "ES256": 64, "EdDSA": 64}
	keys := dummyKeys()
	for alg, n := range sigLen {
		t.Run(alg, func(t *testing.T) {
			key, ok := keys[alg]
			if !ok {
				t.Fatalf("no dummy key for %s", alg)
			}
			sig := make([]byte, n)
			if _, err := rand.Read(sig); err != nil {
				t.Fatal(err)
			}
			sig[0] |= 1
			sig[n/2] |= 1
			err := jws.VerifySignature(alg, key, []byte("header.payload"), sig)
			if !errors.Is(err, jws.ErrSignature) {
				t.Fatalf("VerifySignature(%s, dummy key, random signature) = %v, want ErrSignature", alg, err)
			}
			if ec, ok := key.(*ecdsa.PublicKey); ok {
				if _, err := ec.Bytes(); err != nil {
					t.Fatalf("dummy %s key is not a valid point: %v", alg, err)
				}
			}
		})
	}
}
