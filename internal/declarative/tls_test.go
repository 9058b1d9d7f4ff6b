package declarative

import (
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// The RFC 8705 and RFC 9449 client metadata is in the file under the admin
// API's names; a plan moving a client's certificate subject to another
// kind shows both parameters and patches the old one away, and the
// switches show as booleans.
func TestPlanTLSClientMetadata(t *testing.T) {
	state := State{Clients: []admin.ClientResource{{ClientID: "pay", Name: "Pay", TokenEndpointAuthMethod: admin.AuthTLSClient,
		TLSClientAuthSANDNS: "pay.example.com", TLSClientCertificateBoundAccessTokens: true}}}
	f, err := Parse([]byte(`clients:
  - client_id: pay
    name: Pay
    token_endpoint_auth_method: tls_client_auth
    tls_client_auth_subject_dn: CN=pay,O=Acme
    tls_client_certificate_bound_access_tokens: true
    dpop_bound_access_tokens: true
`))
	if err != nil {
		t.Fatal(err)
	}
	if c := f.Clients[0]; c.TLSClientAuthSubjectDN != "CN=pay,O=Acme" || !c.TLSClientCertificateBoundAccessTokens || !c.DPoPBoundAccessTokens {
		t.Fatalf("parsed %+v", c.ClientInput)
	}
	plan, err := Plan(f, state, false)
	if err != nil || len(plan) != 1 {
		t.Fatalf("plan %v, err %v", plan, err)
	}
	d := strings.Join(plan[0].Diffs, "\n")
	for _, want := range []string{`tls_client_auth_subject_dn: "" → CN=pay,O=Acme`, `tls_client_auth_san_dns: pay.example.com → ""`, "dpop_bound_access_tokens: false → true"} {
		if !strings.Contains(d, want) {
			t.Errorf("diffs lack %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "tls_client_certificate_bound_access_tokens") {
		t.Errorf("an unchanged switch is in the diff:\n%s", d)
	}
	p := plan[0].ClientPatch
	if p["tls_client_auth_subject_dn"] != "CN=pay,O=Acme" || p["tls_client_auth_san_dns"] != "" || p["dpop_bound_access_tokens"] != true {
		t.Errorf("patch %v", p)
	}
	// Export writes the one subject parameter set, and the switches on.
	out, err := Export(state)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if y := string(b); !strings.Contains(y, "tls_client_auth_san_dns: pay.example.com") || strings.Contains(y, "tls_client_auth_subject_dn") ||
		!strings.Contains(y, "tls_client_certificate_bound_access_tokens: true") || strings.Contains(y, "dpop_bound_access_tokens") {
		t.Errorf("export:\n%s", y)
	}
	// A field of the wrong type is refused with its line.
	if _, err := Parse([]byte("clients:\n  - client_id: pay\n    dpop_bound_access_tokens: [yes]\n")); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("a list for a switch: %v", err)
	}
}
