package declarative

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
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
		{"a secret in the file", "clients:\n  - client_id: c\n    name: C\n    client_secret: s3cr3t-value\n", "line 4: field client_secret: secrets never appear in the file"},
		{"repeated field", "clients:\n  - client_id: c\n    name: C\n    name: D\n", "line 4: field name is already set at line 3"},
		{"unknown field of a grant", "clients:\n  - client_id: c\n    name: C\n    grants: [{audience: a, scope: [r]}]\n", `line 4: unknown field "scope"`},
		{"lifetime in seconds", "apis:\n  - identifier: a\n    token_lifetime_seconds: 60\n", `unknown field "token_lifetime_seconds" (the fields are identifier, name, scopes, scope_descriptions, token_lifetime, discoverable)`},
		{"wrong type", "clients:\n  - client_id: c\n    disabled: maybe\n", "line 3: cannot unmarshal !!str `maybe` into bool"},
		{"a fraction for a whole number", "clients:\n  - client_id: c\n    quota: {per_minute: 10.9}\n", `line 3: "10.9" is not a whole number`},
		{"an exponent for a whole number", "clients:\n  - client_id: c\n    quota: {per_day: 1e3}\n", `line 3: "1e3" is not a whole number`},
		{"errors of every entry", "apis:\n  - identifier: a\n    nmae: A\n  - identifier: b\n    token_lifetime: soon\n", "discoverable)\n  line 5: \"soon\" is not a duration"},
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
	// Anchors and merge keys work; an entry's own keys win over merged ones.
	f, err := Parse([]byte("clients:\n  - &base\n    client_id: a\n    name: A\n    grants: [{audience: x, scopes: [r]}]\n  - <<: *base\n    client_id: b\n"))
	if err != nil || len(f.Clients) != 2 || f.Clients[1].ClientID != "b" || f.Clients[1].Name != "A" || f.Clients[1].Grants[0].Audience != "x" {
		t.Fatalf("merge keys: %+v %v", f, err)
	}
	// Values are read as YAML reads them: a number where text is expected is text.
	f, err = Parse([]byte("clients:\n  - client_id: c\n    name: 2024\n    metadata: {cost_center: 4711}\n    token_lifetime: 1h\n    introspect: ['*']\n"))
	if err != nil || f.Clients[0].Name != "2024" || f.Clients[0].Metadata["cost_center"] != "4711" || f.Clients[0].TokenLifetimeSeconds != 3600 || f.Clients[0].Introspect[0] != "*" {
		t.Fatalf("%+v %v", f, err)
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
	changed.APIs = []API{{admin.APIInput{Identifier: "https://orders", Name: "Orders", Scopes: []string{"r"}, TokenLifetimeSeconds: 600}}}
	changed.Clients = []Client{{ClientInput: admin.ClientInput{ClientID: "billing", Name: "Billing", Disabled: true, CustomClaims: map[string]any{"tier": 2}}}}
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

// A binding to a trust policy the apply would leave missing is refused
// while planning, before any change: with prune, a policy the file drops
// while a kept client is bound to it (the delete would fail half-way).
func TestPlanChecksFederationBindings(t *testing.T) {
	bound := []admin.FederatedIdentityInput{{Policy: "ci", Subject: "repo:org/app:ref:refs/heads/main"}}
	state := State{
		Issuer:        "https://auth.example.com",
		TrustPolicies: []admin.TrustPolicyResource{{Name: "ci", Kind: "jwt", Issuer: "https://token.actions.githubusercontent.com", Discovery: true}},
		Clients: []admin.ClientResource{
			{ClientID: "deploy", Name: "deploy", TokenEndpointAuthMethod: admin.AuthFederated, Federation: bound},
		},
	}
	client := Client{ClientInput: admin.ClientInput{ClientID: "deploy", Name: "deploy", TokenEndpointAuthMethod: admin.AuthFederated, Federation: bound}}
	for _, tc := range []struct {
		name    string
		file    File
		prune   bool
		wantErr string
	}{
		{"policy on the server, no prune", File{Clients: []Client{client}}, false, ""},
		{"policy dropped by the file, prune", File{Clients: []Client{client}}, true, "--prune would delete it"},
		{"policy declared, prune", File{TrustPolicies: []TrustPolicy{{admin.TrustPolicyInput{Name: "ci", Kind: "jwt", Issuer: "https://token.actions.githubusercontent.com", Discovery: true}}}, Clients: []Client{client}}, true, ""},
		{"policy nowhere", File{Clients: []Client{{ClientInput: admin.ClientInput{ClientID: "deploy", Name: "deploy",
			TokenEndpointAuthMethod: admin.AuthFederated, Federation: []admin.FederatedIdentityInput{{Policy: "k8s", Subject: "x"}}}}}}, false, "neither in the file nor on the server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Plan(tc.file, state, tc.prune)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// An API entry is the API's whole state (apply replaces it): an entry
// without scope_descriptions means none, and the plan shows their removal
// rather than leaving them silently in place.
func TestPlanScopeDescriptions(t *testing.T) {
	state := State{APIs: []admin.APIResource{{Identifier: "https://orders", Name: "Orders", Scopes: []string{"r", "w"},
		ScopeDescriptions: map[string]string{"r": "Read orders", "w": "Change orders"}}}}
	for _, tc := range []struct {
		name, yaml string
		diff       string // "": no change
		want       map[string]string
	}{
		{"the same, in another order", "apis:\n  - identifier: https://orders\n    name: Orders\n    scopes: [w, r]\n    scope_descriptions: {w: Change orders, r: Read orders}\n", "", nil},
		{"one changed", "apis:\n  - identifier: https://orders\n    name: Orders\n    scopes: [r, w]\n    scope_descriptions:\n      r: Read orders\n      w: Write orders\n",
			`scope_descriptions: {"r":"Read orders","w":"Change orders"} → {"r":"Read orders","w":"Write orders"}`, map[string]string{"r": "Read orders", "w": "Write orders"}},
		{"left out", "apis:\n  - identifier: https://orders\n    name: Orders\n    scopes: [r, w]\n",
			`scope_descriptions: {"r":"Read orders","w":"Change orders"} → {}`, nil},
		{"empty", "apis:\n  - identifier: https://orders\n    name: Orders\n    scopes: [r, w]\n    scope_descriptions: {}\n",
			`scope_descriptions: {"r":"Read orders","w":"Change orders"} → {}`, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			plan, err := Plan(f, state, false)
			if err != nil {
				t.Fatal(err)
			}
			if tc.diff == "" {
				if len(plan) != 0 {
					t.Fatalf("plan %v, want no change", plan)
				}
				return
			}
			if len(plan) != 1 || plan[0].Op != "update" || strings.Join(plan[0].Diffs, "\n") != tc.diff {
				t.Fatalf("plan %v, want one update with the diff %s", plan, tc.diff)
			}
			if !reflect.DeepEqual(plan[0].API.ScopeDescriptions, tc.want) {
				t.Errorf("PUT body's descriptions %#v, want %#v", plan[0].API.ScopeDescriptions, tc.want)
			}
		})
	}
}

func TestExportRoundTrip(t *testing.T) {
	state := State{
		APIs: []admin.APIResource{{Identifier: "https://orders", Name: "Orders", Scopes: []string{"r", "w"}, TokenLifetimeSeconds: 3600,
			ScopeDescriptions: map[string]string{"r": "Read orders: all of them", "w": "Écrire"}}},
		Clients: []admin.ClientResource{{ClientID: "c", Name: "C", Grants: []admin.GrantInput{{Audience: "https://orders", Scopes: []string{"r"}}}, Metadata: map[string]string{"k": "v"}}},
	}
	exported, err := Export(state)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Marshal(exported)
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
	if !reflect.DeepEqual(f.APIs[0].ScopeDescriptions, state.APIs[0].ScopeDescriptions) {
		t.Errorf("scope descriptions after export → parse: %v\n%s", f.APIs[0].ScopeDescriptions, b)
	}
}

// fill sets every field of v, recursively, to a value derived from seed:
// two seeds give two different values of every field.
func fill(v reflect.Value, seed int) {
	if v.Type() == rawJSONType {
		v.SetBytes([]byte(fmt.Sprintf(`{"keys":[{"kid":"k%d"}]}`, seed)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("v%d", seed))
	case reflect.Bool:
		v.SetBool(seed%2 == 1)
	case reflect.Int64:
		v.SetInt(int64(seed) * 60)
	case reflect.Float64:
		v.SetFloat(float64(seed) / 10)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), seed)
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), seed)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		e := reflect.New(v.Type().Elem()).Elem()
		if e.Kind() == reflect.Interface {
			e.Set(reflect.ValueOf(fmt.Sprintf("v%d", seed)))
		} else {
			fill(e, seed)
		}
		m.SetMapIndex(reflect.ValueOf(fmt.Sprintf("k%d", seed)), e)
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), seed)
		v.Set(p)
	default:
		panic("fill: add a case for " + v.Type().String())
	}
}

