// Package config holds the server's configuration: the Config struct, its
// defaults and its validation. Flag and environment parsing live in the
// command, not here.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/peer"
	"github.com/m2mauth/m2mauth/internal/surface"
)

// Config is everything `m2mauth serve` needs.
type Config struct {
	Addr   string // listen address
	Issuer string // public base URL: iss and every advertised URL
	// ChangeIssuer lets the server move a database recorded for another
	// issuer to Issuer (otherwise it refuses to start).
	ChangeIssuer bool
	DataDir      string
	Database     string // "" (SQLite in DataDir), a file path, or postgres://…
	MasterKey    string // base64 or hex; "" to use <DataDir>/master.key

	SigningAlg           string
	DefaultTokenLifetime time.Duration
	MaxTokenLifetime     time.Duration
	JWKSMaxAge           time.Duration
	// KeyRotationPeriod is how long a signing key signs before the next
	// takes over (0: no automatic rotation). KeyPrepublish is how long a new
	// key is published before it signs; it must be at least twice the JWKS
	// max-age, so that every verifier caching the JWKS has it in time.
	KeyRotationPeriod time.Duration
	KeyPrepublish     time.Duration

	// Surfaces are the token endpoints served: standard, machine, atm.
	Surfaces []string
	// RefreshTokenLifetime is the absolute lifetime of a refresh token
	// family (for clients with refresh tokens enabled).
	RefreshTokenLifetime time.Duration
	// MaxAssertionLifetime bounds a private_key_jwt client assertion's
	// exp - iat.
	MaxAssertionLifetime time.Duration
	// IdentityScopes are OpenID Connect scopes (of OpenIDScopes) accepted in a
	// client-credentials request without granting anything.
	IdentityScopes []string
	// IntrospectionCache is how many verified access tokens each
	// environment keeps so that introspecting one again skips its
	// signature check (every other check still runs); 0: off.
	IntrospectionCache int
	// AuthFailureRate and AuthFailureBurst limit failed client
	// authentications per client address (0 rate: no limit).
	AuthFailureRate  float64
	AuthFailureBurst int
	// CertBoundTokens binds the access token of every request whose client
	// authenticated with a TLS certificate to that certificate (RFC 8705
	// §3), not only those of clients that ask for it.
	CertBoundTokens bool
	// DPoPNonces makes the token endpoint require a server nonce in DPoP
	// proofs (RFC 9449 §8); DPoPMaxAge is how old a proof's iat may be.
	DPoPNonces bool
	DPoPMaxAge time.Duration
	// QuotaPerMinute, QuotaPerHour and QuotaPerDay are the token quota of
	// every client that sets none of its own for the window (0: unlimited).
	QuotaPerMinute, QuotaPerHour, QuotaPerDay int64
	// ReportTokensPerLifetime and ReportMinTokens flag a client in the
	// report of clients that never cache tokens (package report).
	ReportTokensPerLifetime float64
	ReportMinTokens         int64

	// Console serves the admin console under /console/. Its sessions end
	// after ConsoleIdle without a request, and ConsoleMaxAge after sign-in
	// whatever happens.
	Console       bool
	ConsoleIdle   time.Duration
	ConsoleMaxAge time.Duration

	// AuditRetention is how long audit events are kept (0: forever).
	// AuditSinks stream them as JSON lines: "stdout", "file:<path>", or
	// an https:// webhook URL. AuditIssuanceSample is the fraction (0 to
	// 1) of successful token issuances recorded; failed authentications
	// are always recorded.
	AuditRetention      time.Duration
	AuditSinks          []string
	AuditIssuanceSample float64

	// EnvAddressing is how a request names its environment: "path"
	// (<issuer>/e/{name}/…) or "host" ({name}.<issuer host>, and
	// {name}.<host of MTLSEndpointBase> when that is another host). The
	// default environment is served at the issuer itself either way.
	EnvAddressing string
	// An environment's keys and caches are held in memory while it serves
	// requests: at most EnvMaxLoaded environments, each unloaded after
	// EnvIdle without a request.
	EnvIdle      time.Duration
	EnvMaxLoaded int
	// Each loaded environment caches up to ClientCacheMB MiB of clients
	// (the least recently used leave first), each for at most
	// ClientCacheTTL: changes invalidate entries at once (the change
	// feed), so the TTL only bounds staleness if a notification were lost.
	ClientCacheMB  int
	ClientCacheTTL time.Duration

	LogLevel  string // debug, info, warn, error
	LogFormat string // json, text
	// AccessLog decides which requests get an access log record (the
	// "request" record at info): AccessLogErrors (the default) those
	// answered with a 4xx or 5xx status and those that took
	// AccessLogSlow or longer, AccessLogAll every request, AccessLogOff
	// none. The audit trail, the metrics and the token endpoint's own
	// refusal records are the same whatever it says.
	AccessLog string
	// AccessLogSlow is how long a request takes before AccessLogErrors
	// logs it though it succeeded (0: never for its duration).
	AccessLogSlow time.Duration

	// MetricsAddr is where /metrics is served, on a listener of its own
	// ("": no metrics). MetricsClients are client ids of the default
	// environment counted one by one (an explicit opt-in); MetricsTopClients
	// is how many clients the per-client gauges report besides them (the
	// oldest secrets, the most tokens).
	MetricsAddr       string
	MetricsClients    []string
	MetricsTopClients int

	ShutdownTimeout time.Duration

	// TLSCert and TLSKey are PEM files: with both the listener serves
	// HTTPS (TLS 1.2 or later, HTTP/2), re-reading them when they change.
	// TLSClientCA is a PEM bundle of the CAs tls_client_auth certificates
	// must chain to (RFC 8705 §2.1); with TLS on, the listener then asks
	// every client for a certificate (optional, unverified by the
	// handshake: each client's method checks it).
	TLSCert, TLSKey string
	TLSClientCA     string
	// TrustedProxies are the addresses (CIDRs or single IPs) whose
	// X-Forwarded-For, and ClientCertHeader when set, are believed: a
	// TLS-terminating proxy in front of the server (package peer). Validate
	// parses them into TrustedProxyPrefixes.
	TrustedProxies       []string
	TrustedProxyPrefixes []netip.Prefix
	ClientCertHeader     string
	// MTLSEndpointBase is the base URL of the endpoints that accept client
	// certificates, advertised as mtls_endpoint_aliases (RFC 8705 §5);
	// Validate sets it to the issuer when mTLS is on and it is empty.
	MTLSEndpointBase string
}

