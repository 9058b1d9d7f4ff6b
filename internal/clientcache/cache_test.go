package clientcache

import (
	"context"
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
