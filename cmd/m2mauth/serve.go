package main

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel"

	"github.com/m2mauth/m2mauth/internal/buildinfo"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/server"
	"github.com/m2mauth/m2mauth/internal/store/postgres"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
	"github.com/m2mauth/m2mauth/internal/telemetry"
)

// storageFlags registers the flags that locate the database.
func storageFlags(f *flags, cfg *config.Config) {
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the SQLite database, master.key and admin.json")
	f.StringVar(&cfg.Database, "database", cfg.Database, "database: empty for SQLite in the data dir, a SQLite file path, or a postgres:// URL")
}

func runServe(ctx context.Context, e *env, args []string) error {
	cfg := config.Default()
	f := newFlags(e, "serve", "", "Runs the authorization server until SIGINT or SIGTERM. On first start it creates the\ndatabase, the signing key and a bootstrap admin client whose credentials it writes to\n<data-dir>/admin.json (mode 0600).")
	f.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	f.StringVar(&cfg.Issuer, "issuer", "", "public base URL: the tokens' iss and every advertised URL (default http://<addr>); recorded in the database on first start")
	f.BoolVar(&cfg.ChangeIssuer, "change-issuer", false, "move a database recorded for another issuer to --issuer (tokens of the old issuer stop verifying where iss is checked)")
	storageFlags(f, &cfg)
	f.StringVar(&cfg.MasterKey, "master-key", "", "master key (32 bytes, base64 or hex) encrypting keys at rest; default: <data-dir>/master.key, created on first start. Prefer the environment variable")
	f.StringVar(&cfg.SigningAlg, "signing-alg", cfg.SigningAlg, "algorithm of new signing keys: RS256, PS256, ES256 or EdDSA (a change rotates to it, pre-published)")
	f.DurationVar(&cfg.KeyRotationPeriod, "key-rotation-period", cfg.KeyRotationPeriod, "how long a signing key signs before the next takes over (0: no automatic rotation)")
	f.DurationVar(&cfg.KeyPrepublish, "key-prepublish", cfg.KeyPrepublish, "how long a new key is published before it signs (at least 2 × --jwks-max-age)")
	f.DurationVar(&cfg.DefaultTokenLifetime, "token-lifetime", cfg.DefaultTokenLifetime, "token lifetime when neither the client nor the API sets one")
	f.DurationVar(&cfg.MaxTokenLifetime, "max-token-lifetime", cfg.MaxTokenLifetime, "upper bound on every token's lifetime")
	f.DurationVar(&cfg.JWKSMaxAge, "jwks-max-age", cfg.JWKSMaxAge, "Cache-Control max-age of the JWKS")
	f.Var((*listFlag)(&cfg.Surfaces), "surfaces", "comma-separated token endpoints to serve: standard (/oauth/token), machine (/v1/oauth/token/machine), atm (/auth/token)")
	f.Var((*listFlag)(&cfg.IdentityScopes), "identity-scopes", "comma-separated OpenID Connect scopes accepted in a token request without granting anything (openid is echoed in the response's scope); empty: none")
	f.DurationVar(&cfg.MaxAssertionLifetime, "max-assertion-lifetime", cfg.MaxAssertionLifetime, "longest exp - iat of a private_key_jwt client assertion")
	f.DurationVar(&cfg.RefreshTokenLifetime, "refresh-token-lifetime", cfg.RefreshTokenLifetime, "absolute lifetime of a refresh token family (clients with refresh tokens enabled)")
	f.Float64Var(&cfg.AuthFailureRate, "auth-failure-rate", cfg.AuthFailureRate, "failed client authentications allowed per second per client address before 429 (0: no limit)")
	f.IntVar(&cfg.IntrospectionCache, "introspection-cache", cfg.IntrospectionCache, "verified access tokens kept per environment so that introspecting one again skips its signature check (every other check still runs; about 0.5 KB each); 0: off")
	f.Int64Var(&cfg.QuotaPerMinute, "quota-per-minute", cfg.QuotaPerMinute, "tokens a client may get per minute unless it sets its own quota (0: unlimited)")
	f.Int64Var(&cfg.QuotaPerHour, "quota-per-hour", cfg.QuotaPerHour, "tokens a client may get per hour unless it sets its own quota (0: unlimited)")
	f.Int64Var(&cfg.QuotaPerDay, "quota-per-day", cfg.QuotaPerDay, "tokens a client may get per day unless it sets its own quota (0: unlimited)")
	f.IntVar(&cfg.AuthFailureBurst, "auth-failure-burst", cfg.AuthFailureBurst, "burst of failed authentications allowed per client address")
	f.BoolVar(&cfg.CertBoundTokens, "cert-bound-tokens", cfg.CertBoundTokens, "bind the access token of every client that authenticates with a TLS certificate to it (cnf.x5t#S256, RFC 8705 §3), not only of clients that ask for it")
	f.BoolVar(&cfg.DPoPNonces, "dpop-nonces", cfg.DPoPNonces, "require a server nonce in DPoP proofs at the token endpoint (use_dpop_nonce, RFC 9449 §8)")
	f.DurationVar(&cfg.DPoPMaxAge, "dpop-max-age", cfg.DPoPMaxAge, "how old a DPoP proof's iat may be at the token endpoint (5s to 10m)")
	f.Float64Var(&cfg.ReportTokensPerLifetime, "report-tokens-per-lifetime", cfg.ReportTokensPerLifetime, "report a client issued more than this many times the tokens its token lifetime needs (client report)")
	f.Int64Var(&cfg.ReportMinTokens, "report-min-tokens", cfg.ReportMinTokens, "never report a client issued fewer tokens than this in the report's hour (a restart burst)")
	f.BoolVar(&cfg.Console, "console", cfg.Console, "serve the admin console under /console/ (--console=false: off, and /console/ answers 404)")
	f.DurationVar(&cfg.ConsoleIdle, "console-idle", cfg.ConsoleIdle, "a console session ends after this long without a request")
	f.DurationVar(&cfg.ConsoleMaxAge, "console-max-age", cfg.ConsoleMaxAge, "a console session ends this long after sign-in, however active")
	f.DurationVar(&cfg.AuditRetention, "audit-retention", cfg.AuditRetention, "audit events older than this are deleted (0: kept forever)")
	f.Var((*appendFlag)(&cfg.AuditSinks), "audit-sink", "stream audit events as JSON lines to stdout, file:<path> (appended) or an https:// webhook; repeatable or comma-separated")
	f.Float64Var(&cfg.AuditIssuanceSample, "audit-issuance-sample", cfg.AuditIssuanceSample, "fraction (0 to 1) of successful token issuances in the audit trail; failed authentications are always recorded")
	f.StringVar(&cfg.EnvAddressing, "env-addressing", cfg.EnvAddressing, "how requests name an environment: path (<issuer>/e/<name>/…) or host (<name>.<issuer host>); the default environment is the issuer itself")
	f.DurationVar(&cfg.EnvIdle, "env-idle", cfg.EnvIdle, "an environment's keys and caches leave memory after this long without a request")
	f.IntVar(&cfg.EnvMaxLoaded, "env-max-loaded", cfg.EnvMaxLoaded, "at most this many environments are held in memory at once (the least recently used leaves first)")
	f.IntVar(&cfg.ClientCacheMB, "client-cache-mb", cfg.ClientCacheMB, "memory (MiB) each loaded environment may spend caching clients, about 0.9 KiB for a client with one secret and one grant, more with long descriptions or many grants; past it the least recently used leave")
	f.DurationVar(&cfg.ClientCacheTTL, "client-cache-ttl", cfg.ClientCacheTTL, "longest a client stays cached: changes reach every replica's cache at once through the change feed, so this only bounds staleness if a notification were lost")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	f.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "json or text")
	f.StringVar(&cfg.AccessLog, "access-log", cfg.AccessLog, "which requests get an access log record (\"request\", at info): errors (answered 4xx or 5xx, or slower than --access-log-slow), all, or off; the audit trail, the metrics and the records of refused token requests are kept either way")
	f.DurationVar(&cfg.AccessLogSlow, "access-log-slow", cfg.AccessLogSlow, "with --access-log=errors, a request that succeeded is logged too once it takes this long (0: never)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "serve Prometheus metrics at /metrics on this address, a listener of its own (e.g. 127.0.0.1:9464; empty: no metrics)")
	f.Var((*listFlag)(&cfg.MetricsClients), "metrics-clients", "comma-separated client ids of the default environment whose tokens are counted one by one in the metrics")
	f.IntVar(&cfg.MetricsTopClients, "metrics-top-clients", cfg.MetricsTopClients, "how many clients of the default environment the per-client metrics report besides --metrics-clients (oldest secrets, most tokens)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate (chain) file: with --tls-key, serve HTTPS (TLS 1.2+, HTTP/2); re-read when it changes")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key file of --tls-cert")
	f.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "PEM bundle of the CAs tls_client_auth certificates chain to; with TLS, clients are asked for a certificate (optional); re-read when it changes")
	f.Var((*listFlag)(&cfg.TrustedProxies), "trusted-proxies", "comma-separated CIDRs or IPs of proxies whose X-Forwarded-For (and --client-cert-header) are believed")
	f.StringVar(&cfg.ClientCertHeader, "client-cert-header", "", "header in which a trusted proxy passes the client certificate (e.g. X-Forwarded-Client-Cert from Envoy, or X-SSL-Client-Cert with nginx's $ssl_client_escaped_cert)")
	f.StringVar(&cfg.MTLSEndpointBase, "mtls-endpoint-base", "", "base URL of the endpoints taking client certificates, advertised as mtls_endpoint_aliases (default: the issuer, when client certificates are on)")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long in-flight requests may finish after a stop signal")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// Traces: configured by the standard OTEL_* variables, off unless an
	// exporter is configured.
	tc, err := telemetry.TracingFromEnv(e.getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	tp, err := telemetry.NewTracerProvider(ctx, tc)
	if err != nil {
		return err
	}
	log := server.NewLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
	var opts server.Options
	if tp != nil {
		opts.TracerProvider = tp
		// The SDK reports here the exports that failed (the collector is
		// down or refused them): the process's one handler, set by the
		// binary alone.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("export traces", "error", err) }))
		log.Info("tracing on: spans are exported over OTLP", "protocol", tc.Protocol, "service_name", tc.Resource["service.name"])
	}
	return server.Run(ctx, cfg, log, opts)
}

