// Package server is the composition root of `m2mauth serve`: it builds every
// dependency from a config.Config, holds the one table of routes, wraps them
// in the common middleware, and runs the HTTP server with graceful shutdown.
package server

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/buildinfo"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/console"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/metrics"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/quota"
	"github.com/m2mauth/m2mauth/internal/report"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
	"github.com/m2mauth/m2mauth/internal/store/sqlstore"
	"github.com/m2mauth/m2mauth/internal/surface"
)

// Server is a configured m2mauth instance.
type Server struct {
	cfg   config.Config
	log   *slog.Logger
	now   func() time.Time
	store store.Store
	// lock is held on an SQLite database for the server's lifetime, so
	// that key rewrap cannot run beside it (nil for PostgreSQL).
	lock *sqlite.FileLock
	// master seals signing keys; hasher hashes secrets (one for the
	// deployment: the environment is part of every stored row's key).
	master *keys.MasterKey
	hasher *secret.Hasher
	// envs are the environments held in memory; env is the default one.
	envs       *environments
	issuerHost string // the issuer's host name, for host addressing
	// mtlsHost is the host name of the mTLS endpoint base when it is not
	// the issuer's: by host, environments are under it too.
	mtlsHost string
	// assertions authenticates clients by signed JWTs (private_key_jwt,
	// federation); it caches trust policies and federations.
	assertions *oauth.AssertionAuth
	env        *env.Env
	usage      *oauth.UsageRecorder
	report     *report.Reporter // clients that never cache tokens (Report, Count)
	tokens     *oauth.Service   // the token endpoint's core (ReuseCounts)
	caching    cachingReport    // the last token caching report (metrics)
	// limiter limits failed client authentications (nil: off).
	limiter *oauth.FailureLimiter
	// quota enforces per-client token quotas.
	quota *quota.Gate
	// audit records the audit trail; closeSinks closes its sinks' files.
	audit      *audit.Recorder
	closeSinks func() error
	// console serves the admin console (nil when switched off).
	console *console.Console
	handler http.Handler
	// clientCAs returns the CA pool of --tls-client-ca as now loaded
	// (re-read when the file changes; nil without one): the CAs a
	// tls_client_auth client's certificate must chain to (RFC 8705 §2.1),
	// whether it came over the listener's TLS or from a trusted proxy's
	// header. Never nil itself.
	clientCAs func() *x509.CertPool
	// optCAs: clientCAs came from Options.ClientCAs, which turns mutual
	// TLS on whatever the configuration says.
	optCAs bool
	// tlsConfig is the listener's TLS (nil: plain HTTP): the certificate
	// is re-read when its files change.
	tlsConfig *tls.Config
	// authMethods are the client authentication methods the server
	// supports (from the registry), for discovery.
	authMethods []string
	authAlgs    []string // algorithms of client assertions
	table       []route  // the routes served (enabled ones), in table order
	timeouts    Timeouts // of the HTTP server Serve runs (zero: DefaultTimeouts)
	mismatchMu  sync.Mutex
	mismatch    string // the last master key mismatch logged
	// metrics are the Prometheus metrics (nil without --metrics-addr),
	// served on metricsAddr once Serve runs; tokenRoutes are the patterns
	// the endpoints' observer counts (the HTTP metrics leave them out).
	metrics     *metrics.Metrics
	metricsAddr string
	tokenRoutes map[string]bool

	// tracer starts the span of each request (nil: tracing off);
	// tracerProvider is shut down on Close.
	tracer         trace.Tracer
	tracerProvider trace.TracerProvider

	// background work (change feed, usage flushing) runs until Close
	stopBackground context.CancelFunc
	background     sync.WaitGroup
}

// Intervals of the background work.
const (
	usageFlushInterval = 5 * time.Second
	// Key maintenance runs this often on every replica (more often when the
	// pre-publication lead is short); the switch of signing key itself
	// happens at the activation instant regardless.
	keyMaintainInterval = 10 * time.Second
	// Expired refresh tokens are deleted this often.
	refreshCleanupInterval = 5 * time.Minute
	// Hourly token counts are kept this long (the console shows a day).
	usageRetention = 8 * 24 * time.Hour
	// The client id filter is rebuilt larger when it grows past its size.
	clientIDsCheckInterval = time.Minute
	// At most this many live revocations are held in memory; past it the
	// deny-list is read from the database.
	denyListMax = 1_000_000
	// A deny-list whose load failed (or was overtaken by a switch of the
	// change feed) is loaded again this often: until then every check of
	// a token against it (introspection, the admin API) is a query.
	denyListRetryInterval = 10 * time.Second
)

// AdminFile is the name of the bootstrap credentials file in the data dir.
const AdminFile = "admin.json"

// AdminCredentials is the content of admin.json.
type AdminCredentials struct {
	Server        string `json:"server"`
	TokenEndpoint string `json:"token_endpoint"`
	ClientID      string `json:"client_id"`
	ClientSecret  string `json:"client_secret"`
	Audience      string `json:"audience"`
	Scope         string `json:"scope"`
}

// New builds a Server: opens the store (migrating it), loads or creates the
// keys, and bootstraps the admin API and client on first start. On SQLite it
// holds the database's lock (sqlite.Lock) until Close, and fails when
// another process holds it. now is the clock (nil: time.Now).
func New(ctx context.Context, cfg config.Config, log *slog.Logger, now func() time.Time) (*Server, error) {
	return NewWithOptions(ctx, cfg, log, now, Options{})
}

