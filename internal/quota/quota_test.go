package quota

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// flaky counts reservations and fails them while down.
type flaky struct {
	Counters
	mu    sync.Mutex
	calls int
	down  bool
}

func (f *flaky) ReserveQuota(ctx context.Context, r store.QuotaReservation) (int64, [3]int64, error) {
	f.mu.Lock()
	f.calls++
	down := f.down
	f.mu.Unlock()
	if down {
		return 0, [3]int64{}, errors.New("connection refused")
	}
	return f.Counters.ReserveQuota(ctx, r)
}

// setup opens a SQLite store with the clients given and returns it with a
// clock 42 s into a minute.
func setup(t *testing.T, clients ...store.Client) (store.Store, *clock) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, c := range clients {
		c.Grants, c.Secrets = []store.Grant{}, []store.Secret{}
		if err := st.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return st, &clock{t: time.Date(2026, 11, 28, 10, 7, 18, 0, time.UTC)}
}

func gate(c Counters, clk *clock, def store.Quota) *Gate {
	return New(Config{Default: def, Now: clk.Now, Counters: func(context.Context) (string, Counters) { return "default", c }})
}

func caller(id string, q store.Quota) oauth.Caller {
	return oauth.Caller{Client: store.Client{ID: id, Quota: q}, Method: "client_secret_basic"}
}

// admit runs one request through g: whether it was admitted, its
// response headers and the refusal.
func admit(t *testing.T, g *Gate, c oauth.Caller) (bool, http.Header, *oauth.Error) {
	t.Helper()
	h := http.Header{}
	a, e := g.Admit(context.Background(), "token", c, nil)
	if a != nil {
		a.Headers(h)
	}
	if e == nil && a != nil {
		a.Done(true)
	}
	return e == nil, h, e
}

