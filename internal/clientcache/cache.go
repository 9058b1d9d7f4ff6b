// Package clientcache keeps the clients the token endpoint authenticates in
// memory, so that a token request costs no database round trip.
//
// Correctness comes from invalidation, not from a short lifetime: every
// change made through this replica invalidates its entry before the change
// is acknowledged, and changes made through other replicas arrive through a
// change feed (PostgreSQL LISTEN/NOTIFY). While the feed is down the cache
// is bypassed. Entries also expire after a TTL, a safety net that bounds
// staleness if a notification were ever lost.
//
// Unknown client ids are kept away from the database too: the cache holds
// a Bloom filter of every client id (about 10 bits per id), loaded by
// LoadIDs and kept current by the same invalidations, since creating a
// client invalidates its id. A client created on another replica reaches
// the filter when the change feed delivers its notification, a few
// milliseconds after the commit; a request for it in between must not be
// refused, so an id the filter does not hold is still confirmed by the
// database, within a budget (MissRate per second): a flood of random ids
// costs the database at most that, and past it ids the filter does not
// hold are answered "no such client" from memory.
//
// The cache is bounded: past its size, each new entry evicts the least
// recently used of a few sampled at random (as Redis approximates LRU),
// so a working set larger than the cache keeps its hottest clients
// instead of losing all of them at once. An entry costs about
// EntryBytes of memory (a client with one secret and one grant; see
// BenchmarkEntryBytes). The filter is trusted
// only while invalidations cannot be missed: it is dropped when the cache
// is disabled and must be loaded again.
package clientcache

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"golang.org/x/time/rate"

	"github.com/m2mauth/m2mauth/internal/store"
)

// source is the source of truth.
type source interface {
	GetClient(ctx context.Context, id string) (store.Client, error)
	ClientIDs(ctx context.Context, fn func(id string)) error
}

// Cache caches GetClient results, including "no such client". It is safe
// for concurrent use.
type Cache struct {
	src        source
	ttl        time.Duration
	maxEntries int
	now        func() time.Time

	mu      sync.RWMutex
	entries map[string]*entry
	// absent holds ids the source does not have, until their expiry (unix
	// nanoseconds): kept apart and bounded on their own, so that a spray
	// of random ids can evict only them, never the clients.
	absent  map[string]int64
	gen     uint64 // bumped by every invalidation
	enabled bool
	epoch   uint64 // bumped by every SetEnabled
	// ids holds every client id while trusted (nil: not loaded, or
	// dropped because invalidations may have been missed).
	ids atomic.Pointer[idFilter]
	// While a load runs, the ids invalidated meanwhile are kept here (it
	// may have read the table before they were created).
	loading   bool
	loadedNew []string
	loadMu    sync.Mutex // one load at a time
	// misses bounds the database reads that confirm the filter's "no".
	misses *rate.Limiter
}

// MissRate and MissBurst bound the database reads per second that confirm
// an id the filter does not hold.
const (
	MissRate  = 100
	MissBurst = 100
)

type entry struct {
	client  store.Client
	expires int64 // unix nanoseconds
	// used is when the entry was last read (unix nanoseconds, updated at
	// most every usedResolution): eviction picks the oldest of a sample.
	used atomic.Int64
}

// EntryBytes is about what a cached client with one secret and one grant
// costs (measured by BenchmarkEntryBytes): size a cache by memory with it.
const EntryBytes = 900

// evictionSamples is how many entries an eviction compares; usedResolution
// bounds how often a hit writes its entry's last-use time.
const (
	evictionSamples = 5
	usedResolution  = int64(100 * time.Millisecond)
)

// New returns an enabled cache in front of src, holding at most
// maxEntries clients (and apart from them at most maxEntries unknown ids)
// for at most ttl each.
func New(src source, ttl time.Duration, maxEntries int, now func() time.Time) *Cache {
	return &Cache{src: src, ttl: ttl, maxEntries: max(maxEntries, 1), now: now, entries: map[string]*entry{}, absent: map[string]int64{}, enabled: true,
		misses: rate.NewLimiter(MissRate, MissBurst)}
}

// GetClient returns the client from the cache or, on a miss, from the
// source. Callers must not modify the returned client's slices or maps.
func (c *Cache) GetClient(ctx context.Context, id string) (store.Client, error) {
	now := c.now()
	t := now.UnixNano()
	c.mu.RLock()
	e, ok := c.entries[id]
	var gone int64
	var isAbsent bool
	if !ok {
		gone, isAbsent = c.absent[id]
	}
	gen, enabled := c.gen, c.enabled
	c.mu.RUnlock()
	if ok && t < e.expires {
		if t-e.used.Load() >= usedResolution {
			e.used.Store(t)
		}
		return e.client, nil
	}
	if isAbsent && t < gone {
		return store.Client{}, store.ErrNotFound
	}
	if f := c.ids.Load(); f != nil && !f.mayContain(id) && !c.misses.AllowN(now, 1) {
		return store.Client{}, store.ErrNotFound
	}
	cl, err := c.src.GetClient(ctx, id)
	notFound := errors.Is(err, store.ErrNotFound)
	if (err == nil || notFound) && enabled {
		c.mu.Lock()
		// An invalidation since the read started means the value may be
		// stale: do not keep it.
		if c.gen == gen && c.enabled {
			expires := t + int64(c.ttl)
			if notFound {
				if _, in := c.absent[id]; !in && len(c.absent) >= c.maxEntries {
					c.evictAbsent(t)
				}
				c.absent[id] = expires
			} else {
				if _, in := c.entries[id]; !in && len(c.entries) >= c.maxEntries {
					c.evict(t)
				}
				ne := &entry{client: intern(cl), expires: expires}
				ne.used.Store(t)
				c.entries[id] = ne
			}
		}
		c.mu.Unlock()
	}
	return cl, err
}

