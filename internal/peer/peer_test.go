package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func mustPrefixes(t *testing.T, v ...string) *Config {
	t.Helper()
	p, err := ParsePrefixes(v)
	if err != nil {
		t.Fatal(err)
	}
	return &Config{TrustedProxies: p, CertHeader: "X-Client-Cert"}
}

func TestParsePrefixes(t *testing.T) {
	p, err := ParsePrefixes([]string{"10.0.0.0/8", " 192.168.1.7 ", "::1", "fd00::/8", ""})
	if err != nil || len(p) != 4 || p[1].Bits() != 32 || p[2].Bits() != 128 {
		t.Fatalf("%v %v", p, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.local", "1.2.3.4/x"} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMiddlewareClientAddress(t *testing.T) {
	c := mustPrefixes(t, "10.0.0.0/8")
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"untrusted peer keeps its address", "203.0.113.9:4000", []string{"1.1.1.1"}, "203.0.113.9:4000"},
		{"trusted proxy names the client", "10.0.0.2:4000", []string{"198.51.100.7"}, "198.51.100.7:0"},
		{"client-written entries left of the client are ignored", "10.0.0.2:4000", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7:0"},
		{"a chain of proxies is walked", "10.0.0.2:4000", []string{"198.51.100.7, 10.1.1.1", "10.2.2.2"}, "198.51.100.7:0"},
		{"a forged entry right of a trusted hop ends the walk", "10.0.0.2:4000", []string{"198.51.100.7, junk"}, "10.0.0.2:4000"},
		{"only proxies: the farthest", "10.0.0.2:4000", []string{"10.9.9.9, 10.1.1.1"}, "10.9.9.9:0"},
		{"ports and IPv6", "10.0.0.2:4000", []string{"[2001:db8::1]:443"}, "[2001:db8::1]:0"},
		{"no header", "10.0.0.2:4000", nil, "10.0.0.2:4000"},
		{"IPv4-mapped proxy", "[::ffff:10.0.0.2]:4000", []string{"198.51.100.7"}, "198.51.100.7:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			h := c.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.RemoteAddr }))
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got != tc.want {
				t.Fatalf("RemoteAddr %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCertificateOnlyFromTrustedProxies(t *testing.T) {
	leaf, _ := testCert(t, "client")
	header := url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})))
	c := mustPrefixes(t, "10.0.0.0/8")
	for _, tc := range []struct {
		name, remote string
		want         bool
	}{
		{"trusted proxy", "10.0.0.2:1", true},
		{"anyone else", "203.0.113.9:1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got *x509.Certificate
			var gotErr error
			h := c.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				got, _, gotErr = Certificate(r)
			}))
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			r.Header.Set("X-Client-Cert", header)
			h.ServeHTTP(httptest.NewRecorder(), r)
			if gotErr != nil || (got != nil) != tc.want || (got != nil && !got.Equal(leaf)) {
				t.Fatalf("certificate %v (%v), want present=%v", got != nil, gotErr, tc.want)
			}
		})
	}
	// The header twice (a proxy appending to the client's): refused, not
	// the first or the last taken.
	h2 := c.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if got, _, err := Certificate(r); got != nil || !errors.Is(err, ErrBadCertificate) {
			t.Errorf("two headers: %v %v", got != nil, err)
		}
	}))
	r2 := httptest.NewRequest("GET", "/", nil)
	r2.RemoteAddr = "10.0.0.2:1"
	r2.Header.Add("X-Client-Cert", header)
	r2.Header.Add("X-Client-Cert", header)
	h2.ServeHTTP(httptest.NewRecorder(), r2)
	// With nothing trusted, the header is removed too.
	none := &Config{CertHeader: "X-Client-Cert"}
	h := none.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Client-Cert") != "" {
			t.Error("header kept from an untrusted peer")
		}
		if c, _, _ := Certificate(r); c != nil {
			t.Error("certificate read from an untrusted peer")
		}
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Client-Cert", header)
	h.ServeHTTP(httptest.NewRecorder(), r)
}

func TestCertificateFromTLS(t *testing.T) {
	leaf, _ := testCert(t, "client")
	r := httptest.NewRequest("GET", "/", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	got, _, err := Certificate(r)
	if err != nil || !got.Equal(leaf) {
		t.Fatalf("%v %v", got, err)
	}
	// Through a trusted proxy with a header configured, the connection's
	// certificate is the proxy's, never the client's.
	c := mustPrefixes(t, "192.0.2.0/24")
	r.RemoteAddr = "192.0.2.1:5"
	c.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if got, _, _ := Certificate(r); got != nil {
			t.Error("the proxy's own certificate taken for the client's")
		}
	})).ServeHTTP(httptest.NewRecorder(), r)
	if Thumbprint(leaf) == "" || len(Thumbprint(leaf)) != 43 {
		t.Fatalf("thumbprint %q", Thumbprint(leaf))
	}
}

