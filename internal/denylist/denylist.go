// Package denylist keeps the revoked access tokens (by jti) in memory, so
// that every check of a token against the deny-list (the admin API on each
// request, introspection) costs no database round trip.
//
// Like the client cache, it is correct by being told of every change: a
// revocation made through this replica is added before it is acknowledged,
// and revocations made through other replicas arrive through the change
// feed. While the feed is down the list is not trusted and every check
// asks the database. It holds only live revocations (entries are pruned
// when their token expires) and at most a configured number of them; past
// that it stops trusting memory rather than grow without bound. A list
// that is enabled but untrusted for another reason (its load failed, or
// was overtaken by a switch of the feed) says so (NeedsLoad), so that its
// owner loads it again instead of asking the database on every check
// until the feed next reconnects.
package denylist

import (
	"context"
	"sync"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// source is the deny-list of record.
type source interface {
	IsRevoked(ctx context.Context, jti string) (bool, error)
	ListRevocations(ctx context.Context, now time.Time, after *store.Revocation, limit int) ([]store.Revocation, error)
}

// List is the in-memory deny-list. It is safe for concurrent use.
type List struct {
	src source
	now func() time.Time
	max int

	loadMu sync.Mutex // one load at a time

	mu      sync.RWMutex
	jtis    map[string]time.Time // jti → the token's expiry
	trusted bool                 // jtis is complete: checks need not ask the source
	enabled bool                 // every change can reach the list (Load may trust it)
	epoch   uint64               // bumped by every SetEnabled
	loading bool
	added   []store.Revocation // added while a load runs
	// full: the last load or addition found more live revocations than
	// max (memory is not trusted until the list is switched again).
	full bool
}

// New returns an empty list in front of src holding at most max entries.
// It is enabled but not trusted until Load succeeds.
func New(src source, max int, now func() time.Time) *List {
	return &List{src: src, now: now, max: max, jtis: map[string]time.Time{}, enabled: true}
}

// IsRevoked reports whether the token with this jti is revoked: from
// memory while the list is trusted, else from the source.
func (l *List) IsRevoked(ctx context.Context, jti string) (bool, error) {
	l.mu.RLock()
	_, revoked := l.jtis[jti]
	trusted := l.trusted
	l.mu.RUnlock()
	if trusted {
		return revoked, nil
	}
	return l.src.IsRevoked(ctx, jti)
}

// Known reports, from memory only, whether the token with this jti is
// revoked; trusted is false when memory cannot tell (the caller must then
// assume nothing).
func (l *List) Known(jti string) (revoked, trusted bool) {
	l.mu.RLock()
	_, revoked = l.jtis[jti]
	trusted = l.trusted
	l.mu.RUnlock()
	return revoked, trusted
}

// Add records a revocation made here or announced by another replica.
func (l *List) Add(jti string, expires time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.loading {
		l.added = append(l.added, store.Revocation{JTI: jti, ExpiresAt: expires})
	}
	if !l.trusted {
		return
	}
	if len(l.jtis) >= l.max {
		l.pruneLocked(l.now())
		if len(l.jtis) >= l.max {
			// Too many live revocations to hold: ask the database.
			l.trusted, l.full, l.jtis = false, true, map[string]time.Time{}
			return
		}
	}
	l.jtis[jti] = expires
}

// SetEnabled says whether every change can reach the list (the change
// feed is up, or there is only one process). Either way the list is
// emptied and untrusted: call Load after enabling it.
func (l *List) SetEnabled(on bool) {
	l.mu.Lock()
	l.epoch++
	l.enabled, l.trusted, l.full = on, false, false
	l.jtis = map[string]time.Time{}
	l.mu.Unlock()
}

// NeedsLoad reports whether the list is enabled but not trusted, and not
// because it is full: a Load failed, or none ran since it was enabled.
// Until one succeeds every check asks the source.
func (l *List) NeedsLoad() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.enabled && !l.trusted && !l.full && !l.loading
}

// Load reads every live revocation from the source and trusts the list
// from then on, if it is enabled and was not switched meanwhile.
func (l *List) Load(ctx context.Context) error {
	l.loadMu.Lock()
	defer l.loadMu.Unlock()
	l.mu.Lock()
	l.loading, l.added = true, nil
	epoch := l.epoch
	l.mu.Unlock()
	revs, err := l.src.ListRevocations(ctx, l.now(), nil, l.max+1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loading = false
	added := l.added
	l.added = nil
	if err != nil {
		return err
	}
	if !l.enabled || l.epoch != epoch {
		return nil // switched meanwhile: a later Load decides
	}
	if len(revs)+len(added) > l.max {
		l.trusted, l.full, l.jtis = false, true, map[string]time.Time{}
		return nil
	}
	jtis := make(map[string]time.Time, len(revs)+len(added))
	for _, r := range append(revs, added...) {
		jtis[r.JTI] = r.ExpiresAt
	}
	l.jtis, l.trusted = jtis, true
	return nil
}

// Prune drops the entries of tokens expired before t.
func (l *List) Prune(t time.Time) {
	l.mu.Lock()
	l.pruneLocked(t)
	l.mu.Unlock()
}

func (l *List) pruneLocked(t time.Time) {
	for jti, exp := range l.jtis {
		if exp.Before(t) {
			delete(l.jtis, jti)
		}
	}
}

// Len reports how many revocations are held in memory.
func (l *List) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.jtis)
}
