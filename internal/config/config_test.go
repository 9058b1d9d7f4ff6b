package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name       string
		mutate     func(*Config)
		wantErr    string
		wantIssuer string
	}{
		{"defaults", func(*Config) {}, "", "http://127.0.0.1:8080"},
		{"issuer trailing slash trimmed", func(c *Config) { c.Issuer = "https://auth.example.com/" }, "", "https://auth.example.com"},
		{"issuer with path", func(c *Config) { c.Issuer = "https://auth.example.com/t1" }, "", "https://auth.example.com/t1"},
		{"issuer with query", func(c *Config) { c.Issuer = "https://a.example?x=1" }, "issuer", ""},
		{"issuer not http", func(c *Config) { c.Issuer = "ftp://a.example" }, "issuer", ""},
		{"bad addr", func(c *Config) { c.Addr = "8080" }, "addr", ""},
		{"lifetime above max", func(c *Config) { c.DefaultTokenLifetime = 48 * time.Hour }, "token-lifetime", ""},
		{"lifetime too short", func(c *Config) { c.DefaultTokenLifetime = time.Second }, "token-lifetime", ""},
		{"unknown algorithm", func(c *Config) { c.SigningAlg = "HS256" }, "signing-alg", ""},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log-level", ""},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, "log-format", ""},
		{"access log all", func(c *Config) { c.AccessLog = AccessLogAll }, "", "http://127.0.0.1:8080"},
		{"access log off", func(c *Config) { c.AccessLog, c.AccessLogSlow = AccessLogOff, 0 }, "", "http://127.0.0.1:8080"},
		{"access log unknown", func(c *Config) { c.AccessLog = "success" }, "access-log", ""},
		{"access log slow negative", func(c *Config) { c.AccessLogSlow = -time.Second }, "access-log-slow", ""},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data-dir", ""},
		{"identity scopes: OpenID ones", func(c *Config) { c.IdentityScopes = []string{"openid", "offline_access"} }, "", "http://127.0.0.1:8080"},
		{"identity scopes: none", func(c *Config) { c.IdentityScopes = nil }, "", "http://127.0.0.1:8080"},
		{"identity scopes: an API scope", func(c *Config) { c.IdentityScopes = []string{"openid", "orders:read"} }, "identity-scopes", ""},
		{"metrics on their own port", func(c *Config) { c.MetricsAddr = "127.0.0.1:9090" }, "", "http://127.0.0.1:8080"},
		{"metrics on the public port", func(c *Config) { c.MetricsAddr = c.Addr }, "metrics-addr", ""},
		{"metrics address without port", func(c *Config) { c.MetricsAddr = "9090" }, "metrics-addr", ""},
		{"metrics top clients negative", func(c *Config) { c.MetricsTopClients = -1 }, "metrics-top-clients", ""},
		{"metrics top clients unbounded", func(c *Config) { c.MetricsTopClients = MaxMetricsClients + 1 }, "metrics-top-clients", ""},
		{"metrics clients unbounded", func(c *Config) { c.MetricsClients = make([]string, MaxMetricsClients+1) }, "metrics-clients", ""},
		{"dpop max age default", func(c *Config) { c.DPoPNonces, c.CertBoundTokens = true, true }, "", "http://127.0.0.1:8080"},
		{"dpop max age too short", func(c *Config) { c.DPoPMaxAge = time.Second }, "dpop-max-age", ""},
		{"dpop max age too long", func(c *Config) { c.DPoPMaxAge = time.Hour }, "dpop-max-age", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil || c.Issuer != tc.wantIssuer {
					t.Fatalf("err %v, issuer %q; want nil, %q", err, c.Issuer, tc.wantIssuer)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}

func TestDatabaseSelection(t *testing.T) {
	c := Default()
	if c.IsPostgres() || !strings.HasSuffix(c.SQLitePath(), "m2mauth-data/m2mauth.db") {
		t.Errorf("default: postgres=%v path=%s", c.IsPostgres(), c.SQLitePath())
	}
	c.Database = "postgres://u@h/db"
	if !c.IsPostgres() {
		t.Error("postgres:// not recognised")
	}
	c.Database = "/var/lib/m2mauth.db"
	if c.IsPostgres() || c.SQLitePath() != "/var/lib/m2mauth.db" {
		t.Error("a file path must select SQLite at that path")
	}
}

func TestValidateTLS(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key, ca := file("cert.pem", "cert"), file("key.pem", "key"), file("ca.pem", "ca")
	empty, missing := file("empty.pem", ""), filepath.Join(dir, "missing.pem")
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
		check   func(t *testing.T, c *Config)
	}{
		{"no TLS", func(*Config) {}, "", func(t *testing.T, c *Config) {
			if c.TLS() || c.MTLS() || c.MTLSEndpointBase != "" || c.Issuer != "http://127.0.0.1:8080" {
				t.Errorf("tls %v mtls %v base %q issuer %q", c.TLS(), c.MTLS(), c.MTLSEndpointBase, c.Issuer)
			}
		}},
		{"TLS: the default issuer is https", func(c *Config) { c.TLSCert, c.TLSKey = cert, key }, "", func(t *testing.T, c *Config) {
			if !c.TLS() || c.MTLS() || c.Issuer != "https://127.0.0.1:8080" || c.MTLSEndpointBase != "" {
				t.Errorf("tls %v mtls %v issuer %q base %q", c.TLS(), c.MTLS(), c.Issuer, c.MTLSEndpointBase)
			}
		}},
		{"cert without key", func(c *Config) { c.TLSCert = cert }, "tls-cert and tls-key", nil},
		{"key without cert", func(c *Config) { c.TLSKey = key }, "tls-cert and tls-key", nil},
		{"missing cert file", func(c *Config) { c.TLSCert, c.TLSKey = missing, key }, "tls-cert: open", nil},
		{"empty key file", func(c *Config) { c.TLSCert, c.TLSKey = cert, empty }, "tls-key: read", nil},
		{"unreadable client CA", func(c *Config) { c.TLSCert, c.TLSKey, c.TLSClientCA = cert, key, missing }, "tls-client-ca: open", nil},
		{"client CA without TLS or proxy", func(c *Config) { c.TLSClientCA = ca }, "tls-client-ca: needs", nil},
		{"client CA: mTLS on, aliases at the issuer", func(c *Config) {
			c.TLSCert, c.TLSKey, c.TLSClientCA, c.Issuer = cert, key, ca, "https://auth.example.com/"
		}, "", func(t *testing.T, c *Config) {
			if !c.MTLS() || c.MTLSEndpointBase != "https://auth.example.com" {
				t.Errorf("mtls %v base %q", c.MTLS(), c.MTLSEndpointBase)
			}
		}},
		{"explicit mTLS endpoint base", func(c *Config) {
			c.TLSCert, c.TLSKey, c.TLSClientCA, c.MTLSEndpointBase = cert, key, ca, "https://mtls.example.com/"
		}, "", func(t *testing.T, c *Config) {
			if c.MTLSEndpointBase != "https://mtls.example.com" || c.EnvMTLSEndpointBase("dev") != "https://mtls.example.com/e/dev" {
				t.Errorf("base %q, dev %q", c.MTLSEndpointBase, c.EnvMTLSEndpointBase("dev"))
			}
		}},
		{"mTLS endpoint base by host", func(c *Config) {
			c.TrustedProxies, c.ClientCertHeader, c.MTLSEndpointBase, c.EnvAddressing = []string{"10.0.0.1"}, "X-SSL-Client-Cert", "https://mtls.example.com", EnvByHost
		}, "", func(t *testing.T, c *Config) {
			if got := c.EnvMTLSEndpointBase("dev"); got != "https://dev.mtls.example.com" {
				t.Errorf("dev %q", got)
			}
		}},
		{"mTLS endpoint base without mTLS", func(c *Config) { c.MTLSEndpointBase = "https://mtls.example.com" }, "mtls-endpoint-base: client certificates are off", nil},
		{"mTLS endpoint base not a URL", func(c *Config) {
			c.TLSCert, c.TLSKey, c.TLSClientCA, c.MTLSEndpointBase = cert, key, ca, "mtls.example.com"
		}, "mtls-endpoint-base", nil},
		{"trusted proxies", func(c *Config) {
			c.TrustedProxies = []string{"10.1.2.3/8", "192.0.2.7", "2001:db8::1", "::ffff:198.51.100.1"}
		}, "", func(t *testing.T, c *Config) {
			want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
				netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("198.51.100.1/32")}
			if !slices.Equal(c.TrustedProxyPrefixes, want) || c.MTLS() {
				t.Errorf("prefixes %v (want %v), mtls %v", c.TrustedProxyPrefixes, want, c.MTLS())
			}
		}},
		{"bad CIDR", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33"} }, "trusted-proxies", nil},
		{"not an address", func(c *Config) { c.TrustedProxies = []string{"proxy.internal"} }, "trusted-proxies", nil},
		{"cert header behind a proxy: mTLS on", func(c *Config) {
			c.TrustedProxies, c.ClientCertHeader = []string{"10.0.0.0/8"}, "X-Forwarded-Client-Cert"
		}, "", func(t *testing.T, c *Config) {
			if !c.MTLS() || c.MTLSEndpointBase != c.Issuer {
				t.Errorf("mtls %v base %q", c.MTLS(), c.MTLSEndpointBase)
			}
		}},
		{"cert header without proxies", func(c *Config) { c.ClientCertHeader = "X-SSL-Client-Cert" }, "client-cert-header: needs --trusted-proxies", nil},
		{"cert header not a header name", func(c *Config) {
			c.TrustedProxies, c.ClientCertHeader = []string{"10.0.0.0/8"}, "X Client: Cert"
		}, "client-cert-header", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, &c)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}
