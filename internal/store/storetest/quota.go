package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// quotaStarts are the windows (minute, hour, day) containing t.
func quotaStarts(t time.Time) [3]time.Time {
	t = t.UTC()
	return [3]time.Time{t.Truncate(time.Minute), t.Truncate(time.Hour), time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)}
}

// testQuota: a client's quota is stored, and its shared counters grant
// exactly the room of every limited window, reset when a window starts
// anew, take back what is returned, and go with the client.
func testQuota(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	c := client("m2mc_q")
	c.Quota = store.Quota{PerMinute: 10, PerHour: store.QuotaUnlimited, PerDay: 0}
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetClient(ctx, c.ID); err != nil || got.Quota != c.Quota {
		t.Fatalf("GetClient: quota %+v, %v; want %+v", got.Quota, err, c.Quota)
	}
	upd, err := s.UpdateClient(ctx, c.ID, func(c *store.Client) error { c.Quota.PerDay = 500; return nil })
	if err != nil || upd.Quota != (store.Quota{PerMinute: 10, PerHour: store.QuotaUnlimited, PerDay: 500}) {
		t.Fatalf("UpdateClient: quota %+v, %v", upd.Quota, err)
	}

	m0 := quotaStarts(t0)
	m1 := quotaStarts(t0.Add(time.Minute))
	reserve := func(starts [3]time.Time, limits [3]int64, want, ret int64, retStarts [3]time.Time) (int64, [3]int64) {
		t.Helper()
		g, used, err := s.ReserveQuota(ctx, store.QuotaReservation{ClientID: c.ID, Starts: starts, Limits: limits, Want: want, Return: ret, ReturnStarts: retStarts})
		if err != nil {
			t.Fatalf("ReserveQuota: %v", err)
		}
		return g, used
	}
	limits := [3]int64{10, 12, 0}
	steps := []struct {
		name      string
		starts    [3]time.Time
		want, ret int64
		retStarts [3]time.Time
		granted   int64
		used      [3]int64
	}{
		{"first reservation", m0, 3, 0, m0, 3, [3]int64{3, 3, 3}},
		{"more than the room", m0, 10, 0, m0, 7, [3]int64{10, 10, 10}},
		{"none left", m0, 1, 0, m0, 0, [3]int64{10, 10, 10}},
		{"returned tokens make room", m0, 5, 2, m0, 2, [3]int64{10, 10, 10}},
		{"next minute: the hour limits", m1, 5, 0, m1, 2, [3]int64{2, 12, 12}},
		{"returned from the previous minute: only the hour and day get them back", m1, 1, 3, m0, 1, [3]int64{3, 10, 10}},
		{"want nothing: only look", m1, 0, 0, m1, 0, [3]int64{3, 10, 10}},
		{"a lagging clock counts into the later window", m0, 1, 0, m0, 1, [3]int64{4, 11, 11}},
	}
	for _, st := range steps {
		g, used := reserve(st.starts, limits, st.want, st.ret, st.retStarts)
		if g != st.granted || used != st.used {
			t.Errorf("%s: granted %d, used %v; want %d, %v", st.name, g, used, st.granted, st.used)
		}
	}
	// Unlimited windows (0) are counted all the same.
	if g, used := reserve(quotaStarts(t0.Add(2*time.Hour)), [3]int64{}, 1000, 0, m0); g != 1000 || used != [3]int64{1000, 1000, 1011} {
		t.Errorf("unlimited: granted %d, used %v", g, used)
	}

	// Concurrent reservations from several handles (replicas) never grant
	// more than the limit, and grant all of it.
	if err := s.CreateClient(ctx, client("m2mc_race")); err != nil {
		t.Fatal(err)
	}
	const limit = 25
	stores := []store.Store{open(), open(), open(), open()}
	var total atomic.Int64
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, _, err := stores[i%len(stores)].ReserveQuota(ctx, store.QuotaReservation{ClientID: "m2mc_race", Starts: m0, Limits: [3]int64{limit, 0, 0}, Want: 1 + int64(i%3)})
			if err != nil {
				t.Errorf("concurrent ReserveQuota: %v", err)
			}
			total.Add(g)
		}()
	}
	wg.Wait()
	if g, used, err := s.ReserveQuota(ctx, store.QuotaReservation{ClientID: "m2mc_race", Starts: m0, Limits: [3]int64{limit, 0, 0}}); err != nil || total.Load() != limit || used[0] != limit || g != 0 {
		t.Errorf("concurrent reservations granted %d in all, counted %v (%v); want exactly %d", total.Load(), used, err, limit)
	}

	// The counters go with their client; a missing client has none.
	if err := s.DeleteClient(ctx, c.ID, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReserveQuota(ctx, store.QuotaReservation{ClientID: c.ID, Starts: m0, Limits: limits, Want: 1}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("ReserveQuota for a deleted client: %v, want ErrConflict", err)
	}
}
