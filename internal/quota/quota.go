// Package quota enforces per-client token issuance quotas: at most so many
// access tokens per minute, hour and day, in fixed windows aligned to the
// UTC minute, hour and day. It is the token endpoint's oauth.Gate.
//
// The counts are shared by every replica through the store
// (store.ReserveQuota): a replica reserves a small batch of tokens in one
// atomic statement and issues them locally, so that no token is ever issued
// beyond a quota, and a client is refused early by at most the tokens other
// replicas hold reserved and not yet issued (batch − 1 each; see batch).
// A single process (SQLite) reserves full batches: exact, as no other
// replica holds any.
// A client without a quota costs nothing: no lookup, no allocation.
//
// When the counters cannot be reached, the gate fails open with a bound:
// each replica counts on its own from the last shared counts, so a client
// gets at most its quota per replica until the database answers again.
// Every such admission is counted (FailOpen) and logged.
package quota

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store"
)

// Counters reserves tokens of a client's quota in its environment's
// shared counters (a store.Store scoped to the environment).
type Counters interface {
	ReserveQuota(ctx context.Context, r store.QuotaReservation) (granted int64, used [3]int64, err error)
}

// Config configures a Gate.
type Config struct {
	// Default is the server's quota, for the windows a client leaves at 0
	// (0 here: unlimited).
	Default store.Quota
	// Counters returns the request's environment and its counters.
	Counters func(ctx context.Context) (env string, c Counters)
	Now      func() time.Time // nil: time.Now
	Log      *slog.Logger     // nil: discard
	// Timeout bounds one reservation (0: 500 ms).
	Timeout time.Duration
	// Single says one process serves the database (SQLite): no other
	// replica can be refused for what this one holds, so every
	// reservation is a full batch, exact whatever its size.
	Single bool
}

// maxBatch is the most tokens one reservation asks for.
const maxBatch = 16

// backoff is how long a replica counts locally after the counters failed,
// before it asks them again.
const backoff = time.Second

// Gate is the token endpoint's quota gate (oauth.Gate).
type Gate struct {
	def      [3]int64
	counters func(ctx context.Context) (string, Counters)
	now      func() time.Time
	log      *slog.Logger
	timeout  time.Duration
	single   bool

	mu      sync.Mutex
	entries map[key]*entry

	failOpen atomic.Int64
	lastLog  atomic.Int64 // unix nanos of the last outage warning
}

var _ oauth.Gate = (*Gate)(nil)

type key struct{ env, client string }

// entry is one client's local state on this replica.
type entry struct {
	mu     sync.Mutex
	starts [3]time.Time // the windows of used and avail
	used   [3]int64     // the shared counts after this replica's last reservation (plus local counts while failing open)
	avail  int64        // tokens reserved by this replica and not yet issued
	retry  time.Time    // after a failure, count locally until then
	// counters are the client's environment's (Close gives avail back).
	counters Counters
	// dead: pruned from the map; a request holding it looks up again.
	dead bool
}

// New returns a gate.
func New(cfg Config) *Gate {
	g := &Gate{def: limits(cfg.Default, [3]int64{}), counters: cfg.Counters, now: cfg.Now, log: cfg.Log, timeout: cfg.Timeout,
		single: cfg.Single, entries: map[key]*entry{}}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.timeout <= 0 {
		g.timeout = 500 * time.Millisecond
	}
	return g
}

// FailOpen is how many tokens were admitted by local counting because the
// shared counters could not be reached.
func (g *Gate) FailOpen() int64 { return g.failOpen.Load() }

// limits is q's limits (≤ 0: none) over the defaults def.
func limits(q store.Quota, def [3]int64) [3]int64 {
	out := [3]int64{q.PerMinute, q.PerHour, q.PerDay}
	for i, v := range out {
		switch {
		case v == 0:
			out[i] = max(def[i], 0)
		case v < 0:
			out[i] = 0
		}
	}
	return out
}

// windowNames and windowLengths describe the windows, in the order of the
// limits (the policy names of the RateLimit fields).
var (
	windowNames   = [3]string{"minute", "hour", "day"}
	windowSeconds = [3]int64{60, 3600, 86400}
)

// starts returns the windows containing t: its minute, hour and day (UTC).
func starts(t time.Time) [3]time.Time {
	t = t.UTC()
	return [3]time.Time{t.Truncate(time.Minute), t.Truncate(time.Hour), time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)}
}

// ends returns when the windows starting at s end.
func ends(s [3]time.Time) [3]time.Time {
	return [3]time.Time{s[0].Add(time.Minute), s[1].Add(time.Hour), s[2].AddDate(0, 0, 1)}
}

