package tokencache

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/verify"
)

var t0 = time.Unix(1_800_000_000, 0)

func entry(exp time.Time) Entry {
	return Entry{Issuer: "https://as.example.com", Claims: &verify.Claims{ExpiresAt: exp, JTI: "j"}, Key: verify.Key{ID: "k", Alg: "EdDSA"}}
}

func TestGetPut(t *testing.T) {
	exp := t0.Add(time.Minute)
	tests := []struct {
		name   string
		put    time.Time // exp of the stored entry (zero: nothing stored)
		get    string
		at     time.Time
		wantOK bool
	}{
		{"hit", exp, "tok", t0, true},
		{"another token", exp, "tok2", t0, false},
		{"one byte changed", exp, "toK", t0, false},
		{"just before exp", exp, "tok", exp.Add(-time.Nanosecond), true},
		{"at exp", exp, "tok", exp, false},
		{"after exp", exp, "tok", exp.Add(time.Hour), false},
		{"expired when stored", t0, "tok", t0, false},
		{"nothing stored", time.Time{}, "tok", t0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New(10)
			if !tc.put.IsZero() {
				c.Put(SumOf("tok"), entry(tc.put), t0)
			}
			e, ok := c.Get(SumOf(tc.get), tc.at)
			if ok != tc.wantOK || (ok && e.Claims.JTI != "j") {
				t.Fatalf("Get = %v, %v; want ok %v", e, ok, tc.wantOK)
			}
			if !ok && tc.get == "tok" && c.Len() != 0 {
				t.Fatalf("an expired entry stayed: %d entries", c.Len())
			}
		})
	}
}

func TestOff(t *testing.T) {
	for _, n := range []int{0, -1} {
		if c := New(n); c != nil {
			t.Fatalf("New(%d) = %v, want nil (off)", n, c)
		}
	}
}

// Many distinct tokens never grow the cache past its bound, and the last
// stored is found.
func TestBounded(t *testing.T) {
	for _, max := range []int{1, 100, 1000, 10_000} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			c := New(max)
			bound := max
			if n := len(c.shards); max%n != 0 {
				bound += n - max%n
			}
			for i := range 5 * max {
				s := SumOf(fmt.Sprint("token-", i))
				c.Put(s, entry(t0.Add(time.Hour)), t0)
				if _, ok := c.Get(s, t0); !ok {
					t.Fatalf("token %d not found right after Put", i)
				}
			}
			if n := c.Len(); n > bound || n < max/2 {
				t.Fatalf("%d entries for a bound of %d", n, bound)
			}
		})
	}
}

// A full cache drops an expired entry before a live one.
func TestEvictsExpiredFirst(t *testing.T) {
	c := New(2)
	c.Put(SumOf("old"), entry(t0.Add(time.Minute)), t0)
	c.Put(SumOf("live"), entry(t0.Add(time.Hour)), t0)
	now := t0.Add(2 * time.Minute)
	c.Put(SumOf("new"), entry(t0.Add(time.Hour)), now)
	for tok, want := range map[string]bool{"old": false, "live": true, "new": true} {
		if _, ok := c.Get(SumOf(tok), now); ok != want {
			t.Errorf("%s: found %v, want %v", tok, ok, want)
		}
	}
}

// TestMemoryPerEntry reports the heap per entry with realistic claims, as
// introspection stores them (without Raw).
func TestMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory")
	}
	const n = 10_000
	c := New(n)
	mk := func(i int) Entry {
		cl := &verify.Claims{Issuer: "https://auth.example.com", Subject: fmt.Sprintf("client-%08d", i), ClientID: fmt.Sprintf("client-%08d", i),
			Audience: []string{"https://api.example.com"}, JTI: fmt.Sprintf("%032x", i), Scopes: []string{"orders:read", "orders:write"},
			ExpiresAt: t0.Add(time.Hour), IssuedAt: t0, NotBefore: t0}
		return Entry{Issuer: cl.Issuer, Claims: cl, Key: verify.Key{ID: "kid", Alg: "EdDSA"}}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		c.Put(SumOf(fmt.Sprint("token-", i)), mk(i), t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("%d entries: %.0f bytes each (claims included)", c.Len(), float64(after.HeapAlloc-before.HeapAlloc)/float64(c.Len()))
	runtime.KeepAlive(c)
}
