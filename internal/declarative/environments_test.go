package declarative

import (
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// The three shapes of a file: one environment's content (today's), the same
// naming its environment, and every environment of a deployment.
func TestParseShapes(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        string // the command's --env
		want       []Target
	}{
		{"content only", "apis:\n  - {identifier: https://orders, name: Orders}\n", "",
			[]Target{{Name: "", Content: File{APIs: []API{{admin.APIInput{Identifier: "https://orders", Name: "Orders"}}}}}}},
		{"content only, --env", "apis:\n  - {identifier: https://orders, name: Orders}\n", "staging",
			[]Target{{Name: "staging", Content: File{APIs: []API{{admin.APIInput{Identifier: "https://orders", Name: "Orders"}}}}}}},
		{"environment", "environment: staging\ndisplay_name: Staging\nsigning_alg: ES256\nkey_rotation_period: 720h\nclients:\n  - {client_id: c, name: C}\n", "",
			[]Target{{Name: "staging", Settings: Settings{DisplayName: "Staging", SigningAlg: "ES256", KeyRotationPeriod: 720 * 3600},
				Content: File{Clients: []Client{{ClientInput: admin.ClientInput{ClientID: "c", Name: "C"}}}}}}},
		{"environment, same --env", "environment: staging\n", "staging", []Target{{Name: "staging"}}},
		{"environments", "environments:\n  - name: default\n    apis:\n      - {identifier: https://a, name: A}\n  - name: staging\n    display_name: Staging\n    key_rotation_period: 24h\n", "",
			[]Target{
				{Name: "default", Content: File{APIs: []API{{admin.APIInput{Identifier: "https://a", Name: "A"}}}}},
				{Name: "staging", Settings: Settings{DisplayName: "Staging", KeyRotationPeriod: 86400}},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Targets(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if canonicalTargets(got) != canonicalTargets(tc.want) {
				t.Errorf("targets\n got %s\nwant %s", canonicalTargets(got), canonicalTargets(tc.want))
			}
			// Written out and read back, the file is the same.
			b, err := Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(b)
			if err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			back, _ := again.Targets(tc.env)
			if canonicalTargets(back) != canonicalTargets(got) {
				t.Errorf("after Marshal and Parse:\n%s\n got %s", b, canonicalTargets(back))
			}
		})
	}
}

func canonicalTargets(ts []Target) string {
	var b strings.Builder
	for _, t := range ts {
		out, _ := Marshal(File{Environment: t.Name, Settings: t.Settings, TrustPolicies: t.Content.TrustPolicies, APIs: t.Content.APIs, Clients: t.Content.Clients})
		b.WriteString("---\n" + string(out))
	}
	return b.String()
}

func TestParseShapeErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"environments and content", "environments:\n  - name: a\napis:\n  - {identifier: x, name: X}\n", "holds everything under them"},
		{"environments and environment", "environment: a\nenvironments:\n  - name: b\n", "holds everything under them"},
		{"settings without environment", "display_name: Staging\n", "name the environment with environment: NAME"},
		{"bad environment name", "environment: Staging\n", `"Staging" is not an environment name`},
		{"environment without name", "environments:\n  - display_name: x\n", "environments[0]: name is required"},
		{"environment named twice", "environments:\n  - name: a\n  - name: a\n", "environments[1]: environment a is named twice"},
		{"unknown key of an environment", "environments:\n  - name: a\n    issuer: https://x\n", `field issuer not found`},
		{"unknown top-level key", "environmnet: a\n", `field environmnet not found`},
		{"errors inside an environment", "environments:\n  - name: a\n    apis:\n      - {identifier: x, name: X}\n      - {identifier: x, name: Y}\n", "environments[0] (a): apis[1]: API x is named twice"},
		{"bad rotation period", "environment: a\nkey_rotation_period: monthly\n", `"monthly" is not a duration`},
		{"a secret inside an environment", "environments:\n  - name: a\n    clients:\n      - {client_id: c, client_secret: s3cr3t}\n", "secrets never appear in the file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ yaml, env, want string }{
		{"environment: staging\n", "prod", "the file is for environment staging, not --env prod"},
		{"environments:\n  - name: a\n", "a", "applies to each of them, not to --env a"},
	} {
		f, err := Parse([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Targets(tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q with --env %s: err = %v, want %q", tc.yaml, tc.env, err, tc.want)
		}
	}
}

func TestPlanEnvironments(t *testing.T) {
	orders := admin.APIResource{Identifier: "https://orders", Name: "Orders", Scopes: []string{"r"}}
	deployment := Deployment{
		Environments: map[string]Settings{
			"default": {DisplayName: "Default"},
			"staging": {DisplayName: "Staging", SigningAlg: "RS256", KeyRotationPeriod: 720 * 3600},
			"old":     {DisplayName: "Old"},
		},
		States: map[string]State{
			"default": {APIs: []admin.APIResource{orders}},
			"staging": {APIs: []admin.APIResource{orders}},
			"old":     {APIs: []admin.APIResource{orders}},
		},
	}
	parse := func(y string) File {
		f, err := Parse([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	ordersYAML := "      - {identifier: https://orders, name: Orders, scopes: [r]}\n"
	tests := []struct {
		name                     string
		file                     File
		env                      string
		prune, pruneEnvironments bool
		known                    bool // the server's environments are known
		want                     string
		wantErr                  string
	}{
		{name: "today's file, default", file: parse("apis:\n  - {identifier: https://orders, name: Orders, scopes: [r]}\n"), known: true,
			want: "(the environment):"},
		{name: "today's file, --env staging", file: parse("apis:\n  - {identifier: https://orders, name: Orders v2, scopes: [r]}\n"), env: "staging", known: true,
			want: "staging: ~ api https://orders | name: Orders → Orders v2"},
		{name: "environment: missing one is created", file: parse("environment: dev\nsigning_alg: ES256\napis:\n" + ordersYAML), known: true,
			want: "dev (new): + environment dev | display_name: \"dev\" | signing_alg: ES256; + api https://orders"},
		{name: "environment: settings given change, others stay", file: parse("environment: staging\ndisplay_name: Stage\nkey_rotation_period: 720h\napis:\n" + ordersYAML), known: true,
			want: "staging: ~ environment staging | display_name: \"Staging\" → \"Stage\""},
		{name: "environment: settings unknown to an environment admin", file: parse("environment: staging\ndisplay_name: Stage\napis:\n" + ordersYAML),
			want: "staging:"},
		{name: "environments, each in turn", known: true, file: parse("environments:\n  - name: default\n    apis:\n" + ordersYAML +
			"  - name: staging\n    signing_alg: ES256\n  - name: dev\n    display_name: Dev\n"),
			want: "default:\nstaging: ~ environment staging | signing_alg: RS256 → ES256\ndev (new): + environment dev | display_name: \"Dev\""},
		{name: "prune keeps environments", known: true, prune: true, file: parse("environments:\n  - name: staging\n    apis:\n" + ordersYAML),
			want: "staging:"},
		{name: "prune environments deletes the unnamed ones but default", known: true, prune: true, pruneEnvironments: true,
			file: parse("environments:\n  - name: staging\n    apis:\n" + ordersYAML),
			want: "staging:\nold: - environment old"},
		{name: "prune environments without prune", known: true, pruneEnvironments: true,
			file: parse("environments:\n  - name: staging\n"), wantErr: "needs prune too"},
		{name: "content errors name their environment", known: true,
			file:    parse("environments:\n  - name: staging\n    clients:\n      - {client_id: c, name: C, federation: [{policy: nope, subject: s}]}\n"),
			wantErr: "environment staging: client c: trust policy nope is neither in the file nor on the server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := deployment
			if !tc.known {
				d.Environments = nil
			}
			if tc.env == "" && tc.file.Environment == "" && tc.file.Environments == nil {
				d.States = map[string]State{"": deployment.States["default"]}
			}
			targets, err := tc.file.Targets(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			plans, err := PlanEnvironments(targets, d, tc.prune, tc.pruneEnvironments)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describePlans(plans); got != tc.want {
				t.Errorf("plan\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// describePlans renders plans one environment a line: "name (new): change; change",
// each change with its diffs after " | ".
func describePlans(plans []EnvironmentPlan) string {
	var lines []string
	for _, p := range plans {
		name := p.Name
		if name == "" {
			name = "(the environment)"
		}
		if p.New {
			name += " (new)"
		}
		var cs []string
		for _, c := range p.Changes {
			cs = append(cs, strings.ReplaceAll(c.String(), "\n    ", " | "))
		}
		lines = append(lines, strings.TrimSpace(name+": "+strings.Join(cs, "; ")))
	}
	return strings.Join(lines, "\n")
}