// NewWithOptions is New with the server's instrumentation: tracing and a
// database observer.
func NewWithOptions(ctx context.Context, cfg config.Config, log *slog.Logger, now func() time.Time, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	var lock *sqlite.FileLock
	if !cfg.IsPostgres() {
		var err error
		if lock, err = sqlite.Lock(cfg.SQLitePath(), sqlite.HolderServe); err != nil {
			return nil, err
		}
	}
	// The metrics time every database call; they are built with the
	// server, after the store opens, so the store reports to a forwarder.
	queries := &queryForwarder{}
	if opts.QueryObserver == nil && cfg.MetricsAddr != "" {
		opts.QueryObserver = queries
	}
	st, err := openStore(ctx, cfg, opts.storeOptions(cfg)...)
	if err != nil {
		if lock != nil {
			_ = lock.Unlock()
		}
		return nil, err
	}
	s, err := newServerOptions(ctx, cfg, log, now, st, lock, opts)
	if err != nil {
		return nil, err
	}
	s.setTracing(opts.TracerProvider)
	if s.metrics != nil {
		queries.m.Store(s.metrics)
	}
	return s, nil
}

// newServer builds a Server on an open store, which it then owns, with the
// lock it holds on the database (nil: none).
func newServer(ctx context.Context, cfg config.Config, log *slog.Logger, now func() time.Time, st store.Store, lock *sqlite.FileLock) (*Server, error) {
	return newServerOptions(ctx, cfg, log, now, st, lock, Options{})
}

// newServerOptions is newServer with the server's options.
func newServerOptions(ctx context.Context, cfg config.Config, log *slog.Logger, now func() time.Time, st store.Store, lock *sqlite.FileLock, opts Options) (*Server, error) {
	if now == nil {
		now = time.Now
	}
	s := &Server{cfg: cfg, log: log, now: now, store: st, lock: lock, clientCAs: opts.ClientCAs}
	if err := s.init(ctx); err != nil {
		s.closeAudit()
		st.Close()
		s.unlock()
		return nil, err
	}
	return s, nil
}

func (s *Server) unlock() {
	if s.lock != nil {
		if err := s.lock.Unlock(); err != nil {
			s.log.Warn("release the database lock", "error", err)
		}
		s.lock = nil
	}
}

// OpenStore opens (and migrates) the database cfg names.
func OpenStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	return openStore(ctx, cfg)
}

func openStore(ctx context.Context, cfg config.Config, opts ...sqlstore.Option) (store.Store, error) {
	if cfg.IsPostgres() {
		return postgres.Open(ctx, cfg.Database, opts...)
	}
	return sqlite.Open(ctx, cfg.SQLitePath(), opts...)
}

// ErrIssuerMismatch: the server's issuer is not the one the database
// belongs to.
var ErrIssuerMismatch = errors.New("issuer mismatch")

// checkIssuer refuses to start with an issuer other than the database's:
// replicas with different issuers would each move the admin API to their
// own and fight (and tokens carry the issuer, which resource servers
// check). The issuer is recorded on first start; a database from before
// it was recorded names it through its admin API. With --change-issuer
// the change is deliberate: the bootstrap step records the new issuer and
// moves the admin API.
func (s *Server) checkIssuer(ctx context.Context) error {
	stored, err := s.store.GetMeta(ctx, store.MetaIssuer)
	if errors.Is(err, store.ErrNotFound) {
		stored, err = s.adminAPIIssuer(ctx)
	}
	if err != nil || stored == "" || stored == s.cfg.Issuer {
		return err
	}
	if s.cfg.ChangeIssuer {
		s.log.Warn("moving the database to a new issuer, as --change-issuer asks: tokens issued under the old one stop verifying wherever iss is checked; restart every other replica with the new --issuer",
			"old_issuer", stored, "new_issuer", s.cfg.Issuer)
		return nil
	}
	return fmt.Errorf("%w: this database belongs to issuer %s, but this server's issuer is %s (from --issuer, or http://<--addr> without it). "+
		"Every replica must use the database's issuer: start with --issuer %s. To move the database to %s deliberately, start one server with --issuer %s --change-issuer, then the others with --issuer %s",
		ErrIssuerMismatch, stored, s.cfg.Issuer, stored, s.cfg.Issuer, s.cfg.Issuer, s.cfg.Issuer)
}