func TestParseCertHeader(t *testing.T) {
	leaf, _ := testCert(t, "client")
	inter, _ := testCert(t, "intermediate")
	pemOf := func(cs ...*x509.Certificate) string {
		var b strings.Builder
		for _, c := range cs {
			b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, value string
		chain       int
	}{
		{"PEM", pemOf(leaf), 0},
		{"URL-encoded PEM (nginx)", url.PathEscape(pemOf(leaf)), 0},
		{"URL-encoded PEM, query style", url.QueryEscape(pemOf(leaf)), 0},
		{"PEM with spaces for line breaks", strings.ReplaceAll(pemOf(leaf), "\n", " "), 0},
		{"PEM with tabs (nginx $ssl_client_cert)", strings.ReplaceAll(pemOf(leaf), "\n", "\n\t"), 0},
		{"RFC 9440", ":" + base64.StdEncoding.EncodeToString(leaf.Raw) + ":", 0},
		{"base64 DER", base64.StdEncoding.EncodeToString(leaf.Raw), 0},
		{"Envoy XFCC", `By=spiffe://example.org/proxy;Hash=abc;Cert="` + url.QueryEscape(pemOf(leaf)) + `";Subject="CN=client,O=Ex, Inc";URI=spiffe://example.org/ns/a`, 0},
		{"Envoy XFCC, last element wins", `Hash=x;Cert="` + url.QueryEscape(pemOf(inter)) + `",By=y;Cert="` + url.QueryEscape(pemOf(leaf)) + `";Chain="` + url.QueryEscape(pemOf(leaf, inter)) + `"`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, chain, err := ParseCertHeader(tc.value)
			if err != nil || got == nil || !got.Equal(leaf) || len(chain) != tc.chain {
				t.Fatalf("got %v chain %d err %v", got != nil, len(chain), err)
			}
		})
	}
	// Two certificates outside XFCC, two values joined, or an XFCC value
	// whose quoting would let a client-written element swallow the
	// proxy's (found by the attack): refused.
	proxyElem := `By=spiffe://proxy;Hash=abc;Cert="` + url.QueryEscape(pemOf(inter)) + `";Subject="CN=x";URI=`
	for name, bad := range map[string]string{
		"PEM with a chain":                  pemOf(leaf, inter),
		"URL-encoded PEMs joined":           url.PathEscape(pemOf(leaf)) + "," + url.PathEscape(pemOf(inter)),
		"XFCC quote swallowing the proxy's": `Cert="` + url.QueryEscape(pemOf(leaf)) + `";Subject="` + "," + proxyElem,
		"XFCC unbalanced quote":             `Cert="` + url.QueryEscape(pemOf(leaf)),
		"XFCC quote inside a value":         `Cert=a"b";By=x`,
	} {
		if c, _, err := ParseCertHeader(bad); !errors.Is(err, ErrBadCertificate) || c != nil {
			t.Errorf("%s: %v %v", name, c != nil, err)
		}
	}
	for _, bad := range []string{"garbage", "-----BEGIN CERTIFICATE----- AAAA -----END CERTIFICATE-----", "%zz", ":AAAA:",
		"Hash=abc;By=x", `Cert="%2D%2D%2D"`, strings.Repeat("A", maxCertHeader+1)} {
		if c, _, err := ParseCertHeader(bad); !errors.Is(err, ErrBadCertificate) || c != nil {
			t.Errorf("%.30q: %v %v", bad, c != nil, err)
		}
	}
	if c, _, err := ParseCertHeader("  "); c != nil || err != nil {
		t.Errorf("empty header: %v %v", c, err)
	}
}

// FuzzParseCertHeader: no input panics, and every input under the cap is
// cheap (the parse is linear).
func FuzzParseCertHeader(f *testing.F) {
	leaf, _ := testCert(f, "client")
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}))
	for _, s := range []string{p, url.QueryEscape(p), `By=a;Cert="` + url.QueryEscape(p) + `"`, `"\"`, `a="b\",c;d"`, ":" + base64.StdEncoding.EncodeToString(leaf.Raw) + ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, _, err := ParseCertHeader(v)
		if err == nil && c == nil && strings.TrimSpace(v) != "" {
			t.Fatal("no certificate and no error")
		}
	})
}

func testCert(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Unix(1_700_000_000, 0), NotAfter: time.Unix(1_900_000_000, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}
