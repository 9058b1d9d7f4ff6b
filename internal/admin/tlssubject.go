package admin

import (
	"net/netip"
	"net/url"
	"strings"
	"unicode"

	"github.com/m2mauth/m2mauth/internal/dn"
	"github.com/m2mauth/m2mauth/internal/store"
)

// TLSSubjectParams are the client metadata parameters of RFC 8705 §2.1.2
// that name what a tls_client_auth client's certificate must carry, by
// the kind of store.TLSSubject each sets. A client registers exactly one.
var TLSSubjectParams = []struct{ Kind, Name string }{
	{store.TLSSubjectDN, "tls_client_auth_subject_dn"},
	{store.TLSSubjectDNS, "tls_client_auth_san_dns"},
	{store.TLSSubjectURI, "tls_client_auth_san_uri"},
	{store.TLSSubjectIP, "tls_client_auth_san_ip"},
	{store.TLSSubjectEmail, "tls_client_auth_san_email"},
}

// TLSSubjectParam is the metadata parameter of a subject kind ("" for
// none).
func TLSSubjectParam(kind string) string {
	for _, p := range TLSSubjectParams {
		if p.Kind == kind {
			return p.Name
		}
	}
	return ""
}

// maxTLSSubjectLen bounds a registered subject value.
const maxTLSSubjectLen = dn.MaxLen

// tlsSubjectValues are the subject parameters' values, in the order of
// TLSSubjectParams ("": not set).
type tlsSubjectValues [5]string

func (in ClientInput) tlsSubjectValues() tlsSubjectValues {
	return tlsSubjectValues{in.TLSClientAuthSubjectDN, in.TLSClientAuthSANDNS, in.TLSClientAuthSANURI, in.TLSClientAuthSANIP, in.TLSClientAuthSANEmail}
}

// subjectValues spreads a stored subject over the parameters.
func subjectValues(s store.TLSSubject) tlsSubjectValues {
	var out tlsSubjectValues
	for i, p := range TLSSubjectParams {
		if p.Kind == s.Kind {
			out[i] = s.Value
		}
	}
	return out
}

// applyTLSSubject sets the subject parameters the patch names (null or ""
// clears one).
func (p ClientPatch) applyTLSSubject(vals *tlsSubjectValues) {
	for i, f := range []*string{p.TLSClientAuthSubjectDN, p.TLSClientAuthSANDNS, p.TLSClientAuthSANURI, p.TLSClientAuthSANIP, p.TLSClientAuthSANEmail} {
		if f != nil {
			vals[i] = *f
		}
	}
}

// tlsSubject is the one subject the parameters name: a second one is an
// error (the store holds one, and RFC 8705 §2.1.2 allows one), never
// silently dropped.
func tlsSubject(v *ValidationError, vals tlsSubjectValues) store.TLSSubject {
	var out store.TLSSubject
	for i, val := range vals {
		if val == "" {
			continue
		}
		if out.Kind != "" {
			v.add(TLSSubjectParams[i].Name, "a client registers one certificate subject: %s is set too (set the other to null to switch)", TLSSubjectParam(out.Kind))
			continue
		}
		out = store.TLSSubject{Kind: TLSSubjectParams[i].Kind, Value: val}
	}
	return out
}

// setTLSSubject is what resource() shows of a subject: the one parameter
// set.
func (r *ClientResource) setTLSSubject(s store.TLSSubject) {
	vals := subjectValues(s)
	r.TLSClientAuthSubjectDN, r.TLSClientAuthSANDNS, r.TLSClientAuthSANURI, r.TLSClientAuthSANIP, r.TLSClientAuthSANEmail = vals[0], vals[1], vals[2], vals[3], vals[4]
}

// checkTLSSubject validates a client's subject against its method: a
// tls_client_auth client has exactly one, of a form its kind allows; no
// other client has one (it would mislead: only tls_client_auth reads it).
func checkTLSSubject(v *ValidationError, c *store.Client) {
	name := TLSSubjectParam(c.TLSSubject.Kind)
	switch {
	case c.AuthMethod == AuthTLSClient && c.TLSSubject.Kind == "":
		names := make([]string, len(TLSSubjectParams))
		for i, p := range TLSSubjectParams {
			names[i] = p.Name
		}
		v.add(TLSSubjectParams[0].Name, "a tls_client_auth client needs the subject its certificate must carry: one of %s", strings.Join(names, ", "))
		return
	case c.TLSSubject.Kind == "":
		return
	case name == "":
		v.add("tls_client_auth_subject_dn", "unknown subject kind %q", c.TLSSubject.Kind)
		return
	case c.AuthMethod != AuthTLSClient:
		v.add(name, "only a tls_client_auth client registers a certificate subject, and this one uses %s: set it to null", c.AuthMethod)
		return
	}
	val := c.TLSSubject.Value
	if len(val) > maxTLSSubjectLen {
		v.add(name, "at most %d bytes", maxTLSSubjectLen)
		return
	}
	switch c.TLSSubject.Kind {
	case store.TLSSubjectDN:
		if _, err := dn.Parse(val); err != nil {
			v.add(name, "is not an RFC 4514 distinguished name (like CN=payments,O=Acme,C=DE): %v", err)
		}
	case store.TLSSubjectDNS:
		if !validDNSName(val) {
			v.add(name, "must be a DNS name (like payments.example.com, or *.example.com as a certificate may hold)")
		}
	case store.TLSSubjectURI:
		u, err := url.Parse(val)
		if err != nil || !u.IsAbs() || strings.ContainsFunc(val, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			v.add(name, "must be an absolute URI (like spiffe://example.org/ns/payments/sa/api)")
		}
	case store.TLSSubjectIP:
		if a, err := netip.ParseAddr(val); err != nil || a.Zone() != "" {
			v.add(name, "must be an IPv4 or IPv6 address without a zone (like 192.0.2.7 or 2001:db8::7)")
		}
	case store.TLSSubjectEmail:
		local, domain, ok := strings.Cut(val, "@")
		if !ok || local == "" || domain == "" || strings.Contains(domain, "@") ||
			strings.ContainsFunc(val, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			v.add(name, "must be an email address with one '@' (like payments@example.com)")
		}
	}
}

// validDNSName accepts a host name of letters, digits, '-' and '_' in
// labels of 1 to 63 characters (253 in all), the first of which may be
// the wildcard '*'.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i, label := range strings.Split(s, ".") {
		if label == "*" && i == 0 && s != "*" {
			continue
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// SetTLSSubject sets the input's subject parameters to name s alone (the
// zero subject clears them all); false for a kind it does not know.
func (in *ClientInput) SetTLSSubject(s store.TLSSubject) bool {
	fields := []*string{&in.TLSClientAuthSubjectDN, &in.TLSClientAuthSANDNS, &in.TLSClientAuthSANURI, &in.TLSClientAuthSANIP, &in.TLSClientAuthSANEmail}
	known := s.Kind == ""
	for i, p := range TLSSubjectParams {
		*fields[i] = ""
		if p.Kind == s.Kind {
			*fields[i], known = s.Value, true
		}
	}
	return known
}