// adminAPIIssuer derives the issuer of a database that predates the
// recorded issuer from its built-in admin API ("<issuer>/admin"); "" for a
// database not bootstrapped yet.
func (s *Server) adminAPIIssuer(ctx context.Context) (string, error) {
	apis, err := s.store.ListAPIs(ctx, store.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, a := range apis {
		if a.Builtin != "" {
			return strings.TrimSuffix(a.Identifier, "/admin"), nil
		}
	}
	return "", nil
}

// masterKey returns the configured master key, or the one in the data
// dir's master.key, creating that file on first start (created is then its
// path).
func (s *Server) masterKey() (mk *keys.MasterKey, created string, err error) {
	if s.cfg.MasterKey != "" {
		mk, err = keys.ParseMasterKey(s.cfg.MasterKey)
		return mk, "", err
	}
	path := s.cfg.MasterKeyPath()
	mk, isNew, err := keys.LoadOrCreateMasterKeyFile(path)
	if err != nil || !isNew {
		return mk, "", err
	}
	return mk, path, nil
}

func (s *Server) init(ctx context.Context) error {
	if err := s.initTLS(); err != nil {
		return err
	}
	mk, createdKeyFile, err := s.masterKey()
	if err != nil {
		return err
	}
	// Nothing is written to the database before the master key is proven
	// against the keys it holds: a wrong master key must not seal anything
	// (a key sealed under it would lock the right one out).
	if err := keys.CheckMasterKey(ctx, s.store, mk); err != nil {
		if createdKeyFile != "" {
			// The key just generated is not this database's: leave no
			// file that the next start would take for it.
			_ = os.Remove(createdKeyFile)
			return fmt.Errorf("no master key was configured and %s did not exist, but the database holds keys: %w", createdKeyFile, err)
		}
		return err
	}
	// Nor before the issuer is the database's (or deliberately changed).
	if err := s.checkIssuer(ctx); err != nil {
		return err
	}
	// The secret hash key next: created under the proven master key when
	// the database has none, else opened, which proves the key again.
	hashKey, err := keys.SecretHashKey(ctx, s.store, mk)
	if err != nil {
		return err
	}
	if createdKeyFile != "" {
		s.log.Info("created master key", "path", createdKeyFile, "master_key_id", mk.ID())
		if s.cfg.IsPostgres() {
			s.log.Warn("the master key was generated into this data dir: every replica sharing the database needs the same key, so set M2MAUTH_MASTER_KEY on all of them", "path", createdKeyFile)
		}
	}
	s.master, s.hasher = mk, secret.NewHasher(hashKey)
	s.issuerHost = issuerHostOf(s.cfg.Issuer)
	if h := issuerHostOf(s.cfg.MTLSEndpointBase); h != s.issuerHost {
		s.mtlsHost = h
	}
	if s.cfg.EnvAddressing == config.EnvByHost && net.ParseIP(s.issuerHost) != nil {
		s.log.Warn("--env-addressing host with an issuer whose host is an IP address: no environment's host name (<name>.<issuer host>) can resolve; use an issuer with a DNS name (locally, http://localhost:<port> serves <name>.localhost)",
			"issuer", s.cfg.Issuer)
	}
	s.usage = oauth.NewUsageRecorder()
	sinks, closeSinks, err := audit.ParseSinks(s.cfg.AuditSinks, os.Stdout)
	if err != nil {
		return err
	}
	s.closeSinks = closeSinks
	s.audit = audit.New(audit.Config{Store: s.store, Sinks: sinks, IssuanceSample: s.cfg.AuditIssuanceSample, Log: s.log, Now: s.now})
	s.assertions = oauth.NewAssertionAuth(oauth.AssertionConfig{MaxLifetime: s.cfg.MaxAssertionLifetime, Now: s.now})
	s.envs = newEnvironments(s)
	def, err := s.envs.get(ctx, store.DefaultEnv)
	if err != nil {
		return err
	}
	s.env = def.env
	s.report = report.New(report.Config{TokensPerLifetime: s.cfg.ReportTokensPerLifetime, MinTokens: s.cfg.ReportMinTokens,
		DefaultLifetime: s.cfg.DefaultTokenLifetime, MaxLifetime: s.cfg.MaxTokenLifetime, Now: s.now,
		AdminAudience: func(ctx context.Context) string {
			if e := env.FromContext(ctx); e != nil {
				return e.AdminAudience()
			}
			return s.env.AdminAudience()
		}})
	mgmt := admin.NewService(s.store, s.hasher, s.now, s.env.Changed, admin.WithEnvIssuer(s.cfg.EnvIssuer), admin.WithReport(s.report), admin.WithAuditor(s.audit))
	if err := s.bootstrap(ctx, mgmt); err != nil {
		return err
	}
	auths := []oauth.Authenticator{oauth.NewSecretAuth(s.now, s.usage), s.assertions}
	if s.mtls() {
		// Registered only when a certificate can reach the server: the
		// registry's methods are what discovery lists.
		auths = append(auths, oauth.NewTLSAuth(s.clientCAs, s.assertions, s.now))
	}
	clientAuth := oauth.NewClientAuth(auths...)
	s.tokens = oauth.NewService(clientAuth, oauth.Policy{
		DefaultLifetime: s.cfg.DefaultTokenLifetime, MaxLifetime: s.cfg.MaxTokenLifetime,
		RefreshLifetime: s.cfg.RefreshTokenLifetime, IdentityScopes: s.cfg.IdentityScopes,
		CertBoundTokens: s.cfg.CertBoundTokens,
	}, s.now)
	tokens := s.tokens
	var limiter *oauth.FailureLimiter
	if s.cfg.AuthFailureRate > 0 {
		limiter = oauth.NewFailureLimiter(s.cfg.AuthFailureRate, s.cfg.AuthFailureBurst, 100_000, s.now)
	}
	introspection := oauth.NewIntrospection(tokens)
	s.authMethods, s.authAlgs = tokens.AuthMethods(), tokens.AuthSigningAlgs()
	if err := s.initMetrics(); err != nil {
		return err
	}
	s.quota = quota.New(quota.Config{
		Default: store.Quota{PerMinute: s.cfg.QuotaPerMinute, PerHour: s.cfg.QuotaPerHour, PerDay: s.cfg.QuotaPerDay},
		Counters: func(ctx context.Context) (string, quota.Counters) {
			if e := env.FromContext(ctx); e != nil {
				return e.Name, e.Store
			}
			return store.DefaultEnv, s.store
		},
		Now: s.now, Log: s.log, Single: !s.cfg.IsPostgres(),
	})
	// Every endpoint's outcome goes to each observer: the metrics (when
	// on) and the audit trail (token issuances and failed
	// authentications, queued, never a write on the request's goroutine).
	eps := oauth.Endpoints{Service: tokens, Limiter: limiter, Usage: s.usage, Observer: s.observers(), Gate: s.quota, Log: s.log,
		DPoP: s.dpopConfig()}
	revoker := auditedRevoker{introspection, mgmt}
	adminLogin := eps.TokenFor("admin", func(ctx context.Context) string { return env.FromContext(ctx).AdminAudience() })
	adminCfg := admin.HandlerConfig{
		Service: mgmt, Verifier: s.env.AdminVerifier, Log: s.log, Flush: s.flushUsage,
		Keys: s.env.Keys, MaxTokenLifetime: s.cfg.MaxTokenLifetime, Revoker: revoker,
		Access: introspection, DB: s.store, Envs: s, EnvChanged: s.envChanged,
	}
	consoleOn := s.cfg.Console
	if u, perr := url.Parse(s.cfg.Issuer); consoleOn && (perr != nil || strings.Trim(u.Path, "/") != "") {
		// The console's pages, forms and cookie live at the root of the
		// host; under a path they would post past the proxy's prefix and
		// share their cookie with the host's other applications.
		s.log.Warn("the admin console is off: the issuer has a path, and the console is served only at the root of its host (serve it on a host of its own, or pass --console=false to silence this)",
			"issuer", s.cfg.Issuer)
		consoleOn = false
	}
	if consoleOn {
		s.console, err = console.New(console.Config{
			Service: mgmt, Envs: s, Environments: console.ServiceEnvironments(mgmt, s.envChanged), Keys: s.env.Keys, MaxTokenLifetime: s.cfg.MaxTokenLifetime, Revoker: revoker,
			SignIn: adminLogin, Flush: s.flushUsage, Idle: s.cfg.ConsoleIdle, MaxAge: s.cfg.ConsoleMaxAge,
			Log: s.log, Now: s.now,
		})
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		adminCfg.Links = s.console
	}
	s.handler = s.routes(surfaces{
		standard:   eps.StandardToken(surface.Standard),
		adminLogin: adminLogin,
		introspect: eps.Introspect(introspection),
		revoke:     eps.Revoke(introspection),
		machine:    eps.Token(surface.Machine, surface.MachineCodec{}),
		atm:        eps.Token(surface.ATM, surface.ATMCodec{}),
	}, admin.NewHandler(adminCfg))
	s.startBackground()
	return nil
}

// dpopConfig configures DPoP at the token endpoint from the serve flags.
// Nonces are keyed by a secret derived from the master key and the
// environment's issuer: every replica hands out and accepts the same
// nonces without a setting of its own, and no environment accepts
// another's.
func (s *Server) dpopConfig() oauth.DPoPConfig {
	c := oauth.DPoPConfig{MaxAge: s.cfg.DPoPMaxAge, Now: s.now,
		AliasBase: func(en *env.Env) string { return s.cfg.EnvMTLSEndpointBase(en.Name) }}
	if s.cfg.DPoPNonces {
		mk := s.master
		c.NonceSecret = func(issuer string) []byte { return mk.Derive("m2mauth dpop nonce\x00"+issuer, 32) }
	}
	return c
}

// mtls reports whether client certificates can reach the server, so that
// the certificate methods are served and listed.
func (s *Server) mtls() bool { return s.cfg.MTLS() || s.optCAs }

// changeFeed is a store that announces changes made through any replica.
type changeFeed interface {
	Listen(ctx context.Context, onChange func(change string), onState func(connected bool, err error))
}

// startBackground starts the change feed (when the store has one) and the
// periodic work: key maintenance, usage flushing, garbage collection and
// unloading idle environments.
func (s *Server) startBackground() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopBackground = cancel
	if feed, ok := s.store.(changeFeed); ok {
		// Until the feed is connected, other replicas' changes could be
		// missed: do not cache.
		s.envs.setCaches(false)
		connected := make(chan struct{})
		var once sync.Once
		s.background.Add(1)
		go func() {
			defer s.background.Done()
			feed.Listen(ctx, func(change string) {
				if s.metrics != nil {
					s.metrics.FeedChange()
				}
				s.applyChange(ctx, change)
			}, func(up bool, err error) {
				if s.metrics != nil {
					s.metrics.FeedState(up)
				}
				if !up {
					s.envs.setCaches(false)
					s.log.Warn("change feed lost; client cache off until it reconnects", "error", err)
					return
				}
				// What other environments cached before may be stale:
				// they are loaded afresh on their next request.
				s.envs.unloadAll()
				s.envs.setCaches(true)
				s.log.Info("change feed connected; client cache on")
				s.loadClientIDs(ctx, s.env)
				s.loadDenyList(ctx, s.env)
				// A key another replica published while the feed was down
				// (the default environment stays loaded).
				if err := s.env.Keys.Reload(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("reload signing keys after the change feed reconnected", "error", err)
				}
				once.Do(func() { close(connected) })
			})
		}()
		// Start with the cache on when the feed connects quickly (it
		// normally does); otherwise serve uncached until it does.
		select {
		case <-connected:
		case <-time.After(2 * time.Second):
		}
	}
	if s.metrics != nil {
		report := func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(ctx, changeWorkTimeout)
			defer cancel()
			s.refreshClientReport(ctx)
		}
		// The first report before serving (two bounded queries), so that
		// the first scrape has it and no later report is overtaken by it.
		report(ctx)
		s.every(ctx, metricsReportInterval, report)
	}
	s.every(ctx, clientIDsCheckInterval, func(ctx context.Context) {
		for _, l := range s.envs.all() {
			if l.env.Clients.IDsFull() {
				s.loadClientIDs(ctx, l.env)
			}
		}
		s.envs.unloadIdle()
	})
	s.every(ctx, denyListRetryInterval, func(ctx context.Context) {
		for _, l := range s.envs.all() {
			if l.env.Denied.NeedsLoad() {
				ctx, cancel := context.WithTimeout(ctx, changeWorkTimeout)
				s.loadDenyList(ctx, l.env)
				cancel()
			}
		}
	})
	s.every(ctx, max(min(keyMaintainInterval, s.cfg.KeyPrepublish/4), 100*time.Millisecond), s.maintainKeys)
	s.every(ctx, refreshCleanupInterval, s.collectGarbage)
	s.every(ctx, usageFlushInterval, func(ctx context.Context) {
		if err := s.flushUsage(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("flush secret last-use times and token counts", "error", err)
		}
	})
}

