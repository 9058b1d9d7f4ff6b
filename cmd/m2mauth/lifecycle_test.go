package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLIClientLifecycle(t *testing.T) {
	dir := t.TempDir()
	url := startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	must := mustCLI(t, vars)
	tokenCode := func(id, secret string) int {
		return cli(t, nil, "token", "--server", url, "--client-id", id, "--client-secret", secret).code
	}
	must("api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read orders:write")
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Version      int    `json:"version"`
		Disabled     bool   `json:"disabled"`
		Secrets      []struct {
			ID, Status string
		} `json:"secrets"`
		Grants []struct {
			Audience string
			Scopes   []string
		} `json:"grants"`
		CustomClaims map[string]any `json:"custom_claims"`
	}
	_ = json.Unmarshal([]byte(must("client", "create", "--name", "billing", "--audience", "https://api.example.com", "--scopes", "orders:read", "--json").stdout), &c)
	id, first := c.ClientID, c.ClientSecret

	// update: only the given fields change.
	r := must("client", "update", id, "--name", "billing-v2", "--audience", "https://api.example.com", "--scopes", "orders:read orders:write", "--claim", "tenant=acme", "--json")
	_ = json.Unmarshal([]byte(r.stdout), &c)
	if len(c.Grants) != 1 || len(c.Grants[0].Scopes) != 2 || c.CustomClaims["tenant"] != "acme" {
		t.Fatalf("after update: %+v", c)
	}
	if r := cli(t, vars, "client", "update", id, "--name", "x", "--if-match", "1"); r.code != 1 || !strings.Contains(r.stderr, "Precondition Failed") {
		t.Fatalf("update with a stale --if-match: %+v", r)
	}
	if r := cli(t, vars, "client", "update", id); r.code != 1 || !strings.Contains(r.stderr, "nothing to change") {
		t.Fatalf("update without fields: %+v", r)
	}

	// disable / enable
	must("client", "disable", id)
	if tokenCode(id, first) != 1 {
		t.Fatal("a disabled client got a token")
	}
	if r := must("client", "show", id); !strings.Contains(r.stdout, "disabled") {
		t.Fatalf("show does not say disabled: %s", r.stdout)
	}
	must("client", "enable", id)
	if tokenCode(id, first) != 0 {
		t.Fatal("an enabled client got no token")
	}

	// rotate-secret with grace: both work; again: refused; revoke the old one.
	r = must("client", "rotate-secret", id, "--grace", "1h", "--json")
	_ = json.Unmarshal([]byte(r.stdout), &c)
	second := c.ClientSecret
	if second == "" || tokenCode(id, first) != 0 || tokenCode(id, second) != 0 {
		t.Fatalf("during grace: rotate %+v", r)
	}
	if r := cli(t, vars, "client", "rotate-secret", id); r.code != 1 || !strings.Contains(r.stderr, "live secrets") {
		t.Fatalf("second rotation during grace: %+v", r)
	}
	must("client", "revoke-secret", id, c.Secrets[0].ID)
	if tokenCode(id, first) != 1 || tokenCode(id, second) != 0 {
		t.Fatal("after revoking the old secret")
	}
	r = must("client", "rotate-secret", id, "--grace", "0")
	if !strings.Contains(r.stdout, "client_secret: m2ms_") || tokenCode(id, second) != 1 {
		t.Fatalf("rotate --grace 0: %+v", r)
	}

	// import with an existing id and secret, secret from a file.
	secFile := filepath.Join(t.TempDir(), "legacy.secret")
	os.WriteFile(secFile, []byte("480nulBeBGqJDoAOADC0CW2frGTDVEmq\n"), 0o600)
	must("client", "import", "--client-id", "NmN78x6DMfde1XRx9hQg", "--client-secret-file", secFile, "--name", "legacy",
		"--audience", "https://api.example.com", "--scopes", "orders:read")
	if tokenCode("NmN78x6DMfde1XRx9hQg", "480nulBeBGqJDoAOADC0CW2frGTDVEmq") != 0 {
		t.Fatal("imported credentials do not work")
	}

	// api update removes a scope from the grants; delete --force.
	must("api", "update", "https://api.example.com", "--scopes", "orders:read")
	if r := cli(t, nil, "token", "--server", url, "--client-id", "NmN78x6DMfde1XRx9hQg", "--client-secret", "480nulBeBGqJDoAOADC0CW2frGTDVEmq", "--scopes", "orders:write"); r.code != 1 {
		t.Fatal("removed scope still granted")
	}
	must("api", "delete", "https://api.example.com", "--force")
	if r := must("client", "list"); strings.Contains(r.stdout, "https://api.example.com") {
		t.Fatalf("grants remain after forced delete:\n%s", r.stdout)
	}
}

