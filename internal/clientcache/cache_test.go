package clientcache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

type fakeSource struct {
	mu      sync.Mutex
	clients map[string]store.Client
	reads   int
	// during, when set, runs in the middle of a read (to race an invalidation).
	during func()
	// duringIDs, when set, runs in the middle of ClientIDs.
	duringIDs func()
}

func (f *fakeSource) GetClient(_ context.Context, id string) (store.Client, error) {
	f.mu.Lock()
	f.reads++
	c, ok := f.clients[id]
	during := f.during
	f.mu.Unlock()
	if during != nil {
		during()
	}
	if !ok {
		return store.Client{}, store.ErrNotFound
	}
	return c, nil
}

func (f *fakeSource) ClientIDs(_ context.Context, fn func(string)) error {
	f.mu.Lock()
	ids := make([]string, 0, len(f.clients))
	for id := range f.clients {
		ids = append(ids, id)
	}
	during := f.duringIDs
	f.mu.Unlock()
	if during != nil {
		during()
	}
	for _, id := range ids {
		fn(id)
	}
	return nil
}

func (f *fakeSource) set(c store.Client) {
	f.mu.Lock()
	f.clients[c.ID] = c
	f.mu.Unlock()
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestCache(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{clients: map[string]store.Client{"a": {ID: "a", Name: "v1"}}}
	clk := &clock{time.Unix(1_800_000_000, 0)}
	c := New(src, 30*time.Second, 100, clk.now)

	get := func(id string) (string, error) {
		cl, err := c.GetClient(ctx, id)
		return cl.Name, err
	}
	if n, _ := get("a"); n != "v1" {
		t.Fatalf("first read %q", n)
	}
	src.set(store.Client{ID: "a", Name: "v2"})
	if n, _ := get("a"); n != "v1" || src.reads != 1 {
		t.Fatalf("a cached read went to the source (reads=%d, name %q)", src.reads, n)
	}
	c.Invalidate("a")
	if n, _ := get("a"); n != "v2" {
		t.Fatalf("after Invalidate: %q, want v2", n)
	}

	// Unknown clients are cached too, until invalidated.
	if _, err := get("b"); err != store.ErrNotFound {
		t.Fatalf("unknown: %v", err)
	}
	src.set(store.Client{ID: "b", Name: "new"})
	if _, err := get("b"); err != store.ErrNotFound {
		t.Fatalf("negative entry not cached: %v", err)
	}
	c.InvalidateAll()
	if n, err := get("b"); err != nil || n != "new" {
		t.Fatalf("after InvalidateAll: %q %v", n, err)
	}

	// The TTL bounds staleness even without an invalidation.
	src.set(store.Client{ID: "a", Name: "v3"})
	clk.t = clk.t.Add(31 * time.Second)
	if n, _ := get("a"); n != "v3" {
		t.Fatalf("after the TTL: %q, want v3", n)
	}

	// Disabled: every read goes to the source.
	c.SetEnabled(false)
	reads := src.reads
	get("a")
	get("a")
	if src.reads != reads+2 || c.Len() != 0 {
		t.Fatalf("disabled cache served or kept entries (reads %d→%d, len %d)", reads, src.reads, c.Len())
	}
}

// A read that races an invalidation must not put the stale value back.
func TestInvalidationDuringRead(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{clients: map[string]store.Client{"a": {ID: "a", Name: "old"}}}
	clk := &clock{time.Unix(1_800_000_000, 0)}
	c := New(src, time.Minute, 100, clk.now)
	src.during = func() {
		// The change commits and is invalidated after the read saw "old".
		src.mu.Lock()
		src.clients["a"] = store.Client{ID: "a", Name: "new"}
		src.during = nil
		src.mu.Unlock()
		c.Invalidate("a")
	}
	if cl, _ := c.GetClient(ctx, "a"); cl.Name != "old" {
		t.Fatalf("first read %q", cl.Name)
	}
	if cl, _ := c.GetClient(ctx, "a"); cl.Name != "new" {
		t.Fatalf("stale value cached across an invalidation: %q", cl.Name)
	}
}

func TestMaxEntries(t *testing.T) {
	src := &fakeSource{clients: map[string]store.Client{}}
	c := New(src, time.Minute, 10, time.Now)
	for i := range 25 {
		c.GetClient(context.Background(), string(rune('a'+i)))
	}
	if c.Len() > 10 {
		t.Fatalf("%d entries, max 10", c.Len())
	}
}

// With the id filter loaded, a flood of unknown ids reaches the source
// only within the miss budget (the burst: the clock does not move here)
// and for the filter's false positives; the rest are answered from memory.
func TestUnknownIDsCostNoRead(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{clients: map[string]store.Client{}}
	for i := range 1000 {
		id := fmt.Sprintf("m2mc_%04d", i)
		src.clients[id] = store.Client{ID: id}
	}
	clk := &clock{time.Unix(1_800_000_000, 0)}
	c := New(src, 30*time.Second, 100_000, clk.now)
	if err := c.LoadIDs(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetClient(ctx, "m2mc_0001"); err != nil {
		t.Fatal(err)
	}
	before := src.reads
	for i := range 10_000 {
		if _, err := c.GetClient(ctx, "m2mc_0001"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetClient(ctx, fmt.Sprintf("unknown-%d", i)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
	}
	// The budget, then false positives of the filter (about 1 %).
	if reads := src.reads - before; reads > MissBurst+300 {
		t.Errorf("10,000 known and 10,000 distinct unknown lookups made %d source reads, want under %d", reads, MissBurst+300)
	}
}

func TestIDFilterFollowsCreationsAndDisabling(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{clients: map[string]store.Client{"a": {ID: "a"}}}
	clk := &clock{time.Unix(1_800_000_000, 0)}
	c := New(src, 30*time.Second, 100, clk.now)
	// A client created while the ids are read (after the read began) is
	// learnt through its invalidation.
	src.duringIDs = func() {
		src.set(store.Client{ID: "b"})
		c.Invalidate("b")
	}
	if err := c.LoadIDs(ctx); err != nil {
		t.Fatal(err)
	}
	src.duringIDs = nil
	for _, id := range []string{"a", "b"} {
		if _, err := c.GetClient(ctx, id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	// Created after the load.
	src.set(store.Client{ID: "c"})
	c.Invalidate("c")
	if _, err := c.GetClient(ctx, "c"); err != nil {
		t.Errorf("c: %v", err)
	}
	// While disabled (feed down) the filter is not trusted: a client
	// created elsewhere is found in the source.
	c.SetEnabled(false)
	src.set(store.Client{ID: "d"})
	if _, err := c.GetClient(ctx, "d"); err != nil {
		t.Errorf("d while disabled: %v", err)
	}
	// A load that raced a disable is thrown away.
	c.SetEnabled(true)
	src.duringIDs = func() { c.SetEnabled(false); c.SetEnabled(true) }
	if err := c.LoadIDs(ctx); err != nil {
		t.Fatal(err)
	}
	src.duringIDs = nil
	if c.ids.Load() != nil {
		t.Error("a filter loaded across a disable is trusted")
	}
	if err := c.LoadIDs(ctx); err != nil || c.ids.Load() == nil {
		t.Fatalf("reload: %v", err)
	}
	if _, err := c.GetClient(ctx, "d"); err != nil {
		t.Errorf("d after reload: %v", err)
	}
}

func TestIDFilterFalsePositives(t *testing.T) {
	f := newIDFilter(50_000, maphash.MakeSeed())
	for i := range f.capacity {
		f.add(fmt.Sprintf("m2mc_%d", i))
	}
	for i := range f.capacity {
		if !f.mayContain(fmt.Sprintf("m2mc_%d", i)) {
			t.Fatalf("m2mc_%d lost", i)
		}
	}
	fp := 0
	for i := range 100_000 {
		if f.mayContain(fmt.Sprintf("other_%d", i)) {
			fp++
		}
	}
	if fp > 2_000 {
		t.Errorf("%d false positives in 100,000 at capacity, want under 2 %%", fp)
	}
	if f.full() {
		t.Error("full at capacity")
	}
	f.add("one more")
	if !f.full() {
		t.Error("not full over capacity")
	}
}

// A client created on another replica, whose notification has not arrived
// yet, is found: the filter's "no" is confirmed by the source within the
// miss budget.
func TestFilterMissIsConfirmed(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{clients: map[string]store.Client{"a": {ID: "a"}}}
	clk := &clock{time.Unix(1_800_000_000, 0)}
	c := New(src, 30*time.Second, 100, clk.now)
	if err := c.LoadIDs(ctx); err != nil {
		t.Fatal(err)
	}
	src.set(store.Client{ID: "elsewhere"}) // created on another replica: no Invalidate here
	if _, err := c.GetClient(ctx, "elsewhere"); err != nil {
		t.Fatalf("a client created elsewhere, before its notification: %v", err)
	}
}

// Ids the source does not have are cached apart from the clients: a spray
// of them (while the id filter is not loaded, or as its false positives)
// flushes only their own entries, and a cached client costs no read.
func TestAbsentIDsDoNotEvictClients(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{clients: map[string]store.Client{"a": {ID: "a"}}}
	c := New(src, time.Minute, 10, time.Now)
	if _, err := c.GetClient(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := c.GetClient(ctx, fmt.Sprintf("random-%d", i)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
	}
	before := src.reads
	if _, err := c.GetClient(ctx, "a"); err != nil || src.reads != before {
		t.Fatalf("the client was evicted by unknown ids: %d reads, err %v", src.reads-before, err)
	}
}

// A full cache evicts one entry per new one, never everything, and not a
// client read since the others were: a hot client stays cached while many
// cold ones pass through.
func TestEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{clients: map[string]store.Client{"hot": {ID: "hot"}}}
	for i := range 200 {
		src.clients[fmt.Sprint("cold-", i)] = store.Client{ID: fmt.Sprint("cold-", i)}
	}
	clk := &clock{time.Unix(1_800_000_000, 0)}
	c := New(src, time.Hour, 10, clk.now)
	for i := range 200 {
		clk.t = clk.t.Add(time.Second)
		if _, err := c.GetClient(ctx, "hot"); err != nil {
			t.Fatal(err)
		}
		clk.t = clk.t.Add(time.Second)
		if _, err := c.GetClient(ctx, fmt.Sprint("cold-", i)); err != nil {
			t.Fatal(err)
		}
		if n := c.Len(); n > 10 || (i >= 9 && n != 10) {
			t.Fatalf("after %d clients: %d entries, want min(n, 10)", i+2, n)
		}
	}
	if src.reads != 201 {
		t.Errorf("%d reads, want 201: the hot client was evicted", src.reads)
	}
	// The newest cold client is cached too.
	before := src.reads
	if _, err := c.GetClient(ctx, "cold-199"); err != nil || src.reads != before {
		t.Errorf("the newest entry was evicted (err %v)", err)
	}
}
