// Package metrics is the server's Prometheus instrumentation: one
// non-global registry holding the token endpoint's families (fed by
// oauth.Outcome through Observe), the HTTP routes', the database's, the
// change feed's, the signing keys' and the client secrets', served by
// Handler on a listener of its own.
//
// Every label value is from a bounded set the server defines: anything a
// caller sent is mapped to a fixed value ("other", "none") before it could
// reach a label, and client ids appear only for existing clients of the
// bounded set the operator chose (Config.Clients, Config.TopClients).
package metrics

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/m2mauth/m2mauth/internal/oauth"
)

// Namespace prefixes every family of the server's own.
const Namespace = "m2mauth"

// Config is what the metrics hold.
type Config struct {
	// Clients are the client ids (of the default environment) counted one
	// by one in m2mauth_client_tokens_issued_total: an explicit opt-in.
	Clients []string
	// TopClients is how many clients of the default environment
	// m2mauth_client_secret_age_seconds and m2mauth_client_tokens_recent
	// report besides Clients (the oldest secrets, the most tokens).
	TopClients int
	// ChangeFeed says the store has a change feed (PostgreSQL): its
	// families exist only then (SQLite has none to be down).
	ChangeFeed bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Metrics is the server's registry and its families.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time
	cfg Config

	tokenRequests  *prometheus.CounterVec
	tokenDuration  *prometheus.HistogramVec
	tokensIssued   *prometheus.CounterVec
	limited        *prometheus.CounterVec
	introspections *prometheus.CounterVec
	revocations    *prometheus.CounterVec
	clientIssued   *prometheus.CounterVec
	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	dbDuration     *prometheus.HistogramVec
	dbErrors       *prometheus.CounterVec
	feedConnected  prometheus.Gauge
	feedReconnects prometheus.Counter
	feedChanges    prometheus.Counter

	// Label children resolved once, on first use, so that observing a
	// request costs no lookup and no allocation.
	tokenCounters [nSurfaces * nGrants * nMethods * nCodes]atomic.Pointer[prometheus.Counter]
	tokenHists    [nSurfaces]prometheus.Observer
	issuedByAlg   [nAlgs]atomic.Pointer[prometheus.Counter]
	limitedBy     [nEndpoints]prometheus.Counter
	introspectBy  [nCodes]atomic.Pointer[prometheus.Counter]
	revokeBy      [nCodes]atomic.Pointer[prometheus.Counter]
	perClient     map[string]*lazyCounter // read-only after New
	dbBy          [nOps]prometheus.Observer
	dbErrBy       [nOps]prometheus.Counter
	httpChildren  sync.Map // httpKey → *httpChild

	// feedSince is when the change feed last connected or delivered a
	// change (Unix nanoseconds; 0: never).
	feedSince atomic.Int64
	feedSeen  atomic.Bool // the feed has connected at least once

	mu     sync.Mutex
	keys   func() KeyStats
	report ClientReport
}

type lazyCounter struct {
	once sync.Once
	c    prometheus.Counter
}

