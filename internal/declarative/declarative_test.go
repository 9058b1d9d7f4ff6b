package declarative

import (
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
)

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown field", "apis:\n  - identifier: a\n    scope: [x]\n", "scope"},
		{"duplicate API", "apis:\n  - identifier: a\n    name: A\n  - identifier: a\n    name: B\n", "named twice"},
		{"client without id", "clients:\n  - name: x\n", "client_id is required"},
		{"bad duration", "apis:\n  - identifier: a\n    name: A\n    token_lifetime: soon\n", "not a duration"},
		{"import with both sources", "clients:\n  - client_id: c\n    name: C\n    import_secret: {env: X, file: y}\n", "exactly one"},
		{"not YAML", "apis: [\n", "yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if f, err := Parse(nil); err != nil || len(f.APIs)+len(f.Clients) != 0 {
		t.Fatalf("empty file: %+v %v", f, err)
	}
}

func TestPlan(t *testing.T) {
	state := State{
		APIs: []admin.APIResource{
			{Identifier: "https://x/admin", Name: "admin", Scopes: []string{"admin"}, Builtin: true},
			{Identifier: "https://orders", Name: "Orders", Scopes: []string{"r", "w"}, TokenLifetimeSeconds: 600},
		},
		Clients: []admin.ClientResource{
			{ClientID: "boot", Name: "bootstrap admin", Grants: []admin.GrantInput{{Audience: "https://x/admin", Scopes: []string{"admin"}}}},
			{ClientID: "billing", Name: "Billing", Grants: []admin.GrantInput{{Audience: "https://orders", Scopes: []string{"w", "r"}}},
				CustomClaims: map[string]any{"tier": float64(2)}},
		},
	}
	file := func(y string) File {
		f, err := Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	same := file(`apis:
  - {identifier: https://orders, name: Orders, scopes: [w, r], token_lifetime: 10m}
clients:
  - client_id: billing
    name: Billing
    grants: [{audience: https://orders, scopes: [r, w]}]
    custom_claims: {tier: 2}
`)
	if plan, err := Plan(same, state, true); err != nil || len(plan) != 0 {
		t.Fatalf("matching file: plan %v, err %v (order of scopes and YAML numbers must not matter)", plan, err)
	}
	changed := same
	changed.APIs = []API{{Identifier: "https://orders", Name: "Orders", Scopes: []string{"r"}, TokenLifetime: Duration(600e9)}}
	changed.Clients = []Client{{ClientID: "billing", Name: "Billing", Disabled: true, CustomClaims: map[string]any{"tier": 2}}}
	plan, err := Plan(changed, state, false)
	if err != nil || len(plan) != 2 || plan[0].Kind != "api" || plan[1].Kind != "client" {
		t.Fatalf("plan %v, err %v", plan, err)
	}
	if d := strings.Join(plan[1].Diffs, "\n"); !strings.Contains(d, "grants:") || !strings.Contains(d, "disabled: false → true") {
		t.Errorf("client diffs:\n%s", d)
	}
	if _, ok := plan[1].ClientPatch["name"]; ok {
		t.Error("an unchanged field is in the patch")
	}
	// Prune never touches built-in APIs or admin clients.
	plan, _ = Plan(File{}, state, true)
	var keys []string
	for _, c := range plan {
		keys = append(keys, c.Op+" "+c.Key)
	}
	if strings.Join(keys, ",") != "delete billing,delete https://orders" {
		t.Errorf("prune plan %v", keys)
	}
	// The file cannot reach the admin API.
	if _, err := Plan(file("apis:\n  - {identifier: https://x/admin, name: mine}\n"), state, false); err == nil {
		t.Error("a file naming the built-in API was accepted")
	}
	if _, err := Plan(file("clients:\n  - {client_id: boot, name: x}\n"), state, false); err == nil {
		t.Error("a file naming an admin client was accepted")
	}
}

func TestExportRoundTrip(t *testing.T) {
	state := State{
		APIs:    []admin.APIResource{{Identifier: "https://orders", Name: "Orders", Scopes: []string{"r"}, TokenLifetimeSeconds: 3600}},
		Clients: []admin.ClientResource{{ClientID: "c", Name: "C", Grants: []admin.GrantInput{{Audience: "https://orders", Scopes: []string{"r"}}}, Metadata: map[string]string{"k": "v"}}},
	}
	b, err := Marshal(Export(state))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("re-parse:\n%s\n%v", b, err)
	}
	if plan, err := Plan(f, state, true); err != nil || len(plan) != 0 {
		t.Fatalf("export then plan: %v %v\n%s", plan, err, b)
	}
	if !strings.Contains(string(b), "token_lifetime: 1h") {
		t.Errorf("durations are not written short:\n%s", b)
	}
}
