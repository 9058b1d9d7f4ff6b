package server

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/store"
)

// hits returns the introspection cache's hits in the default environment.
func (f *introspectFixture) hits(t *testing.T) uint64 {
	t.Helper()
	c := f.ts.srv.env.Verified
	if c == nil {
		t.Fatal("the introspection cache is off by default")
	}
	h, _ := c.Stats()
	return h
}

// cachedToken gets a token of app and introspects it twice: the second
// answer must come from the cache (no signature check).
func (f *introspectFixture) cachedToken(t *testing.T) string {
	t.Helper()
	tok := f.ts.mustToken(f.app.id, f.app.secret, url.Values{})
	if !f.active(t, f.rs, tok) {
		t.Fatal("a fresh token is inactive")
	}
	before := f.hits(t)
	if !f.active(t, f.root, tok) {
		t.Fatal("a cached token is inactive")
	}
	if f.hits(t) != before+1 {
		t.Fatal("the second introspection verified the signature again")
	}
	return tok
}

// A token answered from the introspection cache goes through every check
// but the signature: each way it becomes inactive after it was cached is
// seen at once, and a changed token is never answered from the entry of
// the original.
func TestIntrospectionCache(t *testing.T) {
	tests := []struct {
		name string
		// change makes tok (cached) inactive, returning the token to
		// introspect.
		change func(t *testing.T, f *introspectFixture, tok string) string
	}{
		{"expired", func(_ *testing.T, f *introspectFixture, tok string) string {
			f.clock.Advance(16 * time.Minute) // 15 min lifetime + 60 s leeway
			f.ts.login()
			return tok
		}},
		{"revoked by its client", func(t *testing.T, f *introspectFixture, tok string) string {
			if st, _ := f.ts.form("/oauth/revoke", f.app.id, f.app.secret, url.Values{"token": {tok}}); st != 200 {
				t.Fatalf("revoke: %d", st)
			}
			return tok
		}},
		{"revoked by an administrator", func(t *testing.T, f *introspectFixture, tok string) string {
			if resp, b := f.ts.adminDo(http.MethodPost, "/admin/v1/revocations", admin.RevokeRequest{Token: tok}); resp.StatusCode != 200 || !strings.Contains(string(b), `"revoked": true`) {
				t.Fatalf("admin revoke: %d %s", resp.StatusCode, b)
			}
			return tok
		}},
		{"all of its client's tokens revoked", func(t *testing.T, f *introspectFixture, tok string) string {
			if resp, _ := f.ts.adminDo(http.MethodPost, "/admin/v1/clients/"+f.app.id+"/revoke-tokens", nil); resp.StatusCode != 200 {
				t.Fatalf("revoke-tokens: %d", resp.StatusCode)
			}
			return tok
		}},
		{"its client disabled", func(t *testing.T, f *introspectFixture, tok string) string {
			if resp, _ := f.ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+f.app.id, `{"disabled":true}`); resp.StatusCode != 200 {
				t.Fatalf("disable: %d", resp.StatusCode)
			}
			return tok
		}},
		{"its client deleted", func(t *testing.T, f *introspectFixture, tok string) string {
			if resp, _ := f.ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+f.app.id, nil); resp.StatusCode != 204 && resp.StatusCode != 200 {
				t.Fatalf("delete: %d", resp.StatusCode)
			}
			return tok
		}},
		{"its signing key revoked", func(t *testing.T, f *introspectFixture, tok string) string {
			kid := f.ts.verifyToken(tok).header.KeyID
			if resp, _ := f.ts.adminDo(http.MethodPost, "/admin/v1/keys/"+kid+"/revoke", nil); resp.StatusCode != 200 {
				t.Fatalf("key revoke: %d", resp.StatusCode)
			}
			f.ts.login()
			return tok
		}},
		{"one byte of the signature changed", func(_ *testing.T, _ *introspectFixture, tok string) string {
			i := strings.LastIndexByte(tok, '.') + 10
			c := byte('A')
			if tok[i] == 'A' {
				c = 'B'
			}
			return tok[:i] + string(c) + tok[i+1:]
		}},
		{"one byte of the claims changed", func(_ *testing.T, _ *introspectFixture, tok string) string {
			i := strings.IndexByte(tok, '.') + 10
			c := byte('A')
			if tok[i] == 'A' {
				c = 'B'
			}
			return tok[:i] + string(c) + tok[i+1:]
		}},
		{"a character appended", func(_ *testing.T, _ *introspectFixture, tok string) string { return tok + "A" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newIntrospectFixture(t)
			tok := tc.change(t, f, f.cachedToken(t))
			before := f.hits(t)
			for _, by := range []cred{f.rs, f.root} {
				if f.active(t, by, tok) {
					t.Fatalf("active for %s", by.id)
				}
			}
			switch {
			case strings.Contains(tc.name, "changed") || strings.Contains(tc.name, "appended"):
				if f.hits(t) != before {
					t.Fatal("a changed token found the original's entry")
				}
			case strings.Contains(tc.name, "expired") || strings.Contains(tc.name, "key"):
				// Found, refused by the re-check, dropped.
				if n := f.ts.srv.env.Verified.Len(); n != 0 {
					t.Fatalf("%d entries left", n)
				}
			}
		})
	}
}

