package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// fakeDeployment is an admin API of a deployment with environments, as the
// contracts of issue 13 describe it: enough of it to check where the CLI
// sends what, with which token and precondition. The deployment's issuer
// is a public name (https://auth.example.com) the CLI does not reach it
// under.
type fakeDeployment struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	envs     map[string]*environmentResource
	apis     map[string][]admin.APIResource // by environment
	requests []string                       // "METHOD path [scope] [If-Match]"
}

const fakeIssuer = "https://auth.example.com"

// The fake's admin clients: a deployment admin, an admin of the default
// environment only, and staging's own admin.
var fakeClients = map[string]struct {
	env, secret string
	scopes      []string
}{
	"deployer": {"default", "deployer-secret", []string{"admin", "deployment"}},
	"plain":    {"default", "plain-secret", []string{"admin"}},
	"stadmin":  {"staging", "stadmin-secret", []string{"admin"}},
}

func newFakeDeployment(t *testing.T) *fakeDeployment {
	d := &fakeDeployment{t: t, envs: map[string]*environmentResource{}, apis: map[string][]admin.APIResource{}}
	for _, n := range []string{"default", "staging", "old"} {
		d.addEnv(n, strings.ToUpper(n[:1])+n[1:])
	}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *fakeDeployment) addEnv(name, display string) *environmentResource {
	iss := fakeIssuer
	if name != "default" {
		iss += "/e/" + name
	}
	e := &environmentResource{Name: name, DisplayName: display, Issuer: iss, AdminAudience: iss + "/admin", Version: 1}
	d.envs[name] = e
	d.apis[name] = []admin.APIResource{{Identifier: iss + "/admin", Name: "admin", Scopes: []string{"admin"}, Builtin: true}}
	return e
}

// token is a JWT-shaped token: the CLI reads only its iss.
func fakeToken(iss, sub, scope string) string {
	b, _ := json.Marshal(map[string]string{"iss": iss, "sub": sub, "scope": scope})
	return "e30." + base64.RawURLEncoding.EncodeToString(b) + ".sig"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func problemOf(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]any{"title": http.StatusText(status), "status": status, "detail": detail})
}

func (d *fakeDeployment) serve(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	envName, path := "default", r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/e/"); ok {
		envName, path, _ = strings.Cut(rest, "/")
		path = "/" + path
	}
	rec := r.Method + " " + r.URL.Path
	if path == "/admin/v1/token" {
		_ = r.ParseForm()
		rec += " scope=" + r.PostForm.Get("scope")
		d.requests = append(d.requests, rec)
		id, secret, _ := r.BasicAuth()
		c, ok := fakeClients[id]
		if !ok || c.secret != secret || c.env != envName {
			writeJSON(w, 401, map[string]string{"error": "invalid_client"})
			return
		}
		for _, s := range strings.Fields(r.PostForm.Get("scope")) {
			if !slices.Contains(c.scopes, s) {
				writeJSON(w, 400, map[string]string{"error": "invalid_scope", "error_description": "not granted: " + s})
				return
			}
		}
		writeJSON(w, 200, map[string]any{"access_token": fakeToken(d.envs[envName].Issuer, id, r.PostForm.Get("scope")), "token_type": "Bearer", "expires_in": 300})
		return
	}
	if m := r.Header.Get("If-Match"); m != "" {
		rec += " If-Match:" + m
	}
	d.requests = append(d.requests, rec)
	var claims struct{ Iss, Sub, Scope string }
	if parts := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), "."); len(parts) == 3 {
		b, _ := base64.RawURLEncoding.DecodeString(parts[1])
		_ = json.Unmarshal(b, &claims)
	}
	deployment := claims.Iss == fakeIssuer && strings.Contains(claims.Scope, "deployment")
	if _, ok := d.envs[envName]; !ok || !deployment && claims.Iss != d.envs[envName].Issuer {
		problemOf(w, 401, "not an admin of this environment")
		return
	}
	if rest, ok := strings.CutPrefix(path, environmentsPath); ok {
		if envName != "default" || !deployment {
			problemOf(w, 403, "deployment admins only")
			return
		}
		d.serveEnvironments(w, r, strings.TrimPrefix(rest, "/"))
		return
	}
	switch {
	case r.Method == http.MethodGet && path == "/admin/v1/apis":
		writeJSON(w, 200, admin.ListResponse[admin.APIResource]{Items: d.apis[envName]})
	case r.Method == http.MethodPost && path == "/admin/v1/apis":
		var in admin.APIInput
		_ = json.NewDecoder(r.Body).Decode(&in)
		a := admin.APIResource{Identifier: in.Identifier, Name: in.Name, Scopes: in.Scopes}
		d.apis[envName] = append(d.apis[envName], a)
		writeJSON(w, 201, a)
	case r.Method == http.MethodGet && (path == "/admin/v1/clients" || path == "/admin/v1/trust-policies"):
		writeJSON(w, 200, map[string]any{"items": []any{}})
	case r.Method == http.MethodPost && path == "/admin/v1/clients":
		writeJSON(w, 201, map[string]any{"client_id": "m2mc_new", "client_secret": "generated-secret"})
	default:
		problemOf(w, 404, "no such route in the fake")
	}
}