// batch is how many tokens a reservation asks for: 1 (exact) while the
// smallest limit is under 200, else 1 % of it, at most maxBatch, and never
// more than a sixteenth of what the last shared counts left in a window.
func batch(lim, used [3]int64) int64 {
	b := int64(maxBatch)
	for i, l := range lim {
		if l > 0 {
			b = min(b, l/100, (l-used[i])/16)
		}
	}
	return max(b, 1)
}

// Close gives back to the counters what this replica holds reserved and
// has not issued, so that a restart costs no client its quota (a crash
// loses at most one batch per client: on SQLite a tenth of the smallest
// limit, see batch).
func (g *Gate) Close(ctx context.Context) error {
	g.mu.Lock()
	entries := make([]*entry, 0, len(g.entries))
	keys := make([]key, 0, len(g.entries))
	for k, e := range g.entries {
		entries, keys = append(entries, e), append(keys, k)
	}
	g.mu.Unlock()
	var errs []error
	for i, e := range entries {
		e.mu.Lock()
		if e.avail > 0 && e.counters != nil {
			_, _, err := e.counters.ReserveQuota(ctx, store.QuotaReservation{ClientID: keys[i].client, Starts: starts(g.now()),
				Return: e.avail, ReturnStarts: e.starts})
			if err == nil {
				e.avail = 0
			}
			errs = append(errs, err)
		}
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}

// batch is how many tokens the next reservation asks for.
func (g *Gate) batch(lim, used [3]int64) int64 {
	if g.single {
		// One process: nobody else can be refused for what it holds, so
		// a batch is exact; it is a tenth of the smallest limit at most,
		// so that a crash (which cannot give it back) costs little.
		b := int64(maxBatch)
		for _, l := range lim {
			if l > 0 {
				b = min(b, l/10)
			}
		}
		return max(b, 1)
	}
	return batch(lim, used)
}

// Admit implements oauth.Gate: only the token action is counted.
func (g *Gate) Admit(ctx context.Context, endpoint string, caller oauth.Caller, _ *oauth.Request) (oauth.Admission, *oauth.Error) {
	if endpoint != "token" {
		return nil, nil
	}
	lim := limits(caller.Client.Quota, g.def)
	if lim == ([3]int64{}) {
		return nil, nil // no quota: no lookup, no allocation
	}
	envName, counters := g.counters(ctx)
	k := key{envName, caller.Client.ID}
	var e *entry
	for {
		e = g.entry(k)
		e.mu.Lock()
		if !e.dead {
			break
		}
		e.mu.Unlock() // pruned meanwhile: look it up again
	}
	defer e.mu.Unlock()
	e.counters = counters
	// The time once the entry is ours: a request that waited for it must
	// not take an earlier window for a rollover.
	now := g.now().UTC()
	cur := starts(now)
	var ret int64
	retStarts := e.starts
	if e.starts != cur {
		// A window rolled over: what this replica holds reserved belongs
		// to the windows before; it is given back with the next
		// reservation (to the windows still current).
		ret, e.avail = e.avail, 0
		for i := range cur {
			if !e.starts[i].Equal(cur[i]) {
				e.used[i] = 0
			}
		}
		e.starts = cur
	}
	a := &admission{g: g, e: e, lim: lim, starts: cur, now: now, counters: counters, client: caller.Client.ID}
	if e.avail > 0 {
		e.avail--
		return a.admit(), nil
	}
	if now.Before(e.retry) {
		return a.local()
	}
	rctx, cancel := context.WithTimeout(ctx, g.timeout)
	granted, used, err := counters.ReserveQuota(rctx, store.QuotaReservation{ClientID: caller.Client.ID, Starts: cur, Limits: lim,
		Want: g.batch(lim, e.used), Return: ret, ReturnStarts: retStarts})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return a.local() // the caller left: no outage
		}
		e.avail = 0
		e.retry = now.Add(backoff)
		g.warn(ctx, err)
		return a.local()
	}
	e.used = used
	if granted == 0 {
		return a, a.refusal()
	}
	e.avail = granted - 1
	return a.admit(), nil
}

// entry returns the client's local state, creating it.
func (g *Gate) entry(k key) *entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entries[k]
	if e == nil {
		if len(g.entries) >= maxEntries {
			g.prune()
		}
		e = &entry{}
		g.entries[k] = e
	}
	return e
}

// maxEntries bounds the local state kept before idle clients' is dropped.
const maxEntries = 10_000

// prune drops the state of clients that hold no reservation and were not
// seen in the current minute (g.mu held).
func (g *Gate) prune() {
	cur := starts(g.now())[0]
	for k, e := range g.entries {
		if e.mu.TryLock() {
			if e.avail == 0 && e.starts[0].Before(cur) {
				delete(g.entries, k)
				e.dead = true
			}
			e.mu.Unlock()
		}
	}
}

