package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/secret"
)

// BenchmarkClientAuthentication measures a whole token request in-process
// for each kind of client authentication, with EdDSA access tokens so that
// the authentication's own cost shows: a secret, a private_key_jwt
// assertion signed with ES256 and with RS256 (each request a new jti,
// recorded in the database), and a federated token (a Kubernetes-like
// RS256 token, reusable, checked against a trust policy).
func BenchmarkClientAuthentication(b *testing.B) {
	cfg := config.Default()
	cfg.SigningAlg = "EdDSA"
	cfg.AuthFailureRate = 0
	srv, h, newReq := benchServerSrv(b, cfg)
	ctx := context.Background()
	mk, _, _ := srv.masterKey()
	hashKey, _ := keys.SecretHashKey(ctx, srv.store, mk)
	svc := admin.NewService(srv.store, secret.NewHasher(hashKey), srv.now, invalidator{srv, srv.env})
	iss := srv.cfg.Issuer
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	es := newTestKey(b, jose.ES256, "es")
	rs := newTestKey(b, jose.RS256, "rs")
	for _, c := range []struct {
		id  string
		key testKey
	}{{"pkjwt-es256", es}, {"pkjwt-rs256", rs}} {
		if _, _, err := svc.CreateClient(ctx, admin.ClientInput{ClientID: c.id, Name: c.id, Grants: grants,
			TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKS: jwkSet(b, c.key)}); err != nil {
			b.Fatal(err)
		}
	}
	cluster := newTestKey(b, jose.RS256, "cluster")
	f := false
	if _, err := svc.CreateTrustPolicy(ctx, admin.TrustPolicyInput{Name: "k8s", Kind: "jwt", Issuer: "https://k8s.example",
		JWKS: jwkSet(b, cluster), Audience: iss, SingleUse: &f}); err != nil {
		b.Fatal(err)
	}
	if _, _, err := svc.CreateClient(ctx, admin.ClientInput{ClientID: "fed", Name: "fed", Grants: grants, TokenEndpointAuthMethod: admin.AuthFederated,
		Federation: []admin.FederatedIdentityInput{{Policy: "k8s", Subject: "system:serviceaccount:payments:*"}}}); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	fedToken := cluster.sign(b, map[string]any{"iss": "https://k8s.example", "sub": "system:serviceaccount:payments:api", "aud": []string{iss},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, nil)

	serve := func(b *testing.B, r *http.Request) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	form := func(assertion string) *http.Request {
		body := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {oauth.AssertionJWTBearer}, "client_assertion": {assertion}}.Encode()
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	b.Run("secret", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			serve(b, newReq())
		}
	})
	for _, c := range []struct {
		name, id string
		key      testKey
	}{{"private_key_jwt-ES256", "pkjwt-es256", es}, {"private_key_jwt-RS256", "pkjwt-rs256", rs}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			// Assertions are signed ahead, outside the timing: signing is
			// the client's cost.
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				a := c.key.sign(b, assertionClaims(c.id, iss, time.Now()), nil)
				r := form(a)
				b.StartTimer()
				serve(b, r)
			}
		})
	}
	// Refusals take the time of a signature check whatever refused them:
	// an unknown client costs what a known client's wrong signature does.
	refuse := func(b *testing.B, r *http.Request) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 401 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	stranger := newTestKey(b, jose.ES256, "es")
	unknown := stranger.sign(b, assertionClaims("no-such-client", iss, now), nil)
	wrongKey := stranger.sign(b, assertionClaims("pkjwt-es256", iss, now), nil)
	b.Run("refused-unknown-client-ES256", func(b *testing.B) {
		for b.Loop() {
			refuse(b, form(unknown))
		}
	})
	b.Run("refused-wrong-key-ES256", func(b *testing.B) {
		for b.Loop() {
			refuse(b, form(wrongKey))
		}
	})
	b.Run("federated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			serve(b, form(fedToken))
		}
	})
}
