package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/verify"
)

// isoEnv is one environment of the isolation test, with what was made in
// it: the same client ids and API identifier in every environment, with
// secrets of their own.
type isoEnv struct {
	name, prefix, issuer string
	en                   *env.Env
	// app has refresh tokens; only is an id no other environment has;
	// gateway introspects every token; admin holds the admin scope on
	// the environment's admin API; locked is for the lockout.
	app, only, gateway, admin, locked cred
	access, refresh                   string // app's tokens
}

// isoAPI is the identifier of the API every environment of the test has.
const isoAPI = "https://orders.example.com"

// newIsoEnv creates environment name in ts's store, and in it an API, the
// test's clients (a private_key_jwt client "keyed" with key, a federated
// client "deployer" bound to subject of the trust policy "ci" for ci's
// tokens), and gets app's tokens.
func newIsoEnv(t *testing.T, ts *testServer, clock *fakeClock, name string, key testKey, ci *fakeIssuer, subject string) *isoEnv {
	t.Helper()
	ctx := context.Background()
	now := clock.Now()
	if err := ts.srv.store.CreateEnvironment(ctx, store.Environment{Name: name, DisplayName: "Env " + name, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatalf("create environment %s: %v", name, err)
	}
	en, err := ts.srv.Env(ctx, name)
	if err != nil {
		t.Fatalf("load environment %s: %v", name, err)
	}
	e := &isoEnv{name: name, prefix: "/e/" + name, issuer: en.Issuer, en: en}
	if want := ts.cfg.Issuer + "/e/" + name; e.issuer != want {
		t.Fatalf("issuer of %s: %s, want %s", name, e.issuer, want)
	}
	// The admin service on the environment's store, in its context (as
	// the admin API serves /e/{name}/admin/v1/…).
	svc := admin.NewService(en.Store, en.Hasher, clock.Now, en.Changed)
	ectx := env.NewContext(ctx, en)
	if _, err := svc.CreateAPI(ectx, admin.APIInput{Identifier: isoAPI, Name: "Orders", Scopes: []string{"orders:read"}}); err != nil {
		t.Fatalf("%s: create API: %v", name, err)
	}
	grant := []admin.GrantInput{{Audience: isoAPI, Scopes: []string{"orders:read"}}}
	client := func(in admin.ClientInput) cred {
		t.Helper()
		in.Name = in.ClientID
		c, secret, err := svc.CreateClient(ectx, in)
		if err != nil {
			t.Fatalf("%s: create client %s: %v", name, in.ClientID, err)
		}
		return cred{c.ID, secret}
	}
	e.app = client(admin.ClientInput{ClientID: "app", Grants: grant, DefaultAudience: isoAPI, RefreshTokens: true})
	e.only = client(admin.ClientInput{ClientID: name + "-only", Grants: grant})
	e.gateway = client(admin.ClientInput{ClientID: "gateway", Introspect: []string{"*"}})
	e.admin = client(admin.ClientInput{ClientID: "env-admin", Grants: []admin.GrantInput{{Audience: en.AdminAudience(), Scopes: []string{admin.AdminScope}}}})
	e.locked = client(admin.ClientInput{ClientID: "locked", Grants: grant})
	client(admin.ClientInput{ClientID: "keyed", Grants: grant, TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT,
		JWKS: jwkSet(t, key), AcceptTokenEndpointAudience: true})
	if _, err := svc.CreateTrustPolicy(ectx, admin.TrustPolicyInput{Name: "ci", Kind: "jwt", Issuer: ci.URL,
		JWKSURI: ci.URL + "/openid/v1/jwks", RequireJTI: true}); err != nil {
		t.Fatalf("%s: create trust policy: %v", name, err)
	}
	client(admin.ClientInput{ClientID: "deployer", Grants: grant, TokenEndpointAuthMethod: admin.AuthFederated,
		Federation: []admin.FederatedIdentityInput{{Policy: "ci", Subject: subject}}})

	st, m := ts.form(e.prefix+"/oauth/token", e.app.id, e.app.secret, url.Values{"grant_type": {"client_credentials"}})
	if st != http.StatusOK {
		t.Fatalf("%s: token: %d %v", name, st, m)
	}
	e.access, _ = m["access_token"].(string)
	e.refresh, _ = m["refresh_token"].(string)
	if e.access == "" || !strings.HasPrefix(e.refresh, "m2mr_") {
		t.Fatalf("%s: token response %v", name, m)
	}
	return e
}

// tokenAt posts a client-credentials request (or the grant form names) to
// the token endpoint under prefix with c's Basic credentials.
func (ts *testServer) tokenAt(prefix string, c cred, form url.Values) (int, map[string]any) {
	ts.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if form.Get("grant_type") == "" {
		form.Set("grant_type", "client_credentials")
	}
	return ts.form(prefix+"/oauth/token", c.id, c.secret, form)
}

// introspectAt asks prefix's introspection endpoint about token as by.
func (ts *testServer) introspectAt(prefix string, by cred, token string) (int, map[string]any) {
	ts.t.Helper()
	return ts.form(prefix+"/oauth/introspect", by.id, by.secret, url.Values{"token": {token}})
}

// getJSON fetches path and decodes its JSON body.
func (ts *testServer) getJSON(path string, bearer string) (int, map[string]any) {
	ts.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, b := ts.do(req)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// tokenAtFrom sends a client-credentials request to path through the
// server's handler as if from addr, and returns the status.
func (ts *testServer) tokenAtFrom(addr, path string, c cred) int {
	ts.t.Helper()
	return ts.tokenRequest(addr, path, c.id, c.secret, "")
}

// Two environments, alpha and beta, hold the same API identifier and the
// same client ids with different secrets, the same private_key_jwt key and
// the same trust policy. Every use of one environment's credentials,
// tokens, assertions or state at the other (or at the default one) is
// refused, while each works at home.
func TestEnvironmentIsolation(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	cfg.AuthFailureBurst = 40 // the refusals below come from one address
	clock := newFakeClock()   // the failure limiter does not refill
	ts := startServerClock(t, cfg, clock.Now)
	ctx := context.Background()
	key := newTestKey(t, jose.ES256, "shared-key")
	ci := newFakeIssuer(t, jose.RS256)
	alpha := newIsoEnv(t, ts, clock, "alpha", key, ci, "repo:acme/alpha")
	beta := newIsoEnv(t, ts, clock, "beta", key, ci, "repo:acme/beta")
	if alpha.app.secret == beta.app.secret {
		t.Fatal("the two apps have the same secret")
	}
	// The default environment: the same API, and an introspector.
	ts.createAPI(isoAPI, 0, "orders:read")
	var root cred
	root.id, root.secret = ts.createClient(admin.ClientInput{Name: "root gateway", Introspect: []string{"*"}})

	active := func(t *testing.T, prefix string, by cred, token string) bool {
		t.Helper()
		st, m := ts.introspectAt(prefix, by, token)
		if st != http.StatusOK {
			t.Fatalf("introspect at %q: %d %v", prefix, st, m)
		}
		if m["active"] == false && len(m) != 1 {
			t.Errorf("an inactive answer must be exactly {\"active\":false}: %v", m)
		}
		return m["active"] == true
	}
	refusedClient := func(t *testing.T, what string, st int, m map[string]any) {
		t.Helper()
		if st != http.StatusUnauthorized || m["error"] != "invalid_client" {
			t.Errorf("%s: %d %v, want 401 invalid_client", what, st, m)
		}
	}
	// Each works at home, and their tokens are their own.
	if !active(t, alpha.prefix, alpha.gateway, alpha.access) || !active(t, beta.prefix, beta.gateway, beta.access) {
		t.Fatal("a token is not active in its own environment")
	}
	for _, e := range []*isoEnv{alpha, beta} {
		claims, err := e.en.Verifier.Verify(ctx, e.access)
		if err != nil || claims.Issuer != e.issuer || claims.ClientID != "app" {
			t.Fatalf("%s's token: %v %+v", e.name, err, claims)
		}
	}
	jwksURL := func(prefix string) string { return ts.URL + prefix + "/.well-known/jwks.json" }
	verifier := func(t *testing.T, iss, prefix string) *verify.Verifier {
		t.Helper()
		v, err := verify.New(verify.Config{Issuer: iss, AnyAudience: true, JWKSURL: jwksURL(prefix), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if _, err := verifier(t, alpha.issuer, alpha.prefix).Verify(ctx, alpha.access); err != nil {
		t.Fatalf("alpha's token against alpha's JWKS: %v", err)
	}
	assertion := func(aud, jti string) string {
		c := assertionClaims("keyed", aud, clock.Now())
		if jti != "" {
			c["jti"] = jti
		}
		return key.sign(t, c, nil)
	}
	assertAt := func(prefix, a string) (int, map[string]any) {
		return ts.assertionForm(prefix+"/oauth/token", oauth.AssertionJWTBearer, a, url.Values{"grant_type": {"client_credentials"}})
	}
	ciToken := func(aud, sub string) string {
		now := clock.Now()
		return ci.token(t, map[string]any{"sub": sub, "aud": aud, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": randomString()})
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"alpha's token is inactive at beta's and the default introspection", func(t *testing.T) {
			if active(t, beta.prefix, beta.gateway, alpha.access) {
				t.Error("active at beta")
			}
			if active(t, "", root, alpha.access) {
				t.Error("active at the default environment")
			}
			if active(t, beta.prefix, beta.gateway, alpha.refresh) {
				t.Error("alpha's refresh token active at beta")
			}
		}},
		{"alpha's token against beta's and the default JWKS: unknown key", func(t *testing.T) {
			// With alpha's issuer, so that only the key can refuse it.
			for _, prefix := range []string{beta.prefix, ""} {
				if _, err := verifier(t, alpha.issuer, prefix).Verify(ctx, alpha.access); !errors.Is(err, verify.ErrUnknownKey) {
					t.Errorf("JWKS at %q: %v, want %v", prefix, err, verify.ErrUnknownKey)
				}
			}
			if _, err := verifier(t, beta.issuer, beta.prefix).Verify(ctx, alpha.access); err == nil {
				t.Error("beta's verifier accepts alpha's token")
			}
			if _, err := beta.en.Verifier.Verify(ctx, alpha.access); err == nil {
				t.Error("beta's own verifier accepts alpha's token")
			}
			if _, err := ts.srv.env.Verifier.Verify(ctx, alpha.access); err == nil {
				t.Error("the default environment's verifier accepts alpha's token")
			}
		}},
		{"alpha's client at beta's and the default token endpoint", func(t *testing.T) {
			st, m := ts.tokenAt(beta.prefix, alpha.only, nil)
			refusedClient(t, "alpha-only at beta", st, m)
			st, m = ts.tokenAt("", alpha.only, nil)
			refusedClient(t, "alpha-only at the default environment", st, m)
		}},
		{"alpha's secret with beta's client of the same id", func(t *testing.T) {
			st, m := ts.tokenAt(beta.prefix, alpha.app, nil)
			refusedClient(t, "app with alpha's secret at beta", st, m)
			if st, m := ts.tokenAt(alpha.prefix, beta.app, nil); st != http.StatusUnauthorized {
				t.Errorf("app with beta's secret at alpha: %d %v", st, m)
			}
		}},
		{"alpha's refresh token at beta", func(t *testing.T) {
			form := func() url.Values {
				return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {alpha.refresh}}
			}
			if st, m := ts.tokenAt(beta.prefix, beta.app, form()); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
				t.Errorf("with beta's app: %d %v, want 400 invalid_grant", st, m)
			}
			st, m := ts.tokenAt(beta.prefix, alpha.app, form())
			refusedClient(t, "with alpha's app credentials", st, m)
			// The ATM surface names the client without a secret.
			b, _ := json.Marshal(map[string]string{"clientId": "app", "refresh_token": alpha.refresh, "grantType": "refresh_token"})
			resp, body := ts.post(beta.prefix+"/auth/token", "application/json", string(b))
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_grant") {
				t.Errorf("at beta's ATM surface: %d %s", resp.StatusCode, body)
			}
			// None of it used or revoked the token at home.
			st, m = ts.tokenAt(alpha.prefix, alpha.app, form())
			if st != http.StatusOK {
				t.Fatalf("alpha's refresh token at alpha after the attempts: %d %v", st, m)
			}
			alpha.refresh = m["refresh_token"].(string)
		}},
		{"alpha's private_key_jwt assertion at beta", func(t *testing.T) {
			// The same client id and key in both: only the audience can
			// refuse it.
			toIssuer := assertion(alpha.issuer, "")
			toEndpoint := assertion(alpha.issuer+"/oauth/token", "")
			for what, a := range map[string]string{"aud = alpha's issuer": toIssuer, "aud = alpha's token endpoint": toEndpoint} {
				st, m := assertAt(beta.prefix, a)
				refusedClient(t, what+" at beta", st, m)
				st, m = assertAt("", a)
				refusedClient(t, what+" at the default environment", st, m)
			}
			// Refused elsewhere, each is still fresh at home.
			for _, a := range []string{toIssuer, toEndpoint} {
				if st, m := assertAt(alpha.prefix, a); st != http.StatusOK {
					t.Errorf("at alpha: %d %v", st, m)
				}
			}
			if st, m := assertAt(beta.prefix, assertion(beta.issuer, "")); st != http.StatusOK {
				t.Errorf("beta's own assertion at beta: %d %v", st, m)
			}
		}},
		{"an assertion id used in alpha", func(t *testing.T) {
			jti := "jti-" + randomString()
			first := assertion(alpha.issuer, jti)
			if st, m := assertAt(alpha.prefix, first); st != http.StatusOK {
				t.Fatalf("first use at alpha: %d %v", st, m)
			}
			// Fresh in beta for beta's own client: no cross-environment
			// replay block.
			if st, m := assertAt(beta.prefix, assertion(beta.issuer, jti)); st != http.StatusOK {
				t.Errorf("the same jti at beta: %d %v", st, m)
			}
			st, m := assertAt(alpha.prefix, first)
			refusedClient(t, "the assertion replayed at alpha", st, m)
			st, m = assertAt(alpha.prefix, assertion(alpha.issuer, jti))
			refusedClient(t, "another assertion with the used jti at alpha", st, m)
		}},
		{"a workload token for alpha at beta", func(t *testing.T) {
			// The same trust policy in both; alpha binds repo:acme/alpha.
			st, m := assertAt(beta.prefix, ciToken(alpha.issuer, "repo:acme/alpha"))
			refusedClient(t, "aud = alpha's issuer at beta", st, m)
			st, m = assertAt(beta.prefix, ciToken(beta.issuer, "repo:acme/alpha"))
			refusedClient(t, "alpha's subject, aud = beta's issuer, at beta", st, m)
			if st, m := assertAt(alpha.prefix, ciToken(alpha.issuer, "repo:acme/alpha")); st != http.StatusOK {
				t.Errorf("at alpha: %d %v", st, m)
			}
			if st, m := assertAt(beta.prefix, ciToken(beta.issuer, "repo:acme/beta")); st != http.StatusOK {
				t.Errorf("beta's workload at beta: %d %v", st, m)
			}
		}},
		{"revoking alpha's token at beta", func(t *testing.T) {
			// RFC 7009 §2.2: a token the server does not know is answered
			// 200, and nothing happens to it.
			if st, m := ts.form(beta.prefix+"/oauth/revoke", beta.app.id, beta.app.secret, url.Values{"token": {alpha.access}}); st != http.StatusOK {
				t.Errorf("revoke at beta by beta's app: %d %v", st, m)
			}
			if st, m := ts.form(beta.prefix+"/oauth/revoke", beta.app.id, beta.app.secret, url.Values{"token": {alpha.refresh}}); st != http.StatusOK {
				t.Errorf("revoke alpha's refresh token at beta: %d %v", st, m)
			}
			st, m := ts.form(beta.prefix+"/oauth/revoke", alpha.app.id, alpha.app.secret, url.Values{"token": {alpha.access}})
			refusedClient(t, "revoke at beta with alpha's credentials", st, m)
			if st, m := ts.form("/oauth/revoke", root.id, root.secret, url.Values{"token": {alpha.access}}); st != http.StatusOK {
				t.Errorf("revoke at the default environment: %d %v", st, m)
			}
			if !active(t, alpha.prefix, alpha.gateway, alpha.access) {
				t.Error("alpha's token was revoked in alpha")
			}
			if !active(t, alpha.prefix, alpha.gateway, alpha.refresh) {
				t.Error("alpha's refresh token was revoked in alpha")
			}
			revs, err := alpha.en.Store.ListRevocations(ctx, clock.Now(), nil, 10)
			if err != nil || len(revs) != 0 {
				t.Errorf("alpha's revocations: %v %v", revs, err)
			}
		}},
		{"alpha's admin token at beta's and the default admin API", func(t *testing.T) {
			st, m := ts.form(alpha.prefix+"/admin/v1/token", alpha.admin.id, alpha.admin.secret,
				url.Values{"grant_type": {"client_credentials"}, "scope": {admin.AdminScope}})
			if st != http.StatusOK {
				t.Fatalf("alpha's admin login: %d %v", st, m)
			}
			tok := m["access_token"].(string)
			for _, path := range []string{beta.prefix + "/admin/v1/clients", "/admin/v1/clients", beta.prefix + "/admin/v1/apis"} {
				if st, m := ts.getJSON(path, tok); st != http.StatusUnauthorized {
					t.Errorf("GET %s: %d %v, want 401", path, st, m)
				}
			}
			// Nor is an access token of alpha's app an admin token anywhere.
			if st, m := ts.getJSON(beta.prefix+"/admin/v1/clients", alpha.access); st != http.StatusUnauthorized {
				t.Errorf("alpha's app token at beta's admin API: %d %v", st, m)
			}
			// Nor do alpha's admin credentials log in at beta's admin API.
			st, m = ts.form(beta.prefix+"/admin/v1/token", alpha.admin.id, alpha.admin.secret,
				url.Values{"grant_type": {"client_credentials"}, "scope": {admin.AdminScope}})
			refusedClient(t, "alpha's admin credentials at beta's admin login", st, m)
		}},
		{"discovery documents are each environment's own", func(t *testing.T) {
			seen := map[string]string{}
			for _, e := range []struct{ prefix, issuer string }{{alpha.prefix, alpha.issuer}, {beta.prefix, beta.issuer}, {"", ts.cfg.Issuer}} {
				for _, doc := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
					st, m := ts.getJSON(e.prefix+doc, "")
					if st != http.StatusOK {
						t.Fatalf("GET %s%s: %d", e.prefix, doc, st)
					}
					if m["issuer"] != e.issuer || m["jwks_uri"] != e.issuer+"/.well-known/jwks.json" || m["token_endpoint"] != e.issuer+"/oauth/token" ||
						m["introspection_endpoint"] != e.issuer+"/oauth/introspect" || m["revocation_endpoint"] != e.issuer+"/oauth/revoke" {
						t.Errorf("%s%s: %v", e.prefix, doc, m)
					}
				}
				seen[e.issuer] = e.prefix
			}
			if len(seen) != 3 {
				t.Errorf("issuers: %v", seen)
			}
			// Their key sets share no key.
			kids := map[string]string{}
			for _, prefix := range []string{alpha.prefix, beta.prefix, ""} {
				req, _ := http.NewRequest(http.MethodGet, jwksURL(prefix), nil)
				resp, b := ts.do(req)
				var set jose.JSONWebKeySet
				if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &set) != nil || len(set.Keys) == 0 {
					t.Fatalf("JWKS at %q: %d %s", prefix, resp.StatusCode, b)
				}
				for _, k := range set.Keys {
					if other, dup := kids[k.KeyID]; dup {
						t.Errorf("key %s published by %q and %q", k.KeyID, other, prefix)
					}
					kids[k.KeyID] = prefix
				}
			}
		}},
		{"a deleted environment", func(t *testing.T) {
			gamma := newIsoEnv(t, ts, clock, "gamma", key, ci, "repo:acme/gamma")
			rec, err := ts.srv.store.GetEnvironment(ctx, "gamma")
			if err != nil {
				t.Fatal(err)
			}
			if err := ts.srv.store.DeleteEnvironment(ctx, "gamma", rec.Version); err != nil {
				t.Fatal(err)
			}
			// What the deletion through the admin API does on this
			// replica (the change feed does it on PostgreSQL's others):
			// SQLite has no change feed, so without it the environment
			// would stay loaded, its keys signing, while requests keep it
			// from idling.
			ts.srv.envChanged("gamma")
			for _, path := range []string{"/oauth/token", "/oauth/introspect", "/.well-known/jwks.json", "/.well-known/openid-configuration"} {
				req, _ := http.NewRequest(http.MethodPost, ts.URL+gamma.prefix+path, strings.NewReader("grant_type=client_credentials"))
				if strings.Contains(path, "well-known") {
					req, _ = http.NewRequest(http.MethodGet, ts.URL+gamma.prefix+path, nil)
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(gamma.app.id, gamma.app.secret)
				if resp, b := ts.do(req); resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s%s after deletion: %d %s, want 404", gamma.prefix, path, resp.StatusCode, b)
				}
			}
			if st, m := ts.introspectAt(gamma.prefix, gamma.gateway, gamma.access); st != http.StatusNotFound || m["active"] == true {
				t.Errorf("introspect gamma's token at gamma: %d %v", st, m)
			}
			if active(t, beta.prefix, beta.gateway, gamma.access) || active(t, "", root, gamma.access) {
				t.Error("gamma's token active elsewhere")
			}
			if _, err := ts.srv.Env(ctx, "gamma"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("resolve gamma: %v, want ErrNotFound", err)
			}
		}},
		{"names that are no environment's", func(t *testing.T) {
			for _, name := range []string{"ALPHA", "a..b", "default", "%2e%2e", "..", "-alpha", "alpha-", "nosuch", "a_b", strings.Repeat("a", 64)} {
				for _, path := range []string{"/oauth/token", "/.well-known/jwks.json", "/admin/v1/clients"} {
					u := ts.URL + "/e/" + name + path
					req, err := http.NewRequest(http.MethodGet, u, nil)
					if err != nil {
						t.Fatal(err)
					}
					if path == "/oauth/token" {
						req, _ = http.NewRequest(http.MethodPost, u, strings.NewReader("grant_type=client_credentials"))
						req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
						req.SetBasicAuth(alpha.app.id, alpha.app.secret)
					}
					resp, b := ts.do(req)
					var m map[string]any
					if resp.StatusCode != http.StatusNotFound || json.Unmarshal(b, &m) != nil {
						t.Errorf("%s: %d %s, want 404", "/e/"+name+path, resp.StatusCode, b)
						continue
					}
					ct := resp.Header.Get("Content-Type")
					switch {
					case strings.HasPrefix(path, "/admin/") && (ct != "application/problem+json" || m["status"] != float64(404)):
						t.Errorf("%s: %s %s, want an RFC 9457 problem", "/e/"+name+path, ct, b)
					case !strings.HasPrefix(path, "/admin/") && (!strings.HasPrefix(ct, "application/json") || m["error"] != "not_found"):
						t.Errorf("%s: %s %s, want {\"error\":\"not_found\"}", "/e/"+name+path, ct, b)
					}
				}
			}
			// Paths that would reach beta through alpha's prefix.
			// And alpha's name with what follows it encoded: no
			// environment's, and never a redirect.
			for _, p := range []string{"/e/alpha/../e/beta/oauth/token", "/e/alpha/%2e%2e/e/beta/oauth/token", "/e/alpha%2F..%2Fbeta/oauth/token", "/e/alpha/e/beta/oauth/token",
				"/e/alpha%2Foauth%2Ftoken", "/e%2Falpha/oauth/token", "/e/%61lpha/oauth/token"} {
				req, _ := http.NewRequest(http.MethodPost, ts.URL+p, strings.NewReader("grant_type=client_credentials"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(beta.app.id, beta.app.secret)
				if resp, b := ts.do(req); resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s with beta's credentials: %d %s, want 404", p, resp.StatusCode, b)
				}
			}
		}},
		// Last: it drains the limiter's buckets.
		{"a lockout of a client id in alpha spares that id in beta", func(t *testing.T) {
			wrong := cred{alpha.locked.id, "m2ms_wrong-" + randomString()}
			locked := false
			for i := 0; i < 200 && !locked; i++ {
				locked = ts.tokenAtFrom("192.0.2.1", alpha.prefix+"/oauth/token", wrong) == http.StatusTooManyRequests
			}
			if !locked {
				t.Fatal("200 wrong secrets did not lock the client out")
			}
			// Locked out in alpha, even with its secret, from another address.
			if st := ts.tokenAtFrom("198.51.100.1", alpha.prefix+"/oauth/token", alpha.locked); st != http.StatusTooManyRequests {
				t.Errorf("alpha's locked client with its secret: %d, want 429", st)
			}
			for _, addr := range []string{"198.51.100.1", "192.0.2.1"} {
				if st := ts.tokenAtFrom(addr, beta.prefix+"/oauth/token", beta.locked); st != http.StatusOK {
					t.Errorf("beta's client of the same id from %s: %d, want 200", addr, st)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
	// Beta still works after everything alpha's credentials were tried on it.
	if st, m := ts.tokenAt(beta.prefix, beta.app, nil); st != http.StatusOK {
		t.Errorf("beta's app after the attacks: %d %v", st, m)
	}
}