// New returns the metrics with the Go runtime and process collectors
// registered.
func New(cfg Config) *Metrics {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Metrics{reg: prometheus.NewRegistry(), now: cfg.Now, cfg: cfg}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{m.reg}
	m.tokenRequests = f.counterVec("token_requests_total",
		"Token endpoint requests by surface, grant type, client authentication method and outcome (ok or the error code answered).",
		"surface", "grant_type", "auth_method", "code")
	m.tokenDuration = f.histogramVec("token_request_duration_seconds",
		"Time to answer a token endpoint request, by surface.", "surface")
	m.tokensIssued = f.counterVec("tokens_issued_total", "Access tokens issued, by signing algorithm.", "alg")
	m.limited = f.counterVec("auth_failure_limited_total",
		"Requests refused with 429 by the failed-authentication limiter, before their credentials were checked, by endpoint.", "endpoint")
	m.introspections = f.counterVec("introspection_requests_total", "Introspection (RFC 7662) requests by outcome.", "code")
	m.revocations = f.counterVec("revocation_requests_total", "Revocation (RFC 7009) requests by outcome.", "code")
	m.clientIssued = f.counterVec("client_tokens_issued_total",
		"Access tokens issued to the clients of the default environment named by --metrics-clients.", "client_id")
	m.httpRequests = f.counterVec("http_requests_total",
		"HTTP requests to the routes other than the token, introspection and revocation endpoints (JWKS, discovery, the admin API, the console, health), by route pattern and status.",
		"route", "code")
	m.httpDuration = f.histogramVec("http_request_duration_seconds",
		"Time to answer an HTTP request to a route of m2mauth_http_requests_total, by route pattern.", "route")
	m.dbDuration = f.histogramVec("db_query_duration_seconds", "Database call latency by operation.", "op")
	m.dbErrors = f.counterVec("db_query_errors_total", "Database calls that failed, by operation.", "op")
	feed := f
	if !cfg.ChangeFeed {
		feed = factory{prometheus.NewRegistry()} // made, never served
	}
	m.feedConnected = feed.gauge("change_feed_connected", "1 while the change feed (PostgreSQL LISTEN) is connected, else 0.")
	m.feedReconnects = feed.counter("change_feed_reconnects_total", "Times the change feed connected again after it was lost.")
	m.feedChanges = feed.counter("change_feed_changes_total", "Changes the change feed delivered.")
	for i := range m.tokenHists {
		m.tokenHists[i] = m.tokenDuration.WithLabelValues(surfaceNames[i])
	}
	for i := range m.limitedBy {
		m.limitedBy[i] = m.limited.WithLabelValues(endpointNames[i])
	}
	for i := range m.dbBy {
		m.dbBy[i] = m.dbDuration.WithLabelValues(opNames[i])
		m.dbErrBy[i] = m.dbErrors.WithLabelValues(opNames[i])
	}
	m.perClient = make(map[string]*lazyCounter, len(cfg.Clients))
	for _, id := range cfg.Clients {
		m.perClient[id] = &lazyCounter{}
	}
	m.reg.MustRegister(stateCollector{m})
	return m
}

// Register adds another component's collector (audit sink drops, quota
// refusals, …) to the registry.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }

// Registry returns the registry (for tests and promhttp).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: true, MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// RegisterDB adds the pool statistics of db (connections open, in use,
// idle, waits).
func (m *Metrics) RegisterDB(db *sql.DB) error {
	return m.reg.Register(collectors.NewDBStatsCollector(db, Namespace))
}

// Observe implements oauth.Observer: it counts one request of a token,
// introspection or revocation endpoint. It allocates nothing once the
// label children it needs were first used.
func (m *Metrics) Observe(_ context.Context, o oauth.Outcome) {
	c := codeIndex(o.Code)
	if o.Code == oauth.CodeTooManyRequests && !o.QuotaExceeded {
		// Refused before its credentials were checked: the limiter of
		// failed authentications (a quota refuses authenticated callers).
		m.limitedBy[endpointIndex(o.Endpoint)].Inc()
	}
	switch o.Endpoint {
	case "introspect":
		child(&m.introspectBy[c], m.introspections, codeNames[c]).Inc()
		return
	case "revoke":
		child(&m.revokeBy[c], m.revocations, codeNames[c]).Inc()
		return
	}
	s, g, a := surfaceIndex(o.Surface), grantIndex(o.GrantType), methodIndex(o.AuthMethod)
	i := ((s*nGrants+g)*nMethods+a)*nCodes + c
	child(&m.tokenCounters[i], m.tokenRequests, surfaceNames[s], grantNames[g], methodNames[a], codeNames[c]).Inc()
	m.tokenHists[s].Observe(o.Duration.Seconds())
	if o.Token == nil {
		return
	}
	if !o.Token.Reused {
		// A token handed out again was not signed for this request
		// (m2mauth_tokens_reused_total counts those).
		al := algIndex(o.Token.Alg)
		child(&m.issuedByAlg[al], m.tokensIssued, algNames[al]).Inc()
	}
	if len(m.perClient) > 0 && o.Env == defaultEnv {
		if lc := m.perClient[o.Token.ClientID]; lc != nil {
			// Created on the client's first token: only a client that
			// exists ever becomes a label.
			lc.once.Do(func() { lc.c = m.clientIssued.WithLabelValues(o.Token.ClientID) })
			lc.c.Inc()
		}
	}
}

