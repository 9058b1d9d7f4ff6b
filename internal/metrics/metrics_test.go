package metrics

import (
	"context"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/m2mauth/m2mauth/internal/oauth"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(cfg Config) (*Metrics, *clock) {
	c := &clock{time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)}
	cfg.Now = c.now
	return New(cfg), c
}

func ok(surface, client string) oauth.Outcome {
	return oauth.Outcome{Endpoint: "token", Surface: surface, Env: "default", GrantType: "client_credentials",
		AuthMethod: "client_secret_basic", ClientID: client, Code: oauth.CodeOK, Status: 200, Duration: 3 * time.Millisecond,
		Token: &oauth.TokenResponse{ClientID: client, Alg: "ES256"}}
}

func TestObserveCounts(t *testing.T) {
	m, _ := newTest(Config{Clients: []string{"opt"}})
	ctx := context.Background()
	m.Observe(ctx, ok("standard", "a"))
	m.Observe(ctx, ok("standard", "opt"))
	m.Observe(ctx, ok("atm", "opt"))
	// In another environment "opt" is another client: not counted by id.
	other := ok("standard", "opt")
	other.Env = "staging"
	m.Observe(ctx, other)
	// A token handed out again (token reuse) is a request served, not a
	// token signed.
	reused := ok("standard", "a")
	reused.Token.Reused = true
	m.Observe(ctx, reused)
	m.Observe(ctx, oauth.Outcome{Endpoint: "token", Surface: "standard", GrantType: "client_credentials", Code: "invalid_client", Status: 401})
	m.Observe(ctx, oauth.Outcome{Endpoint: "token", Surface: "machine", Code: oauth.CodeTooManyRequests, Status: 429})
	// A quota's 429 comes after authentication: not the failure limiter.
	m.Observe(ctx, oauth.Outcome{Endpoint: "token", Surface: "standard", GrantType: "client_credentials", AuthMethod: "client_secret_post", Code: oauth.CodeTooManyRequests, Status: 429, QuotaExceeded: true})
	m.Observe(ctx, oauth.Outcome{Endpoint: "introspect", Surface: "introspection", Code: oauth.CodeOK})
	m.Observe(ctx, oauth.Outcome{Endpoint: "revoke", Surface: "revocation", Code: "invalid_client"})

	for _, c := range []struct {
		got, want float64
		what      string
	}{
		{testutil.ToFloat64(m.tokenRequests.WithLabelValues("standard", "client_credentials", "client_secret_basic", "ok")), 4, "standard ok"},
		{testutil.ToFloat64(m.tokenRequests.WithLabelValues("atm", "client_credentials", "client_secret_basic", "ok")), 1, "atm ok"},
		{testutil.ToFloat64(m.tokenRequests.WithLabelValues("standard", "client_credentials", "none", "invalid_client")), 1, "invalid_client"},
		{testutil.ToFloat64(m.tokenRequests.WithLabelValues("machine", "none", "none", "too_many_requests")), 1, "limited"},
		{testutil.ToFloat64(m.tokensIssued.WithLabelValues("ES256")), 4, "issued ES256"},
		{testutil.ToFloat64(m.clientIssued.WithLabelValues("opt")), 2, "opt-in client"},
		{testutil.ToFloat64(m.limited.WithLabelValues("token")), 1, "failure limiter"},
		{testutil.ToFloat64(m.introspections.WithLabelValues("ok")), 1, "introspection"},
		{testutil.ToFloat64(m.revocations.WithLabelValues("invalid_client")), 1, "revocation"},
		{float64(testutil.CollectAndCount(m.clientIssued)), 1, "per-client series"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
}

// The certificate methods and the DPoP error codes have label values of
// their own.
func TestObserveSenderConstrained(t *testing.T) {
	m, _ := newTest(Config{})
	ctx := context.Background()
	for _, method := range []string{"tls_client_auth", "self_signed_tls_client_auth"} {
		o := ok("standard", "c")
		o.AuthMethod = method
		m.Observe(ctx, o)
	}
	for _, code := range []string{"invalid_dpop_proof", "use_dpop_nonce"} {
		m.Observe(ctx, oauth.Outcome{Endpoint: "token", Surface: "standard", GrantType: "client_credentials", Code: code, Status: 400})
	}
	for _, c := range []struct{ method, code string }{
		{"tls_client_auth", "ok"}, {"self_signed_tls_client_auth", "ok"}, {"none", "invalid_dpop_proof"}, {"none", "use_dpop_nonce"},
	} {
		if n := testutil.ToFloat64(m.tokenRequests.WithLabelValues("standard", "client_credentials", c.method, c.code)); n != 1 {
			t.Errorf("%s %s: %v", c.method, c.code, n)
		}
	}
}

// Whatever an outcome carries, the label values are the bounded ones.
func TestObserveBoundsLabels(t *testing.T) {
	m, _ := newTest(Config{})
	planted := "m2ms_planted-secret"
	m.Observe(context.Background(), oauth.Outcome{Endpoint: planted, Surface: planted, GrantType: planted, AuthMethod: planted,
		Code: planted, ClientID: planted, Token: &oauth.TokenResponse{ClientID: planted, Alg: planted}})
	if n := testutil.ToFloat64(m.tokenRequests.WithLabelValues("other", "other", "other", "other")); n != 1 {
		t.Errorf("other: %v", n)
	}
	if n := testutil.ToFloat64(m.tokensIssued.WithLabelValues("other")); n != 1 {
		t.Errorf("alg other: %v", n)
	}
	if err := testutil.CollectAndCompare(m.clientIssued, strings.NewReader("")); err != nil {
		t.Errorf("a client outside the opt-in list: %v", err)
	}
	out, err := testutil.CollectAndFormat(m.reg, expfmt.TypeTextPlain, "m2mauth_token_requests_total", "m2mauth_tokens_issued_total")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), planted) {
		t.Fatalf("a caller's value in a label:\n%s", out)
	}
}

