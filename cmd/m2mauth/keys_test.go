package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLIKeys(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	r := cli(t, vars, "key", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "active") || !strings.Contains(r.stdout, "RS256") {
		t.Fatalf("key list: %+v", r)
	}
	r = cli(t, vars, "key", "rotate", "--alg", "EdDSA")
	if r.code != 0 || !strings.Contains(r.stdout, "(EdDSA) is published now and signs from") {
		t.Fatalf("key rotate: %+v", r)
	}
	if r := cli(t, vars, "key", "rotate"); r.code != 1 || !strings.Contains(r.stderr, "already scheduled") {
		t.Fatalf("second rotate: %+v", r)
	}
	r = cli(t, vars, "key", "list", "--json")
	if r.code != 0 || strings.Count(r.stdout, `"kid"`) != 2 || !strings.Contains(r.stdout, `"state": "next"`) {
		t.Fatalf("key list --json: %+v", r)
	}
	kid := r.stdout[strings.Index(r.stdout, `"kid": "`)+8:]
	kid = kid[:strings.Index(kid, `"`)]
	// Key ids are base64url thumbprints: one in 32 starts with "-", so
	// they go after "--".
	if r := cli(t, vars, "key", "revoke", "--", kid); r.code != 1 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("revoke without --yes: %+v", r)
	}
	if r := cli(t, vars, "key", "revoke", "--yes", "--", kid); r.code != 0 || !strings.Contains(r.stdout, "revoked "+kid) {
		t.Fatalf("revoke: %+v", r)
	}
	if r := cli(t, vars, "key", "rewrap", "--data-dir", t.TempDir()); r.code != 1 || !strings.Contains(r.stderr, "no current master key") {
		t.Fatalf("rewrap without a key: %+v", r)
	}
}

// Positional arguments that start with "-" follow "--".
func TestCLIDoubleDash(t *testing.T) {
	f := newFlags(&env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}, "x", "A B", "")
	yes := f.Bool("yes", false, "")
	pos, err := f.parse([]string{"first", "--yes", "--", "-dash", "--yes"}, 2, 3)
	if err != nil || !*yes || strings.Join(pos, ",") != "first,-dash,--yes" {
		t.Fatalf("pos %q yes %v err %v", pos, *yes, err)
	}
}