func runMigrate(ctx context.Context, e *env, args []string) error {
	cfg := config.Default()
	f := newFlags(e, "migrate", "", "Applies pending database migrations and exits. `serve` does this on start too;\nrun it on its own before rolling out a new version to several replicas.")
	storageFlags(f, &cfg)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	var applied int
	var err error
	if cfg.IsPostgres() {
		applied, err = postgres.MigrateDSN(ctx, cfg.Database)
	} else {
		applied, err = sqlite.MigrateFile(ctx, cfg.SQLitePath())
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "applied %d migration(s); the schema is up to date\n", applied)
	return nil
}

func runVersion(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "version", "", "Prints the version, the commit, the Go version, the platform and the crypto backend\n(boringcrypto in the production build, pure Go otherwise). The version and commit are\nstamped by make build (-ldflags -X github.com/m2mauth/m2mauth/internal/buildinfo.version=…).")
	var jsonOut bool
	f.BoolVar(&jsonOut, "json", false, "print a JSON object")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	i := buildinfo.Get()
	if jsonOut {
		return printJSON(e.stdout, i)
	}
	commit := i.Commit
	if commit == "" {
		commit = "unknown"
	}
	fmt.Fprintf(e.stdout, "m2mauth %s\ncommit:         %s\ngo:             %s\nplatform:       %s/%s\ncrypto backend: %s\n",
		i.Version, commit, i.GoVersion, i.OS, i.Arch, i.CryptoBackend)
	return nil
}

// listFlag is a comma-separated list.
type listFlag []string

// appendFlag is a repeatable flag: each use adds its value.
type appendFlag []string

func (l *appendFlag) String() string { return strings.Join(*l, ",") }

func (l *appendFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = nil
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}