// TestEveryInputField sets every field of the admin API's client and API
// inputs (found by reflection, so fields added later are covered) and checks
// that each survives the file, shows in a plan's diff under its file name
// and reaches the admin API's patch under its JSON name.
func TestEveryInputField(t *testing.T) {
	var client admin.ClientInput
	fill(reflect.ValueOf(&client).Elem(), 1)
	client.ClientSecret = ""
	client.SecretLifetimeSeconds = 0 // applies to a secret when it is made: not state
	var api admin.APIInput
	fill(reflect.ValueOf(&api).Elem(), 1)
	// The state as the admin API shows it: the resources have the inputs' names.
	apiRes, err := inputOf[admin.APIResource](api)
	if err != nil {
		t.Fatal(err)
	}
	clientRes, err := inputOf[admin.ClientResource](client)
	if err != nil {
		t.Fatal(err)
	}
	state := State{APIs: []admin.APIResource{apiRes}, Clients: []admin.ClientResource{clientRes}}
	for _, name := range []string{"v1", "v2"} {
		// The policies the client is bound to, filled with 1 and then 2, exist.
		state.TrustPolicies = append(state.TrustPolicies, admin.TrustPolicyResource{Name: name, Kind: "jwt", Issuer: "https://issuer.example.com/" + name, Discovery: true})
	}
	exported, err := Export(state)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Marshal(exported)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if len(f.APIs) != 1 || len(f.Clients) != 1 || len(f.TrustPolicies) != len(state.TrustPolicies) {
		t.Fatalf("export:\n%s", b)
	}
	if !reflect.DeepEqual(f.APIs[0].APIInput, api) || !reflect.DeepEqual(f.Clients[0].ClientInput, client) {
		t.Fatalf("a field was lost on the way export → file → parse:\n%s\napi    %+v\nwant   %+v\nclient %+v\nwant   %+v", b, f.APIs[0].APIInput, api, f.Clients[0].ClientInput, client)
	}
	if plan, err := Plan(f, state, true); err != nil || len(plan) != 0 {
		t.Fatalf("plan of the export: %v %v", plan, err)
	}

	for _, tc := range []struct {
		kind string
		in   any
		skip []string
	}{{"api", &f.APIs[0].APIInput, []string{"identifier"}}, {"client", &f.Clients[0].ClientInput, []string{"client_id", "client_secret", "secret_lifetime_seconds"}}} {
		entry := reflect.ValueOf(tc.in).Elem()
		for _, fd := range fieldsOf(entry.Type()) {
			if slices.Contains(tc.skip, fd.json) {
				continue
			}
			t.Run(tc.kind+"/"+fd.key, func(t *testing.T) {
				saved := reflect.New(entry.Type()).Elem()
				saved.Set(entry)
				defer entry.Set(saved)
				fill(entry.FieldByIndex(fd.index), 2)
				plan, err := Plan(f, state, false)
				if err != nil || len(plan) != 1 || plan[0].Op != "update" || len(plan[0].Diffs) != 1 || !strings.HasPrefix(plan[0].Diffs[0], fd.key+": ") {
					t.Fatalf("plan %v, err %v; want one update with one diff line for %s", plan, err, fd.key)
				}
				if tc.kind == "api" {
					if !reflect.DeepEqual(*plan[0].API, entry.Interface()) {
						t.Fatalf("PUT body %+v, want %+v", *plan[0].API, entry.Interface())
					}
					return
				}
				// The patch names the admin API's patch field and carries the new value.
				pb, _ := json.Marshal(plan[0].ClientPatch)
				dec := json.NewDecoder(bytes.NewReader(pb))
				dec.DisallowUnknownFields()
				var p admin.ClientPatch
				if err := dec.Decode(&p); err != nil {
					t.Fatalf("patch %s is not an admin.ClientPatch: %v", pb, err)
				}
				var patched admin.ClientInput
				_ = json.Unmarshal(pb, &patched)
				got, want := reflect.ValueOf(patched).FieldByIndex(fd.index), entry.FieldByIndex(fd.index)
				if len(plan[0].ClientPatch) != 1 || canonical(got) != canonical(want) {
					t.Fatalf("patch %s, want %s set to %s", pb, fd.json, canonical(want))
				}
			})
		}
	}
}
