package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/m2mauth/m2mauth/internal/issuer"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store"
)

// memStore collects appended events.
type memStore struct {
	mu     sync.Mutex
	events []store.AuditEvent
	fail   bool
	calls  int
}

func (m *memStore) AppendAuditEvents(_ context.Context, evs []store.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail {
		return errors.New("database down")
	}
	m.events = append(m.events, evs...)
	return nil
}

func (m *memStore) all() []store.AuditEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.AuditEvent(nil), m.events...)
}

// lockedBuffer is a writer safe for the sink goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var start = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func outcome(code, client string) oauth.Outcome {
	return oauth.Outcome{Endpoint: "token", Surface: "standard", Env: "default", GrantType: "client_credentials", ClientID: client,
		Code: code, Status: 200, Start: start, Remote: "192.0.2.7:51000"}
}

func TestRecorderTokenEvents(t *testing.T) {
	st := &memStore{}
	out := &lockedBuffer{}
	r := New(Config{Store: st, Sinks: []Sink{NewWriterSink("stdout", out)}, IssuanceSample: 1})
	ctx := context.Background()
	r.Observe(ctx, outcome(oauth.CodeOK, "c1"))
	r.Observe(ctx, outcome(oauth.CodeInvalidClient, "c2"))
	r.Observe(ctx, outcome(oauth.CodeInvalidClient, "")) // named no existing client
	r.Observe(ctx, outcome("invalid_scope", "c1"))       // not an authentication failure
	o := outcome(oauth.CodeOK, "c1")
	o.Endpoint = "introspect" // not an issuance
	r.Observe(ctx, o)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := st.all()
	if len(got) != 3 {
		t.Fatalf("stored %d events, want 3: %+v", len(got), got)
	}
	want := []struct{ kind, action, actor, client string }{
		{store.AuditTokenIssued, "token.issue", "c1", "c1"},
		{store.AuditAuthFailed, "token.auth_failed", "c2", "c2"},
		{store.AuditAuthFailed, "token.auth_failed", "unknown", ""},
	}
	for i, w := range want {
		e := got[i]
		if e.Kind != w.kind || e.Action != w.action || e.Actor != w.actor || e.ClientID != w.client || e.SourceIP != "192.0.2.7" ||
			e.Surface != "standard" || e.Grant != "client_credentials" || e.Env != "default" || !e.Time.Equal(start) {
			t.Errorf("event %d = %+v, want %+v", i, e, w)
		}
		if i > 0 && e.ID <= got[i-1].ID && e.Time.Equal(got[i-1].Time) {
			t.Errorf("ids do not increase: %s after %s", e.ID, got[i-1].ID)
		}
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("stdout sink got %d lines, want 3:\n%s", len(lines), out.String())
	}
	var e Entry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e.ID != got[0].ID || e.Action != "token.issue" || e.Target != nil || e.ClientID != "c1" {
		t.Errorf("first line = %s (%v)", lines[0], err)
	}
}

