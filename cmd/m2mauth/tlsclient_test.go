package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// client create/update with the RFC 8705 and RFC 9449 flags, and client
// show (text and --json), against a running server.
func TestCLITLSClientAndBinding(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	must := mustCLI(t, vars)
	type shown struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Method       string `json:"token_endpoint_auth_method"`
		DN           string `json:"tls_client_auth_subject_dn"`
		DNS          string `json:"tls_client_auth_san_dns"`
		URI          string `json:"tls_client_auth_san_uri"`
		CertBound    bool   `json:"tls_client_certificate_bound_access_tokens"`
		DPoPBound    bool   `json:"dpop_bound_access_tokens"`
	}
	show := func(id string) shown {
		t.Helper()
		var c shown
		if r := must("client", "show", id, "--json"); json.Unmarshal([]byte(r.stdout), &c) != nil {
			t.Fatalf("client show --json: %s", r.stdout)
		}
		return c
	}
	r := must("client", "create", "--name", "payments", "--auth-method", "tls_client_auth", "--tls-san-uri", "spiffe://example.org/payments",
		"--cert-bound-tokens", "--dpop-bound-tokens")
	if !strings.Contains(r.stdout, "It has no secret: it authenticates with tls_client_auth") || strings.Contains(r.stdout, "client_secret") {
		t.Fatalf("client create: %s", r.stdout)
	}
	id := strings.Fields(r.stdout)[1]
	if c := show(id); c.Method != "tls_client_auth" || c.URI != "spiffe://example.org/payments" || !c.CertBound || !c.DPoPBound || c.ClientSecret != "" {
		t.Fatalf("client show --json: %+v", c)
	}
	r = must("client", "show", id)
	for _, line := range []string{"auth method:      tls_client_auth\n", "tls subject:      tls_client_auth_san_uri spiffe://example.org/payments\n",
		"cert-bound:       yes\n", "dpop-bound:       yes\n"} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("client show lacks %q:\n%s", line, r.stdout)
		}
	}
	// An update's subject flag replaces the subject of another kind; a
	// switch flag left out keeps the switch, =false turns it off.
	must("client", "update", id, "--tls-subject-dn", "CN=payments,O=Acme", "--dpop-bound-tokens=false")
	if c := show(id); c.DN != "CN=payments,O=Acme" || c.URI != "" || !c.CertBound || c.DPoPBound {
		t.Fatalf("after update: %+v", c)
	}
	// The server's validation comes back as the command's error.
	if r := cli(t, vars, "client", "update", id, "--tls-subject-dn", "CN=payments, O=Acme"); r.code == 0 || !strings.Contains(r.stderr, "RFC 4514") {
		t.Fatalf("a DN with spaces: %+v", r)
	}
	if r := cli(t, vars, "client", "update", id, "--tls-subject-dn", ""); r.code == 0 || !strings.Contains(r.stderr, "needs the subject") {
		t.Fatalf("removing the subject of a tls_client_auth client: %+v", r)
	}
	if r := cli(t, vars, "client", "create", "--name", "x", "--auth-method", "tls_client_auth", "--tls-san-dns", "a.example", "--tls-san-ip", "192.0.2.1"); r.code == 0 ||
		!strings.Contains(r.stderr, "one certificate subject: give one of --tls-san-dns, --tls-san-ip") {
		t.Fatalf("two subjects: %+v", r)
	}
	if r := cli(t, vars, "client", "create", "--name", "x", "--tls-san-dns", "a.example"); r.code == 0 || !strings.Contains(r.stderr, "only a tls_client_auth client") {
		t.Fatalf("a subject on a secret client: %+v", r)
	}
	// A secret client shows its switches off, and no subject.
	r = must("client", "create", "--name", "plain", "--json")
	var plain shown
	if json.Unmarshal([]byte(r.stdout), &plain) != nil || plain.ClientSecret == "" || plain.CertBound || plain.DPoPBound {
		t.Fatalf("client create: %s", r.stdout)
	}
	r = must("client", "show", plain.ClientID)
	if strings.Contains(r.stdout, "tls subject") || !strings.Contains(r.stdout, "dpop-bound:       no\n") {
		t.Fatalf("client show: %s", r.stdout)
	}
	// Moving it to tls_client_auth clears nothing else and keeps its
	// secrets only with --accept-secrets.
	if r := cli(t, vars, "client", "update", plain.ClientID, "--auth-method", "tls_client_auth", "--tls-san-dns", "plain.example"); r.code == 0 ||
		!strings.Contains(r.stderr, "accept_secrets") {
		t.Fatalf("switch with live secrets: %+v", r)
	}
	must("client", "update", plain.ClientID, "--auth-method", "tls_client_auth", "--tls-san-dns", "plain.example", "--accept-secrets")
	if c := show(plain.ClientID); c.Method != "tls_client_auth" || c.DNS != "plain.example" {
		t.Fatalf("after switch: %+v", c)
	}
	// self_signed_tls_client_auth takes keys like private_key_jwt.
	if r := cli(t, vars, "client", "create", "--name", "self", "--auth-method", "self_signed_tls_client_auth"); r.code == 0 || !strings.Contains(r.stderr, "needs its public keys") {
		t.Fatalf("self-signed without keys: %+v", r)
	}
	r = must("client", "create", "--name", "self", "--auth-method", "self_signed_tls_client_auth", "--jwks-uri", "https://self.example/jwks")
	if !strings.Contains(r.stdout, "self_signed_tls_client_auth, a TLS client certificate") {
		t.Fatalf("client create: %s", r.stdout)
	}
}
