package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// certWith makes a self-signed certificate of the given subject and SANs.
func certWith(t *testing.T, tweak func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	tweak(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSubjectMatches(t *testing.T) {
	oidUID := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	cert := certWith(t, func(c *x509.Certificate) {
		c.Subject = pkix.Name{CommonName: "billing, eu", Organization: []string{"Example"}, Country: []string{"DE"},
			ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidUID, Value: "svc+1"}}}
		c.DNSNames = []string{"Billing.Example.com"}
		u, _ := url.Parse("spiffe://example.org/ns/prod/sa/billing")
		c.URIs = []*url.URL{u}
		c.IPAddresses = []net.IP{net.ParseIP("10.1.2.3"), net.ParseIP("2001:db8::1")}
		c.EmailAddresses = []string{"Billing@example.com"}
	})
	// Go writes C, O, CN, then ExtraNames: RFC 4514 lists them last first.
	dn := `UID=svc\+1,CN=billing\, eu,O=Example,C=DE`
	tests := []struct {
		kind, value string
		want        bool
	}{
		{store.TLSSubjectDN, dn, true},
		{store.TLSSubjectDN, `uid=svc\+1,cn=billing\2C eu,o=Example,c=DE`, true},
		{store.TLSSubjectDN, `uid=svc\+1, cn=billing\2C eu, o=Example, c=DE`, false}, // RFC 4514 has no spaces after commas
		{store.TLSSubjectDN, `0.9.2342.19200300.100.1.1=svc\+1,2.5.4.3=billing\, eu,2.5.4.10=Example,2.5.4.6=DE`, true},
		{store.TLSSubjectDN, `UID=svc\+1,CN=Billing\,  EU,O=Example,C=DE`, true}, // caseIgnoreMatch (RFC 5280 §7.1)
		{store.TLSSubjectDN, `UID=svc\+1,CN=billing\, us,O=Example,C=DE`, false},
		{store.TLSSubjectDN, `UID=svc\+1,CN=billing, eu,O=Example,C=DE`, false},  // unescaped comma: another RDN
		{store.TLSSubjectDN, `CN=billing\, eu,O=Example,C=DE`, false},            // an RDN missing
		{store.TLSSubjectDN, `C=DE,O=Example,CN=billing\, eu,UID=svc\+1`, false}, // order matters
		{store.TLSSubjectDN, `UID=svc+CN=x,CN=billing\, eu,O=Example,C=DE`, false},
		{store.TLSSubjectDN, `UID=#0403737663,CN=billing\, eu,O=Example,C=DE`, false},
		{store.TLSSubjectDN, `UID=svc\+1,CN=billing\, eu,O=Example,C=DE,`, false},
		{store.TLSSubjectDN, `FOO=svc\+1,CN=billing\, eu,O=Example,C=DE`, false},
		{store.TLSSubjectDNS, "billing.example.COM", true},
		{store.TLSSubjectDNS, "example.com", false},
		{store.TLSSubjectURI, "spiffe://example.org/ns/prod/sa/billing", true},
		{store.TLSSubjectURI, "spiffe://example.org/ns/prod/sa/Billing", false},
		{store.TLSSubjectURI, "spiffe://example.org/ns/prod/sa/billing/", false},
		{store.TLSSubjectIP, "10.1.2.3", true},
		{store.TLSSubjectIP, "2001:db8:0::1", true},
		{store.TLSSubjectIP, "10.1.2.4", false},
		{store.TLSSubjectIP, "not an address", false},
		{store.TLSSubjectEmail, "Billing@example.com", true},
		{store.TLSSubjectEmail, "billing@example.com", false},
		{store.TLSSubjectDNS, "", false},
		{"", dn, false},
	}
	for _, tc := range tests {
		if got := subjectMatches(store.TLSSubject{Kind: tc.kind, Value: tc.value}, cert); got != tc.want {
			t.Errorf("%s %q: %v, want %v", tc.kind, tc.value, got, tc.want)
		}
	}
}
