package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// reuseToken posts a client-credentials request to path and returns the
// token and its expires_in.
func (ts *testServer) reuseToken(path, id, secret, scope string) (string, int64) {
	ts.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, body := ts.do(req)
	var tr tokenResp
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil {
		ts.t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	return tr.AccessToken, tr.ExpiresIn
}

// Token reuse: off by default; on, the same token while more than the
// fraction of its life is left, and a new one after the fraction passed,
// after its revocation, after the signing key changed, after the client
// changed, and for other scopes.
func TestTokenReuse(t *testing.T) {
	clock := newFakeClock()
	ts := startServerClock(t, testConfig(t), clock.Now)
	ts.createAPI(ordersAPI, 0, "orders:read", "orders:write")
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read", "orders:write"}}}

	t.Run("off by default", func(t *testing.T) {
		id, secret := ts.createClient(admin.ClientInput{Grants: grants})
		if c, _ := ts.client(id); c.TokenReuseMinRemaining != 0 {
			t.Fatalf("token_reuse_min_remaining %v, want 0", c.TokenReuseMinRemaining)
		}
		a, _ := ts.reuseToken("/oauth/token", id, secret, "orders:read")
		b, _ := ts.reuseToken("/oauth/token", id, secret, "orders:read")
		if a == b {
			t.Fatal("a client without token reuse got the same token twice")
		}
	})

	id, secret := ts.createClient(admin.ClientInput{Grants: grants, TokenLifetimeSeconds: 600, TokenReuseMinRemaining: 0.5})
	if c, _ := ts.client(id); c.TokenReuseMinRemaining != 0.5 {
		t.Fatalf("token_reuse_min_remaining %v, want 0.5", c.TokenReuseMinRemaining)
	}
	reused0, signed0 := ts.srv.tokens.ReuseCounts()
	tok := func(scope string) (string, int64) { return ts.reuseToken("/oauth/token", id, secret, scope) }
	first, exp := tok("orders:read")
	if exp != 600 {
		t.Fatalf("expires_in %d, want 600", exp)
	}
	clock.Advance(10 * time.Second)
	again, exp := tok("orders:read")
	if again != first || exp != 590 {
		t.Fatalf("within the window: same token %v, expires_in %d (want the same token, 590)", again == first, exp)
	}
	if other, _ := tok("orders:write"); other == first {
		t.Fatal("another scope got the same token")
	}
	if again, _ := tok("orders:read"); again != first {
		t.Fatal("a request for other scopes displaced the token")
	}
	if reused, signed := ts.srv.tokens.ReuseCounts(); reused-reused0 != 2 || signed-signed0 != 2 {
		t.Errorf("counts: %d reused, %d signed; want 2 and 2", reused-reused0, signed-signed0)
	}
	// Past half its life (300 s left is not more than half).
	clock.Advance(290 * time.Second)
	next, exp := tok("orders:read")
	if next == first || exp != 600 {
		t.Fatalf("after the fraction passed: same token %v, expires_in %d", next == first, exp)
	}
	if again, _ := tok("orders:read"); again != next {
		t.Fatal("the new token is not reused")
	}

	t.Run("revoked", func(t *testing.T) {
		ts.login()
		if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/revocations", map[string]string{"token": next}); resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke: %d %s", resp.StatusCode, body)
		}
		if again, _ := tok("orders:read"); again == next {
			t.Fatal("a revoked token was handed out again")
		}
	})
	t.Run("signing key revoked", func(t *testing.T) {
		cur, _ := tok("orders:read")
		kid := kidOf(t, cur)
		if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/keys/"+kid+"/revoke", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke key: %d %s", resp.StatusCode, body)
		}
		ts.login() // the admin token was signed by that key too
		again, _ := tok("orders:read")
		if again == cur || kidOf(t, again) == kid {
			t.Fatal("a token of a revoked key was handed out again")
		}
	})
	t.Run("signing key rotated", func(t *testing.T) {
		long, longSecret := ts.createClient(admin.ClientInput{Grants: grants, TokenLifetimeSeconds: 4 * 3600, TokenReuseMinRemaining: 0.1})
		cur, _ := ts.reuseToken("/oauth/token", long, longSecret, "")
		if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/keys/rotate", nil); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("rotate: %d %s", resp.StatusCode, body)
		}
		if again, _ := ts.reuseToken("/oauth/token", long, longSecret, ""); again != cur {
			t.Fatal("not reused while the next key is only published")
		}
		clock.Advance(ts.cfg.KeyPrepublish + time.Second) // the next key signs now
		again, _ := ts.reuseToken("/oauth/token", long, longSecret, "")
		if again == cur || kidOf(t, again) == kidOf(t, cur) {
			t.Fatal("a token of the previous signing key was handed out again")
		}
		ts.login()
	})
	t.Run("client changed", func(t *testing.T) {
		cur, _ := tok("orders:read")
		narrowed := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
		if resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, map[string]any{"grants": narrowed}); resp.StatusCode != http.StatusOK {
			t.Fatalf("patch: %d %s", resp.StatusCode, body)
		}
		if again, _ := tok("orders:read"); again == cur {
			t.Fatal("a token of the client before its change was handed out again")
		}
		if resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, map[string]any{"token_reuse_min_remaining": nil}); resp.StatusCode != http.StatusOK {
			t.Fatalf("patch: %d %s", resp.StatusCode, body)
		}
		a, _ := tok("orders:read")
		if b, _ := tok("orders:read"); a == b {
			t.Fatal("reuse turned off, and still the same token")
		}
	})
	t.Run("bad fraction", func(t *testing.T) {
		for _, v := range []any{1, -0.1, 2.5, "half"} {
			resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, map[string]any{"token_reuse_min_remaining": v})
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%v: %d %s, want 400", v, resp.StatusCode, body)
			}
		}
	})
}

