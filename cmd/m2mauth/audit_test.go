package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// TestCLIAuditApply: apply makes one audit event per change it makes, by
// the admin client it runs as, and audit list filters and prints them.
func TestCLIAuditApply(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	file := filepath.Join(t.TempDir(), "m2mauth.yaml")
	if err := os.WriteFile(file, []byte(`apis:
  - identifier: https://orders.example.com
    name: Orders
    scopes: [orders:read]
clients:
  - client_id: billing-service
    name: Billing
    grants:
      - audience: https://orders.example.com
        scopes: [orders:read]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, vars, "apply", "-f", file); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	var creds struct {
		ClientID string `json:"client_id"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "admin.json"))
	_ = json.Unmarshal(b, &creds)

	r := cli(t, vars, "audit", "list", "--kind", "admin", "--action", "*", "--json")
	var evs []admin.AuditEventResource
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &evs) != nil {
		t.Fatalf("audit list --json: %+v", r)
	}
	var actions []string
	for _, e := range evs {
		if e.Actor == creds.ClientID {
			actions = append(actions, e.Action+" "+e.Target.ID)
		}
	}
	if got, want := strings.Join(actions, "; "), "client.create billing-service; api.create https://orders.example.com"; got != want {
		t.Errorf("events of apply (newest first) = %s, want %s", got, want)
	}
	// Applying again changes nothing, and records nothing.
	if r := cli(t, vars, "apply", "-f", file); r.code != 0 {
		t.Fatalf("apply again: %+v", r)
	}
	r = cli(t, vars, "audit", "list", "--client", "billing-service", "--since", "1h")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, "client.create") || !strings.Contains(r.stdout, "ACTOR") {
		t.Errorf("audit list --client: %+v", r)
	}
	if r := cli(t, vars, "audit", "list", "--kind", "nope"); r.code == 0 || !strings.Contains(r.stderr, "kind") {
		t.Errorf("audit list --kind nope: %+v", r)
	}
}
