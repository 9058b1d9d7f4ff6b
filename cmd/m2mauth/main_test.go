package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/server"
)

// startServer runs a server with its data dir at dir until the test ends.
func startServer(t *testing.T, dir string) string {
	t.Helper()
	url, _ := runServer(t, dir)
	return url
}

// runServer runs a server with its data dir at dir until stop is called or
// the test ends.
func runServer(t *testing.T, dir string) (url string, stop func()) {
	t.Helper()
	return runServerOn(t, dir, "127.0.0.1:0")
}

// runServerOn is runServer listening on addr.
func runServerOn(t *testing.T, dir, addr string) (url string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = ln.Addr().String(), dir
	srv, err := server.New(context.Background(), cfg, server.NewLogger(io.Discard, "json", "error"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, ln); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return "http://" + cfg.Addr, stop
}

type result struct {
	code           int
	stdout, stderr string
}

// cli runs the binary's command line in-process with the given environment.
// mustCLI returns cli bound to t and vars that fails the test unless the
// command exits 0.
func mustCLI(t *testing.T, vars map[string]string) func(args ...string) result {
	return func(args ...string) result {
		t.Helper()
		r := cli(t, vars, args...)
		if r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
		return r
	}
}

func cli(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }}
	code := run(context.Background(), args, e)
	return result{code, out.String(), errb.String()}
}