// Observing a request allocates nothing once its label children exist.
func TestObserveAllocs(t *testing.T) {
	m, _ := newTest(Config{Clients: []string{"opt"}})
	ctx := context.Background()
	outcomes := []oauth.Outcome{ok("standard", "a"), ok("standard", "opt"),
		{Endpoint: "token", Surface: "standard", Code: "invalid_client", Duration: time.Millisecond},
		{Endpoint: "introspect", Code: "ok"}}
	for _, o := range outcomes {
		m.Observe(ctx, o)
	}
	for _, o := range outcomes {
		if n := testing.AllocsPerRun(100, func() { m.Observe(ctx, o) }); n != 0 {
			t.Errorf("%s %s %s: %v allocations per request", o.Endpoint, o.Surface, o.Code, n)
		}
	}
}

func TestObserveQuery(t *testing.T) {
	m, _ := newTest(Config{})
	m.ObserveQuery("query", 2*time.Millisecond, nil)
	m.ObserveQuery("query", 3*time.Millisecond, errors.New("connection reset"))
	m.ObserveQuery("exec", time.Millisecond, driver.ErrSkip)
	m.ObserveQuery("commit", time.Millisecond, context.Canceled)
	m.ObserveQuery("SELECT secret FROM x", time.Millisecond, nil)
	want := `
# HELP m2mauth_db_query_errors_total Database calls that failed, by operation.
# TYPE m2mauth_db_query_errors_total counter
m2mauth_db_query_errors_total{op="begin"} 0
m2mauth_db_query_errors_total{op="commit"} 0
m2mauth_db_query_errors_total{op="exec"} 0
m2mauth_db_query_errors_total{op="other"} 0
m2mauth_db_query_errors_total{op="ping"} 0
m2mauth_db_query_errors_total{op="prepare"} 0
m2mauth_db_query_errors_total{op="query"} 1
m2mauth_db_query_errors_total{op="rollback"} 0
`
	if err := testutil.CollectAndCompare(m.dbErrors, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	counts := map[string]uint64{}
	for _, op := range opNames {
		counts[op] = histCount(t, m, "m2mauth_db_query_duration_seconds", "op", op)
	}
	if counts["query"] != 2 || counts["exec"] != 1 || counts["commit"] != 1 || counts["other"] != 1 || counts["begin"] != 0 {
		t.Errorf("query latency counts %v", counts)
	}
	if n := testing.AllocsPerRun(100, func() { m.ObserveQuery("exec", time.Millisecond, nil) }); n != 0 {
		t.Errorf("ObserveQuery: %v allocations", n)
	}
}

func histCount(t *testing.T, m *Metrics, name, label, value string) uint64 {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return mt.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestChangeFeed(t *testing.T) {
	m, c := newTest(Config{ChangeFeed: true})
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(""), "m2mauth_change_feed_idle_seconds"); err != nil {
		t.Errorf("idle before the feed connected: %v", err)
	}
	m.FeedState(true)
	c.t = c.t.Add(30 * time.Second)
	m.FeedChange()
	c.t = c.t.Add(12 * time.Second)
	m.FeedState(false)
	m.FeedState(true)
	m.FeedState(false)
	want := `
# HELP m2mauth_change_feed_connected 1 while the change feed (PostgreSQL LISTEN) is connected, else 0.
# TYPE m2mauth_change_feed_connected gauge
m2mauth_change_feed_connected 0
# HELP m2mauth_change_feed_reconnects_total Times the change feed connected again after it was lost.
# TYPE m2mauth_change_feed_reconnects_total counter
m2mauth_change_feed_reconnects_total 1
# HELP m2mauth_change_feed_changes_total Changes the change feed delivered.
# TYPE m2mauth_change_feed_changes_total counter
m2mauth_change_feed_changes_total 1
# HELP m2mauth_change_feed_idle_seconds Seconds since the change feed last connected or delivered a change (absent before it first connects, and on SQLite, which has no feed).
# TYPE m2mauth_change_feed_idle_seconds gauge
m2mauth_change_feed_idle_seconds 0
`
	c.t = c.t.Add(5 * time.Second)
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(strings.Replace(want, "idle_seconds 0", "idle_seconds 5", 1)),
		"m2mauth_change_feed_connected", "m2mauth_change_feed_reconnects_total", "m2mauth_change_feed_changes_total", "m2mauth_change_feed_idle_seconds"); err != nil {
		t.Error(err)
	}
	// Without a feed (SQLite) none of its families is served.
	m2, _ := newTest(Config{})
	m2.FeedState(true)
	if n, err := testutil.GatherAndCount(m2.reg, "m2mauth_change_feed_connected", "m2mauth_change_feed_idle_seconds"); err != nil || n != 0 {
		t.Errorf("feed families without a feed: %d %v", n, err)
	}
}