// How requests name their environment (Config.EnvAddressing).
const (
	EnvByPath = "path"
	EnvByHost = "host"
)

// EnvIssuer returns the issuer identifier of the environment named: the
// issuer itself for the default one, <issuer>/e/{name} by path, and the
// issuer with {name}. before its host by host.
func (c *Config) EnvIssuer(name string) string { return c.envURL(c.Issuer, name) }

// EnvMTLSEndpointBase is MTLSEndpointBase for the environment named,
// addressed the way EnvIssuer addresses its issuer ("" when mTLS is off).
func (c *Config) EnvMTLSEndpointBase(name string) string {
	if c.MTLSEndpointBase == "" {
		return ""
	}
	return c.envURL(c.MTLSEndpointBase, name)
}

func (c *Config) envURL(base, name string) string {
	if name == "" || name == "default" {
		return base
	}
	if c.EnvAddressing == EnvByHost {
		if u, err := url.Parse(base); err == nil {
			u.Host = name + "." + u.Host
			return u.String()
		}
	}
	return base + EnvPathPrefix + name
}

// TLS reports whether the listener serves HTTPS.
func (c *Config) TLS() bool { return c.TLSCert != "" }

// MTLS reports whether client certificates can reach the server: asked for
// by its own TLS listener, or passed on by a trusted proxy in
// ClientCertHeader.
func (c *Config) MTLS() bool {
	return (c.TLS() && c.TLSClientCA != "") || (c.ClientCertHeader != "" && len(c.TrustedProxies) > 0)
}

// EnvPathPrefix starts the path of an environment addressed by path.
const EnvPathPrefix = "/e/"

// Access log modes (Config.AccessLog).
const (
	AccessLogErrors = "errors"
	AccessLogAll    = "all"
	AccessLogOff    = "off"
)

// OpenIDScopes are the scopes OpenID Connect Core 1.0 §5.4 and §11 define:
// the only ones IdentityScopes may name.
var OpenIDScopes = []string{"openid", "profile", "email", "address", "phone", "offline_access"}

