// Package storetest is the conformance suite every store.Store backend must
// pass. Backends call Run from their own tests with a constructor that
// returns an empty, migrated store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mauth/m2mauth/internal/store"
)

// Opener returns a fresh, empty store. Calling it twice within one test must
// return two handles on the same database (used to test concurrency between
// processes).
type Opener func(t *testing.T) (open func() store.Store)

var t0 = time.Date(2026, 11, 22, 10, 30, 0, 123456000, time.UTC)

// Run runs the whole suite.
//
// Every test of what lives in an environment runs twice at once on one
// database: in two new environments ("alpha-<n>" and "beta-<n>"), as
// parallel subtests. The tests use fixed ids ("c1", "https://a"), so they
// pass only if the environments do not see each other: the same id is no
// conflict, and every read, count and listing is exactly the environment's
// own. (Values the server generates at random, such as secret ids, key ids
// and token hashes, are unique across the database; the tests make theirs
// unique with uniq.) Expiry clean-ups (DeleteExpired…, DeleteTokenUsage)
// are deployment maintenance that covers every environment, so they are
// tested on their own (ExpiredAcrossEnvironments), not inside these.
//
// Bootstrap and meta belong to the deployment, not to an environment, so
// their tests run once, in the default environment: two environments
// bootstrapping at once would share one meta table.
func Run(t *testing.T, newDB Opener) {
	type test struct {
		name string
		fn   func(t *testing.T, open func() store.Store)
	}
	perEnv := []test{
		{"APIs", testAPIs},
		{"Clients", testClients},
		{"ClientIDs", testClientIDs},
		{"ClientAuthentication", testClientAuthentication},
		{"TrustPolicies", testTrustPolicies},
		{"AssertionIDs", testAssertionIDs},
		{"TokenUsage", testTokenUsage},
		{"RecentTokenUsage", testRecentTokenUsage},
		{"TokenReuseField", testTokenReuseField},
		{"SenderConstrainedFields", testSenderConstrainedFields},
		{"ConsoleSessions", testConsoleSessions},
		{"ConsoleLinks", testConsoleLinks},
		{"CountsAndExpiringSecrets", testCountsAndExpiringSecrets},
		{"OldestSecrets", testOldestSecrets},
		{"LookupsByInvalidText", testLookupsByInvalidText},
		{"GrantHolderIDs", testGrantHolderIDs},
		{"DeleteAPIInUse", testDeleteAPIInUse},
		{"SigningKeys", testSigningKeys},
		{"SigningKeyOneActiveConcurrent", testOneActiveConcurrent},
		{"UpdateClient", testUpdateClient},
		{"UpdateClientConcurrent", testUpdateClientConcurrent},
		{"UpdateAPIPrunesGrants", testUpdateAPIPrunesGrants},
		{"ScopeDescriptions", testScopeDescriptions},
		{"DeleteAPIForce", testDeleteAPIForce},
		{"ClientIDsAreNeverReused", testTombstones},
		{"Paging", testPaging},
		{"TouchSecrets", testTouchSecrets},
		{"BulkClients", testBulkClients},
		{"UpdateSigningKeys", testUpdateSigningKeys},
		{"UpdateSigningKeysConcurrent", testUpdateSigningKeysConcurrent},
		{"RefreshTokens", testRefreshTokens},
		{"RefreshTokenConcurrentRedeem", testRefreshConcurrent},
		{"Revocations", testRevocations},
		{"Quota", testQuota},
	}
	for i, tc := range perEnv {
		t.Run(tc.name, func(t *testing.T) {
			inTwoEnvs(t, newDB(t), i, tc.fn)
		})
	}
	// Deployment-wide (the meta table): the default environment only.
	deployment := []test{
		{"Bootstrap", testBootstrap},
		{"BootstrapConcurrent", testBootstrapConcurrent},
		{"EnsureMeta", testEnsureMeta},
	}
	// Environments themselves, and what separates them.
	environments := []test{
		{"EnvScope", testEnvScope},
		{"Environments", testEnvironments},
		{"EnvironmentsPaging", testEnvironmentsPaging},
		{"UpdateEnvironmentConcurrent", testUpdateEnvironmentConcurrent},
		{"DeleteEnvironment", testDeleteEnvironment},
		{"DeleteEnvironmentDeletesEverything", testDeleteEnvironmentDeletesEverything},
		{"KeyWorkDue", testKeyWorkDue},
		{"Isolation", testIsolation},
		{"IsolationOfWrites", testIsolationOfWrites},
		{"MissingEnvironment", testMissingEnvironment},
		{"ExpiredAcrossEnvironments", testExpiredAcrossEnvironments},
		{"EnvAPIs", testEnvAPIs},
		{"EnvTrust", testEnvTrust},
		{"EnvSigningKeys", testEnvSigningKeys},
		{"EnvClientIsolation", testEnvClientIsolation},
		{"RecordUsage", testRecordUsage},
		{"ManyRows", testManyRows},
		// Alone on its database: two replicas' flushes fight only each other.
		{"TouchSecretsConcurrent", testTouchSecretsConcurrent},
		{"Audit", testAudit},
	}
	for _, tc := range slices.Concat(deployment, environments) {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newDB(t))
		})
	}
}

// inTwoEnvs creates the environments alpha-<n> and beta-<n> in the
// database of open and runs fn in both at once, each with an opener of
// handles scoped to its environment.
func inTwoEnvs(t *testing.T, open func() store.Store, n int, fn func(t *testing.T, open func() store.Store)) {
	ctx := context.Background()
	s := open()
	for _, prefix := range []string{"alpha", "beta"} {
		name := fmt.Sprintf("%s-%d", prefix, n)
		if err := s.CreateEnvironment(ctx, environment(name)); err != nil {
			t.Fatalf("CreateEnvironment(%s): %v", name, err)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, func() store.Store { return open().InEnv(name) })
		})
	}
}

func environment(name string) store.Environment {
	return store.Environment{Name: name, DisplayName: "Environment " + name, Version: 1, CreatedAt: t0, UpdatedAt: t0}
}

// uniq returns a function that makes a value the server would generate at
// random (a secret id, a key id, a token or session hash, a meta key)
// unique to the environment of s. Such values are keys across the whole
// database, and the copies of a test running at once in two environments
// must not share them. The environment is a suffix, so that values sort
// as they would without it.
func uniq(s store.Store) func(string) string {
	return func(v string) string { return v + "@" + s.Env() }
}

// secretSeq numbers the secrets client makes: secret ids are unique across
// the database, and a test makes the same client in two environments.
var secretSeq atomic.Int64

func api(identifier string, scopes ...string) store.API {
	return store.API{
		ID: "api_" + identifier, Identifier: identifier, Name: "API " + identifier,
		Scopes: scopes, ScopeDescriptions: map[string]string{}, TokenLifetime: 10 * time.Minute, Version: 1, CreatedAt: t0, UpdatedAt: t0,
	}
}

func client(id string, grants ...store.Grant) store.Client {
	if grants == nil {
		grants = []store.Grant{}
	}
	return store.Client{
		ID: id, Name: "client " + id, Description: "d", DefaultAudience: "",
		TokenLifetime: 5 * time.Minute, Grants: grants, AuthMethod: "client_secret_basic",
		Secrets:    []store.Secret{{ID: fmt.Sprintf("sec_%s_%d", id, secretSeq.Add(1)), Hash: "hmac-sha256$abc", Hint: "m2ms_ab", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}},
		Version:    1,
		Introspect: []string{},
		CreatedAt:  t0, UpdatedAt: t0,
	}
}

func testAPIs(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	a := api("https://orders.example", "orders:read", "orders:write")
	if err := s.CreateAPI(ctx, a); err != nil {
		t.Fatalf("CreateAPI: %v", err)
	}
	if err := s.CreateAPI(ctx, a); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate CreateAPI: got %v, want ErrConflict", err)
	}
	b := api("banking", "banking/read")
	b.ID = "api_other"
	b.TokenLifetime = 0
	if err := s.CreateAPI(ctx, b); err != nil {
		t.Fatalf("CreateAPI: %v", err)
	}
	got, err := s.GetAPI(ctx, a.Identifier)
	if err != nil {
		t.Fatalf("GetAPI: %v", err)
	}
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("GetAPI mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.GetAPI(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAPI(missing): got %v, want ErrNotFound", err)
	}
	list, err := s.ListAPIs(ctx, store.ListOptions{})
	if err != nil {
		t.Fatalf("ListAPIs: %v", err)
	}
	if diff := cmp.Diff([]store.API{b, a}, list); diff != "" {
		t.Errorf("ListAPIs mismatch (-want +got):\n%s", diff)
	}
	if err := s.DeleteAPI(ctx, a.Identifier, false, t0); err != nil {
		t.Fatalf("DeleteAPI: %v", err)
	}
	if err := s.DeleteAPI(ctx, a.Identifier, false, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteAPI twice: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetAPI(ctx, a.Identifier); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAPI after delete: got %v, want ErrNotFound", err)
	}
}

