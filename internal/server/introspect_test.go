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

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/verify"
)

// form posts an RFC 7662/7009 form with Basic credentials.
func (ts *testServer) form(path, id, secret string, v url.Values) (int, map[string]any) {
	ts.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, body := ts.do(req)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m
}

type cred struct{ id, secret string }

type introspectFixture struct {
	ts                           *testServer
	clock                        *fakeClock
	app, other, rs, root, nobody cred
}

func newIntrospectFixture(t *testing.T) *introspectFixture {
	clock := newFakeClock()
	ts := startServerClock(t, testConfig(t), clock.Now)
	ts.createAPI(ordersAPI, 0, "orders:read")
	ts.createAPI("https://billing.example.com", 0, "billing:read")
	f := &introspectFixture{ts: ts, clock: clock}
	grant := func(aud, scope string) []admin.GrantInput {
		return []admin.GrantInput{{Audience: aud, Scopes: []string{scope}}}
	}
	f.app.id, f.app.secret = ts.createClient(admin.ClientInput{Grants: grant(ordersAPI, "orders:read"), RefreshTokens: true})
	f.other.id, f.other.secret = ts.createClient(admin.ClientInput{Grants: grant("https://billing.example.com", "billing:read")})
	f.rs.id, f.rs.secret = ts.createClient(admin.ClientInput{Name: "orders API", Introspect: []string{ordersAPI}})
	f.root.id, f.root.secret = ts.createClient(admin.ClientInput{Name: "gateway", Introspect: []string{"*"}})
	f.nobody.id, f.nobody.secret = ts.createClient(admin.ClientInput{Name: "plain"})
	return f
}

func (f *introspectFixture) introspect(by cred, token string) (int, map[string]any) {
	return f.ts.form("/oauth/introspect", by.id, by.secret, url.Values{"token": {token}, "token_type_hint": {"access_token"}})
}

func (f *introspectFixture) active(t *testing.T, by cred, token string) bool {
	t.Helper()
	st, m := f.introspect(by, token)
	if st != 200 {
		t.Fatalf("introspect: %d %v", st, m)
	}
	if m["active"] == false && len(m) != 1 {
		t.Fatalf("an inactive answer must be exactly {\"active\":false}: %v", m)
	}
	return m["active"] == true
}

func TestIntrospectionActive(t *testing.T) {
	f := newIntrospectFixture(t)
	tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
	st, m := f.introspect(f.rs, tok)
	claims := f.ts.verifyToken(tok).claims
	if st != 200 || m["active"] != true || m["client_id"] != f.app.id || m["sub"] != f.app.id || m["aud"] != ordersAPI ||
		m["iss"] != f.ts.cfg.Issuer || m["scope"] != "orders:read" || m["token_type"] != "Bearer" || m["jti"] != claims["jti"] ||
		m["exp"] != claims["exp"] || m["iat"] != claims["iat"] || m["nbf"] != claims["nbf"] {
		t.Fatalf("active answer %d %v", st, m)
	}
	// The other API's introspector does not see it; the admin-level one does.
	billingRS := cred{}
	billingRS.id, billingRS.secret = f.ts.createClient(admin.ClientInput{Name: "billing API", Introspect: []string{"https://billing.example.com"}})
	if f.active(t, billingRS, tok) || !f.active(t, f.root, tok) {
		t.Fatal("audience rule")
	}
	// Refresh tokens introspect too, until used.
	_, b := f.ts.tokenForm(f.app.id, f.app.secret, url.Values{})
	var tr struct {
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.Unmarshal(b, &tr)
	if _, m := f.introspect(f.rs, tr.RefreshToken); m["active"] != true || m["token_type"] != "refresh_token" || m["client_id"] != f.app.id {
		t.Fatalf("refresh token: %v", m)
	}
	f.ts.tokenForm(f.app.id, f.app.secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}})
	if f.active(t, f.rs, tr.RefreshToken) {
		t.Fatal("a spent refresh token introspects active")
	}
	// Who may ask.
	if st, m := f.introspect(f.nobody, tok); st != 403 || m["error"] != "unauthorized_client" {
		t.Fatalf("client without the permission: %d %v", st, m)
	}
	if st, m := f.introspect(cred{f.rs.id, "wrong"}, tok); st != 401 || m["error"] != "invalid_client" {
		t.Fatalf("bad credentials: %d %v", st, m)
	}
	if st, _ := f.ts.form("/oauth/introspect", f.rs.id, f.rs.secret, url.Values{}); st != 400 {
		t.Fatalf("no token: %d", st)
	}
	req, _ := http.NewRequest(http.MethodGet, f.ts.URL+"/.well-known/oauth-authorization-server", nil)
	_, disc := f.ts.do(req)
	for _, want := range []string{`"introspection_endpoint":"` + f.ts.cfg.Issuer + `/oauth/introspect"`, `"revocation_endpoint":"` + f.ts.cfg.Issuer + `/oauth/revoke"`, `"introspection_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post","private_key_jwt"]`} {
		if !strings.Contains(string(disc), want) {
			t.Errorf("discovery lacks %s", want)
		}
	}
}

