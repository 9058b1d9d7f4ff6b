package admin

import (
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// A binding's subject pattern must name something: '*' matches any run of
// characters, so a pattern of nothing but stars ("**") accepts every token
// of the issuer exactly as a lone '*' would, and is refused the same way.
func TestFederationSubjectMustNameSomething(t *testing.T) {
	tests := []struct {
		subject string
		refused bool
	}{
		{"*", true},
		{"**", true},
		{"***", true},
		{"", true},
		{"system:serviceaccount:payments:*", false},
		{"*:*", false},
		{"repo:acme/shop:*", false},
		{"spiffe://example.org/ns/payments/sa/api", false},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			c := store.Client{AuthMethod: AuthFederated, Federation: []store.FederatedIdentity{{Policy: "k8s", Subject: tt.subject}}}
			var v ValidationError
			validateClientAuth(&v, &c, time.Now())
			refused := false
			for _, f := range v.Fields {
				if f.Field == "federation[0].subject" {
					refused = true
				}
			}
			if refused != tt.refused {
				t.Errorf("subject %q: refused %v, want %v (%v)", tt.subject, refused, tt.refused, v.Fields)
			}
		})
	}
}

// Lifetimes and ages arrive in seconds: a number of seconds too large for
// a time.Duration must be refused, never wrapped around into a value in
// range (2^55 + 600 seconds is 600 s once multiplied in int64
// nanoseconds).
func TestHugeSecondsAreRefusedNotWrapped(t *testing.T) {
	const wrapsTo600 = 1<<55 + 600
	for _, secs := range []int64{wrapsTo600, 1 << 62, 9223372036854775807} {
		var v ValidationError
		checkLifetime(&v, "token_lifetime_seconds", secs)
		if len(v.Fields) == 0 {
			t.Errorf("token_lifetime_seconds %d accepted", secs)
		}
		for _, in := range []TrustPolicyInput{
			{MaxTokenAgeSeconds: secs},
			{MaxTokenLifetimeSeconds: secs},
		} {
			in.Name, in.Kind, in.Issuer, in.JWKSURI = "k8s", "jwt", "https://k8s.example", "https://k8s.example/jwks"
			p := trustPolicy(in, "https://auth.example")
			var v ValidationError
			validateTrustPolicy(&v, &p, "https://auth.example")
			if len(v.Fields) == 0 {
				t.Errorf("%+v accepted as max age %v, max lifetime %v", in, p.MaxTokenAge, p.MaxTokenLifetime)
			}
		}
	}
	// In range still passes.
	var v ValidationError
	checkLifetime(&v, "token_lifetime_seconds", 600)
	p := trustPolicy(TrustPolicyInput{Name: "k8s", Kind: "jwt", Issuer: "https://k8s.example", JWKSURI: "https://k8s.example/jwks",
		MaxTokenAgeSeconds: 600, MaxTokenLifetimeSeconds: 86400}, "https://auth.example")
	validateTrustPolicy(&v, &p, "https://auth.example")
	if len(v.Fields) != 0 {
		t.Errorf("in range refused: %v", v.Fields)
	}
}

// A trust policy has exactly one source of keys: with several, one would
// silently win and the others mislead whoever reads the policy.
func TestTrustPolicyHasOneKeySource(t *testing.T) {
	jwks := []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}`)
	for _, tc := range []struct {
		name    string
		in      TrustPolicyInput
		refused bool
	}{
		{"jwks", TrustPolicyInput{JWKS: jwks}, false},
		{"jwks_uri", TrustPolicyInput{JWKSURI: "https://k8s.example/jwks"}, false},
		{"discovery", TrustPolicyInput{Discovery: true}, false},
		{"none", TrustPolicyInput{}, true},
		{"jwks and jwks_uri", TrustPolicyInput{JWKS: jwks, JWKSURI: "https://k8s.example/jwks"}, true},
		{"jwks and discovery", TrustPolicyInput{JWKS: jwks, Discovery: true}, true},
		{"jwks_uri and discovery", TrustPolicyInput{JWKSURI: "https://k8s.example/jwks", Discovery: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Name, in.Kind, in.Issuer = "k8s", "jwt", "https://k8s.example"
			p := trustPolicy(in, "https://auth.example")
			var v ValidationError
			validateTrustPolicy(&v, &p, "https://auth.example")
			if refused := len(v.Fields) > 0; refused != tc.refused {
				t.Errorf("refused %v, want %v (%v)", refused, tc.refused, v.Fields)
			}
		})
	}
}