func (d *fakeDeployment) serveEnvironments(w http.ResponseWriter, r *http.Request, rest string) {
	name, sub, _ := strings.Cut(rest, "/")
	e := d.envs[name]
	switch {
	case name == "" && r.Method == http.MethodGet:
		var items []*environmentResource
		for _, n := range slices.Sorted(func(yield func(string) bool) {
			for k := range d.envs {
				if !yield(k) {
					return
				}
			}
		}) {
			items = append(items, d.envs[n])
		}
		writeJSON(w, 200, map[string]any{"items": items})
	case name == "" && r.Method == http.MethodPost:
		var in environmentInput
		_ = json.NewDecoder(r.Body).Decode(&in)
		if d.envs[in.Name] != nil {
			problemOf(w, 409, "exists")
			return
		}
		e := d.addEnv(in.Name, in.DisplayName)
		e.SigningAlg, e.KeyRotationPeriod = in.SigningAlg, in.KeyRotationPeriod
		w.Header().Set("ETag", `"1"`)
		writeJSON(w, 201, e)
	case e == nil:
		problemOf(w, 404, "no environment "+name)
	case sub == "" && r.Method == http.MethodGet:
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, e.Version))
		writeJSON(w, 200, e)
	case sub == "" && r.Method == http.MethodPatch:
		if r.Header.Get("If-Match") != fmt.Sprintf(`"%d"`, e.Version) {
			problemOf(w, 412, "changed since read")
			return
		}
		var in environmentInput
		_ = json.NewDecoder(r.Body).Decode(&in)
		if in.DisplayName != "" {
			e.DisplayName = in.DisplayName
		}
		if in.SigningAlg != "" {
			e.SigningAlg = in.SigningAlg
		}
		e.Version++
		writeJSON(w, 200, e)
	case sub == "deletion" && r.Method == http.MethodPost:
		writeJSON(w, 200, map[string]any{"confirmation": fmt.Sprintf("confirm-%s-%d", name, e.Version), "environment": name,
			"will_delete": map[string]int{"apis": len(d.apis[name]), "clients": 2}})
	case sub == "" && r.Method == http.MethodDelete:
		if r.URL.Query().Get("confirmation") != fmt.Sprintf("confirm-%s-%d", name, e.Version) {
			problemOf(w, 428, "confirm the deletion first: POST …/deletion")
			return
		}
		delete(d.envs, name)
		w.WriteHeader(204)
	default:
		problemOf(w, 405, "")
	}
}

// log returns and forgets the requests made so far.
func (d *fakeDeployment) log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.requests
	d.requests = nil
	return out
}

// as returns the variables that connect the CLI as one of the fake's
// clients, at server (the deployment's URL when "").
func (d *fakeDeployment) as(client, server string) map[string]string {
	if server == "" {
		server = d.srv.URL
	}
	return map[string]string{"M2MAUTH_SERVER": server, "M2MAUTH_ADMIN_CLIENT_ID": client,
		"M2MAUTH_ADMIN_CLIENT_SECRET": fakeClients[client].secret, "M2MAUTH_DATA_DIR": "/nonexistent"}
}