func TestStateCollector(t *testing.T) {
	m, c := newTest(Config{})
	m.SetKeySource(func() KeyStats {
		return KeyStats{Active: 1, Next: 1, Retired: 2, RotateAt: c.t.Add(-90 * time.Second), Environments: 3, Overdue: 1}
	})
	m.SetClientReport(ClientReport{
		SecretAges: []ClientAge{{ClientID: "old", CreatedAt: c.t.Add(-48 * time.Hour)}},
		Tokens:     []ClientTokens{{ClientID: "busy", Tokens: 42}},
	})
	want := `
# HELP m2mauth_signing_keys Signing keys of the default environment by state (active, next, retired).
# TYPE m2mauth_signing_keys gauge
m2mauth_signing_keys{state="active"} 1
m2mauth_signing_keys{state="next"} 1
m2mauth_signing_keys{state="retired"} 2
# HELP m2mauth_signing_key_rotation_seconds Seconds until the default environment's next key rotation (negative: overdue; absent when automatic rotation is off).
# TYPE m2mauth_signing_key_rotation_seconds gauge
m2mauth_signing_key_rotation_seconds -90
# HELP m2mauth_environments_loaded Environments held in memory.
# TYPE m2mauth_environments_loaded gauge
m2mauth_environments_loaded 3
# HELP m2mauth_signing_key_rotation_overdue_environments Loaded environments whose key rotation is more than a minute past due.
# TYPE m2mauth_signing_key_rotation_overdue_environments gauge
m2mauth_signing_key_rotation_overdue_environments 1
# HELP m2mauth_client_secret_age_seconds Seconds since the creation of the oldest live secret of each client of the bounded set (the default environment's --metrics-top-clients oldest, and --metrics-clients).
# TYPE m2mauth_client_secret_age_seconds gauge
m2mauth_client_secret_age_seconds{client_id="old"} 172800
# HELP m2mauth_client_tokens_recent Tokens issued since the start of the previous hour to each client of the bounded set (the default environment's --metrics-top-clients busiest, and --metrics-clients).
# TYPE m2mauth_client_tokens_recent gauge
m2mauth_client_tokens_recent{client_id="busy"} 42
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "m2mauth_signing_keys", "m2mauth_signing_key_rotation_seconds",
		"m2mauth_environments_loaded", "m2mauth_signing_key_rotation_overdue_environments", "m2mauth_client_secret_age_seconds", "m2mauth_client_tokens_recent"); err != nil {
		t.Error(err)
	}
	// Rotation off: no rotation gauge.
	m.SetKeySource(func() KeyStats { return KeyStats{Active: 1} })
	if n, _ := testutil.GatherAndCount(m.reg, "m2mauth_signing_key_rotation_seconds"); n != 0 {
		t.Errorf("rotation gauge with rotation off: %d", n)
	}
}

func TestObserveHTTP(t *testing.T) {
	m, _ := newTest(Config{})
	m.ObserveHTTP("GET /keys", 200, time.Millisecond)
	m.ObserveHTTP("GET /keys", 200, time.Millisecond)
	m.ObserveHTTP("GET /keys", 304, time.Millisecond)
	if n := testutil.ToFloat64(m.httpRequests.WithLabelValues("GET /keys", "200")); n != 2 {
		t.Errorf("200: %v", n)
	}
	if n := testutil.ToFloat64(m.httpRequests.WithLabelValues("GET /keys", "304")); n != 1 {
		t.Errorf("304: %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { m.ObserveHTTP("GET /keys", 200, time.Millisecond) }); n > 1 {
		t.Errorf("ObserveHTTP: %v allocations", n)
	}
}

// BenchmarkObserve is the observer's whole cost per token request.
func BenchmarkObserve(b *testing.B) {
	m, _ := newTest(Config{Clients: []string{"opt"}})
	ctx := context.Background()
	o := ok("standard", "a")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(ctx, o)
		}
	})
}