// Every way a token can be inactive answers exactly {"active":false}.
func TestIntrospectionInactive(t *testing.T) {
	f := newIntrospectFixture(t)
	otherServer := startServer(t, testConfig(t))
	oid, osec := setupOrders(otherServer)
	foreign := otherServer.mustToken(oid, osec, url.Values{})

	tests := []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"garbage", func(*testing.T) string { return "not-a-token" }},
		{"unknown refresh token", func(*testing.T) string { return "m2mr_" + strings.Repeat("A", 43) }},
		{"another issuer's token", func(*testing.T) string { return foreign }},
		{"tampered", func(*testing.T) string {
			tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
			return tok[:len(tok)-8] + "AAAAAAAA"
		}},
		{"expired", func(*testing.T) string {
			tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
			f.clock.Advance(16 * time.Minute)
			f.ts.login()
			return tok
		}},
		{"revoked by its client", func(t *testing.T) string {
			tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
			if st, _ := f.ts.form("/oauth/revoke", f.app.id, f.app.secret, url.Values{"token": {tok}}); st != 200 {
				t.Fatalf("revoke: %d", st)
			}
			return tok
		}},
		{"revoked by an administrator", func(t *testing.T) string {
			tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
			if resp, b := f.ts.adminDo(http.MethodPost, "/admin/v1/revocations", admin.RevokeRequest{Token: tok}); resp.StatusCode != 200 || !strings.Contains(string(b), `"revoked": true`) {
				t.Fatalf("admin revoke: %d %s", resp.StatusCode, b)
			}
			return tok
		}},
		{"all of its client's tokens revoked", func(t *testing.T) string {
			id, sec := f.ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
			tok := f.ts.mustToken(id, sec, url.Values{})
			if resp, _ := f.ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/revoke-tokens", nil); resp.StatusCode != 200 {
				t.Fatalf("revoke-tokens: %d", resp.StatusCode)
			}
			return tok
		}},
		{"its client disabled", func(t *testing.T) string {
			id, sec := f.ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
			tok := f.ts.mustToken(id, sec, url.Values{})
			f.ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"disabled":true}`)
			return tok
		}},
		{"its client deleted", func(t *testing.T) string {
			id, sec := f.ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
			tok := f.ts.mustToken(id, sec, url.Values{})
			f.ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+id, nil)
			return tok
		}},
		{"signed by a removed key", func(t *testing.T) string {
			tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
			kid := f.ts.verifyToken(tok).header.KeyID
			if resp, _ := f.ts.adminDo(http.MethodPost, "/admin/v1/keys/"+kid+"/revoke", nil); resp.StatusCode != 200 {
				t.Fatalf("key revoke: %d", resp.StatusCode)
			}
			f.ts.login()
			return tok
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token(t)
			for _, by := range []cred{f.rs, f.root} {
				if f.active(t, by, tok) {
					t.Fatalf("active for %s", by.id)
				}
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	f := newIntrospectFixture(t)
	tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
	// Another client cannot revoke it.
	if st, m := f.ts.form("/oauth/revoke", f.other.id, f.other.secret, url.Values{"token": {tok}}); st != 400 || m["error"] != "unauthorized_client" {
		t.Fatalf("another client's revocation: %d %v", st, m)
	}
	if !f.active(t, f.rs, tok) {
		t.Fatal("a refused revocation revoked the token")
	}
	for i := range 2 { // the second time it is already revoked: 200 as well
		if st, _ := f.ts.form("/oauth/revoke", f.app.id, f.app.secret, url.Values{"token": {tok}, "token_type_hint": {"refresh_token"}}); st != 200 {
			t.Fatalf("revoke #%d: %d", i, st)
		}
	}
	if f.active(t, f.rs, tok) {
		t.Fatal("revoked token still active")
	}
	if st, _ := f.ts.form("/oauth/revoke", f.app.id, f.app.secret, url.Values{"token": {"garbage"}}); st != 200 {
		t.Fatalf("unknown token: %d", st)
	}
	if st, m := f.ts.form("/oauth/revoke", f.app.id, "wrong", url.Values{"token": {tok}}); st != 401 || m["error"] != "invalid_client" {
		t.Fatalf("bad credentials: %d %v", st, m)
	}
	// Revoking a refresh token kills its family.
	_, b := f.ts.tokenForm(f.app.id, f.app.secret, url.Values{})
	var tr struct {
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.Unmarshal(b, &tr)
	if st, _ := f.ts.form("/oauth/revoke", f.app.id, f.app.secret, url.Values{"token": {tr.RefreshToken}}); st != 200 {
		t.Fatal("revoke refresh")
	}
	if st, code := f.ts.tokenStatus(f.app.id, f.app.secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}); st != 400 || code != "invalid_grant" {
		t.Fatalf("refresh after revocation: %d %s", st, code)
	}
	// The admin list shows the live revocation, by jti.
	resp, body := f.ts.adminDo(http.MethodGet, "/admin/v1/revocations", nil)
	jti := f.ts.verifyToken(tok).claims["jti"].(string)
	if resp.StatusCode != 200 || !strings.Contains(string(body), jti) || strings.Contains(string(body), tok) {
		t.Fatalf("revocation list: %d %s", resp.StatusCode, body)
	}
}

// Deny-list entries go once their tokens have expired.
func TestDenyListGarbageCollection(t *testing.T) {
	f := newIntrospectFixture(t)
	tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
	f.ts.form("/oauth/revoke", f.app.id, f.app.secret, url.Values{"token": {tok}})
	ctx := context.Background()
	if revs, _ := f.ts.srv.store.ListRevocations(ctx, f.clock.Now(), nil, 10); len(revs) != 1 {
		t.Fatalf("%d revocations", len(revs))
	}
	f.clock.Advance(15*time.Minute + revocationLeeway - time.Second)
	f.ts.srv.collectGarbage(ctx)
	jti := f.ts.verifyToken(tok).claims["jti"].(string)
	if ok, _ := f.ts.srv.store.IsRevoked(ctx, jti); !ok {
		t.Fatal("collected before the token expired (plus leeway)")
	}
	f.clock.Advance(2 * time.Second)
	f.ts.srv.collectGarbage(ctx)
	if ok, _ := f.ts.srv.store.IsRevoked(ctx, jti); ok {
		t.Fatal("the revocation of an expired token is still stored")
	}
}

// verify's online mode against this server: a revocation takes effect for
// the resource server once its cached answer is older than the TTL.
func TestVerifyOnlineModeEndToEnd(t *testing.T) {
	f := newIntrospectFixture(t)
	v, err := verify.New(verify.Config{Issuer: f.ts.cfg.Issuer, Audience: ordersAPI, Now: f.clock.Now,
		JWKSURL:       f.ts.URL + "/.well-known/jwks.json",
		Introspection: &verify.IntrospectionConfig{URL: f.ts.URL + "/oauth/introspect", ClientID: f.rs.id, ClientSecret: f.rs.secret, CacheTTL: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("live token: %v", err)
	}
	f.ts.form("/oauth/revoke", f.app.id, f.app.secret, url.Values{"token": {tok}})
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("within the cache TTL the token is still accepted: %v", err)
	}
	f.clock.Advance(11 * time.Second)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, verify.ErrRevoked) {
		t.Fatalf("after the TTL: %v, want ErrRevoked", err)
	}
}

// Taking a scope away from an API, or deleting a granted API, revokes the
// tokens of the clients that lose rights (access and refresh), and only
// theirs.
func TestNarrowingAnAPIRevokesTokens(t *testing.T) {
	f := newIntrospectFixture(t)
	ts := f.ts
	f.ts.createAPI("https://stock.example.com", 0, "stock:read")
	keep := cred{}
	keep.id, keep.secret = ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: "https://stock.example.com", Scopes: []string{"stock:read"}}}})
	resp, b := ts.tokenForm(f.app.id, f.app.secret, url.Values{})
	var first struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(b, &first); err != nil || resp.StatusCode != 200 || first.RefreshToken == "" {
		t.Fatalf("token with a refresh token: %d %s", resp.StatusCode, b)
	}
	billing := ts.mustToken(f.other.id, f.other.secret, url.Values{})
	stock := ts.mustToken(keep.id, keep.secret, url.Values{})

	// orders:read goes from the orders API: the app's tokens go with it.
	path := "/admin/v1/apis/" + url.PathEscape(ordersAPI)
	if resp, b := ts.adminDo(http.MethodPatch, path, `{"scopes":["orders:write"]}`); resp.StatusCode != 200 {
		t.Fatalf("PATCH API: %d %s", resp.StatusCode, b)
	}
	if f.active(t, f.root, first.AccessToken) {
		t.Error("a token whose scope was removed from its API is still active")
	}
	if st, code := ts.tokenStatus(f.app.id, f.app.secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}); st != 400 || code != "invalid_grant" {
		t.Errorf("refresh token of a client that lost its scope: %d %s", st, code)
	}
	if !f.active(t, f.root, billing) || !f.active(t, f.root, stock) {
		t.Fatal("tokens of clients that lost nothing were revoked")
	}

	// The billing API is deleted with its grants: the other client's token
	// goes; the stock client's stays.
	if resp, b := ts.adminDo(http.MethodDelete, "/admin/v1/apis/"+url.PathEscape("https://billing.example.com")+"?force=true", nil); resp.StatusCode != 204 {
		t.Fatalf("forced delete: %d %s", resp.StatusCode, b)
	}
	if f.active(t, f.root, billing) {
		t.Error("a token for a deleted API is still active")
	}
	if !f.active(t, f.root, stock) {
		t.Error("deleting another API revoked this token")
	}
}

// Right after a client's tokens are revoked (the cutoff is the next whole
// second, and iat counts whole seconds), a new token is active: its iat is
// the cutoff, its nbf now. Older ones are revoked.
func TestTokenAfterRevokeTokensIsActive(t *testing.T) {
	clock := newFakeClock()
	clock.Advance(300 * time.Millisecond) // within a second, not at its start
	ts := startServerClock(t, testConfig(t), clock.Now)
	id, secret := setupOrders(ts)
	rs, rsSecret := ts.createClient(admin.ClientInput{Name: "gateway", Introspect: []string{"*"}})
	old := ts.mustToken(id, secret, url.Values{})
	if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/revoke-tokens", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke-tokens: %d %s", resp.StatusCode, b)
	}
	token := ts.mustToken(id, secret, url.Values{})
	var c struct{ Iat, Nbf int64 }
	parseJWTPayload(t, token, &c)
	if now := clock.Now().Unix(); c.Nbf != now || c.Iat != now+1 {
		t.Errorf("iat %d, nbf %d; want the cutoff %d and now %d", c.Iat, c.Nbf, now+1, now)
	}
	for _, tc := range []struct {
		token  string
		active bool
	}{{old, false}, {token, true}} {
		if st, out := ts.form("/oauth/introspect", rs, rsSecret, url.Values{"token": {tc.token}}); st != http.StatusOK || out["active"] != tc.active {
			t.Errorf("introspection: %d %v, want active %v", st, out, tc.active)
		}
	}
}
