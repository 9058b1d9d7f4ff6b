package oauth

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

type fakeUsageStore struct {
	fail    bool
	touched map[string]time.Time
	counts  map[string]int64 // client|hour → tokens
}

func (f *fakeUsageStore) TouchSecrets(_ context.Context, m map[string]time.Time) error {
	if f.fail {
		return errors.New("down")
	}
	for k, v := range m {
		f.touched[k] = v
	}
	return nil
}

func (f *fakeUsageStore) RecordUsage(ctx context.Context, uses []store.SecretUse, counts []store.UsageCount) error {
	if f.fail {
		return errors.New("down")
	}
	m := map[string]time.Time{}
	for _, u := range uses {
		if u.Env != "e" {
			return errors.New("secret of another environment: " + u.Env)
		}
		m[u.SecretID] = u.At
	}
	for _, c := range counts {
		if c.Env != "e" {
			return errors.New("count of another environment: " + c.Env)
		}
	}
	_ = f.TouchSecrets(ctx, m)
	return f.AddTokenUsage(ctx, counts)
}

func (f *fakeUsageStore) AddTokenUsage(_ context.Context, cs []store.UsageCount) error {
	if f.fail {
		return errors.New("down")
	}
	for _, c := range cs {
		f.counts[c.ClientID+"|"+c.Hour.Format(time.RFC3339)] += c.Tokens
	}
	return nil
}

func TestUsageRecorderCountsPerHourAndKeepsCountsAcrossAFailedFlush(t *testing.T) {
	u := NewUsageRecorder()
	t0 := time.Date(2026, 1, 2, 10, 59, 59, 0, time.UTC)
	u.Issued("e", "a", t0)
	u.Issued("e", "a", t0)
	u.Issued("e", "a", t0.Add(time.Second)) // the next hour
	u.Issued("e", "b", t0)
	u.Record("e", "sec1", t0)
	st := &fakeUsageStore{fail: true, touched: map[string]time.Time{}, counts: map[string]int64{}}
	if err := u.Flush(context.Background(), st); err == nil {
		t.Fatal("flush into a failing store succeeded")
	}
	u.Issued("e", "a", t0)
	st.fail = false
	if err := u.Flush(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"a|2026-01-02T10:00:00Z": 3, "a|2026-01-02T11:00:00Z": 1, "b|2026-01-02T10:00:00Z": 1}
	if len(st.counts) != len(want) {
		t.Fatalf("counts %v, want %v", st.counts, want)
	}
	for k, n := range want {
		if st.counts[k] != n {
			t.Errorf("%s: %d tokens, want %d", k, st.counts[k], n)
		}
	}
	if !st.touched["sec1"].Equal(t0) {
		t.Errorf("secret last use lost: %v", st.touched)
	}
	// A flush with nothing new writes nothing.
	if err := u.Flush(context.Background(), st); err != nil || st.counts["a|2026-01-02T10:00:00Z"] != 3 {
		t.Fatalf("empty flush changed counts: %v %v", st.counts, err)
	}
}

// Counts kept through a long outage of the database fold into their hour
// once they are older than the report reads, so the recorder holds an
// entry per client and hour, not per minute; no token is lost.
func TestUsageRecorderFoldsOldMinutesWhileTheStoreIsDown(t *testing.T) {
	u := NewUsageRecorder()
	t0 := time.Date(2026, 1, 2, 6, 0, 0, 0, time.UTC)
	st := &fakeUsageStore{fail: true, touched: map[string]time.Time{}, counts: map[string]int64{}}
	for m := range 5 * 60 { // five hours, a token a minute
		u.Issued("e", "a", t0.Add(time.Duration(m)*time.Minute))
		if m%5 == 4 {
			_ = u.Flush(context.Background(), st)
		}
	}
	u.mu.Lock()
	held := len(u.issued)
	u.mu.Unlock()
	// The last two hours per minute (121 minutes at most), the three
	// hours before one entry each.
	if held > 121+3 {
		t.Errorf("%d counts held through the outage, want at most %d", held, 121+3)
	}
	st.fail = false
	if err := u.Flush(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	for h := range 5 {
		if k := fmt.Sprintf("a|2026-01-02T%02d:00:00Z", 6+h); st.counts[k] != 60 {
			t.Errorf("%s: %d tokens, want 60", k, st.counts[k])
		}
	}
}

// Tokens issued and secrets used while a flush runs are counted by this
// flush or the next, never lost, and the flush reads no map the token
// endpoint is writing (run with -race).
func TestUsageRecorderFlushWhileRecording(t *testing.T) {
	u := NewUsageRecorder()
	t0 := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	st := &fakeUsageStore{touched: map[string]time.Time{}, counts: map[string]int64{}}
	const n = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			u.Issued("e", "a", t0)
			u.Record("e", "sec1", t0.Add(time.Duration(i)*time.Second))
		}
	}()
	for flushing := true; flushing; {
		select {
		case <-done:
			flushing = false
		default:
		}
		if err := u.Flush(context.Background(), st); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.counts["a|2026-01-02T10:00:00Z"]; got != n {
		t.Errorf("%d tokens counted, want %d", got, n)
	}
	if want := t0.Add((n - 1) * time.Second); !st.touched["sec1"].Equal(want) {
		t.Errorf("last use %v, want %v", st.touched["sec1"], want)
	}
}

func BenchmarkUsageIssued(b *testing.B) {
	u := NewUsageRecorder()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		u.Issued("e", "client-1", now)
	}
}
