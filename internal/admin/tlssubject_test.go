package admin

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/store"
)

const testJWKS = `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}`

// fieldErrors are the fields an admin error envelope names, each with its
// message.
func fieldErrors(body map[string]any) map[string]string {
	out := map[string]string{}
	errs, _ := body["errors"].([]any)
	for _, e := range errs {
		m, _ := e.(map[string]any)
		f, _ := m["field"].(string)
		msg, _ := m["message"].(string)
		out[f] += msg
	}
	return out
}

// Creating a client checks the RFC 8705 metadata: the method's
// requirements, one subject of a well-formed value, and a subject only for
// tls_client_auth. Each refusal names the field in the envelope.
func TestCreateTLSClientValidation(t *testing.T) {
	f := newEnvFixture(t)
	tok := f.deployer()
	for _, tc := range []struct {
		name  string
		body  string
		field string // "" for accepted
		says  string
	}{
		{"dn", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"CN=payments,O=Acme,C=DE"`, "", ""},
		{"dn escaped", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"CN=Acme\\, Inc.+OU=x,O=Acme"`, "", ""},
		{"dns", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_dns":"payments.example.com"`, "", ""},
		{"dns wildcard", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_dns":"*.example.com"`, "", ""},
		{"uri spiffe", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_uri":"spiffe://example.org/ns/payments/sa/api"`, "", ""},
		{"ipv4", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_ip":"192.0.2.7"`, "", ""},
		{"ipv6", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_ip":"2001:db8::7"`, "", ""},
		{"email", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_email":"payments@example.com"`, "", ""},
		{"self-signed jwks", `"token_endpoint_auth_method":"self_signed_tls_client_auth","jwks":` + testJWKS, "", ""},
		{"self-signed jwks_uri", `"token_endpoint_auth_method":"self_signed_tls_client_auth","jwks_uri":"https://payments.example/jwks"`, "", ""},
		{"binding switches on a secret client", `"tls_client_certificate_bound_access_tokens":true,"dpop_bound_access_tokens":true`, "", ""},

		{"no subject", `"token_endpoint_auth_method":"tls_client_auth"`, "tls_client_auth_subject_dn", "needs the subject"},
		{"two subjects", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"CN=a","tls_client_auth_san_dns":"a.example"`,
			"tls_client_auth_san_dns", "one certificate subject: tls_client_auth_subject_dn is set too"},
		{"dn with spaces", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"CN=a, O=b"`, "tls_client_auth_subject_dn", "RFC 4514"},
		{"dn without =", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"payments"`, "tls_client_auth_subject_dn", "RFC 4514"},
		{"dn unknown type", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"Name=x"`, "tls_client_auth_subject_dn", "unknown"},
		{"dns bad", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_dns":"pay ments.example"`, "tls_client_auth_san_dns", "DNS name"},
		{"dns empty label", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_dns":"a..example"`, "tls_client_auth_san_dns", "DNS name"},
		{"uri relative", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_uri":"/ns/payments"`, "tls_client_auth_san_uri", "absolute URI"},
		{"uri with space", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_uri":"spiffe://a/b c"`, "tls_client_auth_san_uri", "absolute URI"},
		{"ip bad", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_ip":"192.0.2.256"`, "tls_client_auth_san_ip", "IPv4 or IPv6"},
		{"ip zone", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_ip":"fe80::1%eth0"`, "tls_client_auth_san_ip", "without a zone"},
		{"ip cidr", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_ip":"192.0.2.0/24"`, "tls_client_auth_san_ip", "IPv4 or IPv6"},
		{"email no @", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_email":"payments.example.com"`, "tls_client_auth_san_email", "one '@'"},
		{"email two @", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_email":"a@b@example.com"`, "tls_client_auth_san_email", "one '@'"},
		{"email empty local", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_email":"@example.com"`, "tls_client_auth_san_email", "one '@'"},
		{"too long", `"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_uri":"spiffe://a/` + strings.Repeat("x", 1100) + `"`, "tls_client_auth_san_uri", "at most"},
		{"subject on a secret client", `"tls_client_auth_san_dns":"a.example"`, "tls_client_auth_san_dns", "only a tls_client_auth client"},
		{"subject on private_key_jwt", `"token_endpoint_auth_method":"private_key_jwt","jwks":` + testJWKS + `,"tls_client_auth_subject_dn":"CN=a"`, "tls_client_auth_subject_dn", "uses private_key_jwt"},
		{"subject on self-signed", `"token_endpoint_auth_method":"self_signed_tls_client_auth","jwks":` + testJWKS + `,"tls_client_auth_san_ip":"192.0.2.7"`, "tls_client_auth_san_ip", "only a tls_client_auth client"},
		{"self-signed without keys", `"token_endpoint_auth_method":"self_signed_tls_client_auth"`, "jwks", "self_signed_tls_client_auth client needs its public keys"},
		{"secret on tls", `"client_id":"imp","client_secret":"0123456789abcdef0123456789abcdef","token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_dns":"a.example"`,
			"client_secret", "has no secret"},
		{"unknown method", `"token_endpoint_auth_method":"tls_client_authx"`, "token_endpoint_auth_method", "self_signed_tls_client_auth"},
		{"switch not a bool", `"dpop_bound_access_tokens":"yes"`, "dpop_bound_access_tokens", "wrong type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do(store.DefaultEnv, tok, http.MethodPost, "/admin/v1/clients", `{"name":"c",`+tc.body+`}`)
			if tc.field == "" {
				if res.code != http.StatusCreated {
					t.Fatalf("%d %v", res.code, res.body)
				}
				return
			}
			if res.code != http.StatusBadRequest {
				t.Fatalf("%d %v, want 400", res.code, res.body)
			}
			errs := fieldErrors(res.body)
			if !strings.Contains(errs[tc.field], tc.says) {
				t.Errorf("errors %v, want %s saying %q", errs, tc.field, tc.says)
			}
		})
	}
}

// A TLS client is created without a secret, as a private_key_jwt one is,
// unless accept_secrets keeps secrets working while it migrates; reading
// it back shows its metadata, with only the one subject parameter set.
func TestTLSClientRoundTrip(t *testing.T) {
	f := newEnvFixture(t)
	tok := f.deployer()
	res := f.do(store.DefaultEnv, tok, http.MethodPost, "/admin/v1/clients", `{"client_id":"pay","name":"pay","token_endpoint_auth_method":"tls_client_auth",
		"tls_client_auth_san_uri":"spiffe://example.org/payments","tls_client_certificate_bound_access_tokens":true,"dpop_bound_access_tokens":true}`)
	if res.code != http.StatusCreated {
		t.Fatalf("%d %v", res.code, res.body)
	}
	if _, ok := res.body["client_secret"]; ok {
		t.Errorf("a tls_client_auth client got a secret: %v", res.body)
	}
	if s, _ := res.body["secrets"].([]any); len(s) != 0 {
		t.Errorf("secrets %v, want none", s)
	}
	got := f.do(store.DefaultEnv, tok, http.MethodGet, "/admin/v1/clients/pay", "")
	want := map[string]any{"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_uri": "spiffe://example.org/payments",
		"tls_client_certificate_bound_access_tokens": true, "dpop_bound_access_tokens": true}
	for k, v := range want {
		if got.body[k] != v {
			t.Errorf("%s = %v, want %v", k, got.body[k], v)
		}
	}
	for _, p := range TLSSubjectParams {
		if _, ok := got.body[p.Name]; ok != (p.Name == "tls_client_auth_san_uri") {
			t.Errorf("%s present %v in %v", p.Name, ok, got.body)
		}
	}
	// A secret client shows the switches off and no subject at all.
	res = f.do(store.DefaultEnv, tok, http.MethodPost, "/admin/v1/clients", `{"client_id":"plain","name":"plain"}`)
	if res.code != http.StatusCreated || res.body["client_secret"] == nil {
		t.Fatalf("%d %v", res.code, res.body)
	}
	if res.body["tls_client_certificate_bound_access_tokens"] != false || res.body["dpop_bound_access_tokens"] != false {
		t.Errorf("switches %v", res.body)
	}
	for _, p := range TLSSubjectParams {
		if _, ok := res.body[p.Name]; ok {
			t.Errorf("%s shown for a secret client", p.Name)
		}
	}
	// accept_secrets: a migrating TLS client gets its secret.
	res = f.do(store.DefaultEnv, tok, http.MethodPost, "/admin/v1/clients", `{"client_id":"mig","name":"mig","token_endpoint_auth_method":"self_signed_tls_client_auth",
		"jwks":`+testJWKS+`,"accept_secrets":true}`)
	if res.code != http.StatusCreated || res.body["client_secret"] == nil {
		t.Fatalf("%d %v", res.code, res.body)
	}
}

// Updates keep the rules: switching to tls_client_auth needs a subject,
// switching the subject's kind clears the other parameter, switching away
// needs the subject removed, and a secret client moving to a TLS method
// keeps live secrets only with accept_secrets.
func TestUpdateTLSClient(t *testing.T) {
	f := newEnvFixture(t)
	tok := f.deployer()
	if res := f.do(store.DefaultEnv, tok, http.MethodPost, "/admin/v1/clients", `{"client_id":"c","name":"c"}`); res.code != http.StatusCreated {
		t.Fatalf("%d %v", res.code, res.body)
	}
	patch := func(body string) envResponse {
		t.Helper()
		return f.do(store.DefaultEnv, tok, http.MethodPatch, "/admin/v1/clients/c", body)
	}
	refused := func(res envResponse, field, says string) {
		t.Helper()
		if res.code != http.StatusBadRequest || !strings.Contains(fieldErrors(res.body)[field], says) {
			t.Errorf("%d %v, want %s refused saying %q", res.code, res.body, field, says)
		}
	}
	refused(patch(`{"token_endpoint_auth_method":"tls_client_auth"}`), "tls_client_auth_subject_dn", "needs the subject")
	refused(patch(`{"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_dns":"c.example"}`), "accept_secrets", "live secrets")
	res := patch(`{"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_san_dns":"c.example","accept_secrets":true}`)
	if res.code != http.StatusOK || res.body["tls_client_auth_san_dns"] != "c.example" {
		t.Fatalf("%d %v", res.code, res.body)
	}
	// A second subject kind while the first is still set is refused ...
	refused(patch(`{"tls_client_auth_subject_dn":"CN=c"}`), "tls_client_auth_san_dns", "tls_client_auth_subject_dn is set too")
	// ... and replaces it once the first is cleared in the same patch.
	res = patch(`{"tls_client_auth_subject_dn":"CN=c","tls_client_auth_san_dns":null}`)
	if res.code != http.StatusOK || res.body["tls_client_auth_subject_dn"] != "CN=c" || res.body["tls_client_auth_san_dns"] != nil {
		t.Fatalf("%d %v", res.code, res.body)
	}
	refused(patch(`{"tls_client_auth_subject_dn":"CN=c;O=d"}`), "tls_client_auth_subject_dn", "RFC 4514")
	refused(patch(`{"tls_client_auth_subject_dn":null}`), "tls_client_auth_subject_dn", "needs the subject")
	// Leaving tls_client_auth with the subject still set is refused.
	refused(patch(`{"token_endpoint_auth_method":"self_signed_tls_client_auth","jwks":`+testJWKS+`}`), "tls_client_auth_subject_dn", "uses self_signed_tls_client_auth")
	refused(patch(`{"token_endpoint_auth_method":"self_signed_tls_client_auth","tls_client_auth_subject_dn":null}`), "jwks", "needs its public keys")
	res = patch(`{"token_endpoint_auth_method":"self_signed_tls_client_auth","jwks":` + testJWKS + `,"tls_client_auth_subject_dn":null,"dpop_bound_access_tokens":true}`)
	if res.code != http.StatusOK || res.body["tls_client_auth_subject_dn"] != nil || res.body["dpop_bound_access_tokens"] != true {
		t.Fatalf("%d %v", res.code, res.body)
	}
	// A merge patch's null turns a switch off; a patch leaving it out
	// keeps it.
	if res = patch(`{"name":"c2"}`); res.body["dpop_bound_access_tokens"] != true {
		t.Errorf("a patch without the switch changed it: %v", res.body)
	}
	if res = patch(`{"dpop_bound_access_tokens":null,"tls_client_certificate_bound_access_tokens":true}`); res.code != http.StatusOK ||
		res.body["dpop_bound_access_tokens"] != false || res.body["tls_client_certificate_bound_access_tokens"] != true {
		t.Errorf("%d %v", res.code, res.body)
	}
	// PUT replaces: a full input without the subject of tls_client_auth
	// is refused like a create.
	in := ClientInput{Name: "c", TokenEndpointAuthMethod: AuthTLSClient, AcceptSecrets: true}
	b, _ := json.Marshal(in)
	refused(f.do(store.DefaultEnv, tok, http.MethodPut, "/admin/v1/clients/c", string(b)), "tls_client_auth_subject_dn", "needs the subject")
	in.TLSClientAuthSANEmail = "c@example.com"
	b, _ = json.Marshal(in)
	res = f.do(store.DefaultEnv, tok, http.MethodPut, "/admin/v1/clients/c", string(b))
	if res.code != http.StatusOK || res.body["tls_client_auth_san_email"] != "c@example.com" || res.body["tls_client_certificate_bound_access_tokens"] != false {
		t.Fatalf("%d %v", res.code, res.body)
	}
}

// The audit trail shows the new metadata: the switches, and the subject
// under its parameter's name (a name, not a secret).
func TestClientFieldsTLS(t *testing.T) {
	before := store.Client{AuthMethod: AuthTLSClient, TLSSubject: store.TLSSubject{Kind: store.TLSSubjectDNS, Value: "a.example"}}
	after := before
	after.TLSSubject = store.TLSSubject{Kind: store.TLSSubjectURI, Value: "spiffe://example.org/a"}
	after.CertBoundTokens, after.DPoPBoundTokens = true, true
	fb, fa := clientFields(before), clientFields(after)
	if fb["tls_client_auth_san_dns"] != "a.example" || fa["tls_client_auth_san_uri"] != "spiffe://example.org/a" {
		t.Errorf("fields %v / %v", fb, fa)
	}
	var diff map[string]map[string]any
	if err := json.Unmarshal(audit.Diff(fb, fa), &diff); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range diff {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"dpop_bound_access_tokens", "tls_client_auth_san_dns", "tls_client_auth_san_uri", "tls_client_certificate_bound_access_tokens"}
	if !slices.Equal(keys, want) {
		t.Errorf("diff names %v, want %v (%v)", keys, want, diff)
	}
}
