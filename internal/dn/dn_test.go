package dn

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cn, o, ou, c, dc := asn1.ObjectIdentifier{2, 5, 4, 3}, asn1.ObjectIdentifier{2, 5, 4, 10}, asn1.ObjectIdentifier{2, 5, 4, 11},
		asn1.ObjectIdentifier{2, 5, 4, 6}, asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	atv := func(t asn1.ObjectIdentifier, v string) pkix.RelativeDistinguishedNameSET {
		return pkix.RelativeDistinguishedNameSET{{Type: t, Value: v}}
	}
	for _, tc := range []struct {
		in   string
		want pkix.RDNSequence
	}{
		{"CN=payments", pkix.RDNSequence{atv(cn, "payments")}},
		// The string lists the RDNs from the last to the first.
		{"CN=payments,O=Acme,C=DE", pkix.RDNSequence{atv(c, "DE"), atv(o, "Acme"), atv(cn, "payments")}},
		{"cn=payments,dc=example,dc=com", pkix.RDNSequence{atv(dc, "com"), atv(dc, "example"), atv(cn, "payments")}},
		{"OU=Sales+CN=J. Smith,O=Widget Inc.", pkix.RDNSequence{atv(o, "Widget Inc."),
			{{Type: ou, Value: "Sales"}, {Type: cn, Value: "J. Smith"}}}},
		{`CN=Clark\, Kent\+\;\<\>\"\\ x`, pkix.RDNSequence{atv(cn, `Clark, Kent+;<>"\ x`)}},
		{`CN=\ lead and trail\ `, pkix.RDNSequence{atv(cn, " lead and trail ")}},
		{`CN=\#hash`, pkix.RDNSequence{atv(cn, "#hash")}},
		{`CN=Lu\C4\8Di\C4\87`, pkix.RDNSequence{atv(cn, "Lučić")}},
		{"CN=Lučić", pkix.RDNSequence{atv(cn, "Lučić")}},
		{"2.5.4.3=payments", pkix.RDNSequence{atv(cn, "payments")}},
		{"1.3.6.1.4.1.1466.0=#04024869", nil}, // an OCTET STRING: refused below
		{"CN=#0c087061796d656e7473", pkix.RDNSequence{atv(cn, "payments")}},
		{"emailAddress=a@example.com,CN=x", pkix.RDNSequence{atv(cn, "x"), atv(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, "a@example.com")}},
		{"CN=a=b", pkix.RDNSequence{atv(cn, "a=b")}},
	} {
		got, err := Parse(tc.in)
		if tc.want == nil {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if !Equal(got, tc.want) || got.String() != tc.want.String() {
			t.Errorf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ in, says string }{
		{"", "empty"},
		{"payments", "without '='"},
		{"CN=a, O=b", "space after ','"},
		{"CN = a", "spaces around attribute type"},
		{"CN= a", "space at the start"},
		{"CN=a ,O=b", "space at the end"},
		{"CN=a;O=b", "';'"},
		{"=a", "lacks an attribute type"},
		{"CN=a,", "lacks an attribute"},
		{",CN=a", "lacks an attribute"},
		{"CN=a+", "lacks an attribute"},
		{"Common Name=a", "unknown"},
		{"XX=a", "unknown"},
		{"2.5.04.3=a", "dotted OID"},
		{"2=a", "dotted OID"},
		{"2.5.4.3.=a", "dotted OID"},
		{`CN=a\`, "lone"},
		{`CN=a\zz`, "escapes"},
		{`CN=a"b`, "unescaped"},
		{`CN=a<b`, "unescaped"},
		{`CN=\FF\FE`, "not UTF-8"},
		{"CN=#zz", "hex"},
		{"CN=#0c", "DER"},
		{"CN=#04024869", "ASN.1 type 4"},
		{"CN=a+CN=b", "twice"},
		{"CN=" + strings.Repeat("a", MaxLen), "longer"},
		{"CN=\xff", "UTF-8"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", tc.in, err, tc.says)
		}
	}
}

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"CN=payments,O=Acme", "cn=PAYMENTS,o=acme", true},
		{"CN=payments,O=Acme", "2.5.4.3=payments,2.5.4.10=Acme", true},
		{"CN=pay  ments", "CN=pay ments", true},
		{"OU=Sales+CN=x,O=Acme", "CN=x+OU=Sales,O=Acme", true},
		{"CN=payments,O=Acme", "O=Acme,CN=payments", false},
		{"CN=payments,O=Acme", "CN=payments", false},
		{"CN=payments", "CN=payment", false},
		{"OU=Sales+CN=x", "OU=Sales,CN=x", false},
		{"CN=x+OU=a", "CN=x+O=a", false},
		// Only ASCII case folds: the long s and the Kelvin sign are not
		// "s" and "K" (found by the attack).
		{"CN=payments", "CN=payment\u017f", false},
		{"CN=key", "CN=\u212aey", false},
		{"CN=Ünïcode", "CN=Ünïcode", true},
	} {
		a, err := Parse(tc.a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Parse(tc.b)
		if err != nil {
			t.Fatal(err)
		}
		if got := Equal(a, b); got != tc.want {
			t.Errorf("Equal(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	// A sequence read from DER (as a certificate's subject is) holds the
	// same values.
	seq, _ := Parse("CN=payments,O=Acme")
	der, err := asn1.Marshal(seq)
	if err != nil {
		t.Fatal(err)
	}
	var back pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &back); err != nil {
		t.Fatal(err)
	}
	if !Equal(seq, back) {
		t.Errorf("%v and its DER round trip %v differ", seq, back)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"CN=a,O=b", `CN=\ a\2C+OU=x`, "1.2.3=#0c0161", "CN=a, O=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seq, err := Parse(s)
		if err != nil {
			return
		}
		// What parses is a name with at least one RDN, each with at least
		// one attribute; and it equals itself.
		if len(seq) == 0 || !Equal(seq, seq) {
			t.Fatalf("Parse(%q) = %v", s, seq)
		}
		for _, rdn := range seq {
			if len(rdn) == 0 {
				t.Fatalf("Parse(%q) has an empty RDN", s)
			}
		}
	})
}
