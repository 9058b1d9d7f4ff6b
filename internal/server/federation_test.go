package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// fakeIssuer plays an external identity provider: a Kubernetes API server
// or a CI's OIDC provider, with a discovery document and a JWKS.
type fakeIssuer struct {
	*httptest.Server
	key   testKey
	fetch int
}

func newFakeIssuer(t *testing.T, alg jose.SignatureAlgorithm) *fakeIssuer {
	f := &fakeIssuer{key: newTestKey(t, alg, "issuer-key-1")}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": f.URL, "jwks_uri": f.URL + "/openid/v1/jwks"})
	})
	mux.HandleFunc("/openid/v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		f.fetch++
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwkSet(t, f.key))
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// token mints a token of this issuer.
func (f *fakeIssuer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": f.URL}
	for k, v := range claims {
		c[k] = v
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", f.key.kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: f.key.alg, Key: f.key.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	obj, _ := s.Sign(payload)
	raw, _ := obj.CompactSerialize()
	return raw
}

// A Kubernetes cluster (discovery), a GitHub-Actions-like CI (jwks_uri,
// single-use tokens) and a SPIFFE trust domain (a static bundle): their
// tokens get access tokens for the clients bound to them, and only those.
func TestWorkloadIdentityFederation(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	cfg.AuthFailureRate = 0
	ts := startServer(t, cfg)
	ts.createAPI(ordersAPI, 0, "orders:read", "orders:write")
	iss := ts.cfg.Issuer
	k8s := newFakeIssuer(t, jose.RS256)
	ci := newFakeIssuer(t, jose.RS256)
	spiffeKey := newTestKey(t, jose.ES256, "spiffe-1")
	mustPost := func(path string, in any) {
		t.Helper()
		if resp, b := ts.adminDo(http.MethodPost, path, in); resp.StatusCode != 201 {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
	}
	f := false
	mustPost("/admin/v1/trust-policies", admin.TrustPolicyInput{Name: "k8s-prod", Kind: "jwt", Issuer: k8s.URL, Discovery: true,
		Algorithms: []string{"RS256"}, SingleUse: &f, MaxTokenAgeSeconds: 600})
	mustPost("/admin/v1/trust-policies", admin.TrustPolicyInput{Name: "ci", Kind: "jwt", Issuer: ci.URL, JWKSURI: ci.URL + "/openid/v1/jwks",
		RequireJTI: true})
	mustPost("/admin/v1/trust-policies", admin.TrustPolicyInput{Name: "spiffe", Kind: "spiffe", Issuer: "spiffe://example.org",
		JWKS: jwkSet(t, spiffeKey)})
	grant := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	fed := func(id string, ids ...admin.FederatedIdentityInput) {
		mustPost("/admin/v1/clients", admin.ClientInput{ClientID: id, Name: id, Grants: grant, TokenEndpointAuthMethod: admin.AuthFederated, Federation: ids})
	}
	fed("payments", admin.FederatedIdentityInput{Policy: "k8s-prod", Subject: "system:serviceaccount:payments:*",
		Claims: map[string]string{"kubernetes.io.namespace": "payments"}})
	fed("deployer", admin.FederatedIdentityInput{Policy: "ci", Subject: "repo:acme/shop:ref:refs/heads/main",
		Claims: map[string]string{"repository_owner": "acme"}})
	fed("mesh", admin.FederatedIdentityInput{Policy: "spiffe", Subject: "spiffe://example.org/ns/payments/sa/api"})
	// Two clients whose rules both match system:serviceaccount:shared:x.
	fed("shared-a", admin.FederatedIdentityInput{Policy: "k8s-prod", Subject: "system:serviceaccount:shared:*"})
	fed("shared-b", admin.FederatedIdentityInput{Policy: "k8s-prod", Subject: "system:serviceaccount:shared:x"})

	now := time.Now()
	k8sToken := func(sub, ns string, change func(map[string]any)) string {
		c := map[string]any{"sub": sub, "aud": []string{iss}, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"jti": randomString(), "kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": "api"}}}
		if change != nil {
			change(c)
		}
		return k8s.token(t, c)
	}
	ciToken := func(change func(map[string]any)) string {
		c := map[string]any{"sub": "repo:acme/shop:ref:refs/heads/main", "aud": iss, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
			"jti": randomString(), "repository_owner": "acme", "repository": "acme/shop"}
		if change != nil {
			change(c)
		}
		return ci.token(t, c)
	}
	spiffeToken := func(sub string) string {
		return spiffeKey.sign(t, map[string]any{"sub": sub, "aud": []string{iss}, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix()}, nil)
	}
	okFor := func(name, typ, assertion, want string, extra url.Values) {
		t.Helper()
		st, m := ts.assertionForm("/oauth/token", typ, assertion, extra)
		if st != 200 {
			t.Errorf("%s: %d %v", name, st, m)
			return
		}
		if sub := ts.verifyToken(m["access_token"].(string)).claims["sub"]; sub != want {
			t.Errorf("%s: token for %v, want %s", name, sub, want)
		}
	}
	reused := k8sToken("system:serviceaccount:payments:api", "payments", nil)
	okFor("kubernetes service account", oauth.AssertionJWTBearer, reused, "payments", nil)
	okFor("the same kubernetes token again (single_use off)", oauth.AssertionJWTBearer, reused, "payments", nil)
	okFor("with client_id", oauth.AssertionJWTBearer, k8sToken("system:serviceaccount:payments:api", "payments", nil), "payments", url.Values{"client_id": {"payments"}})
	ciOnce := ciToken(nil)
	okFor("CI token", oauth.AssertionJWTBearer, ciOnce, "deployer", nil)
	okFor("SPIFFE JWT-SVID", oauth.AssertionJWTSPIFFE, spiffeToken("spiffe://example.org/ns/payments/sa/api"), "mesh", nil)

	refused := []struct{ name, typ, assertion string }{
		{"a kubernetes token for another audience", oauth.AssertionJWTBearer, k8sToken("system:serviceaccount:payments:api", "payments", func(c map[string]any) { c["aud"] = []string{"https://kubernetes.default.svc"} })},
		{"a subject no rule matches", oauth.AssertionJWTBearer, k8sToken("system:serviceaccount:billing:api", "billing", nil)},
		{"the right subject, the wrong namespace claim", oauth.AssertionJWTBearer, k8sToken("system:serviceaccount:payments:api", "billing", nil)},
		{"a subject two clients' rules match", oauth.AssertionJWTBearer, k8sToken("system:serviceaccount:shared:x", "shared", nil)},
		{"too old (issued 20 min ago)", oauth.AssertionJWTBearer, k8sToken("system:serviceaccount:payments:api", "payments", func(c map[string]any) { c["iat"] = now.Add(-20 * time.Minute).Unix() })},
		{"expired", oauth.AssertionJWTBearer, k8sToken("system:serviceaccount:payments:api", "payments", func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })},
		{"lives longer than the policy allows", oauth.AssertionJWTBearer, k8sToken("system:serviceaccount:payments:api", "payments", func(c map[string]any) { c["exp"] = now.Add(48 * time.Hour).Unix() })},
		{"a replayed CI token (single use)", oauth.AssertionJWTBearer, ciOnce},
		{"a CI token without jti", oauth.AssertionJWTBearer, ciToken(func(c map[string]any) { delete(c, "jti") })},
		{"a CI token of another owner", oauth.AssertionJWTBearer, ciToken(func(c map[string]any) { c["repository_owner"] = "evil" })},
		{"a token of an untrusted issuer", oauth.AssertionJWTBearer, newFakeIssuer(t, jose.RS256).token(t, map[string]any{"sub": "system:serviceaccount:payments:api", "aud": iss, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})},
		{"a token claiming the cluster's issuer, signed by another key", oauth.AssertionJWTBearer, func() string {
			forger := newFakeIssuer(t, jose.RS256)
			forger.key.kid = k8s.key.kid
			return forger.token(t, map[string]any{"iss": k8s.URL, "sub": "system:serviceaccount:payments:api", "aud": []string{iss}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
				"kubernetes.io": map[string]any{"namespace": "payments"}})
		}()},
		{"a SPIFFE ID of another workload", oauth.AssertionJWTSPIFFE, spiffeToken("spiffe://example.org/ns/payments/sa/other")},
		{"a SPIFFE ID of another trust domain", oauth.AssertionJWTSPIFFE, spiffeToken("spiffe://evil.org/ns/payments/sa/api")},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if st, m := ts.assertionForm("/oauth/token", tc.typ, tc.assertion, nil); st != 401 || m["error"] != "invalid_client" {
				t.Errorf("%d %v, want 401 invalid_client", st, m)
			}
		})
	}
	// client_id naming another client than the token's is refused.
	if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, k8sToken("system:serviceaccount:payments:api", "payments", nil), url.Values{"client_id": {"deployer"}}); st != 401 {
		t.Errorf("client_id of another client: %d %v", st, m)
	}
	// Unbinding takes effect at once; the JWKS was fetched once.
	if resp, b := ts.adminDo(http.MethodPatch, "/admin/v1/clients/payments", map[string]any{"disabled": true}); resp.StatusCode != 200 {
		t.Fatalf("disable: %d %s", resp.StatusCode, b)
	}
	if st, _ := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, reused, nil); st != 401 {
		t.Errorf("a disabled federated client: %d", st)
	}
	if k8s.fetch != 1 {
		t.Errorf("the cluster's JWKS was fetched %d times, want 1", k8s.fetch)
	}
	// A policy a client is bound to cannot be deleted.
	if resp, b := ts.adminDo(http.MethodDelete, "/admin/v1/trust-policies/ci", nil); resp.StatusCode != 409 {
		t.Errorf("delete a bound policy: %d %s", resp.StatusCode, b)
	}
}

