package report_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/report"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

// TestReport runs the path the server runs: the token endpoint counts
// issued tokens in a UsageRecorder, flushes them every few seconds to the
// database, and the report reads them back, on an injected clock.
func TestReport(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 3, 1, 9, 59, 30, 0, time.UTC) // a minute before an hour starts
	now := t0
	for _, a := range []store.API{
		{ID: "api_o", Identifier: "https://orders", Name: "o", Scopes: []string{}, ScopeDescriptions: map[string]string{}, Version: 1, CreatedAt: t0, UpdatedAt: t0},
		{ID: "api_s", Identifier: "https://short", Name: "s", Scopes: []string{}, ScopeDescriptions: map[string]string{}, TokenLifetime: 5 * time.Minute, Version: 1, CreatedAt: t0, UpdatedAt: t0},
		{ID: "api_a", Identifier: "https://srv/admin", Name: "admin", Scopes: []string{}, ScopeDescriptions: map[string]string{}, Version: 1, CreatedAt: t0, UpdatedAt: t0},
	} {
		if err := st.CreateAPI(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(id string, lifetime time.Duration, apis ...string) {
		c := store.Client{ID: id, Name: "name of " + id, TokenLifetime: lifetime, Version: 1, CreatedAt: t0, UpdatedAt: t0}
		for _, a := range apis {
			c.Grants = append(c.Grants, store.Grant{Audience: a, Scopes: []string{}})
		}
		if err := st.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	mk("percall", 0, "https://orders")                           // server default: 1h
	mk("caching", 0, "https://orders")                           // one token per lifetime
	mk("restarts", 0, "https://orders")                          // 25 restarts in a minute: under MinTokens
	mk("shortlived", 0, "https://short")                         // 5 min API lifetime, a token a minute
	mk("many", 2*time.Minute, "https://orders", "https://short") // client lifetime wins
	mk("admincli", 0, "https://srv/admin")                       // the CLI's admin client: a token per command

	rec := oauth.NewUsageRecorder()
	rep := report.New(report.Config{TokensPerLifetime: 10, MinTokens: 30, DefaultLifetime: time.Hour, MaxLifetime: 24 * time.Hour, Now: func() time.Time { return now },
		AdminAudience: func(context.Context) string { return "https://srv/admin" }})
	flagged := func() map[string]report.Finding {
		t.Helper()
		if err := rec.Flush(ctx, st); err != nil {
			t.Fatal(err)
		}
		r, err := rep.Report(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]report.Finding{}
		for _, f := range r.Findings {
			out[f.ClientID] = f
		}
		return out
	}
	rec.Issued(store.DefaultEnv, "caching", now)
	for i := range 25 {
		rec.Issued(store.DefaultEnv, "restarts", now.Add(time.Duration(i)*time.Second))
	}
	// A minute of a client that fetches a token for each of its calls
	// (two a second), flushed every five seconds as the server does.
	for s := range 60 {
		now = t0.Add(time.Duration(s) * time.Second)
		rec.Issued(store.DefaultEnv, "percall", now)
		rec.Issued(store.DefaultEnv, "percall", now)
		rec.Issued(store.DefaultEnv, "admincli", now)
		if s%5 == 4 {
			if err := rec.Flush(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := flagged()
	f, ok := got["percall"]
	if !ok {
		t.Fatalf("a client fetching a token per call is not reported within a minute: %v", got)
	}
	if f.Tokens != 120 || f.Lifetime != time.Hour || f.Needed != 1 || f.TokensPerLifetime != 120 || f.Name != "name of percall" || f.Audiences != 1 {
		t.Errorf("finding: %+v", f)
	}
	if f.Window < time.Minute || f.Window > 2*time.Minute {
		t.Errorf("window %v: from the client's first minute", f.Window)
	}
	for _, id := range []string{"caching", "restarts", "admincli"} {
		if _, ok := got[id]; ok {
			t.Errorf("%s flagged: %+v", id, got[id])
		}
	}

	// An hour on: the well-behaved clients fetch what their lifetimes
	// need (caching: once an hour; shortlived: once a minute is 5 per
	// 5-minute lifetime, under 10); "many" fetches 30 a minute.
	for m := range 60 {
		now = t0.Add(time.Minute + time.Duration(m)*time.Minute)
		rec.Issued(store.DefaultEnv, "shortlived", now)
		for range 30 {
			rec.Issued(store.DefaultEnv, "many", now)
		}
	}
	rec.Issued(store.DefaultEnv, "caching", now)
	got = flagged()
	if _, ok := got["percall"]; !ok {
		t.Error("percall no longer reported while its tokens are in the window")
	}
	for _, id := range []string{"caching", "shortlived", "restarts"} {
		if _, ok := got[id]; ok {
			t.Errorf("%s flagged: %+v", id, got[id])
		}
	}
	f = got["many"]
	// 1800 tokens in about an hour; per audience, 2-minute tokens: 30
	// each per hour, 60 needed.
	if f.Tokens != 1800 || f.Lifetime != 2*time.Minute || f.Audiences != 2 || f.Needed < 60 || f.Needed > 62 {
		t.Errorf("many: %+v", f)
	}
	// Two hours on, with nothing new, nothing is in the window.
	now = now.Add(2 * time.Hour)
	if got := flagged(); len(got) != 0 {
		t.Errorf("after the window: %v", got)
	}
	if n, err := rep.Count(ctx, st); err != nil || n != 0 {
		t.Errorf("Count = %d, %v", n, err)
	}
}