const configYAML = `apis:
  - identifier: https://orders.example.com
    name: Orders
    scopes: [orders:read, orders:write]
    token_lifetime: 10m
clients:
  - client_id: billing-service
    name: Billing
    grants:
      - audience: https://orders.example.com
        scopes: [orders:read]
    default_audience: https://orders.example.com
    custom_claims: {tenant: acme, tier: 2}
    metadata: {team: billing}
    secret_file: secrets/billing.json
  - client_id: legacy-reporter
    name: Reporter
    grants:
      - audience: https://orders.example.com
        scopes: [orders:read]
    import_secret: {env: REPORTER_SECRET}
`

func TestApplyAndExport(t *testing.T) {
	dir := t.TempDir()
	url := startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir, "REPORTER_SECRET": "reporter-secret-0123456789abcdef0123"}
	cfgDir := t.TempDir()
	file := filepath.Join(cfgDir, "m2mauth.yaml")
	os.WriteFile(file, []byte(configYAML), 0o644)

	// --dry-run shows the changes and makes none.
	r := cli(t, vars, "apply", "-f", file, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "+ api https://orders.example.com") || !strings.Contains(r.stdout, "+ client billing-service") || !strings.Contains(r.stdout, "nothing was changed") {
		t.Fatalf("dry run: %+v", r)
	}
	if r := cli(t, vars, "client", "list"); strings.Contains(r.stdout, "billing-service") {
		t.Fatal("dry run created a client")
	}

	r = cli(t, vars, "apply", "-f", file)
	if r.code != 0 || !strings.Contains(r.stdout, "applied: 3 to create") {
		t.Fatalf("apply: %+v", r)
	}
	var creds struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	b, err := os.ReadFile(filepath.Join(cfgDir, "secrets", "billing.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &creds); err != nil || creds.ClientID != "billing-service" || !strings.HasPrefix(creds.ClientSecret, "m2ms_") {
		t.Fatalf("secret file %s: %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(cfgDir, "secrets", "billing.json")); fi.Mode().Perm() != 0o600 || strings.Contains(r.stdout, creds.ClientSecret) {
		t.Fatalf("secret file mode %v, or the secret was printed", fi.Mode().Perm())
	}
	for id, sec := range map[string]string{"billing-service": creds.ClientSecret, "legacy-reporter": vars["REPORTER_SECRET"]} {
		if r := cli(t, nil, "token", "--server", url, "--client-id", id, "--client-secret", sec); r.code != 0 {
			t.Fatalf("%s cannot get a token: %+v", id, r)
		}
	}

	// Applying the same file again changes nothing.
	if r := cli(t, vars, "apply", "-f", file); r.code != 0 || !strings.Contains(r.stdout, "no changes") {
		t.Fatalf("second apply: %+v", r)
	}

	// export → apply round-trips: applying the export changes nothing.
	exported := filepath.Join(cfgDir, "exported.yaml")
	if r := cli(t, vars, "export", "-o", exported); r.code != 0 {
		t.Fatalf("export: %+v", r)
	}
	eb, _ := os.ReadFile(exported)
	if strings.Contains(string(eb), "/admin") || strings.Contains(string(eb), "bootstrap") || strings.Contains(string(eb), "m2ms_") {
		t.Fatalf("export contains the admin API, an admin client or a secret:\n%s", eb)
	}
	if r := cli(t, vars, "apply", "-f", exported); r.code != 0 || !strings.Contains(r.stdout, "no changes") {
		t.Fatalf("apply of the export: %+v\n%s", r, eb)
	}

	// A change in the file shows as a diff; --prune deletes what it no longer names.
	changed := strings.Replace(configYAML, "name: Billing", "name: Billing v2", 1)
	changed = changed[:strings.Index(changed, "  - client_id: legacy-reporter")]
	os.WriteFile(file, []byte(changed), 0o644)
	r = cli(t, vars, "apply", "-f", file, "--prune", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, `name: Billing → Billing v2`) || !strings.Contains(r.stdout, "- client legacy-reporter") || strings.Contains(r.stdout, "bootstrap") {
		t.Fatalf("prune dry run: %+v", r)
	}
	if r := cli(t, vars, "apply", "-f", file, "--prune"); r.code != 0 {
		t.Fatalf("prune: %+v", r)
	}
	if r := cli(t, vars, "client", "list"); strings.Contains(r.stdout, "legacy-reporter") || !strings.Contains(r.stdout, "bootstrap admin") {
		t.Fatalf("after prune:\n%s", r.stdout)
	}

	// Bad files are refused with a reason.
	os.WriteFile(file, []byte("apis:\n  - identifier: x\n    nmae: typo\n"), 0o644)
	if r := cli(t, vars, "apply", "-f", file); r.code != 1 || !strings.Contains(r.stderr, "nmae") {
		t.Fatalf("unknown field: %+v", r)
	}
}

// apply reads every secret to import before it changes anything: a file
// whose second client's secret is missing, too short or unreadable
// leaves the server as it was (it used to create the API and the first
// client, then fail).
func TestApplyChecksImportSecretsFirst(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	cfgDir := t.TempDir()
	file := filepath.Join(cfgDir, "m2mauth.yaml")
	if err := os.WriteFile(file, []byte(configYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	fromFile := strings.Replace(configYAML, "{env: REPORTER_SECRET}", "{file: reporter.secret}", 1)
	fileCfg := filepath.Join(cfgDir, "from-file.yaml")
	if err := os.WriteFile(fileCfg, []byte(fromFile), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		secret  string // REPORTER_SECRET, or the content of reporter.secret ("" for no file)
		args    []string
		wantErr string
	}{
		{"variable not set", file, "", nil, "client legacy-reporter: import_secret: environment variable REPORTER_SECRET is not set"},
		{"variable not set, dry run", file, "", []string{"--dry-run"}, "environment variable REPORTER_SECRET is not set"},
		{"too short", file, "short-secret", nil, "$REPORTER_SECRET is shorter than 32 characters"},
		{"with a space", file, "reporter secret 0123456789abcdef0123", nil, "$REPORTER_SECRET holds spaces"},
		{"no file", fileCfg, "", nil, "client legacy-reporter: import_secret: open " + filepath.Join(cfgDir, "reporter.secret")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
			if tc.file == file {
				vars["REPORTER_SECRET"] = tc.secret
			}
			r := cli(t, vars, append([]string{"apply", "-f", tc.file}, tc.args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("got %+v; want exit 1, stderr ~ %q", r, tc.wantErr)
			}
			if tc.secret != "" && strings.Contains(r.stdout+r.stderr, tc.secret) {
				t.Fatalf("the secret is printed: %+v", r)
			}
			if r := cli(t, vars, "api", "list"); strings.Contains(r.stdout, "orders.example.com") {
				t.Fatalf("the API was created:\n%s", r.stdout)
			}
			if r := cli(t, vars, "client", "list"); strings.Contains(r.stdout, "billing-service") {
				t.Fatalf("the first client was created:\n%s", r.stdout)
			}
			if _, err := os.Stat(filepath.Join(cfgDir, "secrets")); !os.IsNotExist(err) {
				t.Fatalf("a secret file was written: %v", err)
			}
		})
	}
	// With the secret in the file it names, everything is applied.
	if err := os.WriteFile(filepath.Join(cfgDir, "reporter.secret"), []byte("reporter-secret-0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, map[string]string{"M2MAUTH_DATA_DIR": dir}, "apply", "-f", fileCfg); r.code != 0 || !strings.Contains(r.stdout, "applied: 3 to create") {
		t.Fatalf("apply: %+v", r)
	}
}

// A variable set for another command (M2MAUTH_TOKEN_LIFETIME configures
// serve, M2MAUTH_AUDIENCE and M2MAUTH_SCOPES the token command) never
// configures a client or an API: their fields come from the command line.
func TestCLIResourceFieldsIgnoreTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir, "M2MAUTH_TOKEN_LIFETIME": "5m",
		"M2MAUTH_AUDIENCE": "https://api.example.com", "M2MAUTH_SCOPES": "orders:read", "M2MAUTH_NAME": "from the environment",
		"M2MAUTH_REFRESH_TOKENS": "true", "M2MAUTH_DISCOVERABLE": "true"}
	if r := cli(t, vars, "api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read", "--json"); r.code != 0 ||
		strings.Contains(r.stdout, `"token_lifetime_seconds": 300`) || strings.Contains(r.stdout, `"discoverable": true`) {
		t.Fatalf("api create took fields from the environment: %+v", r)
	}
	r := cli(t, vars, "client", "create", "--name", "billing", "--json")
	if r.code != 0 {
		t.Fatalf("client create: %+v", r)
	}
	var c struct {
		Name          string `json:"name"`
		TokenLifetime int    `json:"token_lifetime_seconds"`
		RefreshTokens bool   `json:"refresh_tokens"`
		Grants        []any  `json:"grants"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if c.Name != "billing" || c.TokenLifetime != 0 || c.RefreshTokens || len(c.Grants) != 0 {
		t.Errorf("client create took fields from the environment: %+v", c)
	}
	// The connection still comes from it (M2MAUTH_DATA_DIR above).
	if r := cli(t, vars, "client", "list", "--json"); r.code != 0 || !strings.Contains(r.stdout, "billing") {
		t.Errorf("client list with the connection from the environment: %+v", r)
	}
}
