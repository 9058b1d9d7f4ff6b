package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// scrape is one read of /metrics: the text and its parsed families.
type scrape struct {
	text     []byte
	families map[string]*dto.MetricFamily
}

func (ts *testServer) scrape() scrape {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.srv.MetricsAddr() + "/metrics")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		ts.t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		ts.t.Fatalf("parse the scrape: %v", err)
	}
	return scrape{body, fams}
}

// value is the value of the series of family name with exactly the labels
// given (name, value pairs; others may exist); 0 when absent.
func (s scrape) value(name string, labels ...string) float64 {
	var sum float64
	for _, m := range s.families[name].GetMetric() {
		if hasLabels(m, labels) {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			case m.Untyped != nil:
				sum += m.Untyped.GetValue()
			}
		}
	}
	return sum
}

func (s scrape) has(name string, labels ...string) bool {
	for _, m := range s.families[name].GetMetric() {
		if hasLabels(m, labels) {
			return true
		}
	}
	return false
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// metricsFamilies are every family the README lists (the change feed's
// are checked on PostgreSQL, which has one).
var metricsFamilies = []string{
	"m2mauth_token_requests_total", "m2mauth_token_request_duration_seconds", "m2mauth_tokens_issued_total",
	"m2mauth_auth_failure_limited_total", "m2mauth_introspection_requests_total", "m2mauth_revocation_requests_total",
	"m2mauth_client_tokens_issued_total", "m2mauth_http_requests_total", "m2mauth_http_request_duration_seconds",
	"m2mauth_db_query_duration_seconds", "m2mauth_db_query_errors_total",
	"m2mauth_signing_keys", "m2mauth_signing_key_rotation_seconds", "m2mauth_signing_key_rotation_overdue_environments",
	"m2mauth_environments_loaded", "m2mauth_client_secret_age_seconds", "m2mauth_client_tokens_recent",
	"go_sql_open_connections", "go_sql_in_use_connections", "go_sql_wait_count_total",
	"m2mauth_audit_events_dropped_total", "m2mauth_quota_fail_open_total", "m2mauth_tokens_reused_total", "m2mauth_clients_not_caching",
	"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total",
}

var feedFamilies = []string{"m2mauth_change_feed_connected", "m2mauth_change_feed_reconnects_total",
	"m2mauth_change_feed_changes_total", "m2mauth_change_feed_idle_seconds"}

// A server with --metrics-addr serves /metrics on that listener only; the
// token counters move by exactly the requests made, every family exists,
// nothing a caller sent becomes a label, and promtool accepts the scrape
// and the alerting rules.
func TestMetrics(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.MetricsClients = []string{"opted-in-client", "no-such-client"}
	cfg.AuthFailureRate, cfg.AuthFailureBurst = 0.001, 4
	// A client issued 5 tokens within one token lifetime is flagged as not
	// caching them (the opted-in client's 2 are too few to judge).
	cfg.ReportMinTokens, cfg.ReportTokensPerLifetime = 5, 2
	ts := startServer(t, cfg)
	if ts.srv.MetricsAddr() == "" || ts.srv.MetricsAddr() == cfg.Addr {
		t.Fatalf("metrics address %q (public %q)", ts.srv.MetricsAddr(), cfg.Addr)
	}
	if resp, _ := ts.do(mustRequest(t, http.MethodGet, ts.URL+"/metrics")); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics on the public port: %d, want 404", resp.StatusCode)
	}
	id, secret := setupOrders(ts)
	const optSecret = "opted-in-secret-0123456789abcdef0123456789"
	ts.createClient(admin.ClientInput{ClientID: "opted-in-client", ClientSecret: optSecret,
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, DefaultAudience: ordersAPI})

	before := ts.scrape()
	const ok, optOK, wrong = 5, 2, 3
	var tokens []string
	for range ok {
		tokens = append(tokens, ts.mustToken(id, secret, url.Values{}))
	}
	for range optOK {
		ts.mustToken("opted-in-client", optSecret, url.Values{})
	}
	for range wrong {
		if st, code := ts.tokenStatus(id, "m2ms_wrong-secret-planted", url.Values{}); st != http.StatusUnauthorized || code != "invalid_client" {
			t.Fatalf("wrong secret: %d %s", st, code)
		}
	}
	// A grant type the caller made up (it could be anything, a secret
	// included) is counted as "other".
	const planted = "planted-grant-m2ms_secret"
	if st, _ := ts.tokenStatus(id, secret, url.Values{"grant_type": {planted}}); st != http.StatusBadRequest {
		t.Fatalf("unknown grant: %d", st)
	}
	// The fifth failure from this address is over the burst: 429 before
	// any credential is checked.
	if st, code := ts.tokenStatus("unknown-client", "x", url.Values{}); st != http.StatusTooManyRequests {
		t.Fatalf("over the failure limit: %d %s", st, code)
	}
	if st, _ := ts.form("/oauth/revoke", id, secret, url.Values{"token": {tokens[0]}}); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	if st, _ := ts.form("/oauth/introspect", id, secret, url.Values{"token": {tokens[1]}}); st == 0 {
		t.Fatal("introspect")
	}
	if resp, _ := ts.do(mustRequest(t, http.MethodGet, ts.URL+"/.well-known/jwks.json")); resp.StatusCode != http.StatusOK {
		t.Fatal("jwks")
	}
	if resp, _ := ts.do(mustRequest(t, http.MethodGet, ts.URL+"/.well-known/openid-configuration")); resp.StatusCode != http.StatusOK {
		t.Fatal("discovery")
	}
	if resp, _ := ts.do(mustRequest(t, http.MethodGet, ts.URL+"/no/such/path/m2ms_planted")); resp.StatusCode != http.StatusNotFound {
		t.Fatal("unknown path")
	}
	ts.client(id) // an admin API read
	// The per-client report is read periodically: read it now, after
	// writing the token counts the usage recorder batches.
	ctx := context.Background()
	if err := ts.srv.flushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	ts.srv.refreshClientReport(ctx)
	after := ts.scrape()

	delta := func(name string, labels ...string) float64 {
		return after.value(name, labels...) - before.value(name, labels...)
	}
	std := []string{"surface", "standard", "grant_type", "client_credentials"}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"m2mauth_token_requests_total", append(std, "auth_method", "client_secret_basic", "code", "ok"), ok + optOK},
		{"m2mauth_token_requests_total", append(std, "auth_method", "none", "code", "invalid_client"), wrong},
		{"m2mauth_token_requests_total", []string{"surface", "standard", "grant_type", "other", "code", "unsupported_grant_type"}, 1},
		{"m2mauth_token_requests_total", append(std, "auth_method", "none", "code", "too_many_requests"), 1},
		{"m2mauth_token_requests_total", nil, ok + optOK + wrong + 2},
		{"m2mauth_token_request_duration_seconds", []string{"surface", "standard"}, ok + optOK + wrong + 2},
		{"m2mauth_tokens_issued_total", []string{"alg", "RS256"}, ok + optOK},
		{"m2mauth_auth_failure_limited_total", []string{"endpoint", "token"}, 1},
		{"m2mauth_client_tokens_issued_total", []string{"client_id", "opted-in-client"}, optOK},
		{"m2mauth_revocation_requests_total", []string{"code", "ok"}, 1},
		{"m2mauth_introspection_requests_total", nil, 1},
		{"m2mauth_http_requests_total", []string{"route", "GET /.well-known/jwks.json", "code", "200"}, 1},
		{"m2mauth_http_requests_total", []string{"route", "GET /.well-known/openid-configuration", "code", "200"}, 1},
		{"m2mauth_http_requests_total", []string{"route", "(unmatched)", "code", "404"}, 1},
		{"m2mauth_http_requests_total", []string{"route", "GET /admin/v1/clients/{id}", "code", "200"}, 1},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The store reports its calls (flushing the usage counts writes).
	if got := delta("m2mauth_db_query_duration_seconds"); got < 1 {
		t.Errorf("database calls timed: %v, want some", got)
	}
	// The token routes are counted by the endpoints' observer only.
	for _, route := range []string{"/oauth/token", "/oauth/revoke", "/oauth/introspect", "/admin/v1/token"} {
		if after.has("m2mauth_http_requests_total", "route", route) {
			t.Errorf("%s in the HTTP metrics", route)
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"m2mauth_signing_keys", []string{"state", "active"}, 1},
		{"m2mauth_signing_keys", []string{"state", "next"}, 0},
		{"m2mauth_signing_key_rotation_overdue_environments", nil, 0},
		{"m2mauth_environments_loaded", nil, 1},
		{"m2mauth_audit_events_dropped_total", []string{"where", "queue"}, 0},
		{"m2mauth_tokens_reused_total", nil, 0},
		{"m2mauth_clients_not_caching", nil, 1},
		{"m2mauth_client_tokens_per_lifetime", []string{"client_id", id}, ok},
		{"m2mauth_client_tokens_recent", []string{"client_id", id}, ok},
		{"m2mauth_client_tokens_recent", []string{"client_id", "opted-in-client"}, optOK},
	} {
		if got := after.value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if r := after.value("m2mauth_signing_key_rotation_seconds"); r < 29*24*3600 || r > 30*24*3600 {
		t.Errorf("rotation in %vs, want about 30 days", r)
	}
	for _, c := range []string{id, "opted-in-client"} {
		if age := after.value("m2mauth_client_secret_age_seconds", "client_id", c); !after.has("m2mauth_client_secret_age_seconds", "client_id", c) || age < 0 || age > 60 {
			t.Errorf("secret age of %s: %v", c, age)
		}
	}
	for _, name := range metricsFamilies {
		if after.families[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	for _, name := range feedFamilies {
		if after.families[name] != nil {
			t.Errorf("family %s on SQLite, which has no change feed", name)
		}
	}
	for _, leak := range []string{secret, optSecret, "m2ms_wrong-secret-planted", planted, "m2ms_planted", "no-such-client", "unknown-client", tokens[0][:40]} {
		if bytes.Contains(after.text, []byte(leak)) {
			t.Errorf("the scrape contains %q", leak)
		}
	}
	checkDeployNames(t, after)
	promtoolCheck(t, after.text)
}

// checkDeployNames checks that the Grafana dashboard and the alerting
// rules name only families the server serves.
func checkDeployNames(t *testing.T, s scrape) {
	t.Helper()
	name := regexp.MustCompile(`\b(?:m2mauth|go|process)_[a-z_]+\b`)
	for _, file := range []string{"grafana/m2mauth.json", "prometheus/alerts.yml", "prometheus/alerts_test.yml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", file))
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, n := range name.FindAllString(string(b), -1) {
			fam := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if f := strings.TrimSuffix(n, suffix); s.families[f] != nil {
					fam = f
				}
			}
			if s.families[fam] == nil && !slices.Contains(feedFamilies, fam) {
				t.Errorf("%s names %s, which the server does not serve", file, n)
			}
			seen++
		}
		if seen == 0 {
			t.Errorf("%s names no family", file)
		}
	}
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// promtoolCheck lints the scrape and checks and unit-tests the alerting
// rules with promtool (Debian's prometheus package). Without it the checks
// are skipped, except under CI, where they must run.
func promtoolCheck(t *testing.T, scrape []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no promtool (CI is set, so the checks must run: install Debian's prometheus package)")
		}
		t.Log("no promtool: skipping promtool check metrics and check/test rules")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	dir := filepath.Join("..", "..", "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// On PostgreSQL the change feed's families exist and say it is connected.
func TestMetricsChangeFeed(t *testing.T) {
	cfg := testConfig(t)
	cfg.Database = pgtest.DSN(t)
	cfg.MetricsAddr = "127.0.0.1:0"
	ts := startServer(t, cfg)
	s := ts.scrape()
	for _, name := range append(feedFamilies, "m2mauth_token_request_duration_seconds", "m2mauth_signing_keys", "go_sql_open_connections", "process_cpu_seconds_total") {
		if s.families[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	if v := s.value("m2mauth_change_feed_connected"); v != 1 {
		t.Errorf("change feed connected = %v, want 1", v)
	}
	if v := s.value("m2mauth_change_feed_idle_seconds"); v < 0 || v > float64(time.Minute/time.Second) {
		t.Errorf("change feed idle for %vs", v)
	}
	promtoolCheck(t, s.text)
}

// Without --metrics-addr there is no metrics listener, and the audit trail
// is the only observer.
func TestMetricsOff(t *testing.T) {
	ts := startServer(t, testConfig(t))
	if ts.srv.MetricsAddr() != "" || ts.srv.Metrics() != nil || ts.srv.observers() != oauth.Observer(ts.srv.audit) {
		t.Fatal("metrics on without --metrics-addr")
	}
}
