package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// A sample gives one field of an admin resource (by its JSON name) a value
// to create with and one to change to. Key fields, and fields that cannot
// change, have no second value (nil); null{} changes a field to null.
type sample struct {
	field         string
	first, second any
}

// null is a sample's second value that removes the field.
type null struct{}

// valueOf is a sample value as JSON sees it, with ISSUER standing for the
// server's issuer (a trust policy's audience must name its server).
func valueOf(v any, issuer string) any {
	switch v := v.(type) {
	case null:
		return nil
	case string:
		if rest, ok := strings.CutPrefix(v, "ISSUER"); ok {
			return issuer + rest
		}
	}
	return v
}

// The configurable fields of a client, each with two values the server
// accepts in any order of changes.
var clientSamples = []sample{
	{"client_id", "billing-service", nil},
	{"name", "Billing", "Billing v2"},
	{"description", "charges orders", "charges and refunds orders"},
	{"grants", []any{map[string]any{"audience": "https://orders.example.com", "scopes": []any{"orders:read"}}},
		[]any{map[string]any{"audience": "https://orders.example.com", "scopes": []any{"orders:read", "orders:write"}},
			map[string]any{"audience": "https://stock.example.com", "scopes": []any{"stock:read"}}}},
	{"default_audience", "https://orders.example.com", ""},
	{"token_lifetime_seconds", 300, 1200},
	{"disabled", true, false},
	{"refresh_tokens", true, false},
	{"token_reuse_min_remaining", 0.5, 0.25},
	{"introspect", []any{"https://orders.example.com"}, []any{"*"}},
	{"quota", map[string]any{"per_minute": 10, "per_hour": 0, "per_day": -1}, map[string]any{"per_minute": 0, "per_hour": 500, "per_day": 10000}},
	{"custom_claims", map[string]any{"tenant": "acme", "tier": 2}, map[string]any{"tenant": "globex", "labels": []any{"a", "b"}}},
	{"metadata", map[string]any{"team": "billing"}, map[string]any{"team": "finance", "cost_center": "4711"}},
	// Client authentication, in an order where every step is a valid client.
	{"federation", []any{map[string]any{"policy": "ci", "subject": "repo:acme/billing:ref:refs/heads/main"}},
		[]any{map[string]any{"policy": "ci", "subject": "repo:acme/billing:*", "claims": map[string]any{"repository_owner": "acme"}}}},
	{"accept_token_endpoint_audience", true, false},
	// A tls_client_auth client has one certificate subject: each kind in
	// turn (clientSameStep clears the one before).
	{"tls_client_auth_subject_dn", "CN=billing,O=Acme", "CN=billing,OU=Finance,O=Acme"},
	{"tls_client_auth_san_dns", null{}, "billing.example.com"},
	{"tls_client_auth_san_uri", null{}, "spiffe://example.org/billing"},
	{"tls_client_auth_san_ip", null{}, "192.0.2.7"},
	{"tls_client_auth_san_email", null{}, "billing@example.com"},
	{"tls_client_certificate_bound_access_tokens", true, false},
	{"dpop_bound_access_tokens", false, true},
	{"token_endpoint_auth_method", "tls_client_auth", "client_secret_post"},
	{"accept_secrets", true, false},
	{"jwks", map[string]any{"keys": []any{map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}}, null{}},
	{"jwks_uri", "", "https://keys.example.com/billing/jwks.json"},
}

// The configurable fields of a trust policy, likewise.
var trustSamples = []sample{
	{"name", "ci", nil},
	{"kind", "jwt", nil},
	{"issuer", "https://token.actions.githubusercontent.com", "https://ci.example.com"},
	{"description", "GitHub Actions", "our CI"},
	{"jwks_uri", "https://token.actions.githubusercontent.com/.well-known/jwks", "https://ci.example.com/jwks"},
	{"discovery", false, true},
	{"jwks", nil, map[string]any{"keys": []any{map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": "ci1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}}},
	{"algorithms", []any{"RS256"}, []any{"RS256", "ES256"}},
	{"audience", "ISSUER", "ISSUER/federation"},
	{"max_token_age_seconds", 300, 600},
	{"max_token_lifetime_seconds", 1800, 3600},
	{"require_jti", true, false},
	{"single_use", true, false},
}

