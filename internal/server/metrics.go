package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/m2mauth/m2mauth/internal/metrics"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/report"
	"github.com/m2mauth/m2mauth/internal/store"
)

// metricsReportInterval is how often the per-client metrics (secret ages,
// recent tokens) are read from the database.
const metricsReportInterval = time.Minute

// rotationOverdueAfter is how long past due a rotation counts as overdue
// (maintenance runs every few seconds; a minute is a failure).
const rotationOverdueAfter = time.Minute

// metricsBodyLimit bounds what the metrics listener reads of a request
// (a scrape is a GET: nothing).
const metricsBodyLimit = 1 << 10

// queryForwarder passes the store's database calls to the metrics once
// they exist (the store opens first); calls before that are not counted.
type queryForwarder struct {
	m atomic.Pointer[metrics.Metrics]
}

func (f *queryForwarder) ObserveQuery(op string, d time.Duration, err error) {
	if m := f.m.Load(); m != nil {
		m.ObserveQuery(op, d, err)
	}
}

// initMetrics builds the metrics when --metrics-addr is set.
func (s *Server) initMetrics() error {
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	_, feed := s.store.(changeFeed)
	m := metrics.New(metrics.Config{Clients: s.cfg.MetricsClients, TopClients: s.cfg.MetricsTopClients, ChangeFeed: feed, Now: s.now})
	if db, ok := s.store.(interface{ DB() *sql.DB }); ok {
		if err := m.RegisterDB(db.DB()); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	m.SetKeySource(s.keyStats)
	if err := m.Register(componentCollector{s}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	s.metrics = m
	return nil
}

// componentCollector reports, at each scrape, what other components count
// themselves: the audit trail's drops, quota admissions made without the
// database, token reuse, and the clients that never cache tokens (the last
// report read by refreshClientReport).
type componentCollector struct{ s *Server }

var (
	descAuditDropped = prometheus.NewDesc(metrics.Namespace+"_audit_events_dropped_total",
		"Audit events dropped, by where: queue (token events refused by the full queue), db (refused by the database for too long), sink:<name> (a sink's full queue or failed delivery).", []string{"where"}, nil)
	descQuotaFailOpen = prometheus.NewDesc(metrics.Namespace+"_quota_fail_open_total",
		"Token requests of clients with a quota admitted by local counting alone, the database being unreachable (bounded fail-open).", nil, nil)
	descTokensReused = prometheus.NewDesc(metrics.Namespace+"_tokens_reused_total",
		"Token responses that handed out a token issued before again (per-client token reuse) instead of signing one.", nil, nil)
	descNotCaching = prometheus.NewDesc(metrics.Namespace+"_clients_not_caching",
		"Clients of the default environment the token caching report flags (more than --report-tokens-per-lifetime tokens per token a caching client needs).", nil, nil)
	descPerLifetime = prometheus.NewDesc(metrics.Namespace+"_client_tokens_per_lifetime",
		"Tokens issued per token a caching client would have needed, for the flagged clients of the default environment (the --metrics-top-clients worst).", []string{"client_id"}, nil)
)

func (c componentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAuditDropped, descQuotaFailOpen, descTokensReused, descNotCaching, descPerLifetime} {
		ch <- d
	}
}

func (c componentCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	if s.audit != nil {
		for where, n := range s.audit.Dropped() {
			ch <- prometheus.MustNewConstMetric(descAuditDropped, prometheus.CounterValue, float64(n), where)
		}
	}
	if s.quota != nil {
		ch <- prometheus.MustNewConstMetric(descQuotaFailOpen, prometheus.CounterValue, float64(s.quota.FailOpen()))
	}
	if s.tokens != nil {
		reused, _ := s.tokens.ReuseCounts()
		ch <- prometheus.MustNewConstMetric(descTokensReused, prometheus.CounterValue, float64(reused))
	}
	s.caching.mu.Lock()
	findings, known := s.caching.findings, s.caching.known
	s.caching.mu.Unlock()
	if !known {
		return
	}
	ch <- prometheus.MustNewConstMetric(descNotCaching, prometheus.GaugeValue, float64(len(findings)))
	for i, f := range findings {
		if i == s.cfg.MetricsTopClients {
			break
		}
		ch <- prometheus.MustNewConstMetric(descPerLifetime, prometheus.GaugeValue, f.TokensPerLifetime, f.ClientID)
	}
}

// cachingReport is the last token caching report of the default
// environment, read with the per-client metrics.
type cachingReport struct {
	mu       sync.Mutex
	findings []report.Finding // worst first
	known    bool
}

// Metrics returns the server's metrics (nil without --metrics-addr), for
// other components to register their collectors in.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// observers are the endpoints' observers: the audit trail, and the
// metrics when they are on.
func (s *Server) observers() oauth.Observer {
	if s.metrics == nil {
		return s.audit
	}
	return oauth.Observers{s.metrics, s.audit}
}

// keyStats reads the signing keys' state, from memory: the default
// environment's keys by state and next rotation, and how many loaded
// environments have a rotation overdue (environments can be thousands:
// they are counted, never labelled).
func (s *Server) keyStats() metrics.KeyStats {
	st := s.env.Keys.Status()
	ks := metrics.KeyStats{Active: st.Active, Next: st.Next, Retired: st.Retired, RotateAt: st.RotateAt}
	late := s.now().Add(-rotationOverdueAfter)
	for _, l := range s.envs.all() {
		ks.Environments++
		if at := l.env.Keys.Status().RotateAt; !at.IsZero() && at.Before(late) {
			ks.Overdue++
		}
	}
	return ks
}

// refreshClientReport reads the per-client metrics of the default
// environment: the --metrics-top-clients clients with the oldest live
// secrets and with the most tokens since the start of the previous hour,
// and the --metrics-clients ones. Every query is bounded by a limit or by
// the opt-in list.
func (s *Server) refreshClientReport(ctx context.Context) {
	m := s.metrics
	now := s.now()
	var r metrics.ClientReport
	var errs []error
	if n := m.TopClients(); n > 0 {
		ages, err := s.store.OldestSecrets(ctx, now, n)
		errs = append(errs, err)
		for _, a := range ages {
			r.SecretAges = append(r.SecretAges, metrics.ClientAge{ClientID: a.ClientID, CreatedAt: a.CreatedAt})
		}
	}
	optIn := s.reportSecretAges(ctx, now, &r, &errs)
	// Tokens since the start of the previous hour (the store counts per
	// hour): the top clients' totals, and the opt-in clients' hours.
	since := now.UTC().Truncate(time.Hour).Add(-time.Hour)
	tokens := map[string]int64{}
	if n := m.TopClients(); n > 0 {
		top, err := s.store.TopTokenClients(ctx, since, n)
		errs = append(errs, err)
		for _, u := range top {
			tokens[u.ClientID] = u.Tokens
		}
	}
	var rest []string
	for _, id := range optIn {
		if _, top := tokens[id]; !top {
			rest = append(rest, id)
			tokens[id] = 0
		}
	}
	if len(rest) > 0 {
		hours, err := s.store.TokenUsage(ctx, since, rest)
		errs = append(errs, err)
		for _, u := range hours {
			tokens[u.ClientID] += u.Tokens
		}
	}
	for id, n := range tokens {
		r.Tokens = append(r.Tokens, metrics.ClientTokens{ClientID: id, Tokens: n})
	}
	slices.SortFunc(r.Tokens, func(a, b metrics.ClientTokens) int { return strings.Compare(a.ClientID, b.ClientID) })
	if rep, err := s.report.Report(ctx, s.store); err != nil {
		errs = append(errs, err)
	} else {
		s.caching.mu.Lock()
		s.caching.findings, s.caching.known = rep.Findings, true
		s.caching.mu.Unlock()
	}
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("metrics: read the per-client report; the previous one is kept", "error", err)
		}
		return
	}
	m.SetClientReport(r)
}

