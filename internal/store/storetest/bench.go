package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mauth/m2mauth/internal/store"
)

// BenchmarkAuditAppend is the cost of the audit writer's batches: issuance
// events (as the token endpoint records them) appended n at a time, for
// typical batch sizes, reported per event.
func BenchmarkAuditAppend(b *testing.B, st store.Store) {
	ctx := context.Background()
	seq := 0
	// 2000: the recorder's batch under load.
	for _, n := range []int{1, 64, 256, 2000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			batch := make([]store.AuditEvent, n)
			var cpu time.Duration
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer() // the events' ids and clients are the caller's
				for i := range batch {
					seq++
					at := t0.Add(time.Duration(seq) * time.Microsecond)
					c := fmt.Sprintf("m2mc_%024d", seq%1000)
					batch[i] = store.AuditEvent{ID: fmt.Sprintf("%016x%08x", at.UnixMicro(), seq), Time: at,
						Kind: store.AuditTokenIssued, Actor: c, SourceIP: "192.0.2.1", Action: "token.issue",
						ClientID: c, Surface: "standard", Grant: "client_credentials", Outcome: "ok"}
				}
				b.StartTimer()
				c0 := cpuTime()
				if err := st.AppendAuditEvents(ctx, batch); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
			}
			perEvent(b, n, cpu)
		})
	}
}

// BenchmarkRecordUsage is the cost of the usage recorder's flush: token
// counts (hourly and per minute) of n distinct clients, reported per
// client.
func BenchmarkRecordUsage(b *testing.B, st store.Store) {
	ctx := context.Background()
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			counts := make([]store.UsageCount, n)
			for i := range counts {
				counts[i] = store.UsageCount{ClientID: fmt.Sprintf("m2mc_%024d", i), Tokens: 3}
			}
			minute := t0
			var cpu time.Duration
			b.ReportAllocs()
			for b.Loop() {
				minute = minute.Add(time.Minute)
				for i := range counts {
					counts[i].Hour, counts[i].Minute = minute.Truncate(time.Hour), minute
				}
				c0 := cpuTime()
				if err := st.RecordUsage(ctx, nil, counts); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
			}
			perEvent(b, n, cpu)
		})
	}
}

// perEvent reports the time per row of a benchmark whose every iteration
// wrote n rows (allocations per row: allocs/op / n), and the process's CPU
// time per row (user and system: on a shared machine, steadier than the
// elapsed time, which includes waiting for the CPU and for fsync).
func perEvent(b *testing.B, n int, cpu time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/row")
	}
}

// testManyRows: batches larger than one statement (the stores chunk
// them) round-trip intact: every audit event with every field, and token
// counts of many clients that add up across flushes.
func testManyRows(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	for _, n := range []int{1, 64, 1201} {
		events := make([]store.AuditEvent, n)
		for i := range events {
			e := auditEvent(i, "", store.AuditTokenIssued, "token.issue", fmt.Sprintf("m%d-c%04d", n, i))
			e.Actor, e.Surface, e.Grant, e.Outcome = e.ClientID, fmt.Sprintf("s%d", i%3), "client_credentials", fmt.Sprintf("o%d", i)
			e.ID += fmt.Sprintf("-%d", n)
			e.Env = store.DefaultEnv
			if i%7 == 0 {
				e.Diff = []byte(fmt.Sprintf(`{"n":%d}`, i))
			}
			events[i] = e
		}
		if err := s.AppendAuditEvents(ctx, events); err != nil {
			t.Fatalf("append %d events: %v", n, err)
		}
		for _, i := range []int{0, n / 2, n - 1} {
			got, err := s.ListAuditEvents(ctx, store.AuditFilter{ClientID: events[i].ClientID})
			if err != nil || len(got) != 1 {
				t.Fatalf("batch of %d, event %d: %d read back, %v", n, i, len(got), err)
			}
			if diff := cmp.Diff(events[i], got[0]); diff != "" {
				t.Errorf("batch of %d, event %d read back (-stored +read):\n%s", n, i, diff)
			}
		}
	}
	h := t0.Truncate(time.Hour)
	const clients = 1201
	counts := make([]store.UsageCount, clients)
	ids := make([]string, clients)
	for i := range counts {
		ids[i] = fmt.Sprintf("c%04d", i)
		counts[i] = store.UsageCount{ClientID: ids[i], Hour: h, Minute: t0.Truncate(time.Minute), Tokens: int64(i + 1)}
	}
	for range 2 {
		if err := s.RecordUsage(ctx, nil, counts); err != nil {
			t.Fatalf("record usage of %d clients: %v", clients, err)
		}
	}
	got, err := s.TokenUsage(ctx, h, ids)
	if err != nil || len(got) != clients {
		t.Fatalf("token usage: %d clients, %v; want %d", len(got), err, clients)
	}
	for _, u := range got {
		var i int
		if _, err := fmt.Sscanf(u.ClientID, "c%04d", &i); err != nil || u.Tokens != 2*int64(i+1) {
			t.Errorf("%s: %d tokens, want %d", u.ClientID, u.Tokens, 2*(i+1))
		}
	}
	var total int64
	hours, err := s.TokenUsageByHour(ctx, h)
	for _, u := range hours {
		total += u.Tokens
	}
	if want := int64(clients * (clients + 1)); err != nil || total != want {
		t.Errorf("tokens by hour add up to %d, %v; want %d", total, err, want)
	}
}