// --env NAME (or $M2MAUTH_ENV) sends an admin command to NAME's admin API:
// a deployment admin's token, from the deployment's token endpoint, used at
// NAME's URL; NAME's own admin directly.
func TestEnvFlagTargetsAnEnvironment(t *testing.T) {
	d := newFakeDeployment(t)
	tests := []struct {
		name     string
		vars     map[string]string
		args     []string
		want     []string // the requests, in order
		wantErr  string
		extraEnv map[string]string
	}{
		{name: "no --env: as before", vars: d.as("plain", ""), args: []string{"api", "list"},
			want: []string{"POST /admin/v1/token scope=admin", "GET /admin/v1/apis"}},
		{name: "--env default: as before", vars: d.as("plain", ""), args: []string{"api", "list", "--env", "default"},
			want: []string{"POST /admin/v1/token scope=admin", "GET /admin/v1/apis"}},
		{name: "deployment admin, --env staging", vars: d.as("deployer", ""), args: []string{"api", "list", "--env", "staging"},
			want: []string{"POST /admin/v1/token scope=admin deployment", "GET /admin/v1/environments/staging", "GET /e/staging/admin/v1/apis"}},
		{name: "deployment admin, $M2MAUTH_ENV", vars: d.as("deployer", ""), extraEnv: map[string]string{"M2MAUTH_ENV": "staging"}, args: []string{"api", "list"},
			want: []string{"POST /admin/v1/token scope=admin deployment", "GET /admin/v1/environments/staging", "GET /e/staging/admin/v1/apis"}},
		{name: "--env wins over $M2MAUTH_ENV", vars: d.as("deployer", ""), extraEnv: map[string]string{"M2MAUTH_ENV": "nope"}, args: []string{"api", "list", "--env", "staging"},
			want: []string{"POST /admin/v1/token scope=admin deployment", "GET /admin/v1/environments/staging", "GET /e/staging/admin/v1/apis"}},
		{name: "staging's own admin at staging's URL", vars: d.as("stadmin", d.srv.URL+"/e/staging"), args: []string{"api", "list", "--env", "staging"},
			want: []string{"POST /e/staging/admin/v1/token scope=admin", "GET /e/staging/admin/v1/apis"}},
		{name: "not a deployment admin", vars: d.as("plain", ""), args: []string{"api", "list", "--env", "staging"},
			want: []string{"POST /admin/v1/token scope=admin deployment"}, wantErr: "is not a deployment admin"},
		{name: "no such environment", vars: d.as("deployer", ""), args: []string{"api", "list", "--env", "nope"},
			want: []string{"POST /admin/v1/token scope=admin deployment", "GET /admin/v1/environments/nope"}, wantErr: "environment nope: Not Found"},
		{name: "not an environment name", vars: d.as("deployer", ""), args: []string{"api", "list", "--env", "Staging"},
			wantErr: `"Staging" is not an environment name`},
		{name: "console link", vars: d.as("deployer", ""), args: []string{"console", "--env", "staging"},
			want: []string{"POST /admin/v1/token scope=admin deployment", "GET /admin/v1/environments/staging", "POST /e/staging/admin/v1/console/links"}, wantErr: "no such route"},
		// Issue 17: $M2MAUTH_ENV is the connection's, and a bare --env still
		// asks client create for shell export lines.
		{name: "client create, $M2MAUTH_ENV and a bare --env", vars: d.as("deployer", ""), extraEnv: map[string]string{"M2MAUTH_ENV": "staging"},
			args: []string{"client", "create", "--name", "x", "--env"},
			want: []string{"POST /admin/v1/token scope=admin deployment", "GET /admin/v1/environments/staging", "POST /e/staging/admin/v1/clients"}},
		{name: "client create --env NAME --export", vars: d.as("deployer", ""), args: []string{"client", "create", "--env", "staging", "--name", "x", "--export"},
			want: []string{"POST /admin/v1/token scope=admin deployment", "GET /admin/v1/environments/staging", "POST /e/staging/admin/v1/clients"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{}
			for k, v := range tc.vars {
				vars[k] = v
			}
			for k, v := range tc.extraEnv {
				vars[k] = v
			}
			r := cli(t, vars, tc.args...)
			got := d.log()
			if tc.wantErr != "" {
				if r.code == 0 || !strings.Contains(r.stderr, tc.wantErr) {
					t.Errorf("want an error with %q: %+v", tc.wantErr, r)
				}
			} else if r.code != 0 {
				t.Errorf("%+v", r)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("requests\n got %q\nwant %q", got, tc.want)
			}
			if strings.Contains(strings.Join(tc.args, " "), "client create") && tc.wantErr == "" &&
				r.stdout != "export M2MAUTH_CLIENT_ID='m2mc_new'\nexport M2MAUTH_CLIENT_SECRET='generated-secret'\n" {
				t.Errorf("client create: want export lines, got %q", r.stdout)
			}
		})
	}
}

