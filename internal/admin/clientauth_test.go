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