// warn logs an outage of the counters, at most once per backoff.
func (g *Gate) warn(ctx context.Context, err error) {
	now := g.now().UnixNano()
	last := g.lastLog.Load()
	if now-last < int64(backoff) || !g.lastLog.CompareAndSwap(last, now) {
		return
	}
	g.log.WarnContext(ctx, "quota counters unavailable: counting on this replica alone (fail open, at most each quota per replica)", "error", err)
}

// admission is a decision for a client with a quota.
type admission struct {
	g      *Gate
	e      *entry
	lim    [3]int64
	starts [3]time.Time
	now    time.Time
	alone  bool // admitted by local counting (the counters failed)
	// counters and client give an exact quota's token back at once.
	counters Counters
	client   string
	remain   [3]int64 // per window, as this replica sees it
	window   int      // the most constraining window
}

// admit records the remaining quota of an admitted request (e.mu held).
func (a *admission) admit() *admission {
	a.measure()
	return a
}

// local decides by local counting while the counters are unreachable
// (e.mu held): the last shared counts, plus what this replica admitted
// since, against the full limits.
func (a *admission) local() (oauth.Admission, *oauth.Error) {
	for i, l := range a.lim {
		if l > 0 && a.e.used[i] >= l {
			a.measure()
			return a, a.refusal()
		}
	}
	for i := range a.e.used {
		a.e.used[i]++
	}
	a.alone = true
	a.g.failOpen.Add(1)
	return a.admit(), nil
}

// measure computes the remaining quota of each window and picks the most
// constraining: the least left, then the longest to wait (e.mu held).
func (a *admission) measure() {
	ends := ends(a.starts)
	a.window = -1
	for i, l := range a.lim {
		if l <= 0 {
			continue
		}
		a.remain[i] = max(l-a.e.used[i]+a.e.avail, 0)
		if a.window < 0 || a.remain[i] < a.remain[a.window] || (a.remain[i] == a.remain[a.window] && ends[i].After(ends[a.window])) {
			a.window = i
		}
	}
}

// refusal is the 429 of a client whose quota has no room: retry when
// every full window has rolled over (e.mu held).
func (a *admission) refusal() *oauth.Error {
	a.measure()
	ends := ends(a.starts)
	var wait time.Duration
	for i, l := range a.lim {
		if l > 0 && a.e.used[i] >= l {
			wait = max(wait, ends[i].Sub(a.now))
		}
	}
	return oauth.ErrQuotaExceeded(wait)
}

// Headers implements oauth.Admission: the RateLimit-Policy and RateLimit
// fields of draft-ietf-httpapi-ratelimit-headers-11 (May 2026), §3 and §4:
// every limited window as a policy named for it ("minute", "hour", "day")
// with its quota q and window w in seconds, and the most constraining
// one's remaining r and seconds to reset t.
func (a *admission) Headers(h http.Header) {
	if a.window < 0 {
		return
	}
	buf := make([]byte, 0, 96)
	for i, l := range a.lim {
		if l <= 0 {
			continue
		}
		if len(buf) > 0 {
			buf = append(buf, ", "...)
		}
		buf = append(buf, '"')
		buf = append(buf, windowNames[i]...)
		buf = append(buf, `";q=`...)
		buf = strconv.AppendInt(buf, l, 10)
		buf = append(buf, ";w="...)
		buf = strconv.AppendInt(buf, windowSeconds[i], 10)
	}
	h.Set("RateLimit-Policy", string(buf))
	i := a.window
	reset := ends(a.starts)[i].Sub(a.now)
	buf = append(buf[:0], '"')
	buf = append(buf, windowNames[i]...)
	buf = append(buf, `";r=`...)
	buf = strconv.AppendInt(buf, a.remain[i], 10)
	buf = append(buf, ";t="...)
	buf = strconv.AppendInt(buf, int64((reset+time.Second-1)/time.Second), 10)
	h.Set("RateLimit", string(buf))
}

// Done implements oauth.Admission: a request admitted but not issued a
// token gives its token back to this replica's reservation, while its
// windows last.
func (a *admission) Done(issued bool) {
	if issued {
		return
	}
	a.e.mu.Lock()
	defer a.e.mu.Unlock()
	if a.e.starts != a.starts {
		return
	}
	defer a.measure() // the headers tell what is left after the give-back
	if a.alone {
		for i := range a.e.used {
			a.e.used[i]--
		}
		return
	}
	if !a.g.single && a.g.batch(a.lim, a.e.used) <= 1 {
		// An exact quota: the token goes back to the shared count at
		// once, so that no replica holds one another could issue (one
		// write, on a request that failed anyway). Kept here if the
		// database does not answer.
		ctx, cancel := context.WithTimeout(context.Background(), a.g.timeout)
		defer cancel()
		_, used, err := a.counters.ReserveQuota(ctx, store.QuotaReservation{ClientID: a.client, Starts: a.starts, Limits: a.lim,
			Return: 1, ReturnStarts: a.starts})
		if err == nil {
			a.e.used = used
			return
		}
	}
	a.e.avail++
}
