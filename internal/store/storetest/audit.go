package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mauth/m2mauth/internal/store"
)

// auditEvent makes the i-th event of a test: ids sort as times do.
func auditEvent(i int, env, kind, action, clientID string) store.AuditEvent {
	at := t0.Add(time.Duration(i) * time.Minute)
	return store.AuditEvent{
		ID: fmt.Sprintf("%016x%08x", at.UnixMicro(), i), Time: at, Env: env, Kind: kind, Actor: "admin-1", SourceIP: "192.0.2.1",
		Action: action, TargetType: "client", TargetID: clientID, ClientID: clientID,
	}
}

func auditIDs(evs []store.AuditEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// testAudit: events are appended in batches naming their environments,
// listed per environment (newest first, filtered, paged both ways), kept
// when their environment is deleted, and deleted by age across every
// environment.
func testAudit(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	def := open()
	a, b := envsAB(t, def)
	full := auditEvent(0, "a", store.AuditTokenIssued, "token.issue", "c1")
	full.Actor, full.Surface, full.Grant, full.Outcome, full.TargetType, full.TargetID = "c1", "standard", "client_credentials", "ok", "", ""
	batch := []store.AuditEvent{
		full,
		auditEvent(1, "a", store.AuditAdmin, "client.create", "c2"),
		auditEvent(2, "b", store.AuditAdmin, "client.create", "c1"),
		auditEvent(3, "a", store.AuditAdmin, "client.update", "c1"),
		auditEvent(4, "a", store.AuditAuthFailed, "token.auth_failed", "c1"),
		auditEvent(5, "", store.AuditAdmin, "api.create", "x"), // "": the store's (default)
	}
	batch[3].Diff = []byte(`{"name":{"before":"x","after":"y"}}`)
	batch[3].Actor = "console:admin-2"
	if err := def.AppendAuditEvents(ctx, batch); err != nil {
		t.Fatalf("AppendAuditEvents: %v", err)
	}
	if err := def.AppendAuditEvents(ctx, nil); err != nil {
		t.Fatalf("AppendAuditEvents(nil): %v", err)
	}
	all, err := a.ListAuditEvents(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := auditIDs(all), auditIDs([]store.AuditEvent{batch[4], batch[3], batch[1], batch[0]}); !cmp.Equal(got, want) {
		t.Fatalf("a's events = %v, want %v (newest first, a's only)", got, want)
	}
	if diff := cmp.Diff(batch[3], all[1]); diff != "" {
		t.Errorf("event read back (-stored +read):\n%s", diff)
	}
	if diff := cmp.Diff(full, all[3]); diff != "" {
		t.Errorf("token event read back (-stored +read):\n%s", diff)
	}
	if got, err := def.ListAuditEvents(ctx, store.AuditFilter{}); err != nil || len(got) != 1 || got[0].Env != store.DefaultEnv {
		t.Errorf("default's events = %+v, %v; want the one appended with no environment", got, err)
	}
	for _, tc := range []struct {
		name string
		f    store.AuditFilter
		want []store.AuditEvent
	}{
		{"client", store.AuditFilter{ClientID: "c1"}, []store.AuditEvent{batch[4], batch[3], batch[0]}},
		{"action", store.AuditFilter{Action: "client.create"}, []store.AuditEvent{batch[1]}},
		{"action prefix", store.AuditFilter{Action: "client.*"}, []store.AuditEvent{batch[3], batch[1]}},
		{"kind", store.AuditFilter{Kind: store.AuditAuthFailed}, []store.AuditEvent{batch[4]}},
		{"actor", store.AuditFilter{Actor: "console:admin-2"}, []store.AuditEvent{batch[3]}},
		{"target", store.AuditFilter{TargetType: "client", TargetID: "c2"}, []store.AuditEvent{batch[1]}},
		{"since until", store.AuditFilter{Since: batch[1].Time, Until: batch[4].Time}, []store.AuditEvent{batch[3], batch[1]}},
		{"page", store.AuditFilter{Before: batch[3].ID, Limit: 1}, []store.AuditEvent{batch[1]}},
		{"follow", store.AuditFilter{After: batch[1].ID}, []store.AuditEvent{batch[3], batch[4]}},
		{"limit", store.AuditFilter{Limit: 2}, []store.AuditEvent{batch[4], batch[3]}},
		{"nothing", store.AuditFilter{ClientID: "nobody"}, []store.AuditEvent{}},
		{"invalid text", store.AuditFilter{Actor: "\xff\x00"}, []store.AuditEvent{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.ListAuditEvents(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := auditIDs(got), auditIDs(tc.want); !cmp.Equal(g, w) {
				t.Errorf("ListAuditEvents(%+v) = %v, want %v", tc.f, g, w)
			}
		})
	}
	// A batch larger than any one INSERT the backends write.
	if err := def.CreateEnvironment(ctx, environment("c")); err != nil {
		t.Fatal(err)
	}
	c := def.InEnv("c")
	big := make([]store.AuditEvent, 1100)
	for i := range big {
		big[i] = auditEvent(100+i, "c", store.AuditTokenIssued, "token.issue", fmt.Sprintf("c%d", i%7))
	}
	if err := c.AppendAuditEvents(ctx, big); err != nil {
		t.Fatalf("AppendAuditEvents(%d events): %v", len(big), err)
	}
	if got, err := c.ListAuditEvents(ctx, store.AuditFilter{ClientID: "c3"}); err != nil || len(got) != 157 || got[0].ID != big[1095].ID || got[156].ID != big[3].ID {
		t.Errorf("the big batch's events of c3: %d, %v", len(got), err)
	}
	// Ids are unique: a batch repeating one is refused whole.
	if err := a.AppendAuditEvents(ctx, []store.AuditEvent{auditEvent(99, "a", store.AuditAdmin, "x.y", "c1"), batch[3]}); err == nil {
		t.Error("AppendAuditEvents with an id already stored: no error")
	}
	if got, _ := a.ListAuditEvents(ctx, store.AuditFilter{Action: "x.y"}); len(got) != 0 {
		t.Errorf("a refused batch left %d events", len(got))
	}
	// Deleting an environment keeps its trail.
	e, err := def.GetEnvironment(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := def.DeleteEnvironment(ctx, "b", e.Version); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ListAuditEvents(ctx, store.AuditFilter{}); err != nil || len(got) != 1 {
		t.Errorf("b's events after deleting b = %d, %v; want 1 (kept)", len(got), err)
	}
	// Retention: across every environment.
	n, err := a.DeleteAuditEvents(ctx, batch[3].Time)
	if err != nil || n != 3 {
		t.Fatalf("DeleteAuditEvents = %d, %v; want 3 (events 0-2, of a and b)", n, err)
	}
	if got, _ := a.ListAuditEvents(ctx, store.AuditFilter{}); !cmp.Equal(auditIDs(got), auditIDs([]store.AuditEvent{batch[4], batch[3]})) {
		t.Errorf("a's events after retention = %v", auditIDs(got))
	}
	// A backlog larger than one delete statement's batch goes whole.
	if n, err := a.DeleteAuditEvents(ctx, big[len(big)-1].Time.Add(time.Hour)); err != nil || n < 2+len(big) {
		t.Errorf("DeleteAuditEvents of everything = %d, %v; want at least %d", n, err, 2+len(big))
	}
	for name, st := range map[string]store.Store{"a": a, "c": c} {
		if got, err := st.ListAuditEvents(ctx, store.AuditFilter{}); err != nil || len(got) != 0 {
			t.Errorf("%s's events after deleting everything: %d, %v", name, len(got), err)
		}
	}
}
