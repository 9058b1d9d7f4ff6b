package server

import (
	"net/url"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// Two replicas on one PostgreSQL database: a token revoked through A is
// refused by B's introspection, which answers from memory (the deny-list
// and the client cache, kept current by the change feed) without a query
// per call; while B's feed is down, B asks the database instead, and
// still sees A's revocations at once.
func TestIntrospectionRevocationAcrossReplicasFromMemory(t *testing.T) {
	queries := &queryCounter{}
	a, b, appID, appSecret, active := introspectingReplicas(t, Options{QueryObserver: queries})
	// callsPer counts B's database calls over n introspections of tok,
	// each answered want.
	const n = 50
	callsPer := func(tok string, want bool) float64 {
		t.Helper()
		start := queries.n.Load()
		for range n {
			if active(tok) != want {
				t.Fatalf("B: active = %v, want %v", !want, want)
			}
		}
		return float64(queries.n.Load()-start) / n
	}

	tok := a.mustToken(appID, appSecret, url.Values{})
	within(t, time.Second, "A's token active on B", func() bool { return active(tok) })
	// Background work (key maintenance, usage flushing) may query now and
	// then; an introspection must not.
	if c := callsPer(tok, true); c > 0.1 {
		t.Errorf("B: %.2f database calls per introspection of an active token, want none", c)
	}
	if st, _ := a.form("/oauth/revoke", appID, appSecret, url.Values{"token": {tok}}); st != 200 {
		t.Fatalf("revoke on A: %d", st)
	}
	within(t, time.Second, "revocation on A seen by B", func() bool { return !active(tok) })
	if c := callsPer(tok, false); c > 0.1 {
		t.Errorf("B: %.2f database calls per introspection of a revoked token, want none", c)
	}

	// The feed is down (what B does when it loses it): B's memory is not
	// trusted, and it asks the database, which has A's revocations.
	b.srv.envs.setCaches(false)
	tok2 := a.mustToken(appID, appSecret, url.Values{})
	if c := callsPer(tok2, true); c < 1 {
		t.Errorf("feed down: B made %.2f database calls per introspection, want at least one (the deny-list and the client)", c)
	}
	if st, _ := a.form("/oauth/revoke", appID, appSecret, url.Values{"token": {tok2}}); st != 200 {
		t.Fatalf("revoke on A: %d", st)
	}
	if active(tok2) {
		t.Error("feed down: B still finds a token revoked on A active")
	}
	if active(tok) {
		t.Error("feed down: B finds the first revoked token active")
	}
}

// introspectingReplicas starts two replicas A and B on one PostgreSQL
// database (B with opts), with B's change feed connected, an API, a client
// of it (appID, appSecret) and an introspector of it, all created through
// A; active introspects a token through B.
func introspectingReplicas(t *testing.T, opts Options) (a, b *testServer, appID, appSecret string, active func(tok string) bool) {
	t.Helper()
	dsn := pgtest.DSN(t)
	master := keys.GenerateMasterKeyText()
	replica := func(opts Options) *testServer {
		cfg := testConfig(t)
		cfg.Database, cfg.MasterKey, cfg.Issuer = dsn, master, "http://auth.test"
		return startServerOptions(t, cfg, nil, Timeouts{}, opts)
	}
	a, b = replica(Options{}), replica(opts)
	if !b.srv.envs.cachesOn.Load() {
		t.Fatal("B's change feed did not connect: its caches are off, and this test would prove nothing")
	}
	a.createAPI(ordersAPI, 0, "orders:read")
	appID, appSecret = a.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	rsID, rsSecret := a.createClient(admin.ClientInput{Name: "orders API", Introspect: []string{ordersAPI}})
	active = func(tok string) bool {
		t.Helper()
		st, m := b.form("/oauth/introspect", rsID, rsSecret, url.Values{"token": {tok}})
		if st != 200 {
			t.Fatalf("introspect on B: %d %v", st, m)
		}
		return m["active"] == true
	}
	return a, b, appID, appSecret, active
}
