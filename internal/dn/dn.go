// Package dn reads the string form of an X.509 distinguished name (RFC
// 4514), as a tls_client_auth client registers its certificate's subject
// (tls_client_auth_subject_dn, RFC 8705 §2.1.2), and compares names.
//
// The parser is strict: what it accepts is RFC 4514 and nothing else, so
// that a registered name means one thing. Variants other tools print (the
// spaces of OpenSSL's default "CN = a, O = b", the ';' of RFC 1779) are
// refused with a message saying how to write them. A registered string is
// kept as written; comparisons go through Parse and Equal, never through
// the strings.
package dn

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest string Parse reads: far more than a real subject.
const MaxLen = 1024

// attributeTypes are the short names Parse knows: RFC 4514 §3's table, and
// the ones Go's crypto/x509 and OpenSSL print (SERIALNUMBER, POSTALCODE,
// emailAddress), so that their output parses. Other types are written as
// dotted OIDs.
var attributeTypes = map[string]asn1.ObjectIdentifier{
	"CN":           {2, 5, 4, 3},
	"SERIALNUMBER": {2, 5, 4, 5},
	"C":            {2, 5, 4, 6},
	"L":            {2, 5, 4, 7},
	"ST":           {2, 5, 4, 8},
	"STREET":       {2, 5, 4, 9},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"POSTALCODE":   {2, 5, 4, 17},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
	"EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1},
}

// Parse reads an RFC 4514 string into the name it stands for, in ASN.1
// order (the string lists the RDNs the other way round: its last RDN is
// the sequence's first). The empty string, the empty name, is refused: a
// certificate naming nothing identifies nobody.
func Parse(s string) (pkix.RDNSequence, error) {
	if s == "" {
		return nil, fmt.Errorf("is empty")
	}
	if len(s) > MaxLen {
		return nil, fmt.Errorf("is longer than %d bytes", MaxLen)
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("is not UTF-8")
	}
	p := parser{s: s}
	var seq pkix.RDNSequence
	for {
		rdn, err := p.rdn()
		if err != nil {
			return nil, err
		}
		seq = append(seq, rdn)
		if p.i == len(s) {
			break
		}
		switch s[p.i] {
		case ',':
			p.i++
			if p.i < len(s) && s[p.i] == ' ' {
				return nil, p.errorf("has a space after ',': RFC 4514 has none (write CN=a,O=b)")
			}
		case ';':
			return nil, p.errorf("separates RDNs with ';': RFC 4514 uses ','")
		default:
			return nil, p.errorf("has %q where ',' or '+' should be", s[p.i])
		}
	}
	// The string starts with the last RDN of the sequence.
	for i, j := 0, len(seq)-1; i < j; i, j = i+1, j-1 {
		seq[i], seq[j] = seq[j], seq[i]
	}
	return seq, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: "+format, append([]any{p.i + 1}, args...)...)
}

// rdn reads attributeTypeAndValue *( "+" attributeTypeAndValue ).
func (p *parser) rdn() (pkix.RelativeDistinguishedNameSET, error) {
	var rdn pkix.RelativeDistinguishedNameSET
	for {
		atv, err := p.atv()
		if err != nil {
			return nil, err
		}
		for _, o := range rdn {
			if o.Type.Equal(atv.Type) {
				return nil, p.errorf("names attribute %s twice in one RDN", atv.Type)
			}
		}
		rdn = append(rdn, atv)
		if p.i < len(p.s) && p.s[p.i] == '+' {
			p.i++
			continue
		}
		return rdn, nil
	}
}

// atv reads attributeType "=" attributeValue.
func (p *parser) atv() (pkix.AttributeTypeAndValue, error) {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != '=' && p.s[p.i] != ',' && p.s[p.i] != '+' {
		p.i++
	}
	name := p.s[start:p.i]
	if p.i == len(p.s) || p.s[p.i] != '=' {
		if name == "" {
			return pkix.AttributeTypeAndValue{}, p.errorf("lacks an attribute (type=value)")
		}
		return pkix.AttributeTypeAndValue{}, p.errorf("has %q without '=' and a value", name)
	}
	typ, err := attributeType(name)
	if err != nil {
		p.i = start
		return pkix.AttributeTypeAndValue{}, p.errorf("%v", err)
	}
	p.i++ // '='
	if p.i < len(p.s) && p.s[p.i] == '#' {
		v, err := p.hexValue()
		return pkix.AttributeTypeAndValue{Type: typ, Value: v}, err
	}
	v, err := p.stringValue()
	return pkix.AttributeTypeAndValue{Type: typ, Value: v}, err
}