// every runs fn every interval until ctx is done, as background work that
// Close waits for.
func (s *Server) every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	}()
}

// loadClientIDs loads an environment's client id filter, so that unknown
// client ids are answered from memory. Until it succeeds, they are looked
// up.
func (s *Server) loadClientIDs(ctx context.Context, en *env.Env) {
	if err := en.Clients.LoadIDs(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("load client ids; unknown client ids are looked up in the database until the next attempt", "env", en.Name, "error", err)
	}
}

// loadDenyList loads an environment's revoked access tokens into memory.
// Until it succeeds, every check asks the database.
func (s *Server) loadDenyList(ctx context.Context, en *env.Env) {
	if err := en.Denied.Load(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("load the deny-list; revocations are read from the database until the next attempt", "env", en.Name, "error", err)
	}
}

// changeWorkTimeout bounds the work one change notification causes
// (reloading the keys or the deny-list), so that a stuck database cannot
// stall the notification loop.
const changeWorkTimeout = 10 * time.Second

// invalidator tells this replica's caches of an environment of a change
// made through it (the change feed tells the others): the client cache,
// and the federation index, which holds every trust policy and client
// federation.
type invalidator struct {
	s  *Server
	en *env.Env
}

func (i invalidator) Invalidate(clientID string) {
	i.en.Clients.Invalidate(clientID)
	i.forgetTokens(clientID)
	i.s.assertions.InvalidateTrust(i.en)
}

