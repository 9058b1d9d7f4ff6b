package config

import (
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
