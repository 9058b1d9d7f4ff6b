package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

// restart checks that a second server on the same storage keeps the
// clients, the APIs and the key: a token issued before still verifies
// against the new server's JWKS with the same kid.
func testRestart(t *testing.T, cfg config.Config) {
	ts := startServer(t, cfg)
	id, secret := setupOrders(ts)
	before := ts.mustToken(id, secret, url.Values{})
	kid := ts.verifyToken(before).header.KeyID
	adminCreds := ts.admin
	ts.stop()

	cfg.Issuer = ts.cfg.Issuer // the same public URL on a new port
	again := startServer(t, cfg)
	if again.admin != adminCreds {
		t.Fatalf("admin credentials changed across a restart")
	}
	v := again.verifyToken(before)
	if v.header.KeyID != kid {
		t.Fatalf("kid changed: %s → %s", kid, v.header.KeyID)
	}
	after := again.mustToken(id, secret, url.Values{})
	if k := again.verifyToken(after).header.KeyID; k != kid {
		t.Errorf("new tokens signed with %s, want the same key %s", k, kid)
	}
	resp, body := again.adminDo(http.MethodGet, "/admin/v1/apis/"+url.PathEscape(ordersAPI), nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("API after restart: %d %s", resp.StatusCode, body)
	}
}

func TestRestartSQLite(t *testing.T) {
	testRestart(t, testConfig(t))
}

func TestRestartPostgres(t *testing.T) {
	cfg := testConfig(t)
	cfg.Database = pgtest.DSN(t)
	cfg.MasterKey = keys.GenerateMasterKeyText()
	testRestart(t, cfg)
}

// Several replicas starting at once on one empty PostgreSQL database end
// with exactly one signing key and one bootstrap admin client, whose
// credentials exactly one of them writes.
func TestConcurrentFirstStartPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	master := keys.GenerateMasterKeyText()
	const n = 4
	var wg sync.WaitGroup
	dirs := make([]string, n)
	for i := range n {
		dirs[i] = t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := testConfig(t)
			cfg.DataDir, cfg.Database, cfg.MasterKey = dirs[i], dsn, master
			cfg.Issuer = "http://auth.example"
			srv, err := New(context.Background(), cfg, NewLogger(io.Discard, "json", "info"), nil)
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				return
			}
			srv.Close()
		}()
	}
	wg.Wait()
	written := 0
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, AdminFile)); err == nil {
			written++
		}
	}
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ks, _ := st.ListSigningKeys(context.Background())
	clients, _ := st.ListClients(context.Background(), store.ListOptions{})
	if len(ks) != 1 || len(clients) != 1 || written != 1 {
		t.Fatalf("after %d concurrent first starts: %d keys, %d clients, %d admin.json files; want 1, 1, 1", n, len(ks), len(clients), written)
	}
}