// Token reuse is per environment: the same client id in two
// environments never shares a token.
func TestTokenReuseEnvironments(t *testing.T) {
	ts := startServer(t, testConfig(t))
	if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/environments", admin.EnvironmentInput{Name: "qa", DisplayName: "QA"}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create environment: %d %s", resp.StatusCode, body)
	}
	type cred struct{ path, secret string }
	var creds []cred
	for _, prefix := range []string{"", "/e/qa"} {
		if resp, body := ts.adminDo(http.MethodPost, prefix+"/admin/v1/apis", admin.APIInput{Identifier: ordersAPI, Name: "orders", Scopes: []string{"orders:read"}}); resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s: create API: %d %s", prefix, resp.StatusCode, body)
		}
		resp, body := ts.adminDo(http.MethodPost, prefix+"/admin/v1/clients", admin.ClientInput{ClientID: "app", Name: "app",
			Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, TokenReuseMinRemaining: 0.5})
		var c admin.ClientResource
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &c) != nil {
			t.Fatalf("%s: create client: %d %s", prefix, resp.StatusCode, body)
		}
		creds = append(creds, cred{prefix + "/oauth/token", c.ClientSecret})
	}
	var toks []string
	for _, c := range creds {
		a, _ := ts.reuseToken(c.path, "app", c.secret, "")
		if b, _ := ts.reuseToken(c.path, "app", c.secret, ""); a != b {
			t.Fatalf("%s: not reused", c.path)
		}
		toks = append(toks, a)
	}
	if toks[0] == toks[1] {
		t.Fatal("two environments got the same token")
	}
}

// kidOf returns the kid of a token's header (unverified).
func kidOf(t *testing.T, raw string) string {
	t.Helper()
	h, _, _ := strings.Cut(raw, ".")
	b, err := base64URL(h)
	var header struct{ Kid string }
	if err != nil || json.Unmarshal(b, &header) != nil || header.Kid == "" {
		t.Fatalf("no kid in %q", h)
	}
	return header.Kid
}

