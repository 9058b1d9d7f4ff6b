package dpop

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestReplayCache(t *testing.T) {
	c := NewReplayCache(3)
	until := t0.Add(time.Minute)
	for i := range 3 {
		if !c.Use(fmt.Sprint("k", i), until, t0) {
			t.Fatalf("k%d not fresh", i)
		}
	}
	if c.Use("k1", until, t0.Add(59*time.Second)) {
		t.Error("replay of k1 within its window accepted")
	}
	// Full of unexpired keys: the oldest (k0) is forgotten.
	if !c.Use("k3", until, t0) || c.Len() != 3 {
		t.Fatalf("k3 not fresh or Len %d", c.Len())
	}
	if c.Use("k3", until, t0) || c.Use("k2", until, t0) {
		t.Error("replay of a remembered key accepted")
	}
	if !c.Use("k0", until, t0) {
		t.Error("the evicted oldest key is still remembered")
	}
	// After their window, keys are fresh again and swept.
	later := until.Add(time.Second)
	if !c.Use("k2", later.Add(time.Minute), later) {
		t.Error("expired k2 not fresh")
	}
	if c.Len() != 1 {
		t.Errorf("Len %d after the sweep, want 1", c.Len())
	}
	if c.Use("k2", later.Add(time.Minute), later) {
		t.Error("replay of the re-added k2 accepted")
	}
	// A key already out of its window is fresh and not kept.
	for range 2 {
		if !c.Use("old", later, later) || c.Len() != 1 {
			t.Errorf("an out-of-window key is remembered (Len %d)", c.Len())
		}
	}
}

func TestReplayCacheBound(t *testing.T) {
	const max = 100
	c := NewReplayCache(max)
	for i := range 10 * max {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if !c.Use(fmt.Sprint("k", i), now.Add(time.Hour), now) {
			t.Fatalf("k%d not fresh", i)
		}
		if c.Len() > max || len(c.order)-c.head > max || cap(c.order) > 4*max+4 {
			t.Fatalf("after %d keys: Len %d, queue %d (cap %d), over the bound %d", i+1, c.Len(), len(c.order)-c.head, cap(c.order), max)
		}
	}
	// The last max keys are still remembered.
	for i := 9 * max; i < 10*max; i++ {
		if c.Use(fmt.Sprint("k", i), t0.Add(time.Hour), t0.Add(time.Second)) {
			t.Errorf("recent key k%d forgotten", i)
		}
	}
}

func TestReplayCacheReaddedKeyNotDroppedByStaleEntry(t *testing.T) {
	c := NewReplayCache(10)
	c.Use("a", t0.Add(time.Second), t0)
	c.Use("b", t0.Add(time.Hour), t0) // keeps a's stale entry from the front sweep
	// a expires and is used again: its old queue entry must not delete
	// the new memory when it reaches the front.
	at := t0.Add(2 * time.Second)
	if !c.Use("a", at.Add(time.Hour), at) {
		t.Fatal("expired a not fresh")
	}
	for i := range 8 {
		c.Use(fmt.Sprint("x", i), at.Add(time.Hour), at)
	}
	if c.Use("a", at.Add(time.Hour), at) {
		t.Error("re-added a forgotten")
	}
}

func TestReplayCacheConcurrent(t *testing.T) {
	c := NewReplayCache(0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := map[string]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := fmt.Sprint("k", (i+g)%50)
				if c.Use(k, t0.Add(time.Minute), t0) {
					mu.Lock()
					fresh[k]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(fresh) != 50 {
		t.Errorf("%d keys fresh, want 50", len(fresh))
	}
	for k, n := range fresh {
		if n != 1 {
			t.Errorf("%s fresh %d times", k, n)
		}
	}
}