func (i invalidator) InvalidateAll() {
	i.en.Clients.InvalidateAll()
	i.forgetTokens("")
	i.s.assertions.InvalidateTrust(i.en)
}

// forgetTokens drops the tokens kept for reuse of a client that changed
// ("": of every client of the environment).
func (i invalidator) forgetTokens(clientID string) {
	if i.s.tokens != nil {
		i.s.tokens.ForgetClient(i.en.Name, clientID)
	}
}

func (i invalidator) InvalidateTrust(string) { i.s.assertions.InvalidateTrust(i.en) }

// applyChange invalidates what a change announced by any replica affects,
// in the environment it happened in (if this replica holds it).
func (s *Server) applyChange(ctx context.Context, payload string) {
	ctx, cancel := context.WithTimeout(ctx, changeWorkTimeout)
	defer cancel()
	name, change := sqlstore.SplitChange(payload)
	if envName, ok := strings.CutPrefix(change, sqlstore.ChangeEnvPrefix); ok {
		s.envs.unload(envName)
		s.limiter.ForgetEnv(envName)
		if s.tokens != nil {
			s.tokens.ForgetClient(envName, "")
		}
		return
	}
	l := s.envs.peek(name)
	if l == nil {
		return // not held here: nothing cached
	}
	en := l.env
	if id, ok := strings.CutPrefix(change, sqlstore.ChangeClientPrefix); ok {
		invalidator{s, en}.Invalidate(id)
		return
	}
	if policy, ok := strings.CutPrefix(change, sqlstore.ChangeTrustPrefix); ok {
		invalidator{s, en}.InvalidateTrust(policy)
		return
	}
	if rest, ok := strings.CutPrefix(change, sqlstore.ChangeRevokedPrefix); ok {
		exp, jti, _ := strings.Cut(rest, ":")
		micros, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || jti == "" {
			// Unreadable: trust nothing cached.
			en.Denied.SetEnabled(true)
			s.loadDenyList(ctx, en)
			return
		}
		en.Denied.Add(jti, time.UnixMicro(micros))
		return
	}
	if change == sqlstore.ChangeKeys {
		if err := en.Keys.Reload(ctx); err != nil {
			s.log.Error("reload signing keys", "env", name, "error", err)
		}
		return
	}
	invalidator{s, en}.InvalidateAll()
}

// flushUsage writes the pending secret last-use times and token counts of
// every environment.
func (s *Server) flushUsage(ctx context.Context) error {
	return s.usage.Flush(ctx, s.store)
}

// revocationLeeway keeps a revocation past its token's expiry, covering
// verifiers whose clocks run behind.
const revocationLeeway = 5 * time.Minute