// defaultEnv is store.DefaultEnv (not imported: the store is not a
// dependency of the metrics).
const defaultEnv = "default"

// child returns the cached child of vec for the label values, resolving
// it on first use.
func child(p *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, lvs ...string) prometheus.Counter {
	if c := p.Load(); c != nil {
		return *c
	}
	c := vec.WithLabelValues(lvs...)
	p.Store(&c)
	return c
}

// ObserveQuery records one database call: op is "query", "exec",
// "begin", "commit", "rollback", "prepare" or "ping" (anything else counts
// as "other"); err is its failure, if any (driver.ErrSkip, the driver's
// "not supported here", and a cancelled context are not failures of the
// database).
func (m *Metrics) ObserveQuery(op string, d time.Duration, err error) {
	i := opIndex(op)
	m.dbBy[i].Observe(d.Seconds())
	if err != nil && !errors.Is(err, driver.ErrSkip) && !errors.Is(err, context.Canceled) && !errors.Is(err, sql.ErrNoRows) {
		m.dbErrBy[i].Inc()
	}
}

type httpKey struct {
	route  string
	status int
}

type httpChild struct {
	count prometheus.Counter
	dur   prometheus.Observer
}

// ObserveHTTP records one request to a route (the pattern of the routes
// table that matched, or a fixed name for none: never the path itself).
func (m *Metrics) ObserveHTTP(route string, status int, d time.Duration) {
	k := httpKey{route, status}
	v, ok := m.httpChildren.Load(k)
	if !ok {
		v, _ = m.httpChildren.LoadOrStore(k, &httpChild{
			count: m.httpRequests.WithLabelValues(route, strconv.Itoa(status)),
			dur:   m.httpDuration.WithLabelValues(route),
		})
	}
	c := v.(*httpChild)
	c.count.Inc()
	c.dur.Observe(d.Seconds())
}

// FeedState records that the change feed connected (up) or was lost.
func (m *Metrics) FeedState(up bool) {
	if !up {
		m.feedConnected.Set(0)
		return
	}
	if m.feedSeen.Swap(true) {
		m.feedReconnects.Inc()
	}
	m.feedConnected.Set(1)
	m.feedSince.Store(m.now().UnixNano())
}

// FeedChange records that the change feed delivered a change.
func (m *Metrics) FeedChange() {
	m.feedChanges.Inc()
	m.feedSince.Store(m.now().UnixNano())
}

// KeyStats describes the signing keys.
type KeyStats struct {
	// Active, Next and Retired count the default environment's keys by
	// state.
	Active, Next, Retired int
	// RotateAt is when the default environment's next rotation is due (a
	// next key's activation, or the active key's period's end); zero when
	// none is scheduled (rotation off).
	RotateAt time.Time
	// Environments is how many environments are loaded, and Overdue how
	// many of them have a rotation more than a minute past due.
	Environments, Overdue int
}

// SetKeySource sets the function read at each scrape for the signing
// keys' state.
func (m *Metrics) SetKeySource(fn func() KeyStats) {
	m.mu.Lock()
	m.keys = fn
	m.mu.Unlock()
}

// ClientAge is how old a client's oldest live secret is.
type ClientAge struct {
	ClientID  string
	CreatedAt time.Time
}

// ClientTokens is how many tokens a client was issued recently.
type ClientTokens struct {
	ClientID string
	Tokens   int64
}

// ClientReport is the per-client state of the default environment,
// refreshed periodically by the server (a bounded query, never at scrape).
type ClientReport struct {
	SecretAges []ClientAge
	Tokens     []ClientTokens
}