// A client that fetches a token for every call is in the token caching
// report within a minute; a client that caches is not.
func TestTokenCachingReport(t *testing.T) {
	clock := newFakeClock()
	ts := startServerClock(t, testConfig(t), clock.Now)
	ts.createAPI(ordersAPI, 0, "orders:read")
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	percall, percallSecret := ts.createClient(admin.ClientInput{Name: "per call", Grants: grants})
	caching, cachingSecret := ts.createClient(admin.ClientInput{Name: "caching", Grants: grants})
	ts.reuseToken("/oauth/token", caching, cachingSecret, "")
	for range 50 { // a call a second, a token per call
		ts.reuseToken("/oauth/token", percall, percallSecret, "")
		clock.Advance(time.Second)
	}
	resp, body := ts.adminDo(http.MethodGet, "/admin/v1/reports/token-caching", nil)
	var rep admin.TokenCachingReport
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &rep) != nil {
		t.Fatalf("report: %d %s", resp.StatusCode, body)
	}
	if len(rep.Clients) != 1 {
		t.Fatalf("report: %s", body)
	}
	f := rep.Clients[0]
	if f.ClientID != percall || f.Name != "per call" || f.Tokens != 50 || f.LifetimeSeconds != int64(ts.cfg.DefaultTokenLifetime/time.Second) ||
		f.CachingTokens != 1 || f.TokensPerLifetime != 50 || f.Audiences != 1 || f.WindowSeconds < 50 || f.WindowSeconds > 120 {
		t.Errorf("finding: %+v", f)
	}
	if rep.WindowSeconds != 3600 || rep.TokensPerLifetimeLimit != 10 || rep.MinTokens != 30 {
		t.Errorf("report: %+v", rep)
	}
	// Per environment: another environment's report is its own.
	if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/environments", admin.EnvironmentInput{Name: "qa", DisplayName: "QA"}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create environment: %d %s", resp.StatusCode, body)
	}
	resp, body = ts.adminDo(http.MethodGet, "/e/qa/admin/v1/reports/token-caching", nil)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &rep) != nil || len(rep.Clients) != 0 {
		t.Fatalf("qa report: %d %s", resp.StatusCode, body)
	}
}

// The console: the application form sets and shows token reuse, refuses a
// bad fraction, and the applications page shows the clients that never
// cache tokens with their numbers.
func TestConsoleTokenReuseAndCaching(t *testing.T) {
	ts := startServer(t, testConfig(t))
	pc := pagesSignIn(t, ts)
	ts.createAPI(ordersAPI, 0, "orders:read")
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	id, secret := ts.createClient(admin.ClientInput{Name: "Chatty", Grants: grants})
	path := "/console/app/" + url.PathEscape(id) + "/edit"
	_, page := pc.get(path)
	if v := pageField(t, page, "token_reuse"); v != "" {
		t.Fatalf("token_reuse shown %q for a client without reuse", v)
	}
	form := func(reuse string) url.Values {
		return url.Values{"version": {pageField(t, page, "version")}, "name": {"Chatty"}, "auth_method": {admin.AuthSecretBasic},
			"grant": {ordersAPI}, "scope:" + ordersAPI: {"orders:read"}, "fed_rows": {"2"}, "token_reuse": {reuse}}
	}
	if st, page, _ := pc.post(path, form("1.5")); !strings.Contains(fieldError(page, "token_reuse"), "fraction") {
		t.Fatalf("bad fraction: %d %q", st, fieldError(page, "token_reuse"))
	}
	if st, _, final := pc.post(path, form("0.5")); st != http.StatusOK || final.Query().Get("done") != "app-updated" {
		t.Fatalf("save: %d at %s", st, final)
	}
	if c, _ := ts.client(id); c.TokenReuseMinRemaining != 0.5 {
		t.Fatalf("saved token_reuse_min_remaining %v", c.TokenReuseMinRemaining)
	}
	_, page = pc.get(path)
	if v := pageField(t, page, "token_reuse"); v != "0.5" {
		t.Fatalf("token_reuse shown %q, want 0.5", v)
	}

	if _, page := pc.get("/console/apps"); strings.Contains(page, `id="token-caching"`) {
		t.Fatal("caching panel shown with nothing to report")
	}
	for range 40 {
		ts.reuseToken("/oauth/token", id, secret, "")
	}
	_, page = pc.get("/console/apps")
	panel := pageText(page, "token-caching")
	if i := strings.Index(page, `id="token-caching"`); i < 0 || !strings.Contains(page[i:], ">40<") || !strings.Contains(page[i:], "Chatty") {
		t.Fatalf("caching panel: %q", panel)
	}
}