// collectGarbage deletes the deny-list entries of expired tokens (keeping
// the deny-list as small as the set of live revoked tokens) and expired
// refresh tokens (a day past expiry, so a late replay is still recognised
// as one within the logs' time frame).
func (s *Server) collectGarbage(ctx context.Context) {
	now := s.now()
	for _, l := range s.envs.all() {
		l.env.Denied.Prune(now.Add(-revocationLeeway))
	}
	if n, err := s.store.DeleteExpiredRevocations(ctx, now.Add(-revocationLeeway)); err != nil && ctx.Err() == nil {
		s.log.Warn("delete expired revocations", "error", err)
	} else if n > 0 {
		s.log.Info("deleted revocations of expired tokens", "count", n)
	}
	if n, err := s.store.DeleteExpiredAssertionIDs(ctx, now); err != nil && ctx.Err() == nil {
		s.log.Warn("delete expired assertion ids", "error", err)
	} else if n > 0 {
		s.log.Info("deleted ids of expired client assertions", "count", n)
	}
	if n, err := s.store.DeleteExpiredRefreshTokens(ctx, now.Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
		s.log.Warn("delete expired refresh tokens", "error", err)
	} else if n > 0 {
		s.log.Info("deleted expired refresh tokens", "count", n)
	}
	if _, err := s.store.DeleteTokenUsage(ctx, now.Add(-usageRetention)); err != nil && ctx.Err() == nil {
		s.log.Warn("delete old token usage", "error", err)
	}
	if _, err := s.store.DeleteTokenMinutes(ctx, now.Add(-2*report.Window)); err != nil && ctx.Err() == nil {
		s.log.Warn("delete old per-minute token usage", "error", err)
	}
	if _, err := s.store.DeleteExpiredConsoleSessions(ctx, now, s.cfg.ConsoleIdle); err != nil && ctx.Err() == nil {
		s.log.Warn("delete expired console sessions", "error", err)
	}
	if _, err := s.store.DeleteExpiredConsoleLinks(ctx, now); err != nil && ctx.Err() == nil {
		s.log.Warn("delete expired console sign-in links", "error", err)
	}
	if s.cfg.AuditRetention > 0 {
		if n, err := s.store.DeleteAuditEvents(ctx, now.Add(-s.cfg.AuditRetention)); err != nil && ctx.Err() == nil {
			s.log.Warn("delete old audit events", "error", err)
		} else if n > 0 {
			s.log.Info("deleted audit events past their retention", "count", n)
		}
	}
}

// closeAudit writes the audit events still queued and closes the sinks
// (each gets a few seconds to deliver what it holds).
func (s *Server) closeAudit() {
	if s.audit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.audit.Close(ctx); err != nil {
			s.log.Warn("close the audit trail", "error", err)
		}
		cancel()
	}
	if s.closeSinks != nil {
		if err := s.closeSinks(); err != nil {
			s.log.Warn("close the audit sinks", "error", err)
		}
		s.closeSinks = nil
	}
}

// auditedRevoker revokes tokens for administrators (admin API, console)
// and records each revocation in the audit trail, by jti.
type auditedRevoker struct {
	in   *oauth.Introspection
	mgmt *admin.Service
}

func (a auditedRevoker) RevokeAny(ctx context.Context, token string) (bool, error) {
	r, err := a.in.RevokeAnyToken(ctx, token)
	if err == nil && r.Revoked {
		a.mgmt.RecordRevocation(ctx, r.ID, r.ClientID, r.Refresh)
	}
	return r.Revoked, err
}

// localKeys lets verify use the server's own published keys.
type localKeys struct{ m *keys.Manager }

func (l localKeys) Key(_ context.Context, kid string) (crypto.PublicKey, string, error) {
	k, ok := l.m.PublicKey(kid)
	if !ok {
		return nil, "", errors.New("unknown kid")
	}
	return k.Key, k.Alg, nil
}

// The bootstrap admin's credentials reach admin.json in three steps, so
// that a crash at any point loses nothing: (1) they are written to
// admin.json.pending-<client id> (file and directory synced), (2) the client
// is committed, (3) the pending file is renamed to admin.json (directory
// synced). A later start resolves what a crash left: a pending file whose
// client exists becomes admin.json; one whose client does not exist (the
// crash came before the commit, or another replica won the race) is removed.
const adminPendingPrefix = AdminFile + ".pending-"

// testHookBootstrap, when set (by tests), is called after each step of the
// bootstrap ("pending written", "committed"); an error from it ends the
// start right there, leaving the files as a crash would.
var testHookBootstrap func(step string) error