func TestCLIWorkflow(t *testing.T) {
	dir := t.TempDir()
	url := startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}

	r := cli(t, vars, "api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read orders:write")
	if r.code != 0 || !strings.Contains(r.stdout, "https://api.example.com") || !strings.Contains(r.stdout, "orders:read orders:write") {
		t.Fatalf("api create: %+v", r)
	}
	r = cli(t, vars, "client", "create", "--name", "billing", "--audience", "https://api.example.com", "--scopes", "orders:read", "--json")
	if r.code != 0 {
		t.Fatalf("client create: %+v", r)
	}
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || c.ClientID == "" || c.ClientSecret == "" {
		t.Fatalf("client create --json: %q, %v", r.stdout, err)
	}

	r = cli(t, nil, "token", "--server", url, "--client-id", c.ClientID, "--client-secret", c.ClientSecret)
	if r.code != 0 || strings.Count(strings.TrimSpace(r.stdout), ".") != 2 {
		t.Fatalf("token: %+v", r)
	}
	// The same from the environment, with the whole response.
	r = cli(t, map[string]string{"M2MAUTH_SERVER": url, "M2MAUTH_CLIENT_ID": c.ClientID, "M2MAUTH_CLIENT_SECRET": c.ClientSecret},
		"token", "--scopes", "orders:read", "--json")
	var tok struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &tok) != nil || tok.Scope != "orders:read" || tok.ExpiresIn != 900 {
		t.Fatalf("token --json from env: %+v", r)
	}
	tokOut := cli(t, nil, "token", "--server", url, "--client-id", c.ClientID, "--client-secret", c.ClientSecret)
	raw := strings.TrimSpace(tokOut.stdout)
	r = cli(t, nil, "verify", "--issuer", url, "--audience", "https://api.example.com", raw)
	if r.code != 0 || !strings.Contains(r.stdout, "valid token") || !strings.Contains(r.stdout, "subject:   "+c.ClientID) {
		t.Fatalf("verify: %+v", r)
	}
	r = cli(t, nil, "verify", "--issuer", url, "--audience", "https://other.example.com", raw)
	if r.code != 1 || !strings.Contains(r.stderr, "token refused: invalid token: wrong audience") {
		t.Fatalf("verify for another audience: %+v", r)
	}
	r = cli(t, nil, "verify", "--issuer", url, "--audience", "https://api.example.com", raw[:len(raw)-10]+"AAAAAAAAAA")
	if r.code != 1 || !strings.Contains(r.stderr, "bad signature") {
		t.Fatalf("verify of a tampered token: %+v", r)
	}
	r = cli(t, nil, "token", "--server", url, "--client-id", c.ClientID, "--client-secret", c.ClientSecret, "--scopes", "orders:write")
	if r.code != 1 || !strings.Contains(r.stderr, "invalid_scope") {
		t.Fatalf("token with an ungranted scope: %+v", r)
	}

	r = cli(t, vars, "client", "create", "--name", "shell", "--audience", "https://api.example.com", "--env")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "export M2MAUTH_CLIENT_ID='m2mc_") || !strings.Contains(r.stdout, "export M2MAUTH_CLIENT_SECRET='m2ms_") {
		t.Fatalf("client create --env: %+v", r)
	}
	shellID := strings.Split(r.stdout, "'")[1]

	r = cli(t, vars, "client", "list")
	if r.code != 0 || !strings.Contains(r.stdout, c.ClientID) || !strings.Contains(r.stdout, "bootstrap admin") {
		t.Fatalf("client list: %+v", r)
	}
	r = cli(t, vars, "client", "show", c.ClientID, "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"hint"`) || strings.Contains(r.stdout, c.ClientSecret) || strings.Contains(r.stdout, `"client_secret":`) {
		t.Fatalf("client show --json: %+v", r)
	}
	r = cli(t, vars, "api", "show", "https://api.example.com", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"identifier": "https://api.example.com"`) {
		t.Fatalf("api show: %+v", r)
	}
	r = cli(t, vars, "api", "delete", "https://api.example.com")
	if r.code != 1 || !strings.Contains(r.stderr, "Conflict") {
		t.Fatalf("api delete while granted: %+v", r)
	}
	for _, id := range []string{c.ClientID, shellID} {
		if r = cli(t, vars, "client", "delete", id); r.code != 0 {
			t.Fatalf("client delete: %+v", r)
		}
	}
	if r = cli(t, vars, "api", "delete", "https://api.example.com"); r.code != 0 {
		t.Fatalf("api delete: %+v", r)
	}
	r = cli(t, vars, "client", "show", c.ClientID)
	if r.code != 1 || !strings.Contains(r.stderr, "Not Found") {
		t.Fatalf("show deleted client: %+v", r)
	}
	r = cli(t, vars, "api", "create", "--identifier", "has space", "--name", "")
	if r.code != 1 || !strings.Contains(r.stderr, "identifier:") || !strings.Contains(r.stderr, "name:") {
		t.Fatalf("invalid api create: %+v", r)
	}
}

func TestCLIUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		vars     map[string]string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"no command", nil, nil, 2, "", "Commands:"},
		{"unknown command", []string{"frobnicate"}, nil, 2, "", `unknown command "frobnicate"`},
		{"help", []string{"--help"}, nil, 0, "", "serve"},
		{"group help", []string{"client", "--help"}, nil, 0, "", "rotate-secret"},
		{"serve help lists flags and variables", []string{"serve", "--help"}, nil, 0, "", "$M2MAUTH_DATA_DIR"},
		{"admin flags read the admin variables", []string{"client", "list", "--help"}, nil, 0, "", "$M2MAUTH_ADMIN_CLIENT_SECRET"},
		{"-h", []string{"api", "create", "-h"}, nil, 0, "", "--discoverable"},
		{"token flags read the client variables", []string{"token", "--help"}, nil, 0, "", "$M2MAUTH_CLIENT_SECRET"},
		{"unknown flag", []string{"api", "list", "--nope"}, nil, 2, "", "flag provided but not defined"},
		{"bad flag value", []string{"client", "create", "--token-lifetime", "soon"}, nil, 2, "", "invalid value"},
		{"missing positional", []string{"client", "show"}, nil, 2, "", "Usage: m2mauth client show"},
		{"no admin credentials", []string{"api", "list", "--data-dir", "/nonexistent"}, nil, 1, "", "no admin credentials"},
		{"bad duration from env", []string{"serve"}, map[string]string{"M2MAUTH_TOKEN_LIFETIME": "soon"}, 1, "", "$M2MAUTH_TOKEN_LIFETIME"},
		{"invalid config", []string{"serve", "--addr", "nope", "--log-level", "loud"}, nil, 1, "", "log-level"},
		{"version", []string{"version"}, nil, 0, "m2mauth ", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.vars, tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stdout, tc.wantOut) || !strings.Contains(r.stderr, tc.wantErr) {
				t.Errorf("got %+v; want code %d, stdout ~ %q, stderr ~ %q", r, tc.wantCode, tc.wantOut, tc.wantErr)
			}
			// Usage and errors go to stderr, the usage once: stdout holds
			// only a command's result.
			if tc.wantOut == "" && r.stdout != "" {
				t.Errorf("stdout is not empty: %q", r.stdout)
			}
			if n := strings.Count(r.stdout+r.stderr, "Usage: "); n > 1 {
				t.Errorf("the usage is printed %d times:\n%s", n, r.stderr)
			}
			if r.code == exitUsage && strings.Contains(r.stderr, "Flags (each") {
				t.Errorf("a usage error prints the whole flag list:\n%s", r.stderr)
			}
		})
	}
}

// api create and update take scope descriptions; show lists each scope with
// its description.
func TestCLIScopeDescriptions(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	show := func() (string, map[string]string) {
		t.Helper()
		r := cli(t, vars, "api", "show", "https://api.example.com")
		if r.code != 0 {
			t.Fatalf("api show: %+v", r)
		}
		var a struct {
			ScopeDescriptions map[string]string `json:"scope_descriptions"`
		}
		j := cli(t, vars, "api", "show", "https://api.example.com", "--json")
		if err := json.Unmarshal([]byte(j.stdout), &a); j.code != 0 || err != nil {
			t.Fatalf("api show --json: %+v %v", j, err)
		}
		return r.stdout, a.ScopeDescriptions
	}
	r := cli(t, vars, "api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read orders:write",
		"--scope-description", "orders:read=Read orders = and their lines", "--scope-description", "orders:write=Change\torders")
	if r.code != 0 || !strings.Contains(r.stdout, "Read orders = and their lines") {
		t.Fatalf("api create: %+v", r)
	}
	out, descs := show()
	if want := map[string]string{"orders:read": "Read orders = and their lines", "orders:write": "Change\torders"}; !maps.Equal(descs, want) {
		t.Errorf("descriptions %v, want %v", descs, want)
	}
	for _, line := range []string{"SCOPE", "orders:read   Read orders = and their lines", "orders:write  Change orders"} {
		if !strings.Contains(out, line) {
			t.Errorf("api show lacks %q:\n%s", line, out)
		}
	}
	// --scopes alone: the removed scope's description goes with it; a
	// scope without one shows "-".
	if r = cli(t, vars, "api", "update", "https://api.example.com", "--scopes", "orders:read orders:ship"); r.code != 0 {
		t.Fatalf("api update --scopes: %+v", r)
	}
	if out, descs = show(); !maps.Equal(descs, map[string]string{"orders:read": "Read orders = and their lines"}) || !strings.Contains(out, "orders:ship  -") {
		t.Errorf("after removing orders:write: %v\n%s", descs, out)
	}
	// --scope-description replaces them all.
	if r = cli(t, vars, "api", "update", "https://api.example.com", "--scope-description", "orders:ship=Ship orders"); r.code != 0 {
		t.Fatalf("api update --scope-description: %+v", r)
	}
	if _, descs = show(); !maps.Equal(descs, map[string]string{"orders:ship": "Ship orders"}) {
		t.Errorf("after replacing: %v", descs)
	}
	r = cli(t, vars, "api", "update", "https://api.example.com", "--scope-description", "orders:delete=Delete")
	if r.code != 1 || !strings.Contains(r.stderr, "scope_descriptions.orders:delete") {
		t.Errorf("a description of a scope the API lacks: %+v", r)
	}
	if r = cli(t, vars, "api", "update", "https://api.example.com", "--scope-description", "no-equals-sign"); r.code != 2 {
		t.Errorf("a description without SCOPE=: %+v", r)
	}
	if r = cli(t, vars, "api", "update", "https://api.example.com", "--clear-scope-descriptions"); r.code != 0 {
		t.Fatalf("api update --clear-scope-descriptions: %+v", r)
	}
	if out, descs = show(); len(descs) != 0 || strings.Contains(out, "DESCRIPTION") {
		t.Errorf("after clearing: %v\n%s", descs, out)
	}
}