// Default returns the defaults (the issuer is derived from Addr by Validate).
func Default() Config {
	return Config{
		Addr:                    "127.0.0.1:8080",
		DataDir:                 "./m2mauth-data",
		SigningAlg:              "RS256",
		DefaultTokenLifetime:    15 * time.Minute,
		MaxTokenLifetime:        24 * time.Hour,
		JWKSMaxAge:              5 * time.Minute,
		KeyRotationPeriod:       30 * 24 * time.Hour,
		KeyPrepublish:           time.Hour,
		Surfaces:                slices.Clone(AllSurfaces),
		RefreshTokenLifetime:    24 * time.Hour,
		IdentityScopes:          []string{"openid", "profile", "email"},
		MaxAssertionLifetime:    5 * time.Minute,
		AuthFailureRate:         5,
		IntrospectionCache:      10_000,
		AuthFailureBurst:        20,
		DPoPMaxAge:              60 * time.Second,
		Console:                 true,
		ConsoleIdle:             30 * time.Minute,
		ConsoleMaxAge:           12 * time.Hour,
		AuditRetention:          90 * 24 * time.Hour,
		AuditIssuanceSample:     1,
		EnvAddressing:           EnvByPath,
		EnvIdle:                 10 * time.Minute,
		EnvMaxLoaded:            1000,
		ClientCacheMB:           8,
		ClientCacheTTL:          5 * time.Minute,
		LogLevel:                "info",
		LogFormat:               "json",
		AccessLog:               AccessLogErrors,
		AccessLogSlow:           time.Second,
		MetricsTopClients:       10,
		ReportTokensPerLifetime: 10,
		ReportMinTokens:         30,
		ShutdownTimeout:         15 * time.Second,
	}
}