// A cached token is still answered only to callers allowed to see it.
func TestIntrospectionCacheCallerRights(t *testing.T) {
	f := newIntrospectFixture(t)
	tok := f.cachedToken(t)
	var billingRS cred
	billingRS.id, billingRS.secret = f.ts.createClient(admin.ClientInput{Name: "billing API", Introspect: []string{"https://billing.example.com"}})
	if f.active(t, billingRS, tok) {
		t.Fatal("another audience's introspector sees a cached token")
	}
	if st, m := f.introspect(f.nobody, tok); st != 403 || m["error"] != "unauthorized_client" {
		t.Fatalf("client without the permission: %d %v", st, m)
	}
	if st, m := f.introspect(cred{f.rs.id, "wrong"}, tok); st != 401 || m["error"] != "invalid_client" {
		t.Fatalf("bad credentials: %d %v", st, m)
	}
	// The introspector loses the permission: the cache does not remember it.
	if resp, b := f.ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+f.rs.id, `{"introspect":["https://billing.example.com"]}`); resp.StatusCode != 200 {
		t.Fatalf("patch: %d %s", resp.StatusCode, b)
	}
	if f.active(t, f.rs, tok) {
		t.Fatal("an introspector that lost the audience still sees a cached token")
	}
	// And the answer from the cache is the full one.
	st, m := f.introspect(f.root, tok)
	claims := f.ts.verifyToken(tok).claims
	if st != 200 || m["active"] != true || m["client_id"] != f.app.id || m["jti"] != claims["jti"] || m["exp"] != claims["exp"] || m["scope"] != "orders:read" {
		t.Fatalf("answer from the cache: %d %v", st, m)
	}
}

// A token cached in the default environment is not active in another.
func TestIntrospectionCacheEnvironments(t *testing.T) {
	f := newIntrospectFixture(t)
	tok := f.cachedToken(t)
	ctx := context.Background()
	now := f.clock.Now()
	if err := f.ts.srv.store.CreateEnvironment(ctx, store.Environment{Name: "beta", DisplayName: "Beta", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	en, err := f.ts.srv.Env(ctx, "beta")
	if err != nil {
		t.Fatal(err)
	}
	if en.Verified == nil || en.Verified == f.ts.srv.env.Verified {
		t.Fatal("environments share an introspection cache")
	}
	svc := admin.NewService(en.Store, en.Hasher, f.clock.Now, en.Changed)
	gw, secret, err := svc.CreateClient(env.NewContext(ctx, en), admin.ClientInput{ClientID: "gateway", Name: "gateway", Introspect: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		st, m := f.ts.introspectAt("/e/beta", cred{gw.ID, secret}, tok)
		if st != 200 || m["active"] != false || len(m) != 1 {
			t.Fatalf("the default environment's token in beta: %d %v", st, m)
		}
	}
	if !f.active(t, f.root, tok) {
		t.Fatal("the token is no longer active at home")
	}
}

// --introspection-cache 0 turns the cache off; introspection works as
// before.
func TestIntrospectionCacheOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.IntrospectionCache = 0
	ts := startServer(t, cfg)
	if ts.srv.env.Verified != nil {
		t.Fatal("the cache is on with size 0")
	}
	id, sec := setupOrders(ts)
	var gw cred
	gw.id, gw.secret = ts.createClient(admin.ClientInput{Name: "gateway", Introspect: []string{"*"}})
	tok := ts.mustToken(id, sec, url.Values{})
	for range 2 {
		if st, m := ts.introspectAt("", gw, tok); st != 200 || m["active"] != true {
			t.Fatalf("introspect: %d %v", st, m)
		}
	}
}

// Two replicas on one PostgreSQL database: a token cached by B's
// introspection turns inactive on B as soon as its signing key is revoked
// through A (B learns of it through the change feed and reloads its keys;
// the cache's per-hit key check sees the reload).
func TestIntrospectionCacheKeyRevokedAcrossReplicas(t *testing.T) {
	a, b, appID, appSecret, active := introspectingReplicas(t, Options{})
	tok := a.mustToken(appID, appSecret, url.Values{})
	within(t, time.Second, "A's token active on B", func() bool { return active(tok) })
	h0, _ := b.srv.env.Verified.Stats()
	if !active(tok) {
		t.Fatal("inactive on B")
	}
	if h, _ := b.srv.env.Verified.Stats(); h != h0+1 {
		t.Fatal("B did not answer from its cache")
	}
	kid := a.verifyToken(tok).header.KeyID
	if resp, body := a.adminDo(http.MethodPost, "/admin/v1/keys/"+kid+"/revoke", nil); resp.StatusCode != 200 {
		t.Fatalf("key revoke on A: %d %s", resp.StatusCode, body)
	}
	within(t, 2*time.Second, "key revocation on A seen by B's cache", func() bool { return !active(tok) })
}
