// Package tokencache keeps access tokens whose signature an environment has
// verified, so that introspecting the same token again skips the signature
// check (about three quarters of an introspection's instructions).
//
// An entry is found by the SHA-256 of the token's exact bytes, signature
// included: a token that differs in one byte is another key, and no claim
// (jti or other) is ever used to find an entry. Only successful
// verifications are stored. A cache belongs to one environment and records
// the issuer it verified for. An entry holds the verified claims and the key
// the signature was checked with; it answers nothing by itself: the caller
// re-checks the key (still the one of its kid), exp, nbf and iat, and then
// everything else it checks of a verified token (deny-list, client,
// caller's rights). Entries leave at the token's expiry (when next looked
// up, or when sampled by an insertion) or by random eviction when the cache
// is full.
package tokencache

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2mauth/verify"
)

// Entry is a verified token.
type Entry struct {
	// Issuer is the issuer the token was verified for.
	Issuer string
	// Claims are the verified claims; shared by every hit: read-only.
	Claims *verify.Claims
	// Key is the key the signature was verified with.
	Key verify.Key
}

// Sum is the SHA-256 of a token's exact bytes: its key in a Cache.
type Sum [sha256.Size]byte

// SumOf returns the Sum of token.
func SumOf(token string) Sum { return sha256.Sum256([]byte(token)) }

// sample is how many entries an insertion into a full shard looks at for an
// expired one before evicting the first it saw.
const sample = 8

// Cache is a bounded, concurrency-safe map from Sum to Entry. The zero
// value is not usable; a nil *Cache is a cache that is off.
type Cache struct {
	shards []shard
	hits   atomic.Uint64
	misses atomic.Uint64
}

type shard struct {
	mu  sync.RWMutex
	max int
	m   map[Sum]*item
	_   [40]byte // keeps shards on separate cache lines
}

type item struct {
	Entry
	expires time.Time
}

// New returns a cache of at most about max entries (rounded up to a
// multiple of its shard count), or nil (off) when max <= 0.
func New(max int) *Cache {
	if max <= 0 {
		return nil
	}
	n := 1
	if max >= 1024 {
		n = 16
	}
	per := (max + n - 1) / n
	c := &Cache{shards: make([]shard, n)}
	for i := range c.shards {
		c.shards[i].max = per
		c.shards[i].m = make(map[Sum]*item)
	}
	return c
}

func (c *Cache) shard(s Sum) *shard { return &c.shards[int(s[0])%len(c.shards)] }

// Get returns the entry of s if there is one whose token has not expired at
// now (by its exp claim, without leeway); an expired one is dropped.
func (c *Cache) Get(s Sum, now time.Time) (Entry, bool) {
	sh := c.shard(s)
	sh.mu.RLock()
	it, ok := sh.m[s]
	sh.mu.RUnlock()
	if !ok {
		c.misses.Add(1)
		return Entry{}, false
	}
	if !now.Before(it.expires) {
		c.Delete(s)
		c.misses.Add(1)
		return Entry{}, false
	}
	c.hits.Add(1)
	return it.Entry, true
}

// Put stores e under s until its claims' exp. A token already expired at
// now is not stored. When the shard is full, Put drops an expired entry
// among a few it looks at, or else the first of them (a random one: map
// iteration starts at a random place).
func (c *Cache) Put(s Sum, e Entry, now time.Time) {
	if e.Claims == nil || !now.Before(e.Claims.ExpiresAt) {
		return
	}
	sh := c.shard(s)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[s]; !ok && len(sh.m) >= sh.max {
		var victim *Sum
		n := 0
		for k, it := range sh.m {
			if !now.Before(it.expires) {
				delete(sh.m, k)
				victim = nil
				break
			}
			if victim == nil {
				victim = &k
			}
			if n++; n >= sample {
				break
			}
		}
		if victim != nil {
			delete(sh.m, *victim)
		}
	}
	sh.m[s] = &item{Entry: e, expires: e.Claims.ExpiresAt}
}

// Delete drops the entry of s.
func (c *Cache) Delete(s Sum) {
	sh := c.shard(s)
	sh.mu.Lock()
	delete(sh.m, s)
	sh.mu.Unlock()
}

// Len returns the number of entries.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Stats returns the lookups that found a live entry and those that did not.
func (c *Cache) Stats() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }
