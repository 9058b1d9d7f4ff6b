package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mauth/m2mauth/internal/store"
)

// testTokenReuseField: a client's token reuse fraction is stored on
// create and update (0: off, the default).
func testTokenReuseField(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	c := client("m2mc_reuse")
	c.TokenReuse = 0.5
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetClient(ctx, c.ID); err != nil || got.TokenReuse != 0.5 {
		t.Fatalf("created: %v %v, want 0.5", got.TokenReuse, err)
	}
	if _, err := s.UpdateClient(ctx, c.ID, func(c *store.Client) error { c.TokenReuse = 0.25; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetClient(ctx, c.ID); err != nil || got.TokenReuse != 0.25 {
		t.Fatalf("updated: %v %v, want 0.25", got.TokenReuse, err)
	}
	if err := s.CreateClient(ctx, client("m2mc_plain")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetClient(ctx, "m2mc_plain"); err != nil || got.TokenReuse != 0 {
		t.Fatalf("default: %v %v, want 0 (off)", got.TokenReuse, err)
	}
}

// testRecentTokenUsage: counts with a minute add up to the hourly totals
// and to per-minute ones, which RecentTokenUsage sums per client since a
// minute, with the client's first minute, and DeleteTokenMinutes expires.
func testRecentTokenUsage(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	h := t0.Truncate(time.Hour)
	m0, m1, m2 := h.Add(10*time.Minute), h.Add(11*time.Minute), h.Add(12*time.Minute)
	counts := []store.UsageCount{
		{ClientID: "busy", Hour: h, Minute: m1, Tokens: 40},
		{ClientID: "busy", Hour: h, Minute: m2, Tokens: 30},
		{ClientID: "busy", Hour: h, Minute: m2, Tokens: 5}, // same minute twice in a batch
		{ClientID: "old", Hour: h, Minute: m0, Tokens: 100},
		{ClientID: "quiet", Hour: h, Minute: m2, Tokens: 2},
		{ClientID: "hourly", Hour: h, Tokens: 50}, // no minute: hourly only
	}
	if err := s.AddTokenUsage(ctx, counts); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(ctx, nil, []store.UsageCount{{ClientID: "busy", Hour: h, Minute: m2, Tokens: 1}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.RecentTokenUsage(ctx, m1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.UsageCount{{ClientID: "busy", Minute: m1, Tokens: 76}}, got); diff != "" {
		t.Errorf("recent (-want +got):\n%s", diff)
	}
	hours, err := s.TokenUsage(ctx, h, []string{"busy", "hourly"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.UsageCount{{ClientID: "busy", Hour: h, Tokens: 76}, {ClientID: "hourly", Hour: h, Tokens: 50}}, hours); diff != "" {
		t.Errorf("hours (-want +got):\n%s", diff)
	}
	// (It deletes in every environment: the copy of this test running in
	// the other one may have deleted this one's old minute already.)
	if _, err := s.DeleteTokenMinutes(ctx, m1); err != nil {
		t.Fatalf("DeleteTokenMinutes: %v", err)
	}
	if got, err := s.RecentTokenUsage(ctx, time.Time{}, 1); err != nil || len(got) != 2 || got[0].ClientID != "busy" || got[1].ClientID != "quiet" {
		t.Fatalf("after delete: %v %v", got, err)
	}
}

// testSenderConstrainedFields: a client's TLS subject and its binding
// switches are stored on create and update, and default to none.
func testSenderConstrainedFields(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	c := client("m2mc_mtls")
	c.AuthMethod = "tls_client_auth"
	c.TLSSubject = store.TLSSubject{Kind: store.TLSSubjectURI, Value: "spiffe://example.org/ns/prod/sa/billing"}
	c.CertBoundTokens = true
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.TLSSubject != c.TLSSubject || !got.CertBoundTokens || got.DPoPBoundTokens {
		t.Fatalf("created: %+v cert-bound %v dpop %v", got.TLSSubject, got.CertBoundTokens, got.DPoPBoundTokens)
	}
	want := store.TLSSubject{Kind: store.TLSSubjectDN, Value: "CN=billing,O=Example"}
	if _, err := s.UpdateClient(ctx, c.ID, func(c *store.Client) error {
		c.TLSSubject, c.CertBoundTokens, c.DPoPBoundTokens = want, false, true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err = s.GetClient(ctx, c.ID); err != nil || got.TLSSubject != want || got.CertBoundTokens || !got.DPoPBoundTokens {
		t.Fatalf("updated: %+v cert-bound %v dpop %v (%v)", got.TLSSubject, got.CertBoundTokens, got.DPoPBoundTokens, err)
	}
	if err := s.CreateClient(ctx, client("m2mc_unbound")); err != nil {
		t.Fatal(err)
	}
	if got, err = s.GetClient(ctx, "m2mc_unbound"); err != nil || got.TLSSubject != (store.TLSSubject{}) || got.CertBoundTokens || got.DPoPBoundTokens {
		t.Fatalf("default: %+v %v %v (%v)", got.TLSSubject, got.CertBoundTokens, got.DPoPBoundTokens, err)
	}
}