func TestNoQuotaCostsNothing(t *testing.T) {
	st, clk := setup(t)
	f := &flaky{Counters: st}
	cases := []struct {
		name     string
		def      store.Quota
		q        store.Quota
		endpoint string
	}{
		{"no quota, no default", store.Quota{}, store.Quota{}, "token"},
		{"unlimited despite a default", store.Quota{PerMinute: 5, PerDay: 100}, store.Quota{PerMinute: -1, PerDay: -1}, "token"},
		{"introspection is not counted", store.Quota{}, store.Quota{PerMinute: 1}, "introspect"},
		{"revocation is not counted", store.Quota{PerMinute: 1}, store.Quota{}, "revoke"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := gate(f, clk, tc.def)
			c := caller("c1", tc.q)
			allocs := testing.AllocsPerRun(100, func() {
				if a, e := g.Admit(context.Background(), tc.endpoint, c, nil); a != nil || e != nil {
					t.Fatalf("Admit = %v, %v; want nil, nil", a, e)
				}
			})
			if allocs != 0 || f.calls != 0 {
				t.Errorf("%v allocations, %d reservations; want none", allocs, f.calls)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	def := [3]int64{100, 0, 5000}
	cases := []struct {
		q    store.Quota
		want [3]int64
	}{
		{store.Quota{}, [3]int64{100, 0, 5000}},
		{store.Quota{PerMinute: 10}, [3]int64{10, 0, 5000}},
		{store.Quota{PerMinute: -1, PerHour: 7, PerDay: -1}, [3]int64{0, 7, 0}},
	}
	for _, tc := range cases {
		if got := limits(tc.q, def); got != tc.want {
			t.Errorf("limits(%+v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestBatch(t *testing.T) {
	cases := []struct {
		lim, used [3]int64
		want      int64
	}{
		{[3]int64{10, 0, 0}, [3]int64{}, 1},
		{[3]int64{199, 0, 0}, [3]int64{}, 1},
		{[3]int64{200, 0, 0}, [3]int64{}, 2},
		{[3]int64{1000, 0, 0}, [3]int64{}, 10},
		{[3]int64{0, 100_000, 0}, [3]int64{}, maxBatch},
		{[3]int64{0, 100_000, 0}, [3]int64{0, 99_900, 0}, 6},  // a sixteenth of what is left
		{[3]int64{5000, 150, 0}, [3]int64{}, 1},               // the smallest limit rules
		{[3]int64{0, 100_000, 0}, [3]int64{0, 100_000, 0}, 1}, // full: ask for one all the same
	}
	for _, tc := range cases {
		if got := batch(tc.lim, tc.used); got != tc.want {
			t.Errorf("batch(%v, %v) = %d, want %d", tc.lim, tc.used, got, tc.want)
		}
	}
}

// Two gates (two replicas) on one store admit exactly the quota between
// them, then refuse with Retry-After and the RateLimit fields; the next
// minute has room again, and an hour limit holds across minutes.
func TestSharedExactQuota(t *testing.T) {
	st, clk := setup(t, store.Client{ID: "c1", Name: "c1"})
	gates := []*Gate{gate(st, clk, store.Quota{}), gate(st, clk, store.Quota{})}
	c := caller("c1", store.Quota{PerMinute: 10, PerHour: 15})
	for i := range 10 {
		ok, h, e := admit(t, gates[i%2], c)
		if !ok {
			t.Fatalf("request %d refused: %v", i+1, e)
		}
		if want := `"minute";q=10;w=60, "hour";q=15;w=3600`; h.Get("RateLimit-Policy") != want {
			t.Errorf("RateLimit-Policy %q, want %q", h.Get("RateLimit-Policy"), want)
		}
		if i == 6 {
			if want := `"minute";r=3;t=42`; h.Get("RateLimit") != want {
				t.Errorf("7th request: RateLimit %q, want %q", h.Get("RateLimit"), want)
			}
		}
	}
	ok, h, e := admit(t, gates[0], c)
	if ok || e.Status != http.StatusTooManyRequests || e.RetryAfter != 42*time.Second {
		t.Fatalf("11th request: admitted %v, %+v; want 429 retry after 42s", ok, e)
	}
	if want := `"minute";r=0;t=42`; h.Get("RateLimit") != want {
		t.Errorf("refusal: RateLimit %q, want %q", h.Get("RateLimit"), want)
	}

	clk.Advance(42 * time.Second) // the next minute
	for i := range 5 {
		if ok, _, e := admit(t, gates[i%2], c); !ok {
			t.Fatalf("next minute, request %d refused: %v", i+1, e)
		}
	}
	ok, h, e = admit(t, gates[1], c)
	// The hour is full: retry at the next hour (10:08 → 11:00).
	if ok || e.RetryAfter != 52*time.Minute {
		t.Fatalf("hour full: admitted %v, %+v; want retry after 52m", ok, e)
	}
	if want := `"hour";r=0;t=3120`; h.Get("RateLimit") != want {
		t.Errorf("hour full: RateLimit %q, want %q", h.Get("RateLimit"), want)
	}
}

// A large quota is reserved in batches; at a window's rollover, what a
// replica held and never issued goes back to the windows still current.
func TestBatchesReturnedAtRollover(t *testing.T) {
	st, clk := setup(t, store.Client{ID: "c1", Name: "c1"})
	f := &flaky{Counters: st}
	g := gate(f, clk, store.Quota{})
	c := caller("c1", store.Quota{PerMinute: 10_000, PerHour: 100_000})
	for range 3 {
		if ok, _, e := admit(t, g, c); !ok {
			t.Fatal(e)
		}
	}
	if f.calls != 1 {
		t.Errorf("3 tokens took %d reservations, want 1 batch", f.calls)
	}
	clk.Advance(time.Minute)
	if ok, _, e := admit(t, g, c); !ok {
		t.Fatal(e)
	}
	_, used, err := st.ReserveQuota(context.Background(), store.QuotaReservation{ClientID: "c1", Starts: starts(clk.Now()), Limits: [3]int64{10_000, 100_000, 0}})
	if err != nil {
		t.Fatal(err)
	}
	// Minute: a new batch of 16; hour: 3 issued + 16 reserved.
	if used != [3]int64{16, 19, 19} {
		t.Errorf("after rollover the counters hold %v, want [16 19 19]", used)
	}
}

// A request admitted but refused afterwards gives its token back: to the
// shared counters at once for an exact quota (no replica may hold a token
// another could issue).
func TestDoneGivesBack(t *testing.T) {
	st, clk := setup(t, store.Client{ID: "c1", Name: "c1"})
	f := &flaky{Counters: st}
	g := gate(f, clk, store.Quota{PerMinute: 2})
	c := caller("c1", store.Quota{})
	for range 5 {
		a, e := g.Admit(context.Background(), "token", c, nil)
		if e != nil {
			t.Fatal(e)
		}
		a.Done(false)
	}
	if f.calls != 10 {
		t.Errorf("%d calls to the counters, want 10 (5 reservations, 5 given back)", f.calls)
	}
	if _, used, err := st.ReserveQuota(context.Background(), store.QuotaReservation{ClientID: "c1", Starts: starts(clk.Now().UTC()), Limits: [3]int64{2, 0, 0}}); err != nil || used != [3]int64{} {
		t.Errorf("shared counts after 5 refused actions: %v %v, want none", used, err)
	}
	if ok, h, _ := admit(t, g, c); !ok || h.Get("RateLimit") != `"minute";r=1;t=42` {
		t.Errorf("after 5 refused actions: admitted %v, RateLimit %q; want the quota untouched", ok, h.Get("RateLimit"))
	}
}

// While the counters cannot be reached, each replica counts alone from
// the last shared counts (fail open, bounded by the quota per replica),
// and asks the counters again after the backoff.
func TestFailOpenBounded(t *testing.T) {
	st, clk := setup(t, store.Client{ID: "c1", Name: "c1"})
	f := &flaky{Counters: st}
	g := gate(f, clk, store.Quota{})
	c := caller("c1", store.Quota{PerMinute: 5})
	for range 2 {
		admit(t, g, c)
	}
	f.down = true
	for i := range 3 {
		if ok, _, e := admit(t, g, c); !ok {
			t.Fatalf("outage, request %d refused: %v", i+1, e)
		}
	}
	if ok, _, e := admit(t, g, c); ok || e.Status != http.StatusTooManyRequests {
		t.Fatalf("outage: the 6th request was admitted (%v); the local count must still bound it", e)
	}
	if g.FailOpen() != 3 || f.calls != 3 {
		t.Errorf("fail-open admissions %d, reservations %d; want 3 and 3 (one failure, then local counting)", g.FailOpen(), f.calls)
	}
	f.down = false
	clk.Advance(backoff)
	// Back to the shared counts: 2 were counted there, 3 more fit.
	for i := range 3 {
		if ok, _, e := admit(t, g, c); !ok {
			t.Fatalf("after the outage, request %d refused: %v", i+1, e)
		}
	}
	if ok, _, _ := admit(t, g, c); ok {
		t.Error("after the outage, the quota was exceeded")
	}
}

// Counters are per environment: one client id in two environments has two
// quotas.
func TestPerEnvironment(t *testing.T) {
	st, clk := setup(t, store.Client{ID: "c1", Name: "c1"})
	ctx := context.Background()
	if err := st.CreateEnvironment(ctx, store.Environment{Name: "b", Version: 1, CreatedAt: clk.Now(), UpdatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.InEnv("b").CreateClient(ctx, store.Client{ID: "c1", Name: "c1", Grants: []store.Grant{}, Secrets: []store.Secret{}}); err != nil {
		t.Fatal(err)
	}
	type envKey struct{}
	g := New(Config{Now: clk.Now, Counters: func(ctx context.Context) (string, Counters) {
		name, _ := ctx.Value(envKey{}).(string)
		return name, st.InEnv(name)
	}})
	c := caller("c1", store.Quota{PerMinute: 1})
	for _, name := range []string{store.DefaultEnv, "b"} {
		ectx := context.WithValue(ctx, envKey{}, name)
		if _, e := g.Admit(ectx, "token", c, nil); e != nil {
			t.Errorf("%s: first token refused: %v", name, e)
		}
		if _, e := g.Admit(ectx, "token", c, nil); e == nil {
			t.Errorf("%s: second token admitted", name)
		}
	}
}

// A single process (SQLite) reserves batches of a tenth of the smallest
// limit (at most 16), and is exact all the same: the database grants no
// more than the room. Close gives back what it holds, so a restart costs
// no client its quota.
func TestSingleProcessBatches(t *testing.T) {
	st, clk := setup(t, store.Client{ID: "c1", Name: "c1"}, store.Client{ID: "c2", Name: "c2"}, store.Client{ID: "c3", Name: "c3"})
	f := &flaky{Counters: st}
	g := New(Config{Single: true, Now: clk.Now, Counters: func(context.Context) (string, Counters) { return "default", f }})
	c := caller("c1", store.Quota{PerMinute: 100})
	for i := range 100 {
		ok, h, e := admit(t, g, c)
		if !ok {
			t.Fatalf("request %d refused: %v", i+1, e)
		}
		if want := fmt.Sprintf(`"minute";r=%d;t=42`, 99-i); h.Get("RateLimit") != want {
			t.Errorf("request %d: RateLimit %q, want %q", i+1, h.Get("RateLimit"), want)
		}
	}
	if ok, _, _ := admit(t, g, c); ok {
		t.Fatal("the 101st request was admitted")
	}
	if f.calls != 11 {
		t.Errorf("%d reservations, want 11 (ten batches of 10, then the refusal)", f.calls)
	}

	// A small quota: batches of one, so a crash loses nothing.
	c2 := caller("c2", store.Quota{PerDay: 5})
	if ok, _, e := admit(t, g, c2); !ok {
		t.Fatal(e)
	}
	used := func(id string) int64 {
		t.Helper()
		_, u, err := st.ReserveQuota(context.Background(), store.QuotaReservation{ClientID: id, Starts: starts(clk.Now().UTC())})
		if err != nil {
			t.Fatal(err)
		}
		return u[0]
	}
	if got := used("c2"); got != 1 {
		t.Errorf("a 5/day quota reserved %d, want 1", got)
	}

	// Close gives back the unissued rest of a batch.
	c3 := caller("c3", store.Quota{PerMinute: 100})
	for range 3 {
		if ok, _, e := admit(t, g, c3); !ok {
			t.Fatal(e)
		}
	}
	if got := used("c3"); got != 10 {
		t.Fatalf("reserved %d, want a batch of 10", got)
	}
	if err := g.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := used("c3"); got != 3 {
		t.Errorf("after Close the shared count is %d, want the 3 issued", got)
	}
}

// BenchmarkAdmit measures the gate alone: a client without a quota, and
// one whose tokens come from a local batch (a reservation every 16).
func BenchmarkAdmit(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "q.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateClient(ctx, store.Client{ID: "c1", Name: "c1", Grants: []store.Grant{}, Secrets: []store.Secret{}}); err != nil {
		b.Fatal(err)
	}
	g := New(Config{Counters: func(context.Context) (string, Counters) { return "default", st }})
	for _, tc := range []struct {
		name string
		q    store.Quota
	}{{"no-quota", store.Quota{}}, {"batched", store.Quota{PerMinute: 1_000_000_000}}} {
		b.Run(tc.name, func(b *testing.B) {
			c := caller("c1", tc.q)
			h := http.Header{}
			b.ReportAllocs()
			for b.Loop() {
				a, e := g.Admit(ctx, "token", c, nil)
				if e != nil {
					b.Fatal(e)
				}
				if a != nil {
					a.Headers(h)
					a.Done(true)
				}
			}
		})
	}
}