// trustSameStep are the fields changed to their second value in the same
// step as a trust policy's field, where one alone cannot change validly: a
// policy has one key source, and moving to another clears the one before.
var trustSameStep = map[string][]sample{
	"discovery": {{"jwks_uri", nil, ""}},
	"jwks":      {{"discovery", nil, false}},
}

// clientSameStep are, likewise, the fields changed with a client's field:
// a client registers one certificate subject, and only for tls_client_auth.
var clientSameStep = map[string][]sample{
	"tls_client_auth_san_dns":    {{"tls_client_auth_subject_dn", nil, null{}}},
	"tls_client_auth_san_uri":    {{"tls_client_auth_san_dns", nil, null{}}},
	"tls_client_auth_san_ip":     {{"tls_client_auth_san_uri", nil, null{}}},
	"tls_client_auth_san_email":  {{"tls_client_auth_san_ip", nil, null{}}},
	"token_endpoint_auth_method": {{"tls_client_auth_san_email", nil, null{}}},
}

var trustServerOwned = map[string]string{
	"version":    "kept by the server",
	"created_at": "kept by the server",
	"updated_at": "kept by the server",
}

// The fields of a client the server owns: they are not configuration, so the
// file leaves them out.
var clientServerOwned = map[string]string{
	"client_secret":         "secrets never appear in the file (secret_file and import_secret handle them)",
	"secret_id":             "part of the secret",
	"secrets":               "secrets are rotated, not configured",
	"tokens_revoked_before": "revocation is an action, not configuration",
	"version":               "kept by the server",
	"created_at":            "kept by the server",
	"updated_at":            "kept by the server",
}

var apiSamples = []sample{
	{"identifier", "https://orders.example.com", nil},
	{"name", "Orders", "Orders v2"},
	{"scopes", []any{"orders:read", "orders:write"}, []any{"orders:read", "orders:write", "orders:admin"}},
	// After scopes: its second value describes a scope that only the
	// scopes' second value defines.
	{"scope_descriptions", map[string]any{"orders:read": "Read orders"}, map[string]any{"orders:read": "Read all orders", "orders:admin": "Administer orders"}},
	{"token_lifetime_seconds", 600, 1800},
	{"discoverable", true, false},
}

var apiServerOwned = map[string]string{
	"id":         "kept by the server",
	"builtin":    "the built-in API is outside the file's reach",
	"version":    "kept by the server",
	"created_at": "kept by the server",
	"updated_at": "kept by the server",
}

// checkCoverage fails when a field of the resource type is neither sampled
// nor server-owned: a field added to the admin API must be added here, and
// this test then shows whether the file carries it.
func checkCoverage(t *testing.T, typ reflect.Type, samples []sample, owned map[string]string) {
	t.Helper()
	sampled := map[string]bool{}
	for _, s := range samples {
		sampled[s.field] = true
	}
	fields := map[string]bool{}
	for _, f := range reflect.VisibleFields(typ) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous || name == "-" {
			continue
		}
		fields[name] = true
		if sampled[name] == (owned[name] != "") {
			t.Errorf("%s.%s (%q): give it sample values here, or list it as server-owned with the reason the file leaves it out", typ.Name(), f.Name, name)
		}
	}
	for name := range sampled {
		if !fields[name] {
			t.Errorf("sample for %q, which %s does not have", name, typ.Name())
		}
	}
}

func body(samples []sample, second bool, issuer string) map[string]any {
	m := map[string]any{}
	for _, s := range samples {
		m[s.field] = valueOf(s.first, issuer)
		if second && s.second != nil {
			m[s.field] = valueOf(s.second, issuer)
		}
	}
	return m
}

// canonicalJSON renders v as JSON with every list sorted: the server may
// return grants, scopes and introspect in another order than they were given.
func canonicalJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		t.Fatal(err)
	}
	var sortLists func(any) any
	sortLists = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				v[k] = sortLists(e)
			}
		case []any:
			keys := make([]string, len(v))
			for i := range v {
				v[i] = sortLists(v[i])
				b, _ := json.Marshal(v[i])
				keys[i] = string(b)
			}
			sort.Sort(byKey{keys, v})
		}
		return v
	}
	b, _ = json.Marshal(sortLists(x))
	return string(b)
}