// evict drops one client: an expired one, or the least recently used of a
// random sample (map iteration starts at a random place). c.mu is held.
func (c *Cache) evict(now int64) {
	var victim string
	oldest, n := int64(0), 0
	for id, e := range c.entries {
		if e.expires <= now {
			victim = id
			break
		}
		if u := e.used.Load(); n == 0 || u < oldest {
			victim, oldest = id, u
		}
		if n++; n == evictionSamples {
			break
		}
	}
	delete(c.entries, victim)
}

// evictAbsent drops one unknown id: an expired one, or the one expiring
// first of a random sample. c.mu is held.
func (c *Cache) evictAbsent(now int64) {
	var victim string
	first, n := int64(0), 0
	for id, exp := range c.absent {
		if exp <= now {
			victim = id
			break
		}
		if n == 0 || exp < first {
			victim, first = id, exp
		}
		if n++; n == evictionSamples {
			break
		}
	}
	delete(c.absent, victim)
}

// intern makes the texts many clients share (audiences, scopes, the auth
// method) one copy each, so that a cached client costs only what is its
// own. The client was just read: the cache owns its slices.
func intern(c store.Client) store.Client {
	c.DefaultAudience = unique.Make(c.DefaultAudience).Value()
	c.AuthMethod = unique.Make(c.AuthMethod).Value()
	for i := range c.Grants {
		g := &c.Grants[i]
		g.Audience = unique.Make(g.Audience).Value()
		for j, sc := range g.Scopes {
			g.Scopes[j] = unique.Make(sc).Value()
		}
	}
	return c
}

// Invalidate drops one client; the id may be new, so the id filter learns
// it.
func (c *Cache) Invalidate(id string) {
	c.mu.Lock()
	c.gen++
	delete(c.entries, id)
	delete(c.absent, id)
	if f := c.ids.Load(); f != nil {
		f.add(id)
	}
	if c.loading {
		c.loadedNew = append(c.loadedNew, id)
	}
	c.mu.Unlock()
}

// LoadIDs reads every client id into a new id filter and trusts it from
// then on (until the cache is disabled). Call it when the cache starts,
// whenever the change feed comes back, and when IDsFull reports the filter
// over capacity. Until it returns, lookups of uncached ids go to the
// source.
func (c *Cache) LoadIDs(ctx context.Context) error {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	c.mu.Lock()
	c.loading, c.loadedNew = true, nil
	epoch := c.epoch
	size := 0
	if f := c.ids.Load(); f != nil {
		size = 2 * int(f.n.Load())
	}
	c.mu.Unlock()
	// Only the ids' hashes are kept while the table is read: 8 bytes an
	// id, not the id itself (a million ids would briefly cost tens of MB).
	seed := maphash.MakeSeed()
	var hashes []uint64
	err := c.src.ClientIDs(ctx, func(id string) { hashes = append(hashes, maphash.String(seed, id)) })
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loading = false
	if err != nil {
		return err
	}
	// Disabled now, or switched meanwhile: invalidations may have been
	// missed, so the filter cannot be trusted (a re-enabled cache loads
	// again).
	if !c.enabled || c.epoch != epoch {
		return nil
	}
	f := newIDFilter(max(size, 2*len(hashes)), seed)
	for _, h := range hashes {
		f.addHash(h)
	}
	for _, id := range c.loadedNew {
		f.add(id)
	}
	c.loadedNew = nil
	c.ids.Store(f)
	return nil
}

// IDsFull reports whether the id filter holds more ids than it was sized
// for (its false-positive rate is rising): time to LoadIDs again.
func (c *Cache) IDsFull() bool {
	f := c.ids.Load()
	return f != nil && f.full()
}

// InvalidateAll drops every client (an API changed, or notifications may
// have been missed).
func (c *Cache) InvalidateAll() {
	c.mu.Lock()
	c.gen++
	c.entries, c.absent = map[string]*entry{}, map[string]int64{}
	c.mu.Unlock()
}

// SetEnabled turns caching on or off; it is off while the change feed that
// keeps it correct is down. Either way the cache and the id filter are
// emptied: call LoadIDs after turning it on.
func (c *Cache) SetEnabled(on bool) {
	c.mu.Lock()
	c.gen++
	c.epoch++
	c.enabled = on
	c.entries, c.absent = map[string]*entry{}, map[string]int64{}
	c.ids.Store(nil)
	c.mu.Unlock()
}

// Len reports how many entries are cached: clients and absent ids.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries) + len(c.absent)
}
