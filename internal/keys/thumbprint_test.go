package keys

import (
	"testing"

	"github.com/m2mauth/m2mauth/internal/jws"
)

// A signing key's kid is its RFC 7638 thumbprint, and its published JWK is
// one the shared parser (internal/jws) accepts as is.
func TestKIDIsTheThumbprint(t *testing.T) {
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			priv, err := generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			kid, jwk, err := publicJWK(priv, alg)
			if err != nil {
				t.Fatal(err)
			}
			if tp, err := jws.Thumbprint(priv.Public()); err != nil || kid != tp {
				t.Fatalf("kid %q, thumbprint %q (%v)", kid, tp, err)
			}
			k, err := jws.ParseKey(jwk)
			if err != nil || k.Kid != kid || k.Alg != alg {
				t.Fatalf("ParseKey(published JWK) = %+v, %v", k, err)
			}
		})
	}
}
