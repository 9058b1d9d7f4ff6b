// Package clientcache keeps the clients the token endpoint authenticates in
// memory, so that a token request costs no database round trip.
//
// Correctness comes from invalidation, not from a short lifetime: every
// change made through this replica invalidates its entry before the change
// is acknowledged, and changes made through other replicas arrive through a
// change feed (PostgreSQL LISTEN/NOTIFY). While the feed is down the cache
// is bypassed. Entries also expire after a TTL, a safety net that bounds
// staleness if a notification were ever lost.
package clientcache

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// clientGetter is the source of truth.
type clientGetter interface {
	GetClient(ctx context.Context, id string) (store.Client, error)
}

// Cache caches GetClient results, including "no such client". It is safe
// for concurrent use.
type Cache struct {
	src        clientGetter
	ttl        time.Duration
	maxEntries int
	now        func() time.Time

	mu      sync.RWMutex
	entries map[string]entry
	gen     uint64 // bumped by every invalidation
	enabled bool
}

type entry struct {
	client   store.Client
	notFound bool
	expires  time.Time
}

// New returns an enabled cache in front of src.
func New(src clientGetter, ttl time.Duration, maxEntries int, now func() time.Time) *Cache {
	return &Cache{src: src, ttl: ttl, maxEntries: maxEntries, now: now, entries: map[string]entry{}, enabled: true}
}

// GetClient returns the client from the cache or, on a miss, from the
// source. Callers must not modify the returned client's slices or maps.
func (c *Cache) GetClient(ctx context.Context, id string) (store.Client, error) {
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[id]
	gen, enabled := c.gen, c.enabled
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		if e.notFound {
			return store.Client{}, store.ErrNotFound
		}
		return e.client, nil
	}
	cl, err := c.src.GetClient(ctx, id)
	notFound := errors.Is(err, store.ErrNotFound)
	if (err == nil || notFound) && enabled {
		c.mu.Lock()
		// An invalidation since the read started means the value may be
		// stale: do not keep it.
		if c.gen == gen && c.enabled {
			if len(c.entries) >= c.maxEntries {
				c.entries = map[string]entry{}
			}
			c.entries[id] = entry{client: cl, notFound: notFound, expires: now.Add(c.ttl)}
		}
		c.mu.Unlock()
	}
	return cl, err
}

// Invalidate drops one client.
func (c *Cache) Invalidate(id string) {
	c.mu.Lock()
	c.gen++
	delete(c.entries, id)
	c.mu.Unlock()
}

// InvalidateAll drops every client (an API changed, or notifications may
// have been missed).
func (c *Cache) InvalidateAll() {
	c.mu.Lock()
	c.gen++
	c.entries = map[string]entry{}
	c.mu.Unlock()
}

// SetEnabled turns caching on or off; it is off while the change feed that
// keeps it correct is down. Either way the cache is emptied.
func (c *Cache) SetEnabled(on bool) {
	c.mu.Lock()
	c.gen++
	c.enabled = on
	c.entries = map[string]entry{}
	c.mu.Unlock()
}

// Len reports how many entries are cached.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