func (s *Server) bootstrap(ctx context.Context, mgmt *admin.Service) error {
	done, err := s.bootstrapped(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	var pending string
	var prepare func(id, secret string) error
	if !done {
		// The credentials are saved before the client exists. (Skipped
		// once bootstrapped: the data dir of a replica may be read-only.)
		prepare = func(id, secret string) error {
			pending = filepath.Join(s.cfg.DataDir, adminPendingPrefix+id)
			if err := writeNewPrivateJSON(pending, s.adminCredentials(id, secret)); err != nil {
				return fmt.Errorf("save the admin credentials before creating the admin client: %w", err)
			}
			return bootstrapStep("pending written")
		}
	}
	id, _, created, err := mgmt.Bootstrap(ctx, s.cfg.Issuer, s.cfg.AdminAudience(), prepare)
	if err != nil {
		// The pending file stays: whether the commit happened is unknown
		// (the connection may have dropped after it); the next start
		// resolves it.
		return fmt.Errorf("bootstrap: %w", err)
	}
	lostRace := false
	switch {
	case created:
		if err := bootstrapStep("committed"); err != nil {
			return err
		}
		path := filepath.Join(s.cfg.DataDir, AdminFile)
		if err := promoteAdminFile(pending, path, id); err != nil {
			return fmt.Errorf("bootstrap: the admin client %s was created; its credentials are in %s but could not be moved to %s: %w", id, pending, path, err)
		}
		s.log.Info("created the bootstrap admin client; its credentials are in the admin file (mode 0600)", "client_id", id, "path", path)
	case pending != "":
		// Another replica bootstrapped the database first: its admin.json
		// is the one that works.
		lostRace = true
		if err := removeFile(pending); err != nil {
			return fmt.Errorf("bootstrap: remove %s: %w", pending, err)
		}
		s.log.Info("another instance created the bootstrap admin client first; its credentials are in that instance's data dir")
	}
	return s.resolveAdminFiles(ctx, lostRace)
}

func bootstrapStep(step string) error {
	if testHookBootstrap != nil {
		return testHookBootstrap(step)
	}
	return nil
}

func (s *Server) adminCredentials(id, secret string) AdminCredentials {
	return AdminCredentials{
		Server: s.cfg.Issuer, TokenEndpoint: s.cfg.Issuer + "/oauth/token",
		ClientID: id, ClientSecret: secret, Audience: s.cfg.AdminAudience(), Scope: strings.Join(admin.DeploymentAdminScopes(), " "),
	}
}

// bootstrapped reports whether the database has the built-in admin API,
// under any identifier (the issuer may have changed since).
func (s *Server) bootstrapped(ctx context.Context) (bool, error) {
	a, err := s.store.GetAPI(ctx, s.cfg.AdminAudience())
	if err == nil && a.Builtin != "" {
		return true, nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	apis, err := s.store.ListAPIs(ctx, store.ListOptions{})
	if err != nil {
		return false, err
	}
	for _, a := range apis {
		if a.Builtin != "" {
			return true, nil
		}
	}
	return false, nil
}

// resolveAdminFiles deals with the pending admin files an interrupted first
// start left (here or, when replicas share the data dir, in another
// process), once the database is bootstrapped, and warns when admin access
// looks lost. A pending file whose client exists becomes admin.json, unless
// admin.json already holds the credentials of an existing client; any other
// pending file is removed (its client was never created and never will be:
// the bootstrap happens once per database).
func (s *Server) resolveAdminFiles(ctx context.Context, lostRace bool) error {
	dir := s.cfg.DataDir
	path := filepath.Join(dir, AdminFile)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), adminPendingPrefix) {
			continue
		}
		pending := filepath.Join(dir, e.Name())
		creds, err := readAdminFile(pending)
		if err != nil {
			// Written before the commit and synced, a pending file is only
			// unreadable when the crash came while it was written.
			s.log.Warn("removing an incomplete admin credentials file left by an interrupted first start", "path", pending, "error", err)
			if err := removeFile(pending); err != nil {
				return fmt.Errorf("bootstrap: remove %s: %w", pending, err)
			}
			continue
		}
		exists, err := s.clientExists(ctx, creds.ClientID)
		if err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		if !exists {
			if err := removeFile(pending); err != nil {
				return fmt.Errorf("bootstrap: remove %s: %w", pending, err)
			}
			s.log.Info("removed the credentials of a bootstrap admin client that was never created (a first start was interrupted before it, or another instance bootstrapped the database)", "client_id", creds.ClientID, "path", pending)
			continue
		}
		if cur, err := readAdminFile(path); err == nil && cur.ClientID != creds.ClientID {
			if ok, err := s.clientExists(ctx, cur.ClientID); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			} else if ok {
				if err := removeFile(pending); err != nil {
					return fmt.Errorf("bootstrap: remove %s: %w", pending, err)
				}
				s.log.Warn("admin.json holds the credentials of an existing admin client: the leftover credentials of the bootstrap admin client were removed; delete that client if it is not used", "bootstrap_client_id", creds.ClientID, "admin_file_client_id", cur.ClientID, "path", path)
				continue
			}
		}
		if err := promoteAdminFile(pending, path, creds.ClientID); err != nil {
			return fmt.Errorf("bootstrap: move %s to %s: %w", pending, path, err)
		}
		s.log.Warn("recovered admin.json from the credentials a first start interrupted after creating the bootstrap admin client had saved", "client_id", creds.ClientID, "path", path)
	}
	if _, err := os.Stat(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	switch {
	case lostRace:
	case s.cfg.IsPostgres():
		s.log.Info("no admin.json in this data dir: the bootstrap admin's credentials are in the data dir of the instance that first started on this database; if they are lost, run `m2mauth admin recover` to create a new admin client", "path", path)
	default:
		s.log.Warn("the database is bootstrapped but admin.json is missing: if no other admin credentials are at hand, run `m2mauth admin recover --data-dir "+dir+"` to create a new admin client", "path", path)
	}
	return nil
}

func (s *Server) clientExists(ctx context.Context, id string) (bool, error) {
	_, err := s.store.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// readAdminFile reads admin credentials; a file without a client id and a
// secret is an error.
func readAdminFile(path string) (AdminCredentials, error) {
	var c AdminCredentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, err
	}
	if c.ClientID == "" || c.ClientSecret == "" {
		return c, errors.New("no client_id or client_secret")
	}
	return c, nil
}

