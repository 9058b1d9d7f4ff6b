package peer

import (
	"crypto/x509"
	"encoding/base64"
	"net/url"
	"strings"
)

// maxCertHeader caps a certificate header: a certificate chain in PEM,
// URL-encoded, is a few kilobytes.
const maxCertHeader = 32 << 10

// ParseCertHeader reads the client certificate (and any intermediates) a
// proxy put in a header, in whichever form it came:
//   - Envoy's X-Forwarded-Client-Cert: elements separated by commas, each
//     of key=value pairs separated by semicolons; the last element is the
//     nearest proxy's, and its Cert (and Chain) hold URL-encoded PEM;
//   - RFC 9440's Client-Cert: a base64 DER byte sequence between colons;
//   - URL-encoded PEM (nginx $ssl_client_escaped_cert, AWS ALB);
//   - PEM, with its line breaks turned into spaces or tabs by the proxy;
//   - base64 DER.
//
// Whatever the form, the header must name one client: outside XFCC a
// value holding several certificates, or a comma (two values joined), is
// refused, so that a client-written value a proxy appended to cannot pass
// for the proxy's. XFCC is read strictly (a quoted value is followed by
// ';', ',' or the end), so that a client-written element cannot open a
// quote that swallows the proxy's element. The work is linear in the
// header's length, which is capped.
func ParseCertHeader(v string) (*x509.Certificate, []*x509.Certificate, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil, nil
	}
	if len(v) > maxCertHeader {
		return nil, nil, ErrBadCertificate
	}
	cert, chain, ok, err := xfcc(v)
	if err != nil {
		return nil, nil, err
	}
	if ok {
		if cert == "" {
			return nil, nil, ErrBadCertificate
		}
		leaf, _, err := parsePEMish(cert)
		if err != nil {
			return nil, nil, err
		}
		var inter []*x509.Certificate
		if chain != "" {
			certs, err := parseAll(chain)
			if err != nil {
				return nil, nil, err
			}
			for _, c := range certs {
				if !c.Equal(leaf) {
					inter = append(inter, c)
				}
			}
		}
		return leaf, inter, nil
	}
	if strings.Contains(v, ",") {
		return nil, nil, ErrBadCertificate
	}
	leaf, inter, err := parsePEMish(v)
	if err != nil {
		return nil, nil, err
	}
	if len(inter) > 0 {
		// One certificate: a second would be a client-written one the
		// proxy's was appended to (or the other way round).
		return nil, nil, ErrBadCertificate
	}
	return leaf, nil, nil
}

// xfcc reads the last element of an X-Forwarded-Client-Cert header and
// returns its Cert and Chain values (still URL-encoded); ok is false when
// v is not in that form. Quoting is strict: a quote opens only at the
// start of a value and its closing quote is followed by ';', ',' or the
// end; anything else is ErrBadCertificate.
func xfcc(v string) (cert, chain string, ok bool, err error) {
	// Split into elements at commas outside quotes; keep the last.
	start, quoted := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"' && !quoted:
			if i == 0 || v[i-1] != '=' {
				return "", "", false, ErrBadCertificate
			}
			quoted = true
		case c == '"':
			quoted = false
			if i+1 < len(v) && v[i+1] != ';' && v[i+1] != ',' {
				return "", "", false, ErrBadCertificate
			}
		case c == ',' && !quoted:
			start = i + 1
		}
	}
	if quoted {
		return "", "", false, ErrBadCertificate
	}
	elem := v[start:]
	for elem != "" {
		var pair string
		pair, elem = nextPair(elem)
		k, val, found := strings.Cut(pair, "=")
		if !found {
			return "", "", false, nil
		}
		k = strings.TrimSpace(k)
		val = unquote(strings.TrimSpace(val))
		switch {
		case strings.EqualFold(k, "Cert"):
			cert, ok = val, true
		case strings.EqualFold(k, "Chain"):
			chain, ok = val, true
		case strings.EqualFold(k, "By"), strings.EqualFold(k, "Hash"), strings.EqualFold(k, "Subject"),
			strings.EqualFold(k, "URI"), strings.EqualFold(k, "DNS"):
			ok = true
		default:
			return "", "", false, nil
		}
	}
	return cert, chain, ok, nil
}

// nextPair splits off the first key=value pair of an XFCC element at a
// semicolon outside quotes.
func nextPair(s string) (pair, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		if strings.Contains(s, `\`) {
			var b strings.Builder
			for i := 0; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			s = b.String()
		}
	}
	return s
}

// parsePEMish reads a certificate and the rest of its chain from PEM
// (URL-encoded or with mangled line breaks), an RFC 9440 byte sequence or
// base64 DER.
func parsePEMish(v string) (*x509.Certificate, []*x509.Certificate, error) {
	certs, err := parseAll(v)
	if err != nil {
		return nil, nil, err
	}
	return certs[0], certs[1:], nil
}

func parseAll(v string) ([]*x509.Certificate, error) {
	v = strings.TrimSpace(v)
	if strings.Contains(v, "%") {
		u, err := url.PathUnescape(v)
		if err != nil {
			return nil, ErrBadCertificate
		}
		// Query-style encoding (Envoy, ALB) turns the markers' spaces
		// into '+'; a '+' in the base64 body arrives as %2B.
		v = strings.NewReplacer("BEGIN+CERT", "BEGIN CERT", "END+CERT", "END CERT").Replace(strings.TrimSpace(u))
	}
	var ders [][]byte
	switch {
	case strings.HasPrefix(v, "-----BEGIN"):
		ders = pemBlocks(v)
	default:
		// RFC 9440: ":base64:"; or bare base64 DER.
		b64 := strings.Trim(v, ":")
		der, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			if der, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(b64, "=")); err != nil {
				return nil, ErrBadCertificate
			}
		}
		ders = append(ders, der)
	}
	if len(ders) == 0 || len(ders) > 8 {
		return nil, ErrBadCertificate
	}
	certs := make([]*x509.Certificate, 0, len(ders))
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, ErrBadCertificate
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// pemBlocks decodes the CERTIFICATE blocks of PEM text whose line breaks
// a proxy may have replaced by spaces or followed by tabs (nginx's
// $ssl_client_cert, Apache's SSL_CLIENT_CERT through a header): every
// blank inside a block is dropped. It returns nil when a block does not
// decode.
func pemBlocks(v string) [][]byte {
	const begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
	var out [][]byte
	for {
		i := strings.Index(v, begin)
		if i < 0 {
			return out
		}
		v = v[i+len(begin):]
		j := strings.Index(v, end)
		if j < 0 {
			return nil
		}
		body := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, v[:j])
		der, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return nil
		}
		out = append(out, der)
		v = v[j+len(end):]
	}
}
