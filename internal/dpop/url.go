package dpop

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

var errURL = errors.New("dpop: not an absolute http or https URL")

// NormalizeURL returns the form of an http or https URL that htu is
// compared in (RFC 9449 §4.3 step 9: the request URI without query and
// fragment, after RFC 3986 §6.2.2 syntax-based and §6.2.3 scheme-based
// normalisation): scheme and host in lower case, the scheme's default port
// dropped, percent-encodings of unreserved characters decoded and the
// others in upper case, dot segments removed, an empty path as "/". Query
// and fragment are dropped. A URL that is not absolute http(s) with a
// host, or that carries user information, is an error.
func NormalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", errURL
	}
	scheme := strings.ToLower(u.Scheme)
	var defaultPort string
	switch scheme {
	case "https":
		defaultPort = "443"
	case "http":
		defaultPort = "80"
	default:
		return "", errURL
	}
	host, port := strings.ToLower(u.Hostname()), strings.TrimLeft(u.Port(), "0")
	if host == "" {
		return "", errURL
	}
	if u.Port() != "" && port == "" {
		port = "0"
	}
	switch {
	case port != "" && port != defaultPort:
		host = net.JoinHostPort(host, port)
	case strings.IndexByte(host, ':') >= 0:
		host = "[" + host + "]" // IPv6 literal
	}
	path, ok := normalizePath(u.EscapedPath())
	if !ok {
		return "", errURL
	}
	return scheme + "://" + host + path, nil
}

// normalizePath applies RFC 3986 §6.2.2.1 and §6.2.2.2 to an escaped path
// (percent-encodings in upper case, unreserved characters decoded), then
// §5.2.4 (dot segments removed); empty becomes "/" (§6.2.3).
func normalizePath(p string) (string, bool) {
	var b strings.Builder
	b.Grow(len(p) + 1)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", false
		}
		d := unhex(p[i+1])<<4 | unhex(p[i+2])
		if unreserved(d) {
			b.WriteByte(d)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex(p[i+1]))
			b.WriteByte(upperHex(p[i+2]))
		}
		i += 2
	}
	out := removeDotSegments(b.String())
	if out == "" {
		out = "/"
	}
	return out, true
}

// removeDotSegments is RFC 3986 §5.2.4 for an absolute (or empty) path.
func removeDotSegments(in string) string {
	if !strings.Contains(in, ".") {
		return in
	}
	var out []string // output segments, each with its leading "/"
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			// Move the first segment (with its leading "/", if any) to
			// the output.
			end := strings.IndexByte(in[1:], '/')
			if end < 0 {
				end = len(in)
			} else {
				end++
			}
			out = append(out, in[:end])
			in = in[end:]
		}
	}
	return strings.Join(out, "")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// unreserved is RFC 3986 §2.3.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
