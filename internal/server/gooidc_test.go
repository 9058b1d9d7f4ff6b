package server

import (
	"context"
	"net/url"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
)

// go-oidc reads /.well-known/openid-configuration and accepts the
// algorithms id_token_signing_alg_values_supported names: with every
// signing algorithm, a verifier built from discovery accepts our tokens
// (before, the member was missing and go-oidc accepted RS256 only).
func TestGoOIDCVerifiesEveryAlgorithm(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.SigningAlg = alg
			ts := startServer(t, cfg)
			id, secret := setupOrders(ts)
			tok := ts.mustToken(id, secret, url.Values{})
			provider, err := oidc.NewProvider(context.Background(), ts.cfg.Issuer)
			if err != nil {
				t.Fatal(err)
			}
			v := provider.Verifier(&oidc.Config{ClientID: ordersAPI})
			got, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("go-oidc refuses a %s token: %v", alg, err)
			}
			if got.Subject != id {
				t.Errorf("sub %q", got.Subject)
			}
		})
	}
}
