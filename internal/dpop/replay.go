package dpop

import (
	"sync"
	"time"
)

// DefaultReplayCacheSize is the bound of NewReplayCache(0).
const DefaultReplayCacheSize = 100_000

// ReplayCache remembers accepted proofs (their ReplayKey) until they
// expire, in memory, for one process (RFC 9449 §11.1). It is bounded: it
// holds at most max keys. Keys are swept in the order they were added,
// which is about the order they expire in (every key lives for the same
// window after its proof's iat), so sweeping costs O(1) per Use on
// average. When max keys are still unexpired, the oldest one is
// forgotten before its time: a flood of more than max fresh proofs within
// one window could then make a replay of an early one pass this cache.
// Size it above the proofs accepted per window (DefaultReplayCacheSize is
// 100 000, about 10 MB); the authorization server backs it with its
// database, shared by the replicas. Safe for concurrent use.
type ReplayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]int64 // key → until (Unix nanoseconds)
	// order is a queue of the keys in the order added, with the until
	// they were added with (a key added again after it expired appears
	// twice; the older entry no longer matches seen and is skipped).
	order []replayEntry
	head  int // order[head:] are the live entries
}

type replayEntry struct {
	key   string
	until int64
}

// NewReplayCache returns a cache of at most max keys (zero or less:
// DefaultReplayCacheSize).
func NewReplayCache(max int) *ReplayCache {
	if max <= 0 {
		max = DefaultReplayCacheSize
	}
	return &ReplayCache{max: max, seen: make(map[string]int64)}
}

// Use records key as used until until and reports whether it was fresh:
// false when key was recorded before and has not expired at now (a
// replay). A key whose until is not after now is fresh and not recorded:
// its proof is out of its window already.
func (c *ReplayCache) Use(key string, until, now time.Time) (fresh bool) {
	fresh, _ = c.use(key, until, now, true)
	return fresh
}

// TryUse is Use that never forgets a live key to make room: when max
// unexpired keys are held, it records nothing and reports full, so that
// the caller refuses the proof (or asks a shared store) rather than let a
// flood of fresh proofs push out one that could then be replayed.
func (c *ReplayCache) TryUse(key string, until, now time.Time) (fresh, full bool) {
	return c.use(key, until, now, false)
}

func (c *ReplayCache) use(key string, until, now time.Time, evict bool) (fresh, full bool) {
	n, u := now.UnixNano(), until.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.seen[key]; ok && n < prev {
		return false, false
	}
	if u <= n {
		return true, false
	}
	// Sweep what has expired from the front, then make room.
	for c.head < len(c.order) && c.order[c.head].until <= n {
		c.pop()
	}
	if len(c.order)-c.head >= c.max {
		if !evict {
			return false, true
		}
		c.pop()
	}
	if c.head > 0 && c.head >= len(c.order)/2 {
		// Reclaim the popped half: each entry moves O(1) times on average.
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
	c.seen[key] = u
	c.order = append(c.order, replayEntry{key, u})
	return true, false
}

// Seen reports whether key is remembered and has not expired at now,
// recording nothing: for a caller that asks a shared store before it
// remembers a key (Use then records it).
func (c *ReplayCache) Seen(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.seen[key]
	return ok && now.UnixNano() < until
}

// Len is the number of keys remembered (expired ones included until they
// are swept).
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// pop forgets the oldest entry of the queue.
func (c *ReplayCache) pop() {
	e := c.order[c.head]
	if c.seen[e.key] == e.until {
		delete(c.seen, e.key)
	}
	c.order[c.head] = replayEntry{}
	c.head++
}