func TestSampling(t *testing.T) {
	for _, tc := range []struct {
		p    float64
		want int
	}{{1, 1000}, {0, 0}, {0.1, 100}, {0.5, 500}, {0.25, 250}} {
		var s sampler
		s.init(tc.p)
		n := 0
		for range 1000 {
			if s.keep() {
				n++
			}
		}
		if n != tc.want {
			t.Errorf("sample %v kept %d of 1000, want %d", tc.p, n, tc.want)
		}
	}
	// Failures are never sampled.
	st := &memStore{}
	r := New(Config{Store: st, IssuanceSample: 0})
	for range 10 {
		r.Observe(context.Background(), outcome(oauth.CodeOK, "c1"))
		r.Observe(context.Background(), outcome(oauth.CodeInvalidClient, "c1"))
		// The failed-request limit's 429s are counted in the metrics,
		// not written one row each.
		r.Observe(context.Background(), outcome(oauth.CodeTooManyRequests, ""))
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(st.all()); got != 10 {
		t.Errorf("with sampling 0: %d events stored, want the 10 failures", got)
	}
}

// A proven client refused over its quota is no failed authentication: its
// own kind and action, sampled like issuances; an issuance names its token.
func TestQuotaRefusalAndIssuance(t *testing.T) {
	for _, sample := range []float64{0, 1} {
		st := &memStore{}
		r := New(Config{Store: st, IssuanceSample: sample})
		refused := outcome(oauth.CodeTooManyRequests, "c1")
		refused.AuthMethod, refused.QuotaExceeded = "client_secret_basic", true
		r.Observe(context.Background(), refused)
		ok := outcome(oauth.CodeOK, "c1")
		ok.Token = &oauth.TokenResponse{ClientID: "c1", JTI: "jti-1", Audience: []string{"https://api"}, Scopes: []string{"read"}, Reused: true}
		r.Observe(context.Background(), ok)
		if err := r.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := st.all()
		if sample == 0 {
			if len(got) != 0 {
				t.Errorf("sampling 0: %+v stored", got)
			}
			continue
		}
		if len(got) != 2 || got[0].Kind != store.AuditTokenRefused || got[0].Action != "token.quota_exceeded" || got[0].Outcome != "too_many_requests" {
			t.Fatalf("events = %+v", got)
		}
		if e := got[1]; e.TargetType != "token" || e.TargetID != "jti-1" ||
			string(e.Diff) != `{"audience":{"after":["https://api"]},"reused":{"after":true},"scopes":{"after":["read"]}}` {
			t.Errorf("issuance = %+v %s", e, e.Diff)
		}
	}
}

func TestRecordTokenBinding(t *testing.T) {
	st := &memStore{}
	r := New(Config{Store: st, IssuanceSample: 1})
	for i, cnf := range []*issuer.Confirmation{{JKT: "secret-jkt"}, {X5tS256: "secret-x5t"}} {
		ok := outcome(oauth.CodeOK, "c1")
		ok.Token = &oauth.TokenResponse{ClientID: "c1", JTI: fmt.Sprint("jti-", i), Audience: []string{"https://api"}, Cnf: cnf}
		r.Observe(context.Background(), ok)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := st.all()
	if len(got) != 2 {
		t.Fatalf("events = %+v", got)
	}
	for i, want := range []string{`"binding":{"after":"dpop"}`, `"binding":{"after":"x5t"}`} {
		if d := string(got[i].Diff); !strings.Contains(d, want) || strings.Contains(d, "secret-") {
			t.Errorf("event %d diff %s, want %s and no thumbprint", i, d, want)
		}
	}
}

func TestRecordAdminEvent(t *testing.T) {
	st := &memStore{}
	r := New(Config{Store: st, Now: func() time.Time { return start }})
	ctx := WithActor(context.Background(), "admin-1", "[2001:db8::1]:443")
	r.Record(ctx, store.AuditEvent{Action: "client.update", TargetType: "client", TargetID: "c1",
		Diff: Diff(Fields{"name": "a", "disabled": false}, Fields{"name": "b", "disabled": false})})
	r.KeyChanges("staging")(context.Background(), keys.Change{Action: "key.rotate", KID: "k1", Alg: "ES256", Scheduled: true})
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := st.all()
	if len(got) != 2 {
		t.Fatalf("%d events", len(got))
	}
	e := got[0]
	if e.Kind != store.AuditAdmin || e.Actor != "admin-1" || e.SourceIP != "2001:db8::1" || e.Env != store.DefaultEnv || !e.Time.Equal(start) {
		t.Errorf("admin event = %+v", e)
	}
	if string(e.Diff) != `{"name":{"before":"a","after":"b"}}` {
		t.Errorf("diff = %s", e.Diff)
	}
	if k := got[1]; k.Actor != System || k.Env != "staging" || k.Action != "key.rotate" || k.TargetID != "k1" {
		t.Errorf("key event = %+v", k)
	}
}

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after Fields
		want          string
	}{
		{"create", nil, Fields{"a": 1}, `{"a":{"after":1}}`},
		{"delete", Fields{"a": 1}, nil, `{"a":{"before":1}}`},
		{"unchanged", Fields{"a": []string{}}, Fields{"a": []string(nil)}, ``},
		{"changed", Fields{"a": 1, "b": "x"}, Fields{"a": 2, "b": "x"}, `{"a":{"before":1,"after":2}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(Diff(tc.before, tc.after)); got != tc.want && !(tc.want == "" && got == "") {
				t.Errorf("Diff = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestDatabaseDownKeepsBacklog: a failed write keeps the batch for the
// next one, up to the queue size; beyond it the oldest are dropped and
// counted.
func TestDatabaseDownKeepsBacklog(t *testing.T) {
	st := &memStore{fail: true}
	r := New(Config{Store: st, QueueSize: 4})
	for range 6 {
		r.Observe(context.Background(), outcome(oauth.CodeInvalidClient, "c1"))
		_ = r.Flush(context.Background())
	}
	if got := r.Dropped()["db"]; got != 2 {
		t.Errorf("db drops = %d, want 2", got)
	}
	st.mu.Lock()
	st.fail = false
	st.mu.Unlock()
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(st.all()); got != 4 {
		t.Errorf("stored %d events once the database was back, want 4", got)
	}
}

// TestDatabaseDownRetriesEachTick: while the database refuses writes, the
// writer tries again once a tick (not once per event), keeps at most
// QueueSize events, and writes them when the database is back.
func TestDatabaseDownRetriesEachTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &memStore{fail: true}
		r := New(Config{Store: st, BatchSize: 2, QueueSize: 5, IssuanceSample: 1})
		for range 20 {
			r.Observe(context.Background(), outcome(oauth.CodeOK, "c1"))
			synctest.Wait()
		}
		calls := func() int {
			st.mu.Lock()
			defer st.mu.Unlock()
			return st.calls
		}
		if got := calls(); got != 1 {
			t.Errorf("%d writes while the database is down, want 1 (then wait for the tick)", got)
		}
		if got := r.Dropped()["db"]; got != 15 {
			t.Errorf("db drops = %d, want 15 (the backlog keeps 5)", got)
		}
		time.Sleep(DefaultFlushInterval)
		synctest.Wait()
		if got := calls(); got != 2 {
			t.Errorf("%d writes after a tick, want 2", got)
		}
		st.mu.Lock()
		st.fail = false
		st.mu.Unlock()
		time.Sleep(DefaultFlushInterval)
		synctest.Wait()
		if got := len(st.all()); got != 5 {
			t.Errorf("stored %d events once the database was back, want 5", got)
		}
		if err := r.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// roundTripper answers webhook requests in tests.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func answer(status int) *http.Response {
	return &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}}
}

// TestWebhookSlowAndFailing: a webhook that fails is retried with backoff,
// a batch that fails every attempt is dropped and counted, a receiver
// that hangs fills the sink's queue (drops counted) while events are
// still taken without blocking and stored.
func TestWebhookSlowAndFailing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tries, received atomic.Int64
		var times []time.Duration
		var mu sync.Mutex
		t0 := time.Now()
		release := make(chan struct{})
		failing := true
		rt := roundTripper(func(r *http.Request) (*http.Response, error) {
			tries.Add(1)
			mu.Lock()
			times = append(times, time.Since(t0))
			f := failing
			mu.Unlock()
			if f {
				return answer(http.StatusServiceUnavailable), nil
			}
			select { // a receiver that hangs until released
			case <-release:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
			body, _ := io.ReadAll(r.Body)
			received.Add(int64(bytes.Count(body, []byte("\n"))))
			if r.Header.Get("Content-Type") != "application/x-ndjson" || !bytes.HasSuffix(body, []byte("\n")) {
				t.Errorf("webhook request: %s %q", r.Header.Get("Content-Type"), body)
			}
			return answer(http.StatusNoContent), nil
		})
		hook, err := NewWebhookSink("https://audit.example/ingest?token=abc", rt)
		if err != nil {
			t.Fatal(err)
		}
		st := &memStore{}
		r := New(Config{Store: st, Sinks: []Sink{hook}, SinkQueueSize: 10, BatchSize: 5, IssuanceSample: 1})
		ctx := context.Background()
		r.Observe(ctx, outcome(oauth.CodeOK, "c1"))
		// Every attempt fails: 5 attempts, 1+2+4+8 s apart, then the
		// batch is dropped.
		time.Sleep(time.Minute)
		synctest.Wait()
		mu.Lock()
		if got := len(times); got != webhookAttempts {
			t.Fatalf("%d attempts, want %d", got, webhookAttempts)
		}
		for i, want := range []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second} {
			if times[i] != want {
				t.Errorf("attempt %d at %s, want %s", i+1, times[i], want)
			}
		}
		failing = false
		mu.Unlock()
		if got := r.Dropped()["sink:webhook:audit.example"]; got != 1 {
			t.Errorf("webhook drops = %d, want 1", got)
		}
		// Now the receiver hangs: the issuance path never waits.
		for range 100 {
			r.Observe(ctx, outcome(oauth.CodeOK, "c1"))
		}
		synctest.Wait()
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := len(st.all()); got != 101 {
			t.Errorf("stored %d events while the webhook hangs, want 101", got)
		}
		// One batch (up to 5) in flight, 10 queued, the rest dropped.
		if got := r.Dropped()["sink:webhook:audit.example"]; got < 1+85 || got > 1+89 {
			t.Errorf("webhook drops = %d, want 86 to 90", got)
		}
		close(release)
		if err := r.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// Every line was delivered or counted as dropped.
		if got := uint64(received.Load()) + r.Dropped()["sink:webhook:audit.example"]; got != 101 {
			t.Errorf("delivered + dropped = %d, want 101", got)
		}
		if got := r.Dropped()["queue"]; got != 0 {
			t.Errorf("queue drops = %d", got)
		}
	})
}

func TestQueueFullDrops(t *testing.T) {
	r := &Recorder{tokens: make(chan tokenItem, 2)}
	r.sample.init(1)
	for range 5 {
		r.Observe(context.Background(), outcome(oauth.CodeOK, "c1"))
	}
	if got := r.Dropped()["queue"]; got != 3 {
		t.Errorf("queue drops = %d, want 3", got)
	}
}

func TestParseSinks(t *testing.T) {
	dir := t.TempDir()
	// A file sink's missing directory is made, private.
	sinks, closeAll, err := ParseSinks([]string{"stdout,file:" + dir + "/audit/a.jsonl", "https://hooks.example/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	var names []string
	for _, s := range sinks {
		names = append(names, s.Name())
	}
	if got := strings.Join(names, " "); got != "stdout file:"+dir+"/audit/a.jsonl webhook:hooks.example" {
		t.Errorf("sinks = %s", got)
	}
	if fi, err := os.Stat(dir + "/audit"); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the sink's directory: %v %v", fi, err)
	}
	for _, bad := range []string{"http://hooks.example/x", "syslog", "file:", "https://user:pw@hooks.example/"} {
		if _, _, err := ParseSinks([]string{bad}, io.Discard); err == nil {
			t.Errorf("ParseSinks(%q): no error", bad)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("ParseSinks(%q): the error shows the credentials: %v", bad, err)
		}
	}
	if _, _, err := ParseSinks([]string{"http://127.0.0.1:9/x"}, io.Discard); err != nil {
		t.Errorf("a loopback http webhook: %v", err)
	}
}

// BenchmarkObserve is the cost the token path pays per request.
func BenchmarkObserve(b *testing.B) {
	r := New(Config{QueueSize: 1 << 20})
	defer r.Close(context.Background())
	o := outcome(oauth.CodeOK, "c1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Observe(context.Background(), o)
		}
	})
}
