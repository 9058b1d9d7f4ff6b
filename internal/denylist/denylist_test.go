package denylist

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

type fakeSource struct {
	mu      sync.Mutex
	revs    map[string]store.Revocation
	reads   int
	during  func() // runs in the middle of ListRevocations
	listErr error
}

func (f *fakeSource) IsRevoked(_ context.Context, jti string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	_, ok := f.revs[jti]
	return ok, nil
}

func (f *fakeSource) ListRevocations(_ context.Context, now time.Time, _ *store.Revocation, limit int) ([]store.Revocation, error) {
	f.mu.Lock()
	var out []store.Revocation
	for _, r := range f.revs {
		if r.ExpiresAt.After(now) {
			out = append(out, r)
		}
	}
	during := f.during
	f.mu.Unlock()
	if during != nil {
		during()
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, f.listErr
}

func (f *fakeSource) revoke(jti string, exp time.Time) {
	f.mu.Lock()
	f.revs[jti] = store.Revocation{JTI: jti, ExpiresAt: exp}
	f.mu.Unlock()
}

var t0 = time.Unix(1_800_000_000, 0)

func TestListAnswersFromMemory(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{revs: map[string]store.Revocation{}}
	src.revoke("old", t0.Add(time.Hour))
	now := t0
	l := New(src, 100, func() time.Time { return now })
	// Before a load, the source answers.
	if ok, _ := l.IsRevoked(ctx, "old"); !ok || src.reads != 1 {
		t.Fatalf("untrusted: revoked=%v reads=%d", ok, src.reads)
	}
	// A revocation made while loading (after the source was read) is kept.
	src.during = func() {
		src.revoke("racing", t0.Add(time.Hour))
		l.Add("racing", t0.Add(time.Hour))
	}
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	src.during = nil
	l.Add("new", t0.Add(2*time.Hour))
	reads := src.reads
	for jti, want := range map[string]bool{"old": true, "racing": true, "new": true, "live": false} {
		if got, err := l.IsRevoked(ctx, jti); got != want || err != nil {
			t.Errorf("%s: %v %v, want %v", jti, got, err, want)
		}
	}
	if src.reads != reads {
		t.Errorf("a trusted list asked the source %d times", src.reads-reads)
	}
	l.Prune(t0.Add(90 * time.Minute))
	if l.Len() != 1 {
		t.Errorf("%d entries after pruning, want 1 (new)", l.Len())
	}
	// Disabled (the feed is down): the source answers again; a load that
	// raced a disable is not trusted.
	l.SetEnabled(false)
	if ok, _ := l.IsRevoked(ctx, "racing"); !ok || src.reads != reads+1 {
		t.Errorf("disabled: revoked=%v, reads %d", ok, src.reads-reads)
	}
	l.SetEnabled(true)
	src.during = func() { l.SetEnabled(false); l.SetEnabled(true) }
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	src.during = nil
	if l.trusted {
		t.Error("a load across a disable is trusted")
	}
}

func TestListBounded(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{revs: map[string]store.Revocation{}}
	l := New(src, 10, func() time.Time { return t0 })
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 11 {
		jti := fmt.Sprint("j", i)
		src.revoke(jti, t0.Add(time.Hour))
		l.Add(jti, t0.Add(time.Hour))
	}
	if l.trusted || l.Len() != 0 {
		t.Fatalf("over its bound the list still trusts memory (%d entries)", l.Len())
	}
	if ok, _ := l.IsRevoked(ctx, "j10"); !ok {
		t.Error("j10 not revoked")
	}
	if err := l.Load(ctx); err != nil || l.trusted {
		t.Errorf("a load of more than the bound is trusted (%v)", err)
	}
	// Full is not a reason to load again (each load would read max+1
	// rows for nothing); a switch of the feed is.
	if l.NeedsLoad() {
		t.Error("a full list asks to be loaded again")
	}
	l.SetEnabled(true)
	if !l.NeedsLoad() {
		t.Error("a list enabled anew does not ask to be loaded")
	}
}

// A list whose load failed, or was overtaken by a switch of the feed,
// asks to be loaded again (else every check would ask the source until
// the feed next reconnects); a disabled or trusted one does not.
func TestListNeedsLoad(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{revs: map[string]store.Revocation{}, listErr: errors.New("database down")}
	l := New(src, 10, func() time.Time { return t0 })
	if !l.NeedsLoad() {
		t.Fatal("a new list does not ask to be loaded")
	}
	if err := l.Load(ctx); err == nil {
		t.Fatal("the failed load reported no error")
	}
	if l.trusted || !l.NeedsLoad() {
		t.Fatalf("after a failed load: trusted=%v, needs load=%v", l.trusted, l.NeedsLoad())
	}
	src.listErr = nil
	src.during = func() { l.SetEnabled(true) } // the feed reconnected meanwhile
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	src.during = nil
	if l.trusted || !l.NeedsLoad() {
		t.Fatalf("after an overtaken load: trusted=%v, needs load=%v", l.trusted, l.NeedsLoad())
	}
	if err := l.Load(ctx); err != nil || !l.trusted || l.NeedsLoad() {
		t.Fatalf("after a load: trusted=%v, needs load=%v (%v)", l.trusted, l.NeedsLoad(), err)
	}
	l.SetEnabled(false)
	if l.NeedsLoad() {
		t.Error("a disabled list (feed down) asks to be loaded")
	}
}
