// Package peer tells who is on the other end of a request: the client's
// address and its TLS client certificate, read from the connection or,
// when the connection comes from a trusted proxy that terminated TLS, from
// the headers that proxy sets (X-Forwarded-For and a certificate header:
// Envoy's X-Forwarded-Client-Cert, nginx's $ssl_client_escaped_cert, RFC
// 9440's Client-Cert). A header is honoured only from a trusted proxy:
// from anyone else it is a forgery and is removed.
package peer

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Config says which proxies are trusted and how they pass the client's
// certificate. The zero Config trusts nobody.
type Config struct {
	// TrustedProxies are the addresses whose X-Forwarded-For and
	// CertHeader are believed.
	TrustedProxies []netip.Prefix
	// CertHeader names the header carrying the client certificate a
	// trusted proxy verified ("" for none).
	CertHeader string
}

// ParsePrefixes reads CIDRs; a bare address stands for itself alone.
func ParsePrefixes(values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !strings.Contains(v, "/") {
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q is neither an address nor a CIDR", v)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither an address nor a CIDR", v)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Trusted reports whether a request's RemoteAddr ("host:port" or an
// address) is a trusted proxy's.
func (c *Config) Trusted(remote string) bool {
	a, ok := remoteAddr(remote)
	return ok && c.trusts(a)
}

// trusts reports whether a is a trusted proxy.
func (c *Config) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range c.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

type hopKey struct{}

// Middleware applies c to every request. From a trusted proxy, the
// client's address (r.RemoteAddr) becomes the nearest untrusted address
// of X-Forwarded-For, so that the failure limiter, the audit trail and
// the logs see the client rather than the proxy, and Certificate reads
// CertHeader. From anyone else both are left as sent by the connection,
// and CertHeader is removed. With nothing trusted it adds nothing to a
// request.
func (c *Config) Middleware(next http.Handler) http.Handler {
	if len(c.TrustedProxies) == 0 {
		if c.CertHeader == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del(c.CertHeader)
			next.ServeHTTP(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.Trusted(r.RemoteAddr) {
			if c.CertHeader != "" {
				r.Header.Del(c.CertHeader)
			}
			next.ServeHTTP(w, r)
			return
		}
		r2 := r.WithContext(context.WithValue(r.Context(), hopKey{}, c))
		if client, ok := c.forwardedFor(r.Header.Values("X-Forwarded-For")); ok {
			r2.RemoteAddr = net.JoinHostPort(client.String(), "0")
		}
		next.ServeHTTP(w, r2)
	})
}

// remoteAddr reads the address of a RemoteAddr ("host:port" or a bare
// address).
func remoteAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err == nil
}

// forwardedFor returns the client of an X-Forwarded-For chain sent by a
// trusted proxy: walking from the nearest hop outwards, the first address
// that is not itself a trusted proxy. Everything left of it was written by
// the client and proves nothing. A malformed entry ends the walk at the
// last address a trusted hop vouched for; a chain of trusted proxies only
// yields its farthest one.
func (c *Config) forwardedFor(values []string) (netip.Addr, bool) {
	var last netip.Addr
	found := false
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var hop string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				hop, v = v[j+1:], v[:j]
			} else {
				hop, v = v, ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			a, ok := hopAddr(hop)
			if !ok {
				return last, found
			}
			last, found = a, true
			if !c.trusts(a) {
				return a, true
			}
		}
	}
	return last, found
}

// hopAddr reads one X-Forwarded-For entry: an address, with or without a
// port ("[v6]:port" or "v4:port").
func hopAddr(s string) (netip.Addr, bool) {
	if len(s) > 64 {
		return netip.Addr{}, false
	}
	if a, ok := remoteAddr(s); ok {
		return a, true
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return a.Unmap(), err == nil
}

// ErrBadCertificate is a certificate header that does not hold a
// certificate.
var ErrBadCertificate = errors.New("the client certificate header does not hold a certificate")

// Certificate returns the client certificate of a request and the
// intermediates that came with it: from a trusted proxy's CertHeader when
// Middleware saw one, else from the TLS connection. It returns nil and
// no error when there is none.
func Certificate(r *http.Request) (*x509.Certificate, []*x509.Certificate, error) {
	if c, ok := r.Context().Value(hopKey{}).(*Config); ok && c.CertHeader != "" {
		if _, ok := r.Header[http.CanonicalHeaderKey(c.CertHeader)]; ok {
			return HeaderCertificate(r.Header, c.CertHeader)
		}
		// A proxy that terminated TLS and sent no header saw no
		// certificate: the connection's own (the proxy's) is not the
		// client's.
		return nil, nil, nil
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return r.TLS.PeerCertificates[0], r.TLS.PeerCertificates[1:], nil
	}
	return nil, nil, nil
}

// HeaderCertificate reads the client certificate a trusted proxy put in
// header name (nil and no error when there is none). The header must come
// once: a proxy that appends its header to one the client sent would
// otherwise let the client's pass for its own, so the proxy must
// overwrite it, and two are refused.
func HeaderCertificate(h http.Header, name string) (*x509.Certificate, []*x509.Certificate, error) {
	switch vs := h.Values(name); len(vs) {
	case 0:
		return nil, nil, nil
	case 1:
		return ParseCertHeader(vs[0])
	}
	return nil, nil, ErrBadCertificate
}

// Thumbprint is a certificate's x5t#S256 (RFC 8705 §3.1): the base64url
// SHA-256 of its DER encoding.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