// An assertion replayed on a second replica sharing the PostgreSQL
// database is refused there: the jti is single-use across replicas.
func TestAssertionReplayAcrossReplicasPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	base := config.Default()
	base.Database, base.MasterKey, base.Issuer, base.LogLevel = dsn, keys.GenerateMasterKeyText(), "http://auth.test", "error"
	base.AuthFailureRate = 0
	start := func() *testServer {
		c := base
		c.DataDir = t.TempDir()
		return startServer(t, c)
	}
	a := start()
	b := start()
	a.createAPI(ordersAPI, 0, "orders:read")
	key := newTestKey(t, jose.ES256, "k1")
	if resp, body := a.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "keyed", Name: "keyed",
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT,
		JWKS: jwkSet(t, key)}); resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	assertion := key.sign(t, assertionClaims("keyed", "http://auth.test", time.Now()), nil)
	if st, m := a.assertionForm("/oauth/token", oauth.AssertionJWTBearer, assertion, nil); st != 200 {
		t.Fatalf("on A: %d %v", st, m)
	}
	if st, m := b.assertionForm("/oauth/token", oauth.AssertionJWTBearer, assertion, nil); st != 401 {
		t.Errorf("replayed on B: %d %v, want 401", st, m)
	}
	fresh := key.sign(t, assertionClaims("keyed", "http://auth.test", time.Now()), nil)
	if st, m := b.assertionForm("/oauth/token", oauth.AssertionJWTBearer, fresh, nil); st != 200 {
		t.Errorf("a fresh assertion on B: %d %v", st, m)
	}
}