func TestCLIRevocation(t *testing.T) {
	dir := t.TempDir()
	url := startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	cli(t, vars, "api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read")
	r := cli(t, vars, "client", "create", "--name", "c", "--audience", "https://api.example.com", "--scopes", "orders:read", "--env")
	id := strings.Split(r.stdout, "'")[1]
	secret := strings.Split(r.stdout, "'")[3]
	if r := cli(t, vars, "client", "create", "--name", "rs", "--introspect", "https://nope.example"); r.code != 1 || !strings.Contains(r.stderr, "introspect") {
		t.Fatalf("introspect of an unknown API: %+v", r)
	}
	tok := strings.TrimSpace(cli(t, nil, "token", "--server", url, "--client-id", id, "--client-secret", secret).stdout)
	if r := cli(t, vars, "revocation", "add", tok); r.code != 0 || !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("revocation add: %+v", r)
	}
	if r := cli(t, vars, "revocation", "add", tok); r.code != 0 || !strings.Contains(r.stdout, "nothing to revoke") {
		t.Fatalf("revocation add twice: %+v", r)
	}
	if r := cli(t, vars, "revocation", "list"); r.code != 0 || !strings.Contains(r.stdout, id) || strings.Contains(r.stdout, tok) {
		t.Fatalf("revocation list: %+v", r)
	}
	if r := cli(t, vars, "client", "revoke-tokens", id); r.code != 0 || !strings.Contains(r.stdout, "revoked every token of "+id) {
		t.Fatalf("client revoke-tokens: %+v", r)
	}
	if r := cli(t, vars, "client", "update", id, "--introspect", "*", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"introspect": [`) {
		t.Fatalf("update --introspect: %+v", r)
	}
}

// Admin access lost (admin.json deleted, the admin client deleted): admin
// recover restores it.
func TestCLIAdminRecover(t *testing.T) {
	dir := t.TempDir()
	url, stop := runServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	r := cli(t, vars, "client", "list", "--json")
	boot := r.stdout[strings.Index(r.stdout, `"client_id": "`)+14:]
	boot = boot[:strings.Index(boot, `"`)]
	if r := cli(t, vars, "client", "delete", boot); r.code != 0 {
		t.Fatalf("delete the bootstrap admin: %+v", r)
	}
	if r := cli(t, vars, "client", "list"); r.code != 1 {
		t.Fatalf("admin access should be gone: %+v", r)
	}
	// With SQLite, recover writes to the database a running server holds:
	// it asks for the server to stop (the server would not learn of the
	// new client).
	r = cli(t, vars, "admin", "recover")
	if r.code != 1 || !strings.Contains(r.stderr, "a server is running on this database") {
		t.Fatalf("admin recover beside a server: %+v", r)
	}
	stop()
	r = cli(t, vars, "admin", "recover")
	if r.code != 0 || !strings.Contains(r.stdout, "created admin client") {
		t.Fatalf("admin recover: %+v", r)
	}
	runServerOn(t, dir, strings.TrimPrefix(url, "http://"))
	if r := cli(t, vars, "client", "list"); r.code != 0 || !strings.Contains(r.stdout, "recovered admin") {
		t.Fatalf("after recover: %+v", r)
	}
}

// key rewrap refuses while a server holds the SQLite database (the server
// would go on with the old master key and fail every key change), and
// works once it has stopped.
func TestCLIRewrapRefusedWhileServing(t *testing.T) {
	dir := t.TempDir()
	url, stop := runServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	keyFile := filepath.Join(dir, "master.key")
	before, _ := os.ReadFile(keyFile)
	r := cli(t, vars, "key", "rewrap")
	want := fmt.Sprintf("a server is running on this database, %s (pid %d?); stop it first", filepath.Join(dir, "m2mauth.db"), os.Getpid())
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Fatalf("rewrap beside a server: %+v; want %q", r, want)
	}
	if after, _ := os.ReadFile(keyFile); string(after) != string(before) {
		t.Fatal("the refused rewrap replaced master.key")
	}
	if _, err := os.Stat(keyFile + ".new"); !os.IsNotExist(err) {
		t.Fatalf("the refused rewrap staged a new key: %v", err)
	}
	stop()
	if r := cli(t, vars, "key", "rewrap"); r.code != 0 || !strings.Contains(r.stdout, "re-sealed 2 value(s)") {
		t.Fatalf("rewrap after the server stopped: %+v", r)
	}
	runServerOn(t, dir, strings.TrimPrefix(url, "http://"))
}

// A 5xx from the admin API is printed with its status, the problem's detail
// and the request id to look for in the server's log, never as a bare
// "Internal Server Error".
func TestCLIServerErrorShowsRequestID(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        string
	}{
		{"problem", 500, "application/problem+json", `{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"internal server error"}`,
			"POST /admin/v1/keys/rotate: the server answered HTTP 500 Internal Server Error: internal server error (request id 7f3a9c01e2d4b5a6: the server's log has the cause under it)"},
		{"not a problem", 502, "text/html", "<html>bad gateway</html>",
			"POST /admin/v1/keys/rotate: the server answered HTTP 502 Bad Gateway (request id 7f3a9c01e2d4b5a6: the server's log has the cause under it)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/admin/v1/token" {
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprint(w, `{"access_token":"t","token_type":"Bearer","expires_in":60}`)
					return
				}
				w.Header().Set("X-Request-Id", "7f3a9c01e2d4b5a6")
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			vars := map[string]string{"M2MAUTH_SERVER": srv.URL, "M2MAUTH_ADMIN_CLIENT_ID": "id", "M2MAUTH_ADMIN_CLIENT_SECRET": "secret"}
			r := cli(t, vars, "key", "rotate")
			if r.code != 1 || strings.TrimSpace(r.stderr) != "m2mauth: "+tc.want {
				t.Fatalf("stderr %q (exit %d); want %q", r.stderr, r.code, tc.want)
			}
		})
	}
}
