package clientcache

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// freshSource returns, like a database, a new copy of every text on each
// read: a client as m2mauth bench seed makes it (one secret, one grant).
type freshSource struct{}

func (freshSource) GetClient(_ context.Context, id string) (store.Client, error) {
	now := time.Unix(1_800_000_000, 0).UTC()
	c := func(s string) string { return strings.Clone(s) }
	return store.Client{ID: c(id), Name: c(id), Description: c("created by m2mauth bench seed"), DefaultAudience: c("https://bench.m2mauth.invalid"),
		AuthMethod: c(store.DefaultAuthMethod), Version: 1, CreatedAt: now, UpdatedAt: now, Introspect: []string{},
		Grants:  []store.Grant{{Audience: c("https://bench.m2mauth.invalid"), Scopes: []string{c("bench")}, APITokenLifetime: time.Hour}},
		Secrets: []store.Secret{{ID: c("sec_" + strings.Repeat("a", 26)), Hash: c("hmac-sha256$" + strings.Repeat("b", 43)), Hint: c("m2ms_abcd"), CreatedAt: now}},
	}, nil
}

func (freshSource) ClientIDs(context.Context, func(string)) error { return nil }

// heapAfterGC is the live heap.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkEntryBytes measures the memory a cached client costs (the
// bytes/entry metric; EntryBytes states it).
func BenchmarkEntryBytes(b *testing.B) {
	const n = 50_000
	for b.Loop() {
		before := heapAfterGC()
		c := New(freshSource{}, time.Hour, n, time.Now)
		for i := range n {
			if _, err := c.GetClient(context.Background(), fmt.Sprintf("bench-%06d", i)); err != nil {
				b.Fatal(err)
			}
		}
		after := heapAfterGC()
		b.ReportMetric(float64(after-before)/n, "bytes/entry")
		runtime.KeepAlive(c)
	}
}

// An entry costs about EntryBytes, as sizing the cache assumes.
func TestEntryBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a cache")
	}
	const n = 20_000
	before := heapAfterGC()
	c := New(freshSource{}, time.Hour, n, time.Now)
	for i := range n {
		c.GetClient(context.Background(), fmt.Sprintf("bench-%06d", i))
	}
	per := float64(heapAfterGC()-before) / n
	runtime.KeepAlive(c)
	if per > EntryBytes*1.25 || per < EntryBytes/2 {
		t.Errorf("an entry costs %.0f bytes; EntryBytes says %d", per, EntryBytes)
	}
	t.Logf("%.0f bytes per entry", per)
}