func TestEnvironmentCommands(t *testing.T) {
	d := newFakeDeployment(t)
	vars := d.as("deployer", "")
	// M2MAUTH_ENV is for the commands inside an environment: the
	// environment commands do not read it.
	vars["M2MAUTH_ENV"] = "staging"
	must := mustCLI(t, vars)
	r := must("environment", "create", "--name", "dev", "--display-name", "Development", "--signing-alg", "ES256", "--key-rotation-period", "720h")
	if !strings.Contains(r.stdout, "dev") || !strings.Contains(r.stdout, "Development") || !strings.Contains(r.stdout, fakeIssuer+"/e/dev") {
		t.Errorf("create: %+v", r)
	}
	if e := d.envs["dev"]; e == nil || e.SigningAlg != "ES256" || e.KeyRotationPeriod != 720*3600 {
		t.Errorf("created %+v", e)
	}
	r = must("env", "list")
	if !strings.Contains(r.stdout, "NAME") || strings.Count(r.stdout, fakeIssuer) != 4 {
		t.Errorf("list:\n%s", r.stdout)
	}
	r = must("environment", "show", "staging", "--json")
	var shown map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil || shown["issuer"] != fakeIssuer+"/e/staging" {
		t.Errorf("show --json: %q %v", r.stdout, err)
	}
	d.log()
	must("environment", "rename", "staging", "--display-name", "Stage")
	if got := d.log(); !slices.Contains(got, `PATCH /admin/v1/environments/staging If-Match:"1"`) || d.envs["staging"].DisplayName != "Stage" {
		t.Errorf("rename: %q %+v", got, d.envs["staging"])
	}
	if r := cli(t, vars, "environment", "list", "--env", "x"); r.code != exitUsage {
		t.Errorf("environment list takes no --env: %+v", r)
	}
	if r := cli(t, d.as("plain", ""), "environment", "list"); r.code != 1 || !strings.Contains(r.stderr, "not a deployment admin") {
		t.Errorf("list as an admin of the default environment only: %+v", r)
	}

	// delete: the first step shows what goes; the second needs --yes or
	// the name typed on a terminal.
	del := func(stdin string, interactive bool, args ...string) result {
		var out, errb strings.Builder
		e := &env{stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }, stdin: strings.NewReader(stdin), interactive: interactive}
		code := run(t.Context(), append([]string{"environment", "delete"}, args...), e)
		return result{code, out.String(), errb.String()}
	}
	for _, tc := range []struct {
		name        string
		stdin       string
		interactive bool
		args        []string
		deleted     bool
		want        string
	}{
		{"not a terminal, no --yes", "old\n", false, []string{"old"}, false, "pass --yes"},
		{"the wrong name typed", "staging\n", true, []string{"old"}, false, "does not match"},
		{"the name typed", "old\n", true, []string{"old"}, true, "deleted environment old"},
		{"--yes", "", false, []string{"dev", "--yes"}, true, "deleted environment dev"},
		{"the default one", "", false, []string{"default", "--yes"}, false, "cannot be deleted"},
	} {
		t.Run("delete/"+tc.name, func(t *testing.T) {
			name := tc.args[0]
			r := del(tc.stdin, tc.interactive, tc.args...)
			if (r.code == 0) != tc.deleted || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Fatalf("%+v", r)
			}
			if name != "default" && !strings.Contains(r.stdout, "Deleting environment "+name+" deletes 1 apis, 2 clients.") {
				t.Errorf("the first step's counts are not shown: %q", r.stdout)
			}
			if _, ok := d.envs[name]; ok == tc.deleted {
				t.Errorf("environment %s: exists %v after %+v", name, ok, r)
			}
		})
	}
}