func testClients(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	a := api("https://orders.example", "orders:read", "orders:write")
	if err := s.CreateAPI(ctx, a); err != nil {
		t.Fatal(err)
	}
	c := client("m2mc_one", store.Grant{Audience: a.Identifier, Scopes: []string{"orders:read"}})
	c.DefaultAudience = a.Identifier
	c.Secrets = append(c.Secrets, store.Secret{ID: u("sec_2"), Hash: "hmac-sha256$def", Hint: "m2ms_de", CreatedAt: t0.Add(time.Second), LastUsedAt: t0.Add(2 * time.Second)})
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	if err := s.CreateClient(ctx, c); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate CreateClient: got %v, want ErrConflict", err)
	}
	bad := client("m2mc_bad", store.Grant{Audience: "https://missing.example", Scopes: []string{"x"}})
	if err := s.CreateClient(ctx, bad); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateClient with grant for missing API: got %v, want ErrConflict", err)
	}
	if _, err := s.GetClient(ctx, bad.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed CreateClient left a client behind: %v", err)
	}
	bare := client("m2mc_two")
	bare.Secrets = []store.Secret{}
	if err := s.CreateClient(ctx, bare); err != nil {
		t.Fatalf("CreateClient without grants: %v", err)
	}

	want := c
	want.Grants = []store.Grant{{Audience: a.Identifier, Scopes: []string{"orders:read"}, APITokenLifetime: a.TokenLifetime}}
	got, err := s.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetClient mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.GetClient(ctx, "m2mc_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetClient(missing): got %v, want ErrNotFound", err)
	}
	list, err := s.ListClients(ctx, store.ListOptions{})
	if err != nil {
		t.Fatalf("ListClients: %v", err)
	}
	if diff := cmp.Diff([]store.Client{want, bare}, list); diff != "" {
		t.Errorf("ListClients mismatch (-want +got):\n%s", diff)
	}
	if err := s.DeleteClient(ctx, c.ID, t0); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	if err := s.DeleteClient(ctx, c.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteClient twice: got %v, want ErrNotFound", err)
	}
	// The grant went with the client, so the API can now be deleted.
	if err := s.DeleteAPI(ctx, a.Identifier, false, t0); err != nil {
		t.Errorf("DeleteAPI after its only client was deleted: %v", err)
	}
}

func testDeleteAPIInUse(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	a := api("https://orders.example", "orders:read")
	if err := s.CreateAPI(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateClient(ctx, client("m2mc_x", store.Grant{Audience: a.Identifier, Scopes: []string{"orders:read"}})); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAPI(ctx, a.Identifier, false, t0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("DeleteAPI with a grant: got %v, want ErrConflict", err)
	}
	if _, err := s.GetAPI(ctx, a.Identifier); err != nil {
		t.Errorf("API gone after refused delete: %v", err)
	}
}

func key(kid, state string, created time.Time) store.SigningKey {
	return store.SigningKey{
		KID: kid, Alg: "RS256", State: state, Private: []byte{0, 1, 2, 0xff}, PublicJWK: []byte(`{"kid":"` + kid + `"}`),
		MasterKeyID: "mk1", CreatedAt: created, ActivatedAt: created,
	}
}

func testSigningKeys(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	k1 := key(u("k1"), store.KeyActive, t0)
	if created, err := s.CreateSigningKey(ctx, k1); err != nil || !created {
		t.Fatalf("CreateSigningKey: created=%v err=%v", created, err)
	}
	if created, err := s.CreateSigningKey(ctx, key(u("k2"), store.KeyActive, t0.Add(time.Second))); err != nil || created {
		t.Fatalf("second active key: created=%v err=%v, want false, nil", created, err)
	}
	k3 := key(u("k3"), store.KeyNext, t0.Add(time.Minute))
	k3.ActivatedAt = time.Time{}
	if created, err := s.CreateSigningKey(ctx, k3); err != nil || !created {
		t.Fatalf("next key: created=%v err=%v", created, err)
	}
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.SigningKey{k3, k1}, keys); diff != "" {
		t.Errorf("ListSigningKeys mismatch (-want +got):\n%s", diff)
	}
}

func testOneActiveConcurrent(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	const n = 8
	createdCount, s := race(t, open, n, func(s store.Store, i int) (bool, error) {
		return s.CreateSigningKey(ctx, key(uniq(s)(fmt.Sprintf("k%d", i)), store.KeyActive, t0))
	})
	keys, err := s.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if createdCount != 1 || len(keys) != 1 {
		t.Errorf("%d concurrent creators of an active key: %d reported created, %d stored; want 1 and 1", n, createdCount, len(keys))
	}
}