// promoteAdminFile renames the pending file to admin.json and syncs the
// directory. When the pending file is gone, another process sharing the
// data dir has promoted it: admin.json must then hold clientID.
func promoteAdminFile(pending, path, clientID string) error {
	err := os.Rename(pending, path)
	if errors.Is(err, os.ErrNotExist) {
		if cur, rerr := readAdminFile(path); rerr == nil && cur.ClientID == clientID {
			return nil
		}
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// removeFile removes path (gone already is fine) and syncs its directory.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// WriteAdminFile writes admin credentials to <dataDir>/admin.json
// (atomically, mode 0600) and returns the file's path.
func WriteAdminFile(dataDir string, creds AdminCredentials) (string, error) {
	path := filepath.Join(dataDir, AdminFile)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	return path, writePrivateJSON(path, creds)
}

// writePrivateJSON writes v to path atomically with mode 0600: a crash
// leaves the old file or the new one, and once it returns the new one
// survives a crash.
func writePrivateJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeNewPrivateJSON writes v to a new file at path (mode 0600) and syncs
// the file and its directory. On failure the file is removed.
func writeNewPrivateJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// syncDir makes the creation, renaming or removal of a file in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for syncing there
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Handler returns the server's HTTP handler (routes and middleware).
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the background work, writes pending last-use times,
// releases the store and flushes the spans not yet exported.
func (s *Server) Close() error {
	if s.stopBackground != nil {
		s.stopBackground()
		s.background.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.flushUsage(ctx); err != nil {
			s.log.Warn("flush secret last-use times and token counts", "error", err)
		}
		cancel()
	}
	if s.quota != nil {
		// What this replica reserved and did not issue goes back, so a
		// restart costs no client its quota.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.quota.Close(ctx); err != nil {
			s.log.Warn("give back reserved quota", "error", err)
		}
		cancel()
	}
	s.closeAudit()
	err := s.store.Close()
	s.unlock()
	shutdownTracing(s.tracerProvider, s.log)
	return err
}

// Timeouts bound each phase of an HTTP connection, so that slow or stalled
// clients (slowloris) cannot hold connections open. A zero field takes its
// value from DefaultTimeouts.
type Timeouts struct {
	ReadHeader time.Duration // request line and headers, however slowly they trickle in
	Read       time.Duration // the whole request, body included
	Write      time.Duration // from the end of the headers to the end of the response
	Idle       time.Duration // a kept-alive connection between requests
	// Request bounds a request's work (its context's deadline), below
	// Write so that the answer still goes out: a database that stops
	// answering yields a 503 in time instead of a request that hangs.
	Request time.Duration
}

// DefaultTimeouts are the timeouts of `m2mauth serve`.
var DefaultTimeouts = Timeouts{ReadHeader: 5 * time.Second, Read: 15 * time.Second, Write: 30 * time.Second, Idle: 120 * time.Second, Request: 20 * time.Second}

func (t Timeouts) withDefaults() Timeouts {
	pick := func(v, d time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return d
	}
	d := DefaultTimeouts
	return Timeouts{pick(t.ReadHeader, d.ReadHeader), pick(t.Read, d.Read), pick(t.Write, d.Write), pick(t.Idle, d.Idle), pick(t.Request, d.Request)}
}

// HTTPServer returns an http.Server for h with timeouts on every phase.
func HTTPServer(h http.Handler, log *slog.Logger, t Timeouts) *http.Server {
	t = t.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Serve serves on ln until ctx is done, then shuts down gracefully: it stops
// accepting, lets in-flight requests finish (up to the shutdown timeout),
// and closes the store.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stopMetrics, err := s.serveMetrics()
	if err != nil {
		ln.Close()
		s.Close()
		return err
	}
	hs := HTTPServer(s.handler, s.log, s.timeouts)
	errc := make(chan error, 1)
	scheme := "http"
	if s.tlsConfig != nil {
		scheme = "https"
		hs.TLSConfig = s.tlsConfig
		// ServeTLS (not Serve on a TLS listener) sets up HTTP/2; the
		// certificate comes from GetCertificate, not from files given here.
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- hs.Serve(ln) }()
	}
	s.log.Info("m2mauth serving", "addr", ln.Addr().String(), "scheme", scheme,
		"client_certificates_requested", s.tlsConfig != nil && s.tlsConfig.ClientAuth == tls.RequestClientCert,
		"issuer", s.cfg.Issuer,
		"discovery", s.cfg.Issuer+"/.well-known/openid-configuration", "database", s.databaseName(),
		"version", buildinfo.Version(), "crypto_backend", buildinfo.CryptoBackend())
	if len(s.cfg.TrustedProxies) > 0 {
		s.log.Info("X-Forwarded-For is believed from the trusted proxies", "trusted_proxies", s.cfg.TrustedProxies,
			"client_cert_header", s.cfg.ClientCertHeader)
	}
	if s.console != nil {
		s.log.Info("admin console at "+s.cfg.Issuer+console.Prefix+": sign in with the link `m2mauth console` prints, or with the client_id and client_secret of an admin client (the bootstrap admin's are in admin.json)",
			"console", s.cfg.Issuer+console.Prefix)
	}
	select {
	case err := <-errc:
		_ = stopMetrics(context.Background())
		s.Close()
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err = hs.Shutdown(sctx)
	// Metrics are served until the public listener has drained: the last
	// requests are counted where a final scrape can still see them.
	if merr := stopMetrics(sctx); err == nil {
		err = merr
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		s.log.Info("stopped")
	}
	return err
}

func (s *Server) databaseName() string {
	if s.cfg.IsPostgres() {
		return "postgres"
	}
	return "sqlite:" + s.cfg.SQLitePath()
}

// Run builds the server, listens on cfg.Addr and serves until ctx is done.
// The server owns opts.TracerProvider from the start: it is shut down
// however Run ends.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, opts Options) error {
	s, err := NewWithOptions(ctx, cfg, log, nil, opts)
	if err != nil {
		shutdownTracing(opts.TracerProvider, log)
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		s.Close()
		return err
	}
	return s.Serve(ctx, ln)
}