// apply and export of the three file shapes, against the fake.
func TestApplyExportEnvironmentsFake(t *testing.T) {
	d := newFakeDeployment(t)
	vars := d.as("deployer", "")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	orders := "apis:\n  - {identifier: https://orders.example.com, name: Orders, scopes: [r]}\n"

	// environment: dev, which does not exist: the plan says it is created.
	one := write("dev.yaml", "environment: dev\ndisplay_name: Development\n"+orders)
	r := cli(t, vars, "apply", "-f", one, "--dry-run")
	want := "environment dev (new: apply creates it):\n+ environment dev\n    display_name: \"Development\"\n+ api https://orders.example.com\n\ndry run: 2 to create, 0 to update, 0 to delete; nothing was changed\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("dry run:\n%s\nwant:\n%s\n%s", r.stdout, want, r.stderr)
	}
	d.log()
	if r := cli(t, vars, "apply", "-f", one); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	if got := d.log(); !slices.Contains(got, "POST /admin/v1/environments") || !slices.Contains(got, "POST /e/dev/admin/v1/apis") {
		t.Errorf("apply of environment: dev: %q", got)
	}
	if r := cli(t, vars, "apply", "-f", one); r.code != 0 || r.stdout != "environment dev: no changes\n\nno changes: the server matches "+one+"\n" {
		t.Errorf("second apply: %+v", r)
	}
	if r := cli(t, vars, "apply", "-f", one, "--env", "staging"); r.code == 0 || !strings.Contains(r.stderr, "the file is for environment dev, not --env staging") {
		t.Errorf("apply with another --env: %+v", r)
	}

	// A file without environment: applies to --env.
	plain := write("plain.yaml", orders)
	if r := cli(t, vars, "apply", "-f", plain, "--env", "staging", "--dry-run"); r.code != 0 || !strings.HasPrefix(r.stdout, "environment staging:\n+ api https://orders.example.com\n") {
		t.Errorf("plain file with --env: %+v", r)
	}

	// environments: each in turn; --prune-environments deletes the others
	// (never the default one), through the two-step delete.
	all := write("all.yaml", "environments:\n  - name: default\n"+indent(orders)+"  - name: staging\n    display_name: Stage\n  - name: dev\n"+indent(orders))
	r = cli(t, vars, "apply", "-f", all, "--dry-run", "--prune", "--prune-environments")
	for _, w := range []string{"environment default:\n+ api https://orders.example.com\n", "environment staging:\n~ environment staging\n    display_name: \"Staging\" → \"Stage\"\n",
		"environment dev: no changes\n", "environment old:\n- environment old\n    deletes 1 apis, 2 clients\n", "dry run: 1 to create, 1 to update, 1 to delete"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("environments plan lacks %q:\n%s\n%s", w, r.stdout, r.stderr)
		}
	}
	if r := cli(t, vars, "apply", "-f", all, "--prune-environments"); r.code == 0 || !strings.Contains(r.stderr, "needs --prune") {
		t.Errorf("--prune-environments without --prune: %+v", r)
	}
	if r := cli(t, vars, "apply", "-f", one, "--prune", "--prune-environments"); r.code == 0 || !strings.Contains(r.stderr, "applies to a file with environments:") {
		t.Errorf("--prune-environments with one environment: %+v", r)
	}
	d.log()
	if r := cli(t, vars, "apply", "-f", all, "--prune", "--prune-environments"); r.code != 0 {
		t.Fatalf("apply all: %+v", r)
	}
	if _, ok := d.envs["old"]; ok || d.envs["staging"].DisplayName != "Stage" {
		t.Errorf("after apply: old %v, staging %+v", d.envs["old"], d.envs["staging"])
	}

	// export: one environment, every one in a file, every one in a directory.
	r = cli(t, vars, "export", "--env", "staging")
	if r.code != 0 || !strings.Contains(r.stdout, "environment: staging\ndisplay_name: Stage\n") {
		t.Errorf("export --env: %+v", r)
	}
	r = cli(t, vars, "export", "--all-environments")
	if r.code != 0 || !strings.Contains(r.stdout, "environments:\n  - name: default\n    display_name: Default\n    apis:\n      - identifier: https://orders.example.com\n") ||
		!strings.Contains(r.stdout, "  - name: staging\n    display_name: Stage\n") {
		t.Errorf("export --all-environments: %+v", r)
	}
	exported := write("exported.yaml", r.stdout)
	if r := cli(t, vars, "apply", "-f", exported, "--prune", "--prune-environments"); r.code != 0 || !strings.Contains(r.stdout, "no changes") {
		t.Errorf("applying the export: %+v", r)
	}
	out := filepath.Join(dir, "envs")
	if r := cli(t, vars, "export", "--all-environments", "--dir", out); r.code != 0 {
		t.Fatalf("export --dir: %+v", r)
	}
	for _, n := range []string{"default", "staging", "dev"} {
		b, err := os.ReadFile(filepath.Join(out, n+".yaml"))
		if err != nil || !strings.Contains(string(b), "environment: "+n+"\n") {
			t.Errorf("%s.yaml: %q %v", n, b, err)
		}
		if r := cli(t, vars, "apply", "-f", filepath.Join(out, n+".yaml")); r.code != 0 || !strings.Contains(r.stdout, "no changes") {
			t.Errorf("applying %s.yaml: %+v", n, r)
		}
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n    ") + "\n"
}