// reportSecretAges adds the opt-in clients' oldest live secrets to r (the
// top ones are there already) and returns the opt-in ids that name an
// existing client: only those become label values.
func (s *Server) reportSecretAges(ctx context.Context, now time.Time, r *metrics.ClientReport, errs *[]error) (optIn []string) {
	for _, id := range s.metrics.Clients() {
		c, err := s.store.GetClient(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		optIn = append(optIn, id)
		if slices.ContainsFunc(r.SecretAges, func(a metrics.ClientAge) bool { return a.ClientID == id }) {
			continue
		}
		var oldest time.Time
		for _, sec := range c.Secrets {
			if sec.Live(now) && (oldest.IsZero() || sec.CreatedAt.Before(oldest)) {
				oldest = sec.CreatedAt
			}
		}
		if !oldest.IsZero() {
			r.SecretAges = append(r.SecretAges, metrics.ClientAge{ClientID: id, CreatedAt: oldest})
		}
	}
	return optIn
}

// serveMetrics serves /metrics on --metrics-addr (a listener of its own,
// with the same timeouts as the public one) until stop is called.
func (s *Server) serveMetrics() (stop func(context.Context) error, err error) {
	if s.metrics == nil {
		return func(context.Context) error { return nil }, nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	s.metricsAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", limitBody(metricsBodyLimit, s.metrics.Handler()))
	hs := HTTPServer(mux, s.log, s.timeouts)
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics listener", "error", err)
		}
	}()
	s.log.Info("metrics served", "addr", s.metricsAddr, "path", "/metrics")
	return hs.Shutdown, nil
}

// MetricsAddr is the address /metrics is served on, once Serve runs ("":
// none).
func (s *Server) MetricsAddr() string { return s.metricsAddr }