// The database holds no client secret and no private key in clear.
func TestNothingSecretAtRest(t *testing.T) {
	cfg := testConfig(t)
	ts := startServer(t, cfg)
	id, secret := setupOrders(ts)
	_ = ts.mustToken(id, secret, url.Values{})
	mk, _, err := keys.LoadOrCreateMasterKeyFile(filepath.Join(cfg.DataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := ts.srv.store.ListSigningKeys(context.Background())
	if err != nil || len(rows) != 1 {
		t.Fatalf("keys: %v %d", err, len(rows))
	}
	der, err := mk.Open(rows[0].Private, sealAADForTest(rows[0].KID))
	if err != nil {
		t.Fatal(err)
	}
	ts.stop()

	var db []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(cfg.SQLitePath() + suffix)
		if err == nil {
			db = append(db, b...)
		}
	}
	if len(db) == 0 {
		t.Fatal("no database bytes read")
	}
	for name, needle := range map[string][]byte{
		"client secret":             []byte(secret),
		"client secret (no prefix)": []byte(secret[5:]),
		"admin secret":              []byte(ts.admin.ClientSecret),
		"private key (DER)":         der[len(der)-64:],
		"private key (base64)":      []byte(base64.StdEncoding.EncodeToString(der[100:160])),
	} {
		if bytes.Contains(db, needle) {
			t.Errorf("the database contains the %s in clear", name)
		}
	}
	for _, f := range []string{"master.key", AdminFile, "m2mauth.db"} {
		fi, err := os.Stat(filepath.Join(cfg.DataDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f, fi.Mode().Perm(), err)
		}
	}
}

func sealAADForTest(kid string) string { return "m2mauth signing key " + kid }

// At debug level, after a full workout of the server, no log line contains
// a secret, a token or an Authorization header value.
func TestLogsNeverContainSecrets(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	tok := ts.mustToken(id, secret, url.Values{})
	basic := base64.StdEncoding.EncodeToString([]byte(id + ":" + secret))
	planted := "m2ms_PLANTEDplantedPLANTEDplantedPLANTEDplant"

	// Failures of every kind, carrying secrets in every place a caller might
	// put one.
	ts.tokenForm(id, planted, url.Values{})
	ts.tokenForm(planted, secret, url.Values{})
	ts.tokenForm("", "", url.Values{"client_id": {id}, "client_secret": {planted}})
	ts.tokenForm(id, secret, url.Values{"client_id": {id}, "client_secret": {planted}})
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/oauth/token?client_secret="+planted, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	ts.do(req)
	req, _ = http.NewRequest(http.MethodPost, ts.URL+"/oauth/token", strings.NewReader(`{"grant_type":"client_credentials","client_id":"`+id+`","client_secret":"`+planted+`"`))
	req.Header.Set("Content-Type", "application/json")
	ts.do(req)
	for _, authz := range []string{"Bearer " + tok, "Bearer " + planted, "Basic " + basic} {
		req, _ = http.NewRequest(http.MethodGet, ts.URL+"/admin/v1/clients", nil)
		req.Header.Set("Authorization", authz)
		ts.do(req)
	}
	// An imported secret (no m2ms_ prefix) typed into client_id, a secret
	// sent as a scope value, as an audience, in the URL path, and as a
	// request id.
	imported := "legacyPLANTEDsecretWITHOUTaPREFIX0123456789"
	ts.tokenForm(imported, secret, url.Values{})
	ts.tokenForm(id, secret, url.Values{"scope": {planted}})
	ts.tokenForm(id, secret, url.Values{"audience": {planted}})
	ts.tokenForm("", "", url.Values{"client_id": {imported}, "client_secret": {planted}, "scope": {planted}})
	for _, path := range []string{"/" + planted, "/oauth/token/" + planted, "/admin/v1/clients/" + planted, "/admin/v1/clients/" + imported + "/secrets"} {
		req, _ = http.NewRequest(http.MethodGet, ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+ts.token)
		ts.do(req)
	}
	for _, rid := range []string{planted, imported, "0123456789abcdef0123456789abcdef01234567"} {
		req, _ = http.NewRequest(http.MethodGet, ts.URL+"/healthz", nil)
		req.Header.Set("X-Request-Id", rid)
		resp, _ := ts.do(req)
		if got := resp.Header.Get("X-Request-Id"); got == rid || len(got) != 16 {
			t.Errorf("request id %q answered with X-Request-Id %q, want a fresh one", rid, got)
		}
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/healthz", nil)
	req.Header.Set("X-Request-Id", "00112233aabbccdd")
	if resp, _ := ts.do(req); resp.Header.Get("X-Request-Id") != "00112233aabbccdd" {
		t.Errorf("a request id the server could have made is not kept: %q", resp.Header.Get("X-Request-Id"))
	}
	ts.stop()

	logs := ts.logs.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) || !strings.Contains(logs, "request refused") {
		t.Fatal("the log does not show the debug records this test relies on")
	}
	for name, needle := range map[string]string{
		"client secret": secret, "planted secret": planted, "admin secret": ts.admin.ClientSecret,
		"access token": tok, "token signature": tok[strings.LastIndex(tok, ".")+1:],
		"admin token": ts.token, "basic credentials": basic, "imported secret": imported,
		"planted secret, URL-escaped": url.QueryEscape(planted), "planted secret prefix": planted[:24],
	} {
		if strings.Contains(logs, needle) {
			t.Errorf("the log contains the %s", name)
		}
	}
}

func TestAdminAuthentication(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	ordersToken := ts.mustToken(id, secret, url.Values{})
	// A client granted the admin API but not its admin scope.
	weak, weakSecret := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ts.cfg.AdminAudience(), Scopes: []string{}}}})
	weakToken := ts.mustToken(weak, weakSecret, url.Values{})
	tampered := ts.token[:len(ts.token)-4] + "AAAA"

	tests := []struct {
		name       string
		authz      string
		wantStatus int
		wantAuthn  string
	}{
		{"no credentials", "", 401, `Bearer realm="m2mauth-admin"`},
		{"basic credentials", "Basic " + base64.StdEncoding.EncodeToString([]byte(ts.admin.ClientID+":"+ts.admin.ClientSecret)), 401, `Bearer realm="m2mauth-admin"`},
		{"garbage token", "Bearer abc.def.ghi", 401, `Bearer realm="m2mauth-admin", error="invalid_token"`},
		{"tampered signature", "Bearer " + tampered, 401, `Bearer realm="m2mauth-admin", error="invalid_token"`},
		{"token for another API", "Bearer " + ordersToken, 401, `Bearer realm="m2mauth-admin", error="invalid_token"`},
		{"admin audience without the admin scope", "Bearer " + weakToken, 403, `Bearer realm="m2mauth-admin", error="insufficient_scope", scope="admin"`},
		{"bearer scheme in lower case", "bearer " + ts.token, 200, ""},
		{"admin token", "Bearer " + ts.token, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, ts.URL+"/admin/v1/clients", nil)
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			resp, body := ts.do(req)
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("WWW-Authenticate") != tc.wantAuthn {
				t.Fatalf("got %d %q, want %d %q (%s)", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.wantStatus, tc.wantAuthn, body)
			}
			if tc.wantStatus != 200 && resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if tc.wantStatus == 200 && strings.Contains(string(body), "hmac-sha256") {
				t.Error("a read exposes secret hashes")
			}
		})
	}
}