// SetClientReport replaces the per-client state reported.
func (m *Metrics) SetClientReport(r ClientReport) {
	m.mu.Lock()
	m.report = r
	m.mu.Unlock()
}

// Clients are the opt-in client ids; TopClients the size of the top-N.
func (m *Metrics) Clients() []string { return m.cfg.Clients }
func (m *Metrics) TopClients() int   { return m.cfg.TopClients }

// stateCollector reports, at each scrape, what is read rather than
// counted: the change feed's idle time, the signing keys, the clients'
// secret ages and recent tokens.
type stateCollector struct{ m *Metrics }

var (
	descFeedIdle = prometheus.NewDesc(Namespace+"_change_feed_idle_seconds",
		"Seconds since the change feed last connected or delivered a change (absent before it first connects, and on SQLite, which has no feed).", nil, nil)
	descKeys = prometheus.NewDesc(Namespace+"_signing_keys",
		"Signing keys of the default environment by state (active, next, retired).", []string{"state"}, nil)
	descRotation = prometheus.NewDesc(Namespace+"_signing_key_rotation_seconds",
		"Seconds until the default environment's next key rotation (negative: overdue; absent when automatic rotation is off).", nil, nil)
	descEnvs = prometheus.NewDesc(Namespace+"_environments_loaded",
		"Environments held in memory.", nil, nil)
	descOverdue = prometheus.NewDesc(Namespace+"_signing_key_rotation_overdue_environments",
		"Loaded environments whose key rotation is more than a minute past due.", nil, nil)
	descSecretAge = prometheus.NewDesc(Namespace+"_client_secret_age_seconds",
		"Seconds since the creation of the oldest live secret of each client of the bounded set (the default environment's --metrics-top-clients oldest, and --metrics-clients).", []string{"client_id"}, nil)
	descRecent = prometheus.NewDesc(Namespace+"_client_tokens_recent",
		"Tokens issued since the start of the previous hour to each client of the bounded set (the default environment's --metrics-top-clients busiest, and --metrics-clients).", []string{"client_id"}, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFeedIdle, descKeys, descRotation, descEnvs, descOverdue, descSecretAge, descRecent} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	now := m.now()
	if since := m.feedSince.Load(); since != 0 && m.cfg.ChangeFeed {
		ch <- prometheus.MustNewConstMetric(descFeedIdle, prometheus.GaugeValue, now.Sub(time.Unix(0, since)).Seconds())
	}
	m.mu.Lock()
	keys, report := m.keys, m.report
	m.mu.Unlock()
	if keys != nil {
		k := keys()
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(k.Active), "active")
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(k.Next), "next")
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(k.Retired), "retired")
		if !k.RotateAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(descRotation, prometheus.GaugeValue, k.RotateAt.Sub(now).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(descEnvs, prometheus.GaugeValue, float64(k.Environments))
		ch <- prometheus.MustNewConstMetric(descOverdue, prometheus.GaugeValue, float64(k.Overdue))
	}
	for _, a := range report.SecretAges {
		ch <- prometheus.MustNewConstMetric(descSecretAge, prometheus.GaugeValue, max(0, now.Sub(a.CreatedAt).Seconds()), a.ClientID)
	}
	for _, t := range report.Tokens {
		ch <- prometheus.MustNewConstMetric(descRecent, prometheus.GaugeValue, float64(t.Tokens), t.ClientID)
	}
}

// factory makes the families, registered in reg.
type factory struct{ reg *prometheus.Registry }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

// histogramVec is a latency histogram with both representations: native
// (sparse, exponential: factor 1.1) for servers that scrape it, and
// classic exponential buckets from 0.5 ms to about 4 s for those that do
// not.
func (f factory) histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: name, Help: help,
		Buckets:                         prometheus.ExponentialBuckets(0.0005, 2, 14),
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}, labels)
	f.reg.MustRegister(v)
	return v
}