// Validate checks c and fills in derived values.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: want host:port", c.Addr))
	}
	errs = append(errs, c.validateTLS()...)
	if c.Issuer == "" {
		c.Issuer = "http://" + c.Addr
		if c.TLS() {
			c.Issuer = "https://" + c.Addr
		}
	}
	c.Issuer = strings.TrimRight(c.Issuer, "/")
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("issuer %q: want an absolute http(s) URL without query or fragment", c.Issuer))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir: required"))
	}
	if !keys.ValidAlg(c.SigningAlg) {
		errs = append(errs, fmt.Errorf("signing-alg %q: supported: %s", c.SigningAlg, strings.Join(keys.Algorithms, ", ")))
	}
	if c.KeyPrepublish < 2*c.JWKSMaxAge {
		errs = append(errs, fmt.Errorf("key-prepublish %s: must be at least twice jwks-max-age (%s), so verifiers see a key before it signs", c.KeyPrepublish, c.JWKSMaxAge))
	}
	if c.KeyRotationPeriod != 0 && c.KeyRotationPeriod <= c.KeyPrepublish {
		errs = append(errs, fmt.Errorf("key-rotation-period %s: must be 0 (off) or longer than key-prepublish (%s)", c.KeyRotationPeriod, c.KeyPrepublish))
	}
	if c.DefaultTokenLifetime < time.Minute || c.DefaultTokenLifetime > c.MaxTokenLifetime {
		errs = append(errs, fmt.Errorf("token-lifetime %s: want at least 1m and at most max-token-lifetime (%s)", c.DefaultTokenLifetime, c.MaxTokenLifetime))
	}
	if c.JWKSMaxAge < 0 || c.JWKSMaxAge > 24*time.Hour {
		errs = append(errs, fmt.Errorf("jwks-max-age %s: want 0 to 24h", c.JWKSMaxAge))
	}
	for _, sf := range c.Surfaces {
		if !slices.Contains(AllSurfaces, sf) {
			errs = append(errs, fmt.Errorf("surfaces: %q is not one of %s", sf, strings.Join(AllSurfaces, ", ")))
		}
	}
	if c.RefreshTokenLifetime < time.Minute || c.RefreshTokenLifetime > 365*24*time.Hour {
		errs = append(errs, fmt.Errorf("refresh-token-lifetime %s: want 1m to 8760h", c.RefreshTokenLifetime))
	}
	if c.DPoPMaxAge < 5*time.Second || c.DPoPMaxAge > 10*time.Minute {
		// Under a few seconds, clock skew and latency refuse honest
		// proofs; past minutes, the replay cache must remember jtis long.
		errs = append(errs, fmt.Errorf("dpop-max-age %s: want 5s to 10m", c.DPoPMaxAge))
	}
	if c.MaxAssertionLifetime < 10*time.Second || c.MaxAssertionLifetime > time.Hour {
		errs = append(errs, fmt.Errorf("max-assertion-lifetime %s: want 10s to 1h", c.MaxAssertionLifetime))
	}
	for _, sc := range c.IdentityScopes {
		if !slices.Contains(OpenIDScopes, sc) {
			// An API's scope here would be accepted without a grant and
			// then silently left out of the token.
			errs = append(errs, fmt.Errorf("identity-scopes: %q is not an OpenID Connect scope (%s)", sc, strings.Join(OpenIDScopes, ", ")))
		}
	}
	if c.ConsoleIdle < time.Minute || c.ConsoleMaxAge < c.ConsoleIdle || c.ConsoleMaxAge > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("console-idle must be at least 1m, and console-max-age between it and 168h (got %s and %s)", c.ConsoleIdle, c.ConsoleMaxAge))
	}
	switch c.EnvAddressing {
	case EnvByPath, EnvByHost:
	default:
		errs = append(errs, fmt.Errorf("env-addressing %q: want path or host", c.EnvAddressing))
	}
	if c.EnvIdle < time.Minute || c.EnvMaxLoaded < 1 {
		errs = append(errs, fmt.Errorf("env-idle must be at least 1m and env-max-loaded at least 1 (got %s and %d)", c.EnvIdle, c.EnvMaxLoaded))
	}
	if c.ClientCacheMB < 1 || c.ClientCacheTTL < time.Second || c.ClientCacheTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("client-cache-mb must be at least 1 and client-cache-ttl from 1s to 24h (got %d and %s)", c.ClientCacheMB, c.ClientCacheTTL))
	}
	if c.QuotaPerMinute < 0 || c.QuotaPerHour < 0 || c.QuotaPerDay < 0 {
		return errors.New("quota-per-minute, quota-per-hour and quota-per-day must be 0 (unlimited) or positive")
	}
	if c.IntrospectionCache < 0 {
		errs = append(errs, fmt.Errorf("introspection-cache must be 0 (off) or positive (got %d)", c.IntrospectionCache))
	}
	if c.AuthFailureRate < 0 || (c.AuthFailureRate > 0 && c.AuthFailureBurst < 1) {
		errs = append(errs, errors.New("auth-failure-rate must be 0 (off) or positive, with auth-failure-burst at least 1"))
	}
	if c.ReportTokensPerLifetime < 1 || c.ReportMinTokens < 1 {
		errs = append(errs, errors.New("report-tokens-per-lifetime and report-min-tokens must be at least 1"))
	}
	if c.AuditRetention < 0 || (c.AuditRetention > 0 && c.AuditRetention < time.Hour) {
		errs = append(errs, fmt.Errorf("audit-retention must be 0 (keep forever) or at least 1h (got %s)", c.AuditRetention))
	}
	if !(c.AuditIssuanceSample >= 0 && c.AuditIssuanceSample <= 1) {
		errs = append(errs, fmt.Errorf("audit-issuance-sample must be between 0 and 1 (got %v)", c.AuditIssuanceSample))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.AccessLog {
	case "":
		c.AccessLog = AccessLogErrors
	case AccessLogErrors, AccessLogAll, AccessLogOff:
	default:
		errs = append(errs, fmt.Errorf("access-log %q: want errors, all or off", c.AccessLog))
	}
	if c.AccessLogSlow < 0 {
		errs = append(errs, fmt.Errorf("access-log-slow %s: want 0 (off) or a positive duration", c.AccessLogSlow))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("metrics-addr %q: want host:port", c.MetricsAddr))
		} else if c.MetricsAddr == c.Addr {
			errs = append(errs, fmt.Errorf("metrics-addr %q: must differ from addr (metrics are never served on the public port)", c.MetricsAddr))
		}
	}
	if c.MetricsTopClients < 0 || c.MetricsTopClients > MaxMetricsClients {
		errs = append(errs, fmt.Errorf("metrics-top-clients %d: want 0 to %d", c.MetricsTopClients, MaxMetricsClients))
	}
	if len(c.MetricsClients) > MaxMetricsClients {
		errs = append(errs, fmt.Errorf("metrics-clients: %d ids, at most %d", len(c.MetricsClients), MaxMetricsClients))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("log-format %q: want json or text", c.LogFormat))
	}
	if c.MTLSEndpointBase != "" {
		c.MTLSEndpointBase = strings.TrimRight(c.MTLSEndpointBase, "/")
		if u, err := url.Parse(c.MTLSEndpointBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("mtls-endpoint-base %q: want an absolute http(s) URL without query or fragment", c.MTLSEndpointBase))
		}
		if !c.MTLS() {
			errs = append(errs, errors.New("mtls-endpoint-base: client certificates are off (set --tls-client-ca with TLS, or --trusted-proxies with --client-cert-header)"))
		}
	} else if c.MTLS() {
		c.MTLSEndpointBase = c.Issuer
	}
	return errors.Join(errs...)
}

