package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/store"
)

// newAdmin creates a second admin client and returns its id, secret and
// an admin token.
func (ts *testServer) newAdmin() (id, secret, token string) {
	ts.t.Helper()
	id, secret = ts.createClient(admin.ClientInput{Name: "second admin",
		Grants: []admin.GrantInput{{Audience: ts.cfg.AdminAudience(), Scopes: []string{admin.AdminScope}}}})
	token = ts.mustToken(id, secret, url.Values{"audience": {ts.cfg.AdminAudience()}})
	return id, secret, token
}

// adminAs calls the admin API with token.
func (ts *testServer) adminAs(token, method, path, body string) int {
	ts.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, ts.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, _ := ts.do(req)
	return resp.StatusCode
}

// An admin token stops working on the admin API as soon as it is revoked,
// all of its client's tokens are, or its client is disabled, deleted or
// loses the admin grant: each case is checked on the next request.
func TestAdminTokenRevocation(t *testing.T) {
	ts := startServer(t, testConfig(t))
	tests := []struct {
		name   string
		revoke func(id, secret, token string)
		want   int
	}{
		{"revoked by its own client (RFC 7009)", func(id, secret, token string) {
			if status, b := ts.form("/oauth/revoke", id, secret, url.Values{"token": {token}}); status != 200 {
				t.Fatalf("revoke: %d %v", status, b)
			}
		}, 401},
		{"revoked by another admin (revocation add)", func(_, _, token string) {
			if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/revocations", admin.RevokeRequest{Token: token}); resp.StatusCode != 200 {
				t.Fatalf("revocation add: %d %s", resp.StatusCode, b)
			}
		}, 401},
		{"all tokens of its client revoked (client revoke-tokens)", func(id, _, _ string) {
			if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/revoke-tokens", nil); resp.StatusCode != 200 {
				t.Fatalf("revoke-tokens: %d %s", resp.StatusCode, b)
			}
		}, 401},
		{"client disabled", func(id, _, _ string) {
			if resp, b := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, map[string]any{"disabled": true}); resp.StatusCode != 200 {
				t.Fatalf("disable: %d %s", resp.StatusCode, b)
			}
		}, 401},
		{"client deleted", func(id, _, _ string) {
			if resp, b := ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+id, nil); resp.StatusCode != 204 {
				t.Fatalf("delete: %d %s", resp.StatusCode, b)
			}
		}, 401},
		{"admin grant removed", func(id, _, _ string) {
			if resp, b := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, map[string]any{"grants": []any{}}); resp.StatusCode != 200 {
				t.Fatalf("remove grant: %d %s", resp.StatusCode, b)
			}
		}, 401},
		// Giving the rights back does not revive the tokens issued before
		// they were taken away.
		{"disabled, then enabled again", func(id, _, _ string) {
			for _, disabled := range []bool{true, false} {
				if resp, b := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, map[string]any{"disabled": disabled}); resp.StatusCode != 200 {
					t.Fatalf("disabled=%v: %d %s", disabled, resp.StatusCode, b)
				}
			}
		}, 401},
		{"admin grant removed, then granted again", func(id, _, _ string) {
			grants := []any{map[string]any{"audience": ts.cfg.AdminAudience(), "scopes": []string{admin.AdminScope}}}
			for _, g := range [][]any{{}, grants} {
				if resp, b := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, map[string]any{"grants": g}); resp.StatusCode != 200 {
					t.Fatalf("grants %v: %d %s", g, resp.StatusCode, b)
				}
			}
		}, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, secret, token := ts.newAdmin()
			if got := ts.adminAs(token, http.MethodGet, "/admin/v1/apis", ""); got != 200 {
				t.Fatalf("before: %d", got)
			}
			tc.revoke(id, secret, token)
			if got := ts.adminAs(token, http.MethodGet, "/admin/v1/apis", ""); got != tc.want {
				t.Errorf("reading after: %d, want %d", got, tc.want)
			}
			if got := ts.adminAs(token, http.MethodPost, "/admin/v1/clients", `{"name":"made by a revoked admin"}`); got != tc.want {
				t.Errorf("creating a client after: %d, want %d", got, tc.want)
			}
		})
	}
}

// countingStore counts the reads the admin API's authentication could
// make.
type countingStore struct {
	store.Store
	getClient, isRevoked atomic.Int64
}

func (c *countingStore) GetClient(ctx context.Context, id string) (store.Client, error) {
	c.getClient.Add(1)
	return c.Store.GetClient(ctx, id)
}

func (c *countingStore) IsRevoked(ctx context.Context, jti string) (bool, error) {
	c.isRevoked.Add(1)
	return c.Store.IsRevoked(ctx, jti)
}

// Checking an admin token's state costs no database round trip: the
// deny-list and the client are in memory.
func TestAdminAuthenticationMakesNoDatabaseRoundTrip(t *testing.T) {
	cfg := testConfig(t)
	cfg.Addr, cfg.Issuer = "127.0.0.1:1", "http://127.0.0.1:1"
	st, err := OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingStore{Store: st}
	srv, err := newServer(context.Background(), cfg, NewLogger(io.Discard, "json", "error"), nil, counting, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var creds AdminCredentials
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, AdminFile)); err != nil || json.Unmarshal(b, &creds) != nil {
		t.Fatalf("admin file: %v", err)
	}
	login := httptest.NewRequest(http.MethodPost, "/admin/v1/token", strings.NewReader("grant_type=client_credentials"))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	login.SetBasicAuth(creds.ClientID, creds.ClientSecret)
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, login)
	var tr tokenResp
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &tr) != nil {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	token := tr.AccessToken
	get := func() int {
		r := httptest.NewRequest(http.MethodGet, "/admin/v1/apis", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, r)
		return w.Code
	}
	get() // warms the client cache
	before, revBefore := counting.getClient.Load(), counting.isRevoked.Load()
	for range 100 {
		if code := get(); code != 200 {
			t.Fatalf("%d", code)
		}
	}
	if n, m := counting.getClient.Load()-before, counting.isRevoked.Load()-revBefore; n != 0 || m != 0 {
		t.Errorf("100 admin requests read clients %d times and the deny-list %d times, want 0", n, m)
	}
}
