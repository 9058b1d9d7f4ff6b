package console

import (
	"math"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/keys"
)

func TestKeyTimeline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	now := h(50)
	// Newest first, as keys.Manager.List returns them: a next key
	// published at 49 h signing from 50+10 h, the active key since 10 h, and
	// a retired key that signed from 0 to 10 h, published until 34 h.
	infos := []keys.KeyInfo{
		{KID: "next-key-id-0123456789", State: "next", CreatedAt: h(49), ActivateAt: h(60)},
		{KID: "active", State: "active", CreatedAt: h(9), ActivateAt: h(10), ActivatedAt: h(10), TokensLiveUntil: h(74)},
		{KID: "retired", State: "retired", CreatedAt: h(0), ActivatedAt: h(0), RetiredAt: h(10), RemoveAt: h(34), TokensLiveUntil: h(34)},
	}
	tl := keyTimeline(infos, now)
	// The axis runs from the oldest instant (0 h) to the latest (74 h)
	// plus a twentieth.
	span := 74 * 1.05
	at := func(hours float64) float64 { return hours / span * timelineWidth }
	if !tl.Start.Equal(h(0)) || math.Abs(tl.NowX-at(50)) > 0.01 {
		t.Fatalf("start %v, now at %.1f (want %.1f)", tl.Start, tl.NowX, at(50))
	}
	type seg struct {
		class    string
		from, to float64
	}
	want := map[string][]seg{
		"retired": {{"active", 0, 10}, {"retired", 10, 34}},
		"active":  {{"next", 9, 10}, {"active", 10, 60}}, // hands over at the next key's activation
		"next":    {{"next", 49, 60}, {"active", 60, span}},
	}
	if len(tl.Rows) != 3 || tl.Rows[0].KID != "retired" || tl.Rows[2].Short != "next-key…" {
		t.Fatalf("rows: %+v", tl.Rows)
	}
	for _, row := range tl.Rows {
		w := want[row.State]
		if len(row.Segs) != len(w) {
			t.Fatalf("%s: %+v", row.State, row.Segs)
		}
		for i, s := range row.Segs {
			if s.Class != w[i].class || math.Abs(s.X-at(w[i].from)) > 0.01 || math.Abs(s.X+s.W-at(w[i].to)) > 0.01 || s.Title == "" {
				t.Errorf("%s segment %d: %+v, want %s from %.1f to %.1f", row.State, i, s, w[i].class, at(w[i].from), at(w[i].to))
			}
		}
	}

	// A lone key just made: the axis spans at least an hour, and a
	// zero-length span is not drawn.
	tl = keyTimeline([]keys.KeyInfo{{KID: "k", State: "active", CreatedAt: now, ActivatedAt: now}}, now)
	if got := tl.End.Sub(tl.Start); got != time.Hour+3*time.Minute {
		t.Fatalf("span %v", got)
	}
	if segs := tl.Rows[0].Segs; len(segs) != 1 || segs[0].Class != "active" || segs[0].X != 0 {
		t.Fatalf("segments %+v", segs)
	}
	if len(keyTimeline(nil, now).Rows) != 0 {
		t.Fatal("rows without keys")
	}
}