// validateTLS checks the TLS files (present in pairs, readable) and the
// trusted proxies, which it parses into TrustedProxyPrefixes. Whether the
// certificate and key form a pair is checked when the server loads them.
func (c *Config) validateTLS() []error {
	var errs []error
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key: give both or neither"))
	}
	for _, f := range []struct{ flag, path string }{{"tls-cert", c.TLSCert}, {"tls-key", c.TLSKey}, {"tls-client-ca", c.TLSClientCA}} {
		if f.path == "" {
			continue
		}
		if err := readable(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
		}
	}
	if c.TLSClientCA != "" && !c.TLS() && c.ClientCertHeader == "" {
		// Without TLS the CAs can only serve certificates a proxy passes
		// on: with neither, no certificate could ever arrive.
		errs = append(errs, errors.New("tls-client-ca: needs --tls-cert and --tls-key, or --client-cert-header behind --trusted-proxies"))
	}
	prefixes, err := peer.ParsePrefixes(c.TrustedProxies)
	if err != nil {
		errs = append(errs, fmt.Errorf("trusted-proxies: %w", err))
	}
	c.TrustedProxyPrefixes = prefixes
	if c.ClientCertHeader != "" {
		if !validHeaderName(c.ClientCertHeader) {
			errs = append(errs, fmt.Errorf("client-cert-header %q: not a header name", c.ClientCertHeader))
		}
		if len(c.TrustedProxies) == 0 {
			// The header is honoured only from a trusted proxy: without
			// one it would be silently ignored.
			errs = append(errs, errors.New("client-cert-header: needs --trusted-proxies (the header is believed only from them)"))
		}
	}
	return errs
}

// readable reports why the file at path cannot be read (nil if it can).
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.Read(b[:]); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 §5.1:
// a token).
func validHeaderName(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// MaxMetricsClients bounds --metrics-clients and --metrics-top-clients:
// each client is a label value of a few families.
const MaxMetricsClients = 100

// AllSurfaces are the token endpoints that can be switched on and off.
var AllSurfaces = []string{surface.Standard, surface.Machine, surface.ATM}

// SurfaceOn reports whether the named surface is served.
func (c *Config) SurfaceOn(name string) bool { return slices.Contains(c.Surfaces, name) }

// KeyRetention is how long a retired signing key stays published: until the
// longest token it can have signed has expired, plus leeway for clock skew.
func (c *Config) KeyRetention() time.Duration { return c.MaxTokenLifetime + 5*time.Minute }

// IsPostgres reports whether Database selects PostgreSQL.
func (c *Config) IsPostgres() bool {
	return strings.HasPrefix(c.Database, "postgres://") || strings.HasPrefix(c.Database, "postgresql://")
}

// SQLitePath is the SQLite database file.
func (c *Config) SQLitePath() string {
	if c.Database != "" {
		return strings.TrimPrefix(c.Database, "sqlite://")
	}
	return filepath.Join(c.DataDir, "m2mauth.db")
}

// MasterKeyPath is the master key file in the data dir (used when no
// MasterKey is configured).
func (c *Config) MasterKeyPath() string { return filepath.Join(c.DataDir, "master.key") }

// AdminAudience is the identifier of the built-in admin API.
func (c *Config) AdminAudience() string { return c.Issuer + "/admin" }
