package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/verify"
)

// upgradeFixture is testdata/upgrade-v0/fixture.json: what the release
// before environments (commit e192a29) made in the database beside it.
type upgradeFixture struct {
	Issuer        string   `json:"issuer"`
	KID           string   `json:"kid"`
	APIIdentifier string   `json:"api_identifier"`
	APIScopes     []string `json:"api_scopes"`
	ClientID      string   `json:"client_id"`
	ClientSecret  string   `json:"client_secret"`
	ClientName    string   `json:"client_name"`
	GrantScopes   []string `json:"grant_scopes"`
	AccessToken   string   `json:"access_token"`
	IAT           int64    `json:"iat"`
	EXP           int64    `json:"exp"`
}

// copyUpgradeFixture copies the fixture's data dir (database, master key,
// admin file) into a fresh directory and returns it with the fixture.
func copyUpgradeFixture(t *testing.T) (string, upgradeFixture) {
	t.Helper()
	src := filepath.Join("testdata", "upgrade-v0")
	var fx upgradeFixture
	b, err := os.ReadFile(filepath.Join(src, "fixture.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"m2mauth.db", "master.key", AdminFile} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, fx
}

// A database made by the release before environments (a client with a
// grant, and a token it was issued) starts under today's server: the
// migration moves everything into the default environment, the old token
// still verifies and is active, the client gets tokens with its old secret
// signed by the same key, and the bootstrap admin still manages the server.
func TestUpgradeFromPreEnvironmentDatabase(t *testing.T) {
	dataDir, fx := copyUpgradeFixture(t)
	cfg := testConfig(t)
	cfg.DataDir = dataDir
	cfg.Issuer = fx.Issuer
	clock := &fakeClock{t: time.Unix(fx.IAT, 0).Add(time.Minute)}
	ts := startServerClock(t, cfg, clock.Now) // logs in as admin.json's client
	ctx := context.Background()

	t.Run("migrated", func(t *testing.T) {
		files, err := os.ReadDir(filepath.Join("..", "store", "sqlite", "migrations"))
		if err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", filepath.Join(dataDir, "m2mauth.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var version int
		if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&version); err != nil {
			t.Fatal(err)
		}
		// Migration numbers are reserved per feature: the last file's
		// number, not their count, is the schema version.
		last, _ := strconv.Atoi(strings.SplitN(files[len(files)-1].Name(), "_", 2)[0])
		if version != last || version < 10 {
			t.Errorf("schema version %d, want %d (every migration, 0010_environments included)", version, last)
		}
		var envs []string
		rows, err := db.QueryContext(ctx, `SELECT DISTINCT env FROM clients UNION SELECT DISTINCT env FROM apis UNION SELECT DISTINCT env FROM signing_keys`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var e string
			if err := rows.Scan(&e); err != nil {
				t.Fatal(err)
			}
			envs = append(envs, e)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(envs, []string{store.DefaultEnv}) {
			t.Errorf("environments of the migrated rows: %v, want only %q", envs, store.DefaultEnv)
		}
		if _, err := ts.srv.store.GetEnvironment(ctx, store.DefaultEnv); err != nil {
			t.Errorf("the default environment: %v", err)
		}
	})

	t.Run("old token verifies against today's JWKS", func(t *testing.T) {
		v, err := verify.New(verify.Config{Issuer: fx.Issuer, Audience: fx.APIIdentifier,
			JWKSURL: ts.URL + "/.well-known/jwks.json", Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		claims, err := v.Verify(ctx, fx.AccessToken)
		if err != nil {
			t.Fatalf("the token issued before the upgrade: %v", err)
		}
		if claims.ClientID != fx.ClientID || !claims.HasScope(fx.GrantScopes[0]) {
			t.Errorf("claims: client %q scopes %v", claims.ClientID, claims.Scopes)
		}
		if got := ts.verifyToken(fx.AccessToken).header.KeyID; got != fx.KID {
			t.Errorf("kid %q, want %q", got, fx.KID)
		}
	})

	t.Run("old token is active at introspection with the admin credentials", func(t *testing.T) {
		// The bootstrap admin was made without the introspection
		// permission: it grants it to itself with its own credentials.
		if resp, b := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+ts.admin.ClientID, map[string]any{"introspect": []string{"*"}}); resp.StatusCode != http.StatusOK {
			t.Fatalf("give the admin client introspection: %d %s", resp.StatusCode, b)
		}
		st, m := ts.form("/oauth/introspect", ts.admin.ClientID, ts.admin.ClientSecret, url.Values{"token": {fx.AccessToken}})
		if st != http.StatusOK || m["active"] != true || m["client_id"] != fx.ClientID || m["iss"] != fx.Issuer {
			t.Errorf("introspect the old token: %d %v", st, m)
		}
	})

	t.Run("old client gets a token with its old secret, by the same key", func(t *testing.T) {
		raw := ts.mustToken(fx.ClientID, fx.ClientSecret, url.Values{})
		got := ts.verifyToken(raw) // a key the JWKS publishes
		if got.header.KeyID != fx.KID {
			t.Errorf("kid %q, want the pre-upgrade key %q (no rotation was due)", got.header.KeyID, fx.KID)
		}
		if got.claims["iss"] != fx.Issuer || got.claims["aud"] != fx.APIIdentifier || got.claims["scope"] != strings.Join(fx.GrantScopes, " ") {
			t.Errorf("claims: %v", got.claims)
		}
	})

	t.Run("admin API lists the API and the client with its grant", func(t *testing.T) {
		resp, b := ts.adminDo(http.MethodGet, "/admin/v1/apis", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("list APIs: %d %s", resp.StatusCode, b)
		}
		var apis struct{ Items []admin.APIResource }
		if err := json.Unmarshal(b, &apis); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(apis.Items, func(a admin.APIResource) bool { return a.Identifier == fx.APIIdentifier })
		if i < 0 || !slices.Equal(apis.Items[i].Scopes, fx.APIScopes) {
			t.Errorf("APIs listed: %s", b)
		}
		resp, b = ts.adminDo(http.MethodGet, "/admin/v1/clients", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("list clients: %d %s", resp.StatusCode, b)
		}
		var clients struct{ Items []admin.ClientResource }
		if err := json.Unmarshal(b, &clients); err != nil {
			t.Fatal(err)
		}
		i = slices.IndexFunc(clients.Items, func(c admin.ClientResource) bool { return c.ClientID == fx.ClientID })
		if i < 0 {
			t.Fatalf("client %s not listed: %s", fx.ClientID, b)
		}
		c := clients.Items[i]
		if c.Name != fx.ClientName || len(c.Grants) != 1 || c.Grants[0].Audience != fx.APIIdentifier || !slices.Equal(c.Grants[0].Scopes, fx.GrantScopes) {
			t.Errorf("client listed as %+v", c)
		}
	})

	t.Run("bootstrap admin is a deployment admin", func(t *testing.T) {
		// startServerClock logged in with admin.json; the admin API
		// answered the calls above. Migration 0010 adds the deployment
		// scope to its grant on the admin API.
		c, _ := ts.client(ts.admin.ClientID)
		i := slices.IndexFunc(c.Grants, func(g admin.GrantInput) bool { return g.Audience == fx.Issuer+"/admin" })
		if i < 0 || !slices.Contains(c.Grants[i].Scopes, "admin") || !slices.Contains(c.Grants[i].Scopes, "deployment") {
			t.Errorf("the bootstrap admin's grants: %+v", c.Grants)
		}
	})

	t.Run("data is in the default environment only", func(t *testing.T) {
		now := clock.Now()
		if err := ts.srv.store.CreateEnvironment(ctx, store.Environment{Name: "fresh", DisplayName: "Fresh", CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		if _, err := ts.srv.store.InEnv("fresh").GetClient(ctx, fx.ClientID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the old client seen from a new environment: %v", err)
		}
		if _, err := ts.srv.store.InEnv(store.DefaultEnv).GetClient(ctx, fx.ClientID); err != nil {
			t.Errorf("the old client in the default environment: %v", err)
		}
		resp, b := ts.do(tokenRequest(t, ts.URL+"/e/fresh/oauth/token", fx.ClientID, fx.ClientSecret, url.Values{}))
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "invalid_client") {
			t.Errorf("the old client at the new environment's token endpoint: %d %s", resp.StatusCode, b)
		}
		v, err := verify.New(verify.Config{Issuer: fx.Issuer, Audience: fx.APIIdentifier,
			JWKSURL: ts.URL + "/e/fresh/.well-known/jwks.json", Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, fx.AccessToken); !errors.Is(err, verify.ErrUnknownKey) {
			t.Errorf("the old token against the new environment's JWKS: %v, want %v", err, verify.ErrUnknownKey)
		}
	})
}

// tokenRequest is a client-credentials form request to endpoint with Basic
// credentials (id != "").
func tokenRequest(t *testing.T, endpoint, id, secret string, form url.Values) *http.Request {
	t.Helper()
	if form.Get("grant_type") == "" {
		form.Set("grant_type", "client_credentials")
	}
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return req
}