func TestAdminValidationAndConflicts(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read")
	type problem struct {
		Status int
		Detail string
		Errors []admin.FieldError
	}
	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		raw        string
		wantStatus int
		wantFields []string
	}{
		{"API without identifier and name", "POST", "/admin/v1/apis", admin.APIInput{}, "", 400, []string{"identifier", "name"}},
		{"API with a bad scope", "POST", "/admin/v1/apis", admin.APIInput{Identifier: "x", Name: "x", Scopes: []string{"has space"}}, "", 400, []string{"scopes"}},
		{"API with a too short lifetime", "POST", "/admin/v1/apis", admin.APIInput{Identifier: "x", Name: "x", TokenLifetimeSeconds: 5}, "", 400, []string{"token_lifetime_seconds"}},
		{"duplicate API", "POST", "/admin/v1/apis", admin.APIInput{Identifier: ordersAPI, Name: "again"}, "", 409, nil},
		{"client granted an unknown API", "POST", "/admin/v1/clients", admin.ClientInput{Name: "c", Grants: []admin.GrantInput{{Audience: "https://nope"}}}, "", 400, []string{"grants[0].audience"}},
		{"client granted an undefined scope", "POST", "/admin/v1/clients", admin.ClientInput{Name: "c", Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:write"}}}}, "", 400, []string{"grants[0].scopes"}},
		{"default audience not granted", "POST", "/admin/v1/clients", admin.ClientInput{Name: "c", DefaultAudience: ordersAPI}, "", 400, []string{"default_audience"}},
		{"unknown field", "POST", "/admin/v1/clients", nil, `{"name":"c","client_secret":"mine"}`, 400, []string{"client_secret"}},
		{"wrong type", "POST", "/admin/v1/clients", nil, `{"name":5}`, 400, []string{"name"}},
		{"not JSON", "POST", "/admin/v1/apis", nil, `{`, 400, nil},
		{"two objects", "POST", "/admin/v1/apis", nil, `{} {}`, 400, nil},
		{"missing client", "GET", "/admin/v1/clients/m2mc_nobody", nil, "", 404, nil},
		{"missing API", "DELETE", "/admin/v1/apis/" + url.PathEscape("https://nope"), nil, "", 404, nil},
		{"delete the admin API", "DELETE", "/admin/v1/apis/" + url.PathEscape(ts.cfg.AdminAudience()), nil, "", 409, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var body []byte
			if tc.raw != "" {
				req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.raw))
				req.Header.Set("Authorization", "Bearer "+ts.token)
				req.Header.Set("Content-Type", "application/json")
				resp, body = ts.do(req)
			} else {
				resp, body = ts.adminDo(tc.method, tc.path, tc.body)
			}
			var p problem
			if err := json.Unmarshal(body, &p); err != nil || resp.StatusCode != tc.wantStatus || p.Status != tc.wantStatus {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tc.wantStatus)
			}
			var fields []string
			for _, f := range p.Errors {
				if len(fields) == 0 || fields[len(fields)-1] != f.Field {
					fields = append(fields, f.Field)
				}
			}
			if fmt.Sprint(fields) != fmt.Sprint(tc.wantFields) && tc.wantFields != nil {
				t.Errorf("fields %v, want %v (%s)", fields, tc.wantFields, body)
			}
			if p.Detail == "" {
				t.Error("no detail")
			}
		})
	}

	// An API some client is granted cannot be deleted; once the client is
	// gone it can.
	id, _ := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	if resp, body := ts.adminDo("DELETE", "/admin/v1/apis/"+url.PathEscape(ordersAPI), nil); resp.StatusCode != 409 {
		t.Fatalf("delete granted API: %d %s", resp.StatusCode, body)
	}
	if resp, _ := ts.adminDo("DELETE", "/admin/v1/clients/"+id, nil); resp.StatusCode != 204 {
		t.Fatalf("delete client: %d", resp.StatusCode)
	}
	if resp, _ := ts.adminDo("DELETE", "/admin/v1/apis/"+url.PathEscape(ordersAPI), nil); resp.StatusCode != 204 {
		t.Fatalf("delete API: %d", resp.StatusCode)
	}
}

// A second server on the same SQLite database is refused while the first
// runs (their client caches would not see each other's changes, and key
// rewrap relies on the lock), and starts once the first has stopped.
func TestOneServerPerSQLiteDatabase(t *testing.T) {
	cfg := testConfig(t)
	ts := startServer(t, cfg)
	_, err := New(t.Context(), cfg, NewLogger(io.Discard, "json", "error"), nil)
	if !errors.Is(err, sqlite.ErrLocked) || !strings.Contains(err.Error(), "a server is running on this database") {
		t.Fatalf("second server: %v", err)
	}
	ts.stop()
	startServer(t, ts.cfg)
}