// byKey sorts values by their keys.
type byKey struct {
	keys   []string
	values []any
}

func (b byKey) Len() int           { return len(b.keys) }
func (b byKey) Less(i, j int) bool { return b.keys[i] < b.keys[j] }
func (b byKey) Swap(i, j int) {
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
	b.values[i], b.values[j] = b.values[j], b.values[i]
}

// fileField is the name and value of an admin API field in the file:
// lifetimes in seconds are written as durations.
func fileField(name string, v any) (string, any) {
	if key, ok := strings.CutSuffix(name, "_seconds"); ok {
		return key, (time.Duration(v.(int)) * time.Second).String()
	}
	return name, v
}

// editFile sets one field of the item of list (apis or clients) whose
// keyField is key, the way someone editing the file would.
func editFile(t *testing.T, path, list, keyField, key, field string, value any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	items, _ := f[list].([]any)
	for _, it := range items {
		if m := it.(map[string]any); m[keyField] == key {
			m[field] = value
			if b, err = yaml.Marshal(f); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("%s has no %s with %s %s:\n%s", path, list, keyField, key, b)
}

// TestExportApplyKeepsEveryField pushes every configurable field of a client
// and of an API through export → apply → read, then changes each field in the
// file and checks that --dry-run shows it and apply makes it. The field lists
// come from the admin resource types by reflection (checkCoverage), so a field
// added to the admin API fails this test until the file carries it.
func TestExportApplyKeepsEveryField(t *testing.T) {
	checkCoverage(t, reflect.TypeFor[admin.ClientResource](), clientSamples, clientServerOwned)
	checkCoverage(t, reflect.TypeFor[admin.APIResource](), apiSamples, apiServerOwned)
	checkCoverage(t, reflect.TypeFor[admin.TrustPolicyResource](), trustSamples, trustServerOwned)
	if t.Failed() {
		t.FailNow()
	}
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	urlA := startServer(t, dirA)
	urlB := startServer(t, dirB)
	varsA, varsB := map[string]string{"M2MAUTH_DATA_DIR": dirA}, map[string]string{"M2MAUTH_DATA_DIR": dirB}
	must := func(vars map[string]string, args ...string) result {
		t.Helper()
		r := cli(t, vars, args...)
		if r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
		return r
	}
	connect := func(dir string) *adminClient {
		t.Helper()
		ac, err := (&connFlags{dataDir: dir}).connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ac
	}
	acA, acB := connect(dirA), connect(dirB)
	clientID, apiID, policyName := clientSamples[0].first.(string), apiSamples[0].first.(string), trustSamples[0].first.(string)
	readPolicy := func(ac *adminClient) (p map[string]any) {
		t.Helper()
		if err := ac.do(ctx, http.MethodGet, "/admin/v1/trust-policies/"+policyName, nil, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A trust policy's audience names its server: compared across
	// servers, ISSUER stands for it.
	portable := func(v any, issuer string) any {
		if s, ok := v.(string); ok {
			if rest, ok := strings.CutPrefix(s, issuer); ok {
				return "ISSUER" + rest
			}
		}
		return v
	}
	read := func(ac *adminClient) (client, api map[string]any) {
		t.Helper()
		if err := ac.do(ctx, http.MethodGet, "/admin/v1/clients/"+url.PathEscape(clientID), nil, &client); err != nil {
			t.Fatal(err)
		}
		if err := ac.do(ctx, http.MethodGet, "/admin/v1/apis/"+url.PathEscape(apiID), nil, &api); err != nil {
			t.Fatal(err)
		}
		return client, api
	}

	// On A, through the admin API (not the file): every field set.
	if err := acA.do(ctx, http.MethodPost, "/admin/v1/trust-policies", body(trustSamples, false, urlA), nil); err != nil {
		t.Fatalf("POST trust policy: %v", err)
	}
	policyA := readPolicy(acA)
	for _, s := range trustSamples {
		if got, want := canonicalJSON(t, policyA[s.field]), canonicalJSON(t, valueOf(s.first, urlA)); got != want {
			t.Fatalf("server A keeps trust policy field %s as %s, want %s", s.field, got, want)
		}
	}
	for _, in := range []any{body(apiSamples, false, urlA),
		map[string]any{"identifier": "https://stock.example.com", "name": "Stock", "scopes": []string{"stock:read"}},
		body(clientSamples, false, urlA)} {
		path := "/admin/v1/apis"
		if _, ok := in.(map[string]any)["client_id"]; ok {
			path = "/admin/v1/clients"
		}
		if err := acA.do(ctx, http.MethodPost, path, in, nil); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
	}
	clientA, apiA := read(acA)
	for _, c := range []struct {
		got     map[string]any
		samples []sample
	}{{clientA, clientSamples}, {apiA, apiSamples}} {
		for _, s := range c.samples {
			if got, want := canonicalJSON(t, c.got[s.field]), canonicalJSON(t, valueOf(s.first, urlA)); got != want {
				t.Fatalf("server A keeps %s as %s, want %s", s.field, got, want)
			}
		}
	}

	// export A → apply to B: B has every field as A has it.
	file := filepath.Join(t.TempDir(), "exported.yaml")
	must(varsA, "export", "-o", file)
	must(varsB, "apply", "-f", file)
	clientB, apiB := read(acB)
	policyB := readPolicy(acB)
	for _, c := range []struct {
		kind    string
		a, b    map[string]any
		samples []sample
	}{{"client", clientA, clientB, clientSamples}, {"api", apiA, apiB, apiSamples}, {"trust policy", policyA, policyB, trustSamples}} {
		for _, s := range c.samples {
			if a, b := canonicalJSON(t, portable(c.a[s.field], urlA)), canonicalJSON(t, portable(c.b[s.field], urlB)); a != b {
				eb, _ := os.ReadFile(file)
				t.Errorf("%s field %s lost in export → apply: server A has %s, server B %s; the export:\n%s", c.kind, s.field, a, b, eb)
			}
		}
	}
	// Applying the export again, to either server, changes nothing.
	for _, vars := range []map[string]string{varsA, varsB} {
		if r := must(vars, "apply", "-f", file); !strings.Contains(r.stdout, "no changes") {
			t.Errorf("applying the export to a server that has it: %+v", r)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Each field changed in the file: --dry-run shows it, apply makes it, a
	// second apply changes nothing.
	for _, c := range []struct {
		list, keyField, key, line string
		samples                   []sample
		current                   func() map[string]any
	}{
		{"trust_policies", "name", policyName, "~ trust policy " + policyName, trustSamples, func() map[string]any { return readPolicy(acB) }},
		{"apis", "identifier", apiID, "~ api " + apiID, apiSamples, func() map[string]any { _, a := read(acB); return a }},
		{"clients", "client_id", clientID, "~ client " + clientID, clientSamples, func() map[string]any { c, _ := read(acB); return c }},
	} {
		for _, s := range c.samples[1:] {
			if s.second == nil {
				continue // cannot change
			}
			key, value := fileField(s.field, valueOf(s.second, urlB))
			editFile(t, file, c.list, c.keyField, c.key, key, value)
			var sameStep []sample
			switch c.list {
			case "trust_policies":
				sameStep = trustSameStep[s.field]
			case "clients":
				sameStep = clientSameStep[s.field]
			}
			for _, w := range sameStep {
				k, v := fileField(w.field, valueOf(w.second, urlB))
				editFile(t, file, c.list, c.keyField, c.key, k, v)
			}
			r := must(varsB, "apply", "-f", file, "--dry-run")
			if !strings.Contains(r.stdout, c.line) || !strings.Contains(r.stdout, "\n    "+key+": ") {
				t.Errorf("%s %s changed in the file: the dry run shows no diff for it:\n%s", c.list, key, r.stdout)
			}
			must(varsB, "apply", "-f", file)
			if got, want := canonicalJSON(t, c.current()[s.field]), canonicalJSON(t, valueOf(s.second, urlB)); got != want {
				t.Errorf("%s %s changed in the file: after apply the server has %s, want %s", c.list, key, got, want)
			}
			if r := must(varsB, "apply", "-f", file); !strings.Contains(r.stdout, "no changes") {
				t.Errorf("%s %s: a second apply is not a no-op: %+v", c.list, key, r)
			}
		}
	}
}
