package clientcache

import (
	"hash/maphash"
	"sync/atomic"
)

// idFilter is a Bloom filter of client ids: "no" is certain, "maybe" is
// wrong for about 1 % of unknown ids while it holds at most capacity ids.
// Adds and lookups are lock-free.
type idFilter struct {
	seed     maphash.Seed
	bits     []atomic.Uint64
	capacity int
	n        atomic.Int64
}

// bitsPerID and probes give a false-positive rate near 1 % at capacity.
const (
	bitsPerID   = 10
	probes      = 7
	minCapacity = 1 << 9 // small: an environment with few clients costs little; the filter is rebuilt larger as it fills
)

// newIDFilter returns an empty filter for at least capacity ids, hashing
// them with seed.
func newIDFilter(capacity int, seed maphash.Seed) *idFilter {
	capacity = max(capacity, minCapacity)
	words := (capacity*bitsPerID + 63) / 64
	return &idFilter{seed: seed, bits: make([]atomic.Uint64, words), capacity: capacity}
}

// positions yields the filter's bit positions for id (double hashing).
func (f *idFilter) positions(id string, fn func(word int, mask uint64) bool) {
	f.hashPositions(maphash.String(f.seed, id), fn)
}

// hashPositions yields the bit positions of an id hashed with f.seed.
func (f *idFilter) hashPositions(h uint64, fn func(word int, mask uint64) bool) {
	h1, h2 := h, h>>32|1
	m := uint64(len(f.bits) * 64)
	for i := range uint64(probes) {
		p := (h1 + i*h2) % m
		if !fn(int(p/64), 1<<(p%64)) {
			return
		}
	}
}

func (f *idFilter) add(id string) { f.addHash(maphash.String(f.seed, id)) }

// addHash adds the id whose hash with f.seed is h.
func (f *idFilter) addHash(h uint64) {
	f.hashPositions(h, func(w int, mask uint64) bool {
		f.bits[w].Or(mask)
		return true
	})
	f.n.Add(1)
}

func (f *idFilter) mayContain(id string) bool {
	all := true
	f.positions(id, func(w int, mask uint64) bool {
		all = f.bits[w].Load()&mask != 0
		return all
	})
	return all
}

// full reports whether the filter holds more ids than it was sized for.
func (f *idFilter) full() bool { return f.n.Load() > int64(f.capacity) }