// attributeType reads a short name (descr) or a dotted OID (numericoid).
func attributeType(name string) (asn1.ObjectIdentifier, error) {
	switch {
	case name == "":
		return nil, fmt.Errorf("lacks an attribute type before '='")
	case strings.TrimSpace(name) != name:
		return nil, fmt.Errorf("has spaces around attribute type %q: RFC 4514 has none (write CN=a,O=b)", strings.TrimSpace(name))
	case name[0] >= '0' && name[0] <= '9':
		var oid asn1.ObjectIdentifier
		for part := range strings.SplitSeq(name, ".") {
			n, err := strconv.Atoi(part)
			if err != nil || n < 0 || (len(part) > 1 && part[0] == '0') || strings.ContainsAny(part, "+-") {
				return nil, fmt.Errorf("attribute type %q is not a dotted OID", name)
			}
			oid = append(oid, n)
		}
		if len(oid) < 2 {
			return nil, fmt.Errorf("attribute type %q is not a dotted OID", name)
		}
		return oid, nil
	}
	if oid, ok := attributeTypes[strings.ToUpper(name)]; ok {
		return oid, nil
	}
	return nil, fmt.Errorf("attribute type %q is unknown: write it as a dotted OID (like 2.5.4.3=…)", name)
}

// stringValue reads RFC 4514's string production, resolving escapes.
func (p *parser) stringValue() (string, error) {
	var b []byte
	start := p.i
	lastEscaped := false
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case ',', '+', ';':
			if c == ';' {
				return "", p.errorf("separates RDNs with ';': RFC 4514 uses ','")
			}
			goto end
		case '\\':
			if p.i+1 >= len(p.s) {
				return "", p.errorf("ends in a lone '\\'")
			}
			n := p.s[p.i+1]
			if strings.IndexByte(`"+,;<>\ #=`, n) >= 0 {
				b = append(b, n)
				p.i += 2
			} else if x, err := hex.DecodeString(p.s[p.i+1 : min(p.i+3, len(p.s))]); err == nil && len(x) == 1 {
				b = append(b, x[0])
				p.i += 3
			} else {
				return "", p.errorf("escapes %q: after '\\' come a special character or two hex digits", n)
			}
			lastEscaped = true
			continue
		case '"', '<', '>', 0:
			return "", p.errorf("has an unescaped %q in a value (write \\%c)", c, c)
		case ' ':
			if p.i == start {
				return "", p.errorf("has a space at the start of a value: RFC 4514 has none around '=' (escape it as '\\ ' if it belongs to the value)")
			}
		}
		b = append(b, c)
		lastEscaped = false
		p.i++
	}
end:
	if len(b) > 0 && b[len(b)-1] == ' ' && !lastEscaped {
		return "", p.errorf("has a space at the end of a value: RFC 4514 has none before ',' (escape it as '\\ ' if it belongs to the value)")
	}
	if !utf8.Valid(b) {
		return "", p.errorf("has escaped bytes that are not UTF-8")
	}
	return string(b), nil
}

// hexValue reads "#" followed by the BER encoding of the value in hex. Only
// string values are taken: they are what certificate subjects hold, and
// what Equal compares.
func (p *parser) hexValue() (string, error) {
	p.i++ // '#'
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != '+' {
		p.i++
	}
	der, err := hex.DecodeString(p.s[start:p.i])
	if err != nil || len(der) == 0 {
		p.i = start
		return "", p.errorf("has a '#' value that is not hex digits in pairs")
	}
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(der, &raw)
	if err != nil || len(rest) > 0 || raw.Class != asn1.ClassUniversal || raw.IsCompound {
		p.i = start
		return "", p.errorf("has a '#' value that is not one DER-encoded string")
	}
	switch raw.Tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagNumericString, asn1.TagT61String:
		if !utf8.Valid(raw.Bytes) {
			p.i = start
			return "", p.errorf("has a '#' value that is not UTF-8")
		}
		return string(raw.Bytes), nil
	}
	p.i = start
	return "", p.errorf("has a '#' value of ASN.1 type %d: only string values are supported", raw.Tag)
}

// Equal reports whether two names are the same: the same RDNs in the same
// order, each with the same attributes in any order. Attribute types
// compare by OID; string values ignore case and runs of spaces (RFC 4517
// caseIgnoreMatch, as X.509 matching rules do for DirectoryString), other
// values must be equal.
//
// A certificate's subject as a sequence is
// asn1.Unmarshal(cert.RawSubject, &seq): not cert.Subject, whose fields
// lose the order and the grouping of the RDNs.
func Equal(a, b pkix.RDNSequence) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for _, x := range a[i] {
			found := false
			for _, y := range b[i] {
				if x.Type.Equal(y.Type) && sameValue(x.Value, y.Value) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
	}
	return true
}

func sameValue(a, b any) bool {
	as, aok := a.(string)
	bs, bok := b.(string)
	if aok && bok {
		return asciiFold(strings.Join(strings.Fields(as), " ")) == asciiFold(strings.Join(strings.Fields(bs), " "))
	}
	return !aok && !bok && fmt.Sprint(a) == fmt.Sprint(b)
}

// asciiFold lower-cases ASCII letters only. strings.EqualFold folds
// Unicode too, where the long s (U+017F) equals "s" and the Kelvin sign
// (U+212A) "k": a certificate naming "paymentſ" must not pass for
// "payments".
func asciiFold(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