// race runs try once on each of n stores (n connections to one database)
// at the same time, and returns how many reported a win, with the first
// store for reading the outcome.
func race(t *testing.T, open func() store.Store, n int, try func(s store.Store, i int) (bool, error)) (int, store.Store) {
	t.Helper()
	stores := make([]store.Store, n)
	for i := range stores {
		stores[i] = open()
	}
	var wg sync.WaitGroup
	var wins atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			won, err := try(stores[i], i)
			if err != nil {
				t.Error(err)
			}
			if won {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(wins.Load()), stores[0]
}

func bootstrap(issuer, clientID string) store.Bootstrap {
	a := api(issuer+"/admin", "admin")
	a.ID = "api_admin"
	a.Builtin = "admin"
	c := client(clientID, store.Grant{Audience: a.Identifier, Scopes: []string{"admin"}})
	c.DefaultAudience = a.Identifier
	return store.Bootstrap{Issuer: issuer, AdminAPI: a, AdminClient: c}
}

func testBootstrap(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	// Another environment's built-in API, at its own identifier, and an
	// API at the default's, with clients of the same ids defaulting to
	// them: the default's bootstrap and issuer change leave them alone.
	// (Made first, and "a" sorts before "default": a query that forgets
	// the environment finds them first.)
	if err := s.CreateEnvironment(ctx, environment("a")); err != nil {
		t.Fatal(err)
	}
	other := s.InEnv("a")
	otherAPIs := []store.API{api("http://one/admin", "admin"), api("http://a/admin", "admin")}
	otherAPIs[1].ID, otherAPIs[1].Builtin = "api_admin", "admin"
	otherClients := []store.Client{client("m2mc_admin1"), client("m2mc_other")}
	otherClients[0].DefaultAudience, otherClients[1].DefaultAudience = "http://one/admin", "http://a/admin"
	for _, a := range otherAPIs {
		if err := other.CreateAPI(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range otherClients {
		if err := other.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	created, err := s.InitBootstrap(ctx, bootstrap("http://one", "m2mc_admin1"))
	if err != nil || !created {
		t.Fatalf("first InitBootstrap: created=%v err=%v", created, err)
	}
	if err := s.DeleteAPI(ctx, "http://one/admin", false, t0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("DeleteAPI(builtin): got %v, want ErrConflict", err)
	}
	if iss, err := s.GetMeta(ctx, store.MetaIssuer); iss != "http://one" || err != nil {
		t.Errorf("issuer %q, %v", iss, err)
	}
	if _, err := s.GetMeta(ctx, "no such key"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing meta: %v", err)
	}
	// A later start with a new issuer moves the admin API and its grants.
	created, err = s.InitBootstrap(ctx, bootstrap("http://two", "m2mc_admin2"))
	if err != nil || created {
		t.Fatalf("second InitBootstrap: created=%v err=%v, want false, nil", created, err)
	}
	if _, err := s.GetClient(ctx, "m2mc_admin2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second bootstrap created its client: %v", err)
	}
	c, err := s.GetClient(ctx, "m2mc_admin1")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Grants) != 1 || c.Grants[0].Audience != "http://two/admin" || c.DefaultAudience != "http://two/admin" {
		t.Errorf("admin client after issuer change: grants %+v, default audience %q; want http://two/admin", c.Grants, c.DefaultAudience)
	}
	if a, err := s.GetAPI(ctx, "http://two/admin"); err != nil || a.Builtin != "admin" {
		t.Errorf("admin API after issuer change: %+v, %v", a, err)
	}
	if iss, err := s.GetMeta(ctx, store.MetaIssuer); iss != "http://two" || err != nil {
		t.Errorf("issuer after the change %q, %v", iss, err)
	}
	for _, a := range otherAPIs {
		if got, err := other.GetAPI(ctx, a.Identifier); err != nil || !cmp.Equal(got, a) {
			t.Errorf("another environment's API after the default's issuer change: %v\n%s", err, cmp.Diff(a, got))
		}
	}
	for _, c := range otherClients {
		if got, err := other.GetClient(ctx, c.ID); err != nil || got.DefaultAudience != c.DefaultAudience || got.Version != 1 {
			t.Errorf("another environment's client after the default's issuer change: %+v, %v", got, err)
		}
	}
}

func testBootstrapConcurrent(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	const n = 6
	createdCount, s := race(t, open, n, func(s store.Store, i int) (bool, error) {
		return s.InitBootstrap(ctx, bootstrap("http://x", fmt.Sprintf("m2mc_admin%d", i)))
	})
	clients, err := s.ListClients(ctx, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if createdCount != 1 || len(clients) != 1 {
		t.Errorf("%d concurrent bootstraps: %d reported created, %d clients stored; want 1 and 1", n, createdCount, len(clients))
	}
}

func testEnsureMeta(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	if v, err := s.EnsureMeta(ctx, "k", "first"); err != nil || v != "first" {
		t.Fatalf("EnsureMeta on empty: %q, %v; want first", v, err)
	}
	if v, err := s.EnsureMeta(ctx, "k", "second"); err != nil || v != "first" {
		t.Fatalf("EnsureMeta again: %q, %v; want first (kept)", v, err)
	}
}

func testUpdateClient(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	a := api("https://a", "r", "w")
	b := api("https://b", "x")
	b.ID = "api_b"
	for _, x := range []store.API{a, b} {
		if err := s.CreateAPI(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	c := client("m2mc_u", store.Grant{Audience: a.Identifier, Scopes: []string{"r"}})
	c.Secrets = append(c.Secrets, store.Secret{ID: u("sec_old"), Hash: "h2", Hint: "m2ms_x", CreatedAt: t0})
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Hour)
	got, err := s.UpdateClient(ctx, c.ID, func(c *store.Client) error {
		c.Name, c.Description, c.Disabled = "renamed", "new", true
		c.TokenLifetime = time.Minute
		c.CustomClaims = map[string]any{"tenant": "acme", "tier": float64(2)}
		c.Metadata = map[string]string{"team": "billing"}
		c.Grants = []store.Grant{{Audience: b.Identifier, Scopes: []string{"x"}}, {Audience: a.Identifier, Scopes: []string{"r", "w"}}}
		c.DefaultAudience = b.Identifier
		c.Secrets[0].ExpiresAt = t1                                                                                  // keep, new expiry
		c.Secrets = append(c.Secrets[:1], store.Secret{ID: u("sec_new"), Hash: "h3", Hint: "m2ms_n", CreatedAt: t1}) // drop sec_old, add one
		c.UpdatedAt = t1
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	again, err := s.GetClient(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, again); diff != "" {
		t.Errorf("UpdateClient's result differs from a fresh read (-returned +read):\n%s", diff)
	}
	want := c
	want.Name, want.Description, want.Disabled, want.TokenLifetime = "renamed", "new", true, time.Minute
	want.CustomClaims = map[string]any{"tenant": "acme", "tier": float64(2)}
	want.Metadata = map[string]string{"team": "billing"}
	want.DefaultAudience = b.Identifier
	want.Grants = []store.Grant{{Audience: a.Identifier, Scopes: []string{"r", "w"}, APITokenLifetime: a.TokenLifetime}, {Audience: b.Identifier, Scopes: []string{"x"}, APITokenLifetime: b.TokenLifetime}}
	want.Secrets = []store.Secret{{ID: c.Secrets[0].ID, Hash: "hmac-sha256$abc", Hint: "m2ms_ab", CreatedAt: t0, ExpiresAt: t1}, {ID: u("sec_new"), Hash: "h3", Hint: "m2ms_n", CreatedAt: t1}}
	want.Version, want.UpdatedAt = 2, t1
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("after update (-want +got):\n%s", diff)
	}

	// An error from fn aborts the whole change.
	boom := errors.New("boom")
	if _, err := s.UpdateClient(ctx, c.ID, func(c *store.Client) error { c.Name = "lost"; return boom }); !errors.Is(err, boom) {
		t.Errorf("fn error: got %v", err)
	}
	if got, _ := s.GetClient(ctx, c.ID); got.Name != "renamed" || got.Version != 2 {
		t.Errorf("aborted update was applied: %q v%d", got.Name, got.Version)
	}
	if _, err := s.UpdateClient(ctx, c.ID, func(c *store.Client) error { c.ID = "other"; return nil }); !errors.Is(err, store.ErrConflict) {
		t.Errorf("id change: got %v, want ErrConflict", err)
	}
	if _, err := s.UpdateClient(ctx, "m2mc_missing", func(*store.Client) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing client: got %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateClient(ctx, c.ID, func(c *store.Client) error {
		c.Grants = append(c.Grants, store.Grant{Audience: "https://missing", Scopes: []string{}})
		return nil
	}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("grant to a missing API: got %v, want ErrConflict", err)
	}
}

// Concurrent updates of one client never lose each other's changes.
func testUpdateClientConcurrent(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	const n = 12
	stores := make([]store.Store, 4)
	for i := range stores {
		stores[i] = open()
	}
	if err := stores[0].CreateClient(ctx, client("m2mc_c")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := stores[i%len(stores)].UpdateClient(ctx, "m2mc_c", func(c *store.Client) error {
				c.Secrets = append(c.Secrets, store.Secret{ID: uniq(stores[0])(fmt.Sprintf("sec_%02d", i)), Hash: "h", Hint: "m", CreatedAt: t0})
				return nil
			})
			if err != nil {
				t.Errorf("update %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	c, err := stores[0].GetClient(ctx, "m2mc_c")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Secrets) != n+1 || c.Version != n+1 {
		t.Errorf("after %d concurrent updates: %d secrets, version %d; want %d and %d", n, len(c.Secrets), c.Version, n+1, n+1)
	}
}

func testUpdateAPIPrunesGrants(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	a := api("https://a", "r", "w", "x")
	if err := s.CreateAPI(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateClient(ctx, client("m2mc_p", store.Grant{Audience: a.Identifier, Scopes: []string{"r", "w"}})); err != nil {
		t.Fatal(err)
	}
	// m2mc_q holds only scopes that stay: its tokens stay valid.
	if err := s.CreateClient(ctx, client("m2mc_q", store.Grant{Audience: a.Identifier, Scopes: []string{"r", "x"}})); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []store.RefreshToken{refreshToken(u("p1"), "fp", "m2mc_p", t0.Add(time.Hour)), refreshToken(u("q1"), "fq", "m2mc_q", t0.Add(time.Hour))} {
		if err := s.CreateRefreshToken(ctx, rt); err != nil {
			t.Fatal(err)
		}
	}
	cut := t0.Add(time.Second)
	got, err := s.UpdateAPI(ctx, a.Identifier, cut, func(a *store.API) error {
		a.Name, a.Scopes, a.TokenLifetime = "renamed", []string{"r", "x", "new"}, time.Hour
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.Name != "renamed" {
		t.Errorf("UpdateAPI returned %+v", got)
	}
	if fresh, _ := s.GetAPI(ctx, a.Identifier); !cmp.Equal(got, fresh) {
		t.Errorf("returned %+v, read %+v", got, fresh)
	}
	c, _ := s.GetClient(ctx, "m2mc_p")
	if len(c.Grants) != 1 || !cmp.Equal(c.Grants[0].Scopes, []string{"r"}) || c.Grants[0].APITokenLifetime != time.Hour || c.Version != 2 {
		t.Errorf("grant after removing scope w: %+v (client v%d), want [r], 1h, v2", c.Grants, c.Version)
	}
	if !c.TokensRevokedBefore.Equal(cut) {
		t.Errorf("client that lost a scope: tokens revoked before %v, want %v", c.TokensRevokedBefore, cut)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("p1"), t0, successor(u("p2"), t0)); !errors.Is(err, store.ErrTokenSpent) {
		t.Errorf("refresh token of a client that lost a scope: got %v, want ErrTokenSpent", err)
	}
	q, _ := s.GetClient(ctx, "m2mc_q")
	if !q.TokensRevokedBefore.IsZero() || q.Version != 1 {
		t.Errorf("client that lost nothing: tokens revoked before %v, v%d", q.TokensRevokedBefore, q.Version)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("q1"), t0, successor(u("q2"), t0)); err != nil {
		t.Errorf("refresh token of a client that lost nothing: %v", err)
	}
	// A later cutoff never moves back.
	if _, err := s.UpdateAPI(ctx, a.Identifier, t0, func(a *store.API) error { a.Scopes = []string{"x"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.GetClient(ctx, "m2mc_p"); !c.TokensRevokedBefore.Equal(cut) {
		t.Errorf("an earlier cutoff moved tokens_revoked_before to %v, want %v", c.TokensRevokedBefore, cut)
	}
	if _, err := s.UpdateAPI(ctx, a.Identifier, t0, func(a *store.API) error { a.Identifier = "https://b"; return nil }); !errors.Is(err, store.ErrConflict) {
		t.Errorf("identifier change: %v", err)
	}
	if _, err := s.UpdateAPI(ctx, "https://none", t0, func(*store.API) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing API: %v", err)
	}
}

// An API's scope descriptions are read as written (never nil), and a
// description goes with its scope: one for a scope the API does not define
// is not stored, and removing a scope removes its description.
func testScopeDescriptions(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	a := api("https://a", "orders:read", "orders:write", "orders:admin")
	a.ScopeDescriptions = map[string]string{
		"orders:read":  `Read orders — "quotes", \backslashes\, <tags> & ünïcödé`,
		"orders:write": "Create\tand change orders",
		"undefined":    "not a scope of the API",
	}
	if err := s.CreateAPI(ctx, a); err != nil {
		t.Fatal(err)
	}
	want := a
	want.ScopeDescriptions = map[string]string{"orders:read": a.ScopeDescriptions["orders:read"], "orders:write": a.ScopeDescriptions["orders:write"]}
	got, err := s.GetAPI(ctx, a.Identifier)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetAPI (-want +got):\n%s", diff)
	}
	// Another API without descriptions reads an empty map, never nil.
	b := api("https://b", "x")
	b.ScopeDescriptions = nil
	if err := s.CreateAPI(ctx, b); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListAPIs(ctx, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.ScopeDescriptions = map[string]string{}
	if diff := cmp.Diff([]store.API{want, b}, list); diff != "" {
		t.Errorf("ListAPIs (-want +got):\n%s", diff)
	}
	if list[1].ScopeDescriptions == nil {
		t.Error("ListAPIs: nil ScopeDescriptions for an API without any")
	}

	// Removing a scope removes its description; the others stay, and fn
	// sees the current ones.
	got, err = s.UpdateAPI(ctx, a.Identifier, t0, func(a *store.API) error {
		if len(a.ScopeDescriptions) != 2 {
			t.Errorf("fn sees descriptions %v", a.ScopeDescriptions)
		}
		a.Scopes = []string{"orders:read", "orders:admin"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantDescs := map[string]string{"orders:read": want.ScopeDescriptions["orders:read"]}
	if !cmp.Equal(got.ScopeDescriptions, wantDescs) {
		t.Errorf("after removing orders:write, UpdateAPI returned descriptions %v, want %v", got.ScopeDescriptions, wantDescs)
	}
	if fresh, _ := s.GetAPI(ctx, a.Identifier); !cmp.Equal(got, fresh) {
		t.Errorf("returned %+v, read %+v", got, fresh)
	}
	// Descriptions are replaced as fn leaves them; one for a scope the
	// API does not define is dropped.
	got, err = s.UpdateAPI(ctx, a.Identifier, t0, func(a *store.API) error {
		a.ScopeDescriptions = map[string]string{"orders:admin": "Everything", "orders:write": "gone"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fresh, _ := s.GetAPI(ctx, a.Identifier); !cmp.Equal(fresh.ScopeDescriptions, map[string]string{"orders:admin": "Everything"}) || !cmp.Equal(got, fresh) {
		t.Errorf("after replacing the descriptions: returned %v, read %v; want only orders:admin", got.ScopeDescriptions, fresh.ScopeDescriptions)
	}
	// nil clears them, and reads back as an empty map.
	got, err = s.UpdateAPI(ctx, a.Identifier, t0, func(a *store.API) error { a.ScopeDescriptions = nil; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if fresh, _ := s.GetAPI(ctx, a.Identifier); fresh.ScopeDescriptions == nil || len(fresh.ScopeDescriptions) != 0 || !cmp.Equal(got, fresh) {
		t.Errorf("after clearing: returned %#v, read %#v; want an empty map", got.ScopeDescriptions, fresh.ScopeDescriptions)
	}
	// A scope added back does not bring its old description back.
	if got, err = s.UpdateAPI(ctx, a.Identifier, t0, func(a *store.API) error { a.Scopes = append(a.Scopes, "orders:write"); return nil }); err != nil || len(got.ScopeDescriptions) != 0 {
		t.Errorf("scope added back: descriptions %v, %v", got.ScopeDescriptions, err)
	}
}

func testDeleteAPIForce(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	a, b := api("https://a", "r"), api("https://b", "r")
	b.ID = "api_b"
	for _, x := range []store.API{a, b} {
		if err := s.CreateAPI(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	c := client("m2mc_f", store.Grant{Audience: a.Identifier, Scopes: []string{"r"}}, store.Grant{Audience: b.Identifier, Scopes: []string{"r"}})
	c.DefaultAudience = a.Identifier
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	other := client("m2mc_o", store.Grant{Audience: b.Identifier, Scopes: []string{"r"}})
	if err := s.CreateClient(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []store.RefreshToken{refreshToken(u("f1"), "ff", c.ID, t0.Add(time.Hour)), refreshToken(u("o1"), "fo", other.ID, t0.Add(time.Hour))} {
		if err := s.CreateRefreshToken(ctx, rt); err != nil {
			t.Fatal(err)
		}
	}
	cut := t0.Add(time.Second)
	if err := s.DeleteAPI(ctx, a.Identifier, true, cut); err != nil {
		t.Fatalf("forced delete: %v", err)
	}
	got, _ := s.GetClient(ctx, c.ID)
	if len(got.Grants) != 1 || got.Grants[0].Audience != b.Identifier || got.DefaultAudience != "" || got.Version != 2 {
		t.Errorf("client after forced delete: grants %+v default %q v%d", got.Grants, got.DefaultAudience, got.Version)
	}
	if !got.TokensRevokedBefore.Equal(cut) {
		t.Errorf("client whose grant went: tokens revoked before %v, want %v", got.TokensRevokedBefore, cut)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("f1"), t0, successor(u("f2"), t0)); !errors.Is(err, store.ErrTokenSpent) {
		t.Errorf("refresh token of a client whose grant went: got %v, want ErrTokenSpent", err)
	}
	if o, _ := s.GetClient(ctx, other.ID); !o.TokensRevokedBefore.IsZero() || o.Version != 1 {
		t.Errorf("client without a grant for the deleted API: tokens revoked before %v, v%d", o.TokensRevokedBefore, o.Version)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("o1"), t0, successor(u("o2"), t0)); err != nil {
		t.Errorf("refresh token of a client without a grant for the deleted API: %v", err)
	}
}

func testTombstones(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	if err := s.CreateClient(ctx, client("m2mc_t")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteClient(ctx, "m2mc_t", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateClient(ctx, client("m2mc_t")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("re-creating a deleted id: got %v, want ErrConflict", err)
	}
}

func testPaging(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	a := api("https://a", "r")
	if err := s.CreateAPI(ctx, a); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"Billing", "billing-eu", "orders", "Shipping", "bill-old"} {
		c := client(fmt.Sprintf("m2mc_%d", i))
		c.Name = name
		if i%2 == 0 {
			c.Grants = []store.Grant{{Audience: a.Identifier, Scopes: []string{"r"}}}
		}
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(cs []store.Client) []string {
		out := []string{}
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	tests := []struct {
		name string
		opts store.ListOptions
		want []string
	}{
		{"first page", store.ListOptions{Limit: 2}, []string{"m2mc_0", "m2mc_1"}},
		{"second page", store.ListOptions{Limit: 2, After: "m2mc_1"}, []string{"m2mc_2", "m2mc_3"}},
		{"last page", store.ListOptions{Limit: 2, After: "m2mc_3"}, []string{"m2mc_4"}},
		{"past the end", store.ListOptions{Limit: 2, After: "m2mc_4"}, []string{}},
		{"name contains, any case", store.ListOptions{NameContains: "BILLING"}, []string{"m2mc_0", "m2mc_1"}},
		{"audience", store.ListOptions{Audience: a.Identifier}, []string{"m2mc_0", "m2mc_2", "m2mc_4"}},
		{"audience and name, paged", store.ListOptions{Audience: a.Identifier, NameContains: "bill", Limit: 1, After: "m2mc_0"}, []string{"m2mc_4"}},
		{"name with LIKE wildcards is literal", store.ListOptions{NameContains: "%"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListClients(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			for _, c := range got {
				if len(c.Secrets) != 1 {
					t.Errorf("%s: %d secrets loaded", c.ID, len(c.Secrets))
				}
			}
		})
	}
	apis, err := s.ListAPIs(ctx, store.ListOptions{NameContains: "api https://a"})
	if err != nil || len(apis) != 1 {
		t.Errorf("ListAPIs by name: %v %v", apis, err)
	}
}

func testTouchSecrets(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	x := client("m2mc_x")
	if err := s.CreateClient(ctx, x); err != nil {
		t.Fatal(err)
	}
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	if err := s.TouchSecrets(ctx, map[string]time.Time{x.Secrets[0].ID: t2, uniq(s)("sec_gone"): t1}); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSecrets(ctx, map[string]time.Time{x.Secrets[0].ID: t1}); err != nil {
		t.Fatal(err)
	}
	c, _ := s.GetClient(ctx, "m2mc_x")
	if !c.Secrets[0].LastUsedAt.Equal(t2) {
		t.Errorf("last used %v, want %v (never backwards)", c.Secrets[0].LastUsedAt, t2)
	}
	// UpdateClient never writes last-use times back.
	if _, err := s.UpdateClient(ctx, "m2mc_x", func(c *store.Client) error { c.Secrets[0].LastUsedAt = time.Time{}; return nil }); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.GetClient(ctx, "m2mc_x"); !c.Secrets[0].LastUsedAt.Equal(t2) {
		t.Errorf("UpdateClient overwrote last_used_at")
	}
}

func testUpdateSigningKeys(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	k1 := key(u("k1"), store.KeyActive, t0)
	if _, err := s.CreateSigningKey(ctx, k1); err != nil {
		t.Fatal(err)
	}
	k2 := key(u("k2"), store.KeyNext, t0.Add(time.Minute))
	k2.ActivatedAt, k2.ActivateAt = time.Time{}, t0.Add(time.Hour)
	err := s.UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
		if len(keys) != 1 || keys[0].KID != k1.KID || meta(u("missing")) != "" {
			t.Errorf("fn saw %v", keys)
		}
		return store.KeyUpdate{Insert: []store.SigningKey{k2}, Meta: map[string]string{u("m"): "1"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Swap: k1 retires and k2 activates in one transaction (the order of
	// Update must not matter under the one-active index).
	err = s.UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
		if meta(u("m")) != "1" {
			t.Errorf("meta m = %q", meta(u("m")))
		}
		a, b := keys[1], keys[0] // newest first
		a.State, a.RetiredAt, a.RemoveAt = store.KeyRetired, t0.Add(time.Hour), t0.Add(3*time.Hour)
		b.State, b.ActivatedAt = store.KeyActive, t0.Add(time.Hour)
		return store.KeyUpdate{Update: []store.SigningKey{b, a}, Meta: map[string]string{u("m"): "2"}}, nil
	})
	if err != nil {
		t.Fatalf("swap: %v", err)
	}
	keys, _ := s.ListSigningKeys(ctx)
	if len(keys) != 2 || keys[0].State != store.KeyActive || keys[1].State != store.KeyRetired || !keys[1].RemoveAt.Equal(t0.Add(3*time.Hour)) || !keys[0].ActivateAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after swap: %+v", keys)
	}
	if v, _ := s.EnsureMeta(ctx, u("m"), "x"); v != "2" {
		t.Errorf("meta after update: %q", v)
	}
	boom := errors.New("boom")
	if err := s.UpdateSigningKeys(ctx, func([]store.SigningKey, func(string) string) (store.KeyUpdate, error) {
		return store.KeyUpdate{Delete: []string{k1.KID}}, boom
	}); !errors.Is(err, boom) {
		t.Errorf("fn error: %v", err)
	}
	if err := s.UpdateSigningKeys(ctx, func([]store.SigningKey, func(string) string) (store.KeyUpdate, error) {
		return store.KeyUpdate{Delete: []string{k1.KID}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.ListSigningKeys(ctx); len(keys) != 1 || keys[0].KID != k2.KID {
		t.Errorf("after delete: %+v", keys)
	}
}

// Several replicas running the same rotation step at once: one does it.
func testUpdateSigningKeysConcurrent(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	stores := make([]store.Store, 4)
	for i := range stores {
		stores[i] = open()
	}
	u := uniq(stores[0])
	if _, err := stores[0].CreateSigningKey(ctx, key(u("k0"), store.KeyActive, t0)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := stores[i%len(stores)].UpdateSigningKeys(ctx, func(keys []store.SigningKey, _ func(string) string) (store.KeyUpdate, error) {
				for _, k := range keys {
					if k.State == store.KeyNext {
						return store.KeyUpdate{}, nil // someone else rotated
					}
				}
				return store.KeyUpdate{Insert: []store.SigningKey{key(u(fmt.Sprintf("n%d", i)), store.KeyNext, t0)}}, nil
			})
			if err != nil {
				t.Errorf("update: %v", err)
			}
		}()
	}
	wg.Wait()
	keys, _ := stores[0].ListSigningKeys(ctx)
	if len(keys) != 2 {
		t.Fatalf("%d keys after 8 concurrent rotations, want 2", len(keys))
	}
}

func refreshToken(hash, family, client string, expires time.Time) store.RefreshToken {
	return store.RefreshToken{Hash: hash, FamilyID: family, ClientID: client, Audience: []string{"https://a"},
		Scopes: []string{"r", "w"}, CreatedAt: t0, ExpiresAt: expires}
}

func successor(hash string, at time.Time) func(store.RefreshToken) (store.RefreshToken, error) {
	return func(old store.RefreshToken) (store.RefreshToken, error) {
		n := old
		n.Hash, n.CreatedAt = hash, at
		return n, nil
	}
}

func testRefreshTokens(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	c := client("m2mc_r")
	c.RefreshTokens = true
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetClient(ctx, c.ID); !got.RefreshTokens {
		t.Fatal("RefreshTokens not stored")
	}
	exp := t0.Add(24 * time.Hour)
	h1 := refreshToken(u("h1"), "f1", c.ID, exp)
	if err := s.CreateRefreshToken(ctx, h1); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRefreshToken(ctx, h1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the same hash twice: %v, want ErrConflict", err)
	}
	if got, err := s.GetRefreshToken(ctx, h1.Hash); err != nil || !cmp.Equal(got, h1) {
		t.Fatalf("GetRefreshToken: %v\n%s", err, cmp.Diff(h1, got))
	}
	// A family begun with DPoP says so, and its successors too.
	hd := refreshToken(u("hd"), "fd", c.ID, exp)
	hd.DPoP = true
	if err := s.CreateRefreshToken(ctx, hd); err != nil {
		t.Fatal(err)
	}
	if got, err := s.RedeemRefreshToken(ctx, u("hd"), t0.Add(time.Minute), successor(u("hd2"), t0.Add(time.Minute))); err != nil || !got.DPoP {
		t.Fatalf("redeem a DPoP family: %+v %v", got, err)
	}
	if got, err := s.GetRefreshToken(ctx, u("hd2")); err != nil || !got.DPoP {
		t.Fatalf("the successor of a DPoP family: %+v %v", got, err)
	}
	got, err := s.RedeemRefreshToken(ctx, u("h1"), t0.Add(time.Minute), successor(u("h2"), t0.Add(time.Minute)))
	if err != nil || got.FamilyID != "f1" || !cmp.Equal(got.Scopes, []string{"r", "w"}) || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("redeem h1: %+v %v", got, err)
	}
	if spent, err := s.GetRefreshToken(ctx, u("h1")); err != nil || !spent.UsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("spent h1: %+v %v", spent, err)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("h2"), t0.Add(2*time.Minute), successor(u("h3"), t0)); err != nil {
		t.Fatalf("redeem the successor: %v", err)
	}
	// Replaying h1 (spent) revokes the family: h3, unspent, dies with it.
	if _, err := s.RedeemRefreshToken(ctx, u("h1"), t0.Add(3*time.Minute), successor(u("hx"), t0)); !errors.Is(err, store.ErrTokenSpent) {
		t.Fatalf("replay: got %v, want ErrTokenSpent", err)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("h3"), t0.Add(4*time.Minute), successor(u("hy"), t0)); !errors.Is(err, store.ErrTokenSpent) {
		t.Fatalf("a family member after the replay: got %v, want ErrTokenSpent", err)
	}
	// An error from next leaves the token live.
	if err := s.CreateRefreshToken(ctx, refreshToken(u("a1"), "fa", c.ID, exp)); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("wrong client")
	if _, err := s.RedeemRefreshToken(ctx, u("a1"), t0, func(store.RefreshToken) (store.RefreshToken, error) { return store.RefreshToken{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("aborted redeem: %v", err)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("a1"), t0, successor(u("a2"), t0)); err != nil {
		t.Fatalf("a token whose redemption was aborted is not live: %v", err)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("nope"), t0, successor(u("hz"), t0)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if err := s.CreateRefreshToken(ctx, refreshToken(u("e1"), "f2", c.ID, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("e1"), t0.Add(time.Hour), successor(u("e2"), t0)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired: got %v, want ErrNotFound", err)
	}
	// Revoking a family, or all of a client's, revokes only those.
	for _, h := range []string{"r1", "r2", "r3"} {
		if err := s.CreateRefreshToken(ctx, refreshToken(u(h), "f-"+h, c.ID, exp)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeRefreshFamily(ctx, "f-r1", t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r1, err := s.GetRefreshToken(ctx, u("r1")); err != nil || !r1.RevokedAt.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("revoked family: %+v %v", r1, err)
	}
	if r2, err := s.GetRefreshToken(ctx, u("r2")); err != nil || !r2.RevokedAt.IsZero() {
		t.Fatalf("another family: %+v %v", r2, err)
	}
	if err := s.RevokeClientRefreshTokens(ctx, c.ID, t0.Add(6*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemRefreshToken(ctx, u("r3"), t0.Add(7*time.Minute), successor(u("r3x"), t0)); !errors.Is(err, store.ErrTokenSpent) {
		t.Fatalf("a token of a client whose tokens were revoked: got %v, want ErrTokenSpent", err)
	}
	// Deleting the client deletes its tokens. (Expired ones are collected
	// by DeleteExpiredRefreshTokens: see testExpiredAcrossEnvironments.)
	if err := s.DeleteClient(ctx, c.ID, t0); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2", "h3", "a2", "e1", "r2"} {
		if _, err := s.GetRefreshToken(ctx, u(h)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("token %s of a deleted client: %v, want ErrNotFound", h, err)
		}
	}
}

// Two requests redeeming one token at once: one gets the successor, the
// other is a replay.
func testRefreshConcurrent(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	stores := []store.Store{open(), open(), open(), open()}
	u := uniq(stores[0])
	if err := stores[0].CreateClient(ctx, client("m2mc_rc")); err != nil {
		t.Fatal(err)
	}
	if err := stores[0].CreateRefreshToken(ctx, refreshToken(u("c1"), "fc", "m2mc_rc", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]int{}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := stores[i%4].RedeemRefreshToken(ctx, u("c1"), t0, successor(u(fmt.Sprintf("c2-%d", i)), t0))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				results["ok"]++
			case errors.Is(err, store.ErrTokenSpent):
				results["spent"]++
			default:
				t.Errorf("redeem: %v", err)
			}
		}()
	}
	wg.Wait()
	if results["ok"] != 1 || results["spent"] != 7 {
		t.Fatalf("8 concurrent redemptions: %v; want 1 ok and 7 spent", results)
	}
}

func testRevocations(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	r1 := store.Revocation{JTI: "j1", ClientID: "c", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0}
	r2 := store.Revocation{JTI: "j2", ClientID: "c", ExpiresAt: t0.Add(2 * time.Hour), RevokedAt: t0.Add(time.Minute)}
	for _, r := range []store.Revocation{r1, r2, r1} {
		if err := s.RevokeToken(ctx, r); err != nil {
			t.Fatalf("RevokeToken (idempotent): %v", err)
		}
	}
	if ok, err := s.IsRevoked(ctx, "j1"); !ok || err != nil {
		t.Fatalf("j1: %v %v", ok, err)
	}
	if ok, _ := s.IsRevoked(ctx, "j3"); ok {
		t.Fatal("j3 revoked")
	}
	list, err := s.ListRevocations(ctx, t0.Add(90*time.Minute), nil, 10)
	if err != nil || len(list) != 1 || list[0].JTI != "j2" {
		t.Fatalf("live revocations at +90m: %+v %v", list, err)
	}
	// Paging, newest first, with ties on the revocation time broken by jti.
	for _, jti := range []string{"p3", "p1", "p2"} {
		if err := s.RevokeToken(ctx, store.Revocation{JTI: jti, ClientID: "c", ExpiresAt: t0.Add(3 * time.Hour), RevokedAt: t0.Add(2 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	var pages [][]string
	var after *store.Revocation
	for {
		page, err := s.ListRevocations(ctx, t0, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		var jtis []string
		for _, r := range page {
			jtis = append(jtis, r.JTI)
		}
		pages = append(pages, jtis)
		after = &page[len(page)-1]
	}
	if want := [][]string{{"p1", "p2"}, {"p3", "j2"}, {"j1"}}; !cmp.Equal(pages, want) {
		t.Errorf("pages %v, want %v", pages, want)
	}
	if all, err := s.ListRevocations(ctx, t0, nil, 0); err != nil || len(all) != 5 {
		t.Errorf("all: %d %v", len(all), err)
	}
	// (DeleteExpiredRevocations: see testExpiredAcrossEnvironments.)
	// The client fields round-trip.
	c := client("m2mc_i")
	c.Introspect = []string{"https://a", "https://b"}
	c.TokensRevokedBefore = t0.Add(time.Minute)
	if err := s.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetClient(ctx, c.ID)
	if !cmp.Equal(got.Introspect, c.Introspect) || !got.TokensRevokedBefore.Equal(c.TokensRevokedBefore) {
		t.Fatalf("introspect %v, revoked before %v", got.Introspect, got.TokensRevokedBefore)
	}
}

func testClientIDs(t *testing.T, open func() store.Store) {
	s := open()
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 25 {
		id := fmt.Sprintf("c%02d", i)
		if err := s.CreateClient(ctx, client(id)); err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	if err := s.DeleteClient(ctx, "c07", t0); err != nil {
		t.Fatal(err)
	}
	delete(want, "c07")
	got := map[string]bool{}
	if err := s.ClientIDs(ctx, func(id string) {
		if got[id] {
			t.Errorf("%s listed twice", id)
		}
		got[id] = true
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d ids, want %d", len(got), len(want))
	}
	for id := range want {
		if !got[id] {
			t.Errorf("%s missing", id)
		}
	}
}

func testClientAuthentication(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	if err := s.CreateTrustPolicy(ctx, trustPolicy("k8s", "https://k8s.example")); err != nil {
		t.Fatal(err)
	}
	c := client("m2mc_key")
	c.AuthMethod = "private_key_jwt"
	c.JWKS = []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`)
	c.AcceptSecrets = true
	c.AcceptTokenEndpointAudience = true
	f := client("m2mc_fed")
	f.AuthMethod = "federated"
	f.Federation = []store.FederatedIdentity{{Policy: "k8s", Subject: "system:serviceaccount:payments:*", Claims: map[string]string{"kubernetes.io.namespace": "payments"}}}
	u := client("m2mc_uri")
	u.AuthMethod = "private_key_jwt"
	u.JWKSURI = "https://keys.example/jwks.json"
	for _, cl := range []store.Client{c, f, u, client("m2mc_plain")} {
		if err := s.CreateClient(ctx, cl); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetClient(ctx, c.ID)
	if err != nil || got.AuthMethod != "private_key_jwt" || string(got.JWKS) != string(c.JWKS) || !got.AcceptSecrets || !got.AcceptTokenEndpointAudience {
		t.Fatalf("key client: %+v %v", got, err)
	}
	if got, _ := s.GetClient(ctx, "m2mc_plain"); got.AuthMethod != "client_secret_basic" || got.JWKS != nil || len(got.Federation) != 0 {
		t.Errorf("plain client: method %q jwks %q federation %v", got.AuthMethod, got.JWKS, got.Federation)
	}
	if got, _ := s.GetClient(ctx, u.ID); got.JWKSURI != u.JWKSURI {
		t.Errorf("jwks_uri %q", got.JWKSURI)
	}
	fed, err := s.FederatedIdentities(ctx)
	if err != nil || len(fed) != 1 || !cmp.Equal(fed[f.ID], f.Federation) {
		t.Fatalf("federated identities: %+v %v", fed, err)
	}
	// Updates write every field.
	if _, err := s.UpdateClient(ctx, f.ID, func(c *store.Client) error {
		c.Federation = append(c.Federation, store.FederatedIdentity{Policy: "k8s", Subject: "exact"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetClient(ctx, f.ID); len(got.Federation) != 2 || got.Federation[1].Subject != "exact" {
		t.Errorf("federation after update: %+v", got.Federation)
	}
	if _, err := s.UpdateClient(ctx, c.ID, func(c *store.Client) error {
		c.AuthMethod, c.JWKS, c.AcceptSecrets = "client_secret_post", nil, false
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetClient(ctx, c.ID); got.AuthMethod != "client_secret_post" || got.JWKS != nil || got.AcceptSecrets {
		t.Errorf("after update: %+v", got)
	}
	// A policy a client is bound to cannot be deleted.
	if err := s.DeleteTrustPolicy(ctx, "k8s"); !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), f.ID) {
		t.Errorf("delete a policy in use: %v", err)
	}
	if err := s.DeleteClient(ctx, f.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTrustPolicy(ctx, "k8s"); err != nil {
		t.Errorf("delete a policy no longer in use: %v", err)
	}
}

func trustPolicy(name, issuer string) store.TrustPolicy {
	return store.TrustPolicy{Name: name, Kind: store.TrustJWT, Issuer: issuer, Discovery: true, Algorithms: []string{"RS256", "ES256"},
		Audience: "https://auth.example", MaxTokenAge: 10 * time.Minute, MaxTokenLifetime: time.Hour, SingleUse: true,
		Version: 1, CreatedAt: t0, UpdatedAt: t0}
}

func testTrustPolicies(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	a := trustPolicy("a", "https://a.example")
	b := trustPolicy("b", "spiffe://example.org")
	b.Kind, b.Discovery, b.JWKS, b.RequireJTI = store.TrustSPIFFE, false, []byte(`{"keys":[]}`), true
	for _, p := range []store.TrustPolicy{b, a} {
		if err := s.CreateTrustPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateTrustPolicy(ctx, trustPolicy("a", "https://other.example")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("name taken: %v", err)
	}
	if err := s.CreateTrustPolicy(ctx, trustPolicy("c", "https://a.example")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("issuer taken: %v", err)
	}
	got, err := s.GetTrustPolicy(ctx, "b")
	if err != nil || !cmp.Equal(got, b) {
		t.Fatalf("get: %v\n%s", err, cmp.Diff(b, got))
	}
	list, err := s.ListTrustPolicies(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "a" {
		t.Fatalf("list: %+v %v", list, err)
	}
	up, err := s.UpdateTrustPolicy(ctx, "a", func(p *store.TrustPolicy) error {
		p.MaxTokenAge, p.Discovery, p.JWKSURI = time.Minute, false, "https://a.example/keys"
		return nil
	})
	if err != nil || up.Version != 2 || up.MaxTokenAge != time.Minute {
		t.Fatalf("update: %+v %v", up, err)
	}
	if got, _ := s.GetTrustPolicy(ctx, "a"); got.JWKSURI != "https://a.example/keys" || got.Discovery || got.Version != 2 {
		t.Errorf("after update: %+v", got)
	}
	if _, err := s.UpdateTrustPolicy(ctx, "a", func(p *store.TrustPolicy) error { p.Kind = store.TrustSPIFFE; return nil }); !errors.Is(err, store.ErrConflict) {
		t.Errorf("kind change: %v", err)
	}
	if _, err := s.GetTrustPolicy(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	if err := s.DeleteTrustPolicy(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete missing: %v", err)
	}
	// A binding left naming a policy that is gone (bound while it was
	// deleted) keeps its name from being given to another issuer.
	stale := client("m2mc_stale")
	stale.Federation = []store.FederatedIdentity{{Policy: "gone", Subject: "x"}}
	if err := s.CreateClient(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTrustPolicy(ctx, trustPolicy("gone", "https://new.example")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a policy named as a stale binding: %v, want ErrConflict", err)
	}
}

// Of many concurrent uses of one assertion id, across connections,
// exactly one is fresh.
func testAssertionIDs(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	const n = 8
	fresh, s := race(t, open, n, func(s store.Store, _ int) (bool, error) {
		return s.UseAssertionID(ctx, "k1", t0.Add(time.Minute))
	})
	if fresh != 1 {
		t.Fatalf("%d of %d concurrent uses fresh, want 1", fresh, n)
	}
	if ok, err := s.UseAssertionID(ctx, "k2", t0.Add(2*time.Minute)); !ok || err != nil {
		t.Fatalf("k2 not fresh: %v", err)
	}
	if ok, err := s.UseAssertionID(ctx, "k2", t0.Add(2*time.Minute)); ok || err != nil {
		t.Errorf("k2 fresh twice: %v", err)
	}
	// (DeleteExpiredAssertionIDs: see testExpiredAcrossEnvironments.)
}

func testTokenUsage(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	h0, h1 := t0.Truncate(time.Hour), t0.Truncate(time.Hour).Add(time.Hour)
	// Replicas add concurrently to the same rows, each batch in its own
	// order: nothing is lost and nobody deadlocks.
	const n = 6
	_, s := race(t, open, n, func(s store.Store, i int) (bool, error) {
		batch := []store.UsageCount{{ClientID: "a", Hour: h0, Tokens: int64(i + 1)}, {ClientID: "b", Hour: h1, Tokens: 1}}
		if i%2 == 1 {
			batch[0], batch[1] = batch[1], batch[0]
		}
		return true, s.AddTokenUsage(ctx, batch)
	})
	if err := s.AddTokenUsage(ctx, []store.UsageCount{{ClientID: "a", Hour: h1, Tokens: 5}, {ClientID: "c", Hour: h0, Tokens: 2}}); err != nil {
		t.Fatal(err)
	}
	// More rows than one upsert writes.
	var many []store.UsageCount
	for i := range 1200 {
		many = append(many, store.UsageCount{ClientID: fmt.Sprintf("m%04d", i), Hour: h0, Tokens: 1})
	}
	if err := s.AddTokenUsage(ctx, many); err != nil {
		t.Fatal(err)
	}
	got, err := s.TokenUsage(ctx, h0, []string{"a", "b", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.UsageCount{{ClientID: "a", Hour: h0, Tokens: 21}, {ClientID: "a", Hour: h1, Tokens: 5}, {ClientID: "b", Hour: h1, Tokens: n}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("usage (-want +got):\n%s", diff)
	}
	byHour, err := s.TokenUsageByHour(ctx, h0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.UsageCount{{Hour: h0, Tokens: 21 + 2 + 1200}, {Hour: h1, Tokens: 5 + n}}, byHour); diff != "" {
		t.Fatalf("by hour (-want +got):\n%s", diff)
	}
	top, err := s.TopTokenClients(ctx, h0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.UsageCount{{ClientID: "a", Tokens: 26}, {ClientID: "b", Tokens: n}, {ClientID: "c", Tokens: 2}}, top); diff != "" {
		t.Fatalf("top (-want +got):\n%s", diff)
	}
	if got, _ := s.TokenUsage(ctx, h1, []string{"a", "b"}); len(got) != 2 {
		t.Fatalf("since h1: %v", got)
	}
	if got, err := s.TokenUsage(ctx, h0, nil); len(got) != 0 || err != nil {
		t.Fatalf("no clients: %v %v", got, err)
	}
	// (DeleteTokenUsage: see testExpiredAcrossEnvironments.)
}

func testConsoleSessions(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	const idle = 30 * time.Minute
	cs := store.ConsoleSession{IDHash: u("h1"), ClientID: "admin", CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(8 * time.Hour), Viewing: "staging"}
	if err := s.CreateConsoleSession(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateConsoleSession(ctx, cs); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same id twice: %v, want ErrConflict", err)
	}
	got, err := s.GetConsoleSession(ctx, u("h1"), t0.Add(time.Minute), idle)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cs, got); diff != "" {
		t.Fatalf("session (-want +got):\n%s", diff)
	}
	// The environment it views changes (a switch in the console).
	if err := s.SetConsoleSessionViewing(ctx, u("h1"), ""); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetConsoleSession(ctx, u("h1"), t0.Add(time.Minute), idle); err != nil || got.Viewing != "" {
		t.Fatalf("after switching back: %+v %v", got, err)
	}
	if err := s.SetConsoleSessionViewing(ctx, "nope", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("switching an unknown session: %v, want ErrNotFound", err)
	}
	// Idle expiry counts from the last touch; a touch never moves back.
	if _, err := s.GetConsoleSession(ctx, u("h1"), t0.Add(idle), idle); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("idle session: %v, want ErrNotFound", err)
	}
	if err := s.TouchConsoleSession(ctx, u("h1"), t0.Add(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchConsoleSession(ctx, u("h1"), t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetConsoleSession(ctx, u("h1"), t0.Add(idle+10*time.Minute), idle); err != nil || !got.LastSeenAt.Equal(t0.Add(20*time.Minute)) {
		t.Fatalf("touched session: %v %v", got, err)
	}
	// Absolute expiry holds however recently it was used.
	if err := s.TouchConsoleSession(ctx, u("h1"), t0.Add(8*time.Hour-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetConsoleSession(ctx, u("h1"), t0.Add(8*time.Hour), idle); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("past absolute expiry: %v, want ErrNotFound", err)
	}
	// Sign-out, and collection of expired sessions.
	cs2 := store.ConsoleSession{IDHash: u("h2"), ClientID: "admin", CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(time.Hour)}
	cs3 := store.ConsoleSession{IDHash: u("h3"), ClientID: "admin", CreatedAt: t0, LastSeenAt: t0.Add(8*time.Hour - 10*time.Minute), ExpiresAt: t0.Add(9 * time.Hour)}
	for _, c := range []store.ConsoleSession{cs2, cs3} {
		if err := s.CreateConsoleSession(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteConsoleSession(ctx, u("h2")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteConsoleSession(ctx, u("h2")); err != nil {
		t.Fatalf("second sign-out: %v", err)
	}
	if _, err := s.GetConsoleSession(ctx, u("h2"), t0, idle); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("signed-out session: %v", err)
	}
	if _, err := s.GetConsoleSession(ctx, u("h3"), t0.Add(8*time.Hour), idle); err != nil {
		t.Fatalf("live session: %v", err)
	}
	// (DeleteExpiredConsoleSessions: see testExpiredAcrossEnvironments.)
}

func testConsoleLinks(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	if err := s.CreateConsoleLink(ctx, u("l1"), "admin", "staging", t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Of concurrent uses (replicas), exactly one signs in.
	const n = 8
	wins, s := race(t, open, n, func(s store.Store, _ int) (bool, error) {
		id, viewing, err := s.UseConsoleLink(ctx, u("l1"), t0)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err == nil && viewing != "staging" {
			t.Errorf("the link views %q, want staging", viewing)
		}
		return id == "admin", err
	})
	if wins != 1 {
		t.Fatalf("%d of %d concurrent uses signed in, want 1", wins, n)
	}
	if err := s.CreateConsoleLink(ctx, u("l2"), "admin", "", t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.UseConsoleLink(ctx, u("l2"), t0.Add(5*time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired link: %v, want ErrNotFound", err)
	}
	if _, _, err := s.UseConsoleLink(ctx, u("nope"), t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown link: %v, want ErrNotFound", err)
	}
	if _, _, err := s.UseConsoleLink(ctx, u("l1"), t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a spent link: %v, want ErrNotFound", err)
	}
	// (DeleteExpiredConsoleLinks: see testExpiredAcrossEnvironments.)
}

func testCountsAndExpiringSecrets(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	if err := s.CreateAPI(ctx, api("https://a.example", "r")); err != nil {
		t.Fatal(err)
	}
	// client(id) has one secret expiring at t0+1h.
	soon := client("soon")
	later := client("later")
	later.Secrets[0].ExpiresAt = t0.Add(40 * 24 * time.Hour)
	never := client("never")
	never.Secrets[0].ExpiresAt = time.Time{}
	// Rotated: the old secret expires soon, the new one never: not listed.
	rotated := client("rotated")
	rotated.Secrets = append(rotated.Secrets, store.Secret{ID: u("sec_rotated2"), Hash: "hmac-sha256$def", Hint: "m2ms_cd", CreatedAt: t0})
	// Two secrets both expiring in the window: listed once, at the later.
	two := client("two")
	two.Secrets = append(two.Secrets, store.Secret{ID: u("sec_two2"), Hash: "hmac-sha256$ghi", Hint: "m2ms_ef", CreatedAt: t0, ExpiresAt: t0.Add(3 * time.Hour)})
	expired := client("expired")
	expired.Secrets[0].ExpiresAt = t0.Add(-time.Hour)
	expired.Disabled = true
	for _, c := range []store.Client{soon, later, never, rotated, two, expired} {
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts != (store.Counts{APIs: 1, Clients: 6, DisabledClients: 1}) {
		t.Errorf("counts %+v", counts)
	}
	got, err := s.ExpiringSecrets(ctx, t0, t0.Add(30*24*time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SecretExpiry{
		{ClientID: "soon", ClientName: "client soon", ExpiresAt: t0.Add(time.Hour)},
		{ClientID: "two", ClientName: "client two", ExpiresAt: t0.Add(3 * time.Hour)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("expiring (-want +got):\n%s", diff)
	}
	if got, _ := s.ExpiringSecrets(ctx, t0.Add(-2*time.Hour), t0.Add(30*24*time.Hour), 1); len(got) != 1 || got[0].ClientID != "expired" {
		t.Fatalf("with the recently expired, limit 1: %+v", got)
	}
}

// OldestSecrets gives each client's oldest live secret, oldest first, and
// passes over expired secrets (and clients with nothing else).
func testOldestSecrets(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	u := uniq(s)
	if got, err := s.OldestSecrets(ctx, t0, 10); err != nil || len(got) != 0 {
		t.Fatalf("no clients: %+v %v", got, err)
	}
	old := client("old")
	old.Secrets[0].CreatedAt = t0.Add(-72 * time.Hour)
	old.Secrets[0].ExpiresAt = time.Time{}
	// Two secrets: the older one counts.
	two := client("two")
	two.Secrets[0].CreatedAt = t0.Add(-time.Hour)
	two.Secrets = append(two.Secrets, store.Secret{ID: u("sec_two_b"), Hash: "hmac-sha256$def", Hint: "m2ms_cd", CreatedAt: t0.Add(-48 * time.Hour), ExpiresAt: t0.Add(time.Hour)})
	// An expired secret is not live: the newer one counts.
	rotated := client("rotated")
	rotated.Secrets[0].CreatedAt = t0.Add(-100 * time.Hour)
	rotated.Secrets[0].ExpiresAt = t0.Add(-time.Minute)
	rotated.Secrets = append(rotated.Secrets, store.Secret{ID: u("sec_rotated_b"), Hash: "hmac-sha256$ghi", Hint: "m2ms_ef", CreatedAt: t0.Add(-2 * time.Hour)})
	expired := client("expired")
	expired.Secrets[0].ExpiresAt = t0
	noSecret := client("nosecret")
	noSecret.Secrets = nil
	for _, c := range []store.Client{old, two, rotated, expired, noSecret} {
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.OldestSecrets(ctx, t0, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SecretAge{
		{ClientID: "old", CreatedAt: t0.Add(-72 * time.Hour)},
		{ClientID: "two", CreatedAt: t0.Add(-48 * time.Hour)},
		{ClientID: "rotated", CreatedAt: t0.Add(-2 * time.Hour)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("oldest secrets (-want +got):\n%s", diff)
	}
	if got, err := s.OldestSecrets(ctx, t0, 2); err != nil || len(got) != 2 || got[1].ClientID != "two" {
		t.Fatalf("limit 2: %+v %v", got, err)
	}
}

// A lookup by a value no database can hold as text (invalid UTF-8, NUL:
// PostgreSQL refuses them) finds nothing, as on any other backend: it is
// not a failure of the database.
func testLookupsByInvalidText(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	if err := s.CreateAPI(ctx, api("https://a.example", "r")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateClient(ctx, client("c1")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"\xff", "a\x00b", "\xc3("} {
		if _, err := s.GetClient(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetClient(%q): %v, want ErrNotFound", bad, err)
		}
		if _, err := s.GetAPI(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetAPI(%q): %v, want ErrNotFound", bad, err)
		}
		for _, opts := range []store.ListOptions{{NameContains: bad}, {After: bad}} {
			if cs, err := s.ListClients(ctx, opts); err != nil || (opts.NameContains != "" && len(cs) != 0) {
				t.Errorf("ListClients(%#v): %d clients, %v", opts, len(cs), err)
			}
			if as, err := s.ListAPIs(ctx, opts); err != nil || (opts.NameContains != "" && len(as) != 0) {
				t.Errorf("ListAPIs(%#v): %d APIs, %v", opts, len(as), err)
			}
		}
	}
}

func testGrantHolderIDs(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	for _, a := range []store.API{api("https://a.example", "r"), api("https://b.example", "r")} {
		if err := s.CreateAPI(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []store.Client{
		client("c2", store.Grant{Audience: "https://a.example", Scopes: []string{"r"}}),
		client("c1", store.Grant{Audience: "https://a.example", Scopes: []string{}}, store.Grant{Audience: "https://b.example", Scopes: []string{"r"}}),
		client("c3", store.Grant{Audience: "https://b.example", Scopes: []string{"r"}}),
		client("c4"),
	} {
		if err := s.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for aud, want := range map[string][]string{
		"https://a.example": {"c1", "c2"}, "https://b.example": {"c1", "c3"}, "https://none.example": nil, "\xff": nil,
	} {
		var got []string
		if err := s.GrantHolderIDs(ctx, aud, func(id string) { got = append(got, id) }); err != nil || !slices.Equal(got, want) {
			t.Errorf("GrantHolderIDs(%q) = %v, %v; want %v", aud, got, err, want)
		}
	}
}
