package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mauth/m2mauth/internal/store"
)

// The tests of this file create their environments themselves: each gets
// an opener of handles scoped to the default environment.

func testEnvScope(t *testing.T, open func() store.Store) {
	s := open()
	if got := s.Env(); got != store.DefaultEnv {
		t.Errorf("a new store's Env() = %q, want %q", got, store.DefaultEnv)
	}
	a := s.InEnv("a")
	if got := a.Env(); got != "a" {
		t.Errorf("InEnv(a).Env() = %q", got)
	}
	if got := a.InEnv("b").Env(); got != "b" {
		t.Errorf("InEnv(a).InEnv(b).Env() = %q", got)
	}
	if got := a.InEnv(store.DefaultEnv).Env(); got != store.DefaultEnv {
		t.Errorf("back to the default: %q", got)
	}
	if got := s.Env(); got != store.DefaultEnv {
		t.Errorf("InEnv changed its receiver: %q", got)
	}
}

func testEnvironments(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	def, err := s.GetEnvironment(ctx, store.DefaultEnv)
	if err != nil || def.Name != store.DefaultEnv || def.Version < 1 {
		t.Fatalf("the default environment: %+v, %v", def, err)
	}
	e := environment("prod")
	e.SigningAlg, e.KeyRotationPeriod, e.KeyWorkAt = "ES256", 30*24*time.Hour, t0.Add(time.Hour)
	if err := s.CreateEnvironment(ctx, e); err != nil {
		t.Fatalf("CreateEnvironment: %v", err)
	}
	if err := s.CreateEnvironment(ctx, e); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a name taken: %v, want ErrConflict", err)
	}
	if err := s.CreateEnvironment(ctx, environment(store.DefaultEnv)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("the default's name: %v, want ErrConflict", err)
	}
	got, err := s.GetEnvironment(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("GetEnvironment (-want +got):\n%s", diff)
	}
	// Environments belong to the deployment: a store scoped to any reads them.
	if got, err := s.InEnv("prod").GetEnvironment(ctx, store.DefaultEnv); err != nil || got.Name != store.DefaultEnv {
		t.Errorf("the default read from prod: %+v %v", got, err)
	}
	for _, name := range []string{"missing", "\xff", "a\x00b"} {
		if _, err := s.GetEnvironment(ctx, name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetEnvironment(%q): %v, want ErrNotFound", name, err)
		}
	}

	t1 := t0.Add(time.Minute)
	up, err := s.UpdateEnvironment(ctx, "prod", func(e *store.Environment) error {
		if e.Version != 1 || e.SigningAlg != "ES256" {
			t.Errorf("fn sees %+v", e)
		}
		e.DisplayName, e.SigningAlg, e.KeyRotationPeriod, e.KeyWorkAt, e.UpdatedAt = "Production", "RS256", 0, t0.Add(2*time.Hour), t1
		e.Version = 99 // ignored: the store increments it
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateEnvironment: %v", err)
	}
	want := e
	want.DisplayName, want.SigningAlg, want.KeyRotationPeriod, want.KeyWorkAt, want.UpdatedAt, want.Version = "Production", "RS256", 0, t0.Add(2*time.Hour), t1, 2
	if diff := cmp.Diff(want, up); diff != "" {
		t.Errorf("UpdateEnvironment returned (-want +got):\n%s", diff)
	}
	if got, _ := s.GetEnvironment(ctx, "prod"); !cmp.Equal(got, want) {
		t.Errorf("after update (-want +got):\n%s", cmp.Diff(want, got))
	}
	boom := errors.New("boom")
	if _, err := s.UpdateEnvironment(ctx, "prod", func(e *store.Environment) error { e.DisplayName = "lost"; return boom }); !errors.Is(err, boom) {
		t.Errorf("fn error: %v", err)
	}
	if _, err := s.UpdateEnvironment(ctx, "prod", func(e *store.Environment) error { e.Name = "other"; return nil }); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a name change: %v, want ErrConflict", err)
	}
	if got, _ := s.GetEnvironment(ctx, "prod"); !cmp.Equal(got, want) {
		t.Errorf("an aborted update was applied (-want +got):\n%s", cmp.Diff(want, got))
	}
	if _, err := s.GetEnvironment(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("renamed environment: %v", err)
	}
	if _, err := s.UpdateEnvironment(ctx, "missing", func(*store.Environment) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of a missing environment: %v, want ErrNotFound", err)
	}
	// The version counts every update.
	up, err = s.UpdateEnvironment(ctx, "prod", func(e *store.Environment) error { return nil })
	if err != nil || up.Version != 3 {
		t.Errorf("second update: version %d, %v; want 3", up.Version, err)
	}
}

func testEnvironmentsPaging(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	for name, display := range map[string]string{
		"dev": "Development", "prod": "Production", "staging": "Pre-production", "qa-east": "QA East", "test": "Tests",
	} {
		e := environment(name)
		e.DisplayName = display
		if err := s.CreateEnvironment(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		opts store.ListOptions
		want []string
	}{
		{"all, by name", store.ListOptions{}, []string{"default", "dev", "prod", "qa-east", "staging", "test"}},
		{"first page", store.ListOptions{Limit: 2}, []string{"default", "dev"}},
		{"second page", store.ListOptions{Limit: 2, After: "dev"}, []string{"prod", "qa-east"}},
		{"last page", store.ListOptions{Limit: 2, After: "qa-east"}, []string{"staging", "test"}},
		{"past the end", store.ListOptions{Limit: 2, After: "test"}, []string{}},
		{"name or display name, any case", store.ListOptions{NameContains: "PROD"}, []string{"prod", "staging"}},
		{"name only", store.ListOptions{NameContains: "east"}, []string{"qa-east"}},
		{"display name only", store.ListOptions{NameContains: "velop"}, []string{"dev"}},
		{"filtered and paged", store.ListOptions{NameContains: "prod", Limit: 1, After: "prod"}, []string{"staging"}},
		{"LIKE wildcards are literal", store.ListOptions{NameContains: "%"}, []string{}},
		{"LIKE wildcards are literal (_)", store.ListOptions{NameContains: "_"}, []string{}},
		{"invalid text", store.ListOptions{NameContains: "\xff"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListEnvironments(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			names := []string{}
			for _, e := range got {
				names = append(names, e.Name)
			}
			if diff := cmp.Diff(tc.want, names); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	got, err := s.ListEnvironments(ctx, store.ListOptions{NameContains: "tests"})
	if want := environment("test"); err != nil || len(got) != 1 || got[0].Name != "test" || got[0].DisplayName != "Tests" || got[0].Version != want.Version {
		t.Errorf("listed environments read whole: %+v %v", got, err)
	}
}

// Concurrent updates of one environment (several replicas) never lose
// each other's changes.
func testUpdateEnvironmentConcurrent(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	stores := []store.Store{open(), open(), open(), open()}
	if err := stores[0].CreateEnvironment(ctx, environment("e")); err != nil {
		t.Fatal(err)
	}
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := stores[i%len(stores)].UpdateEnvironment(ctx, "e", func(e *store.Environment) error {
				e.KeyRotationPeriod += time.Second
				return nil
			}); err != nil {
				t.Errorf("update %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	e, err := stores[0].GetEnvironment(ctx, "e")
	if err != nil || e.KeyRotationPeriod != n*time.Second || e.Version != n+1 {
		t.Errorf("after %d concurrent updates: rotation %v, version %d, %v; want %v and %d", n, e.KeyRotationPeriod, e.Version, err, n*time.Second, n+1)
	}
}

func testDeleteEnvironment(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	if err := s.CreateEnvironment(ctx, environment("gone")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateEnvironment(ctx, "gone", func(e *store.Environment) error { e.DisplayName = "Gone"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEnvironment(ctx, "gone", 1); !errors.Is(err, store.ErrConflict) {
		t.Errorf("delete at an old version: %v, want ErrConflict", err)
	}
	if _, err := s.GetEnvironment(ctx, "gone"); err != nil {
		t.Fatalf("deleted at an old version: %v", err)
	}
	if err := s.DeleteEnvironment(ctx, "gone", 2); err != nil {
		t.Fatalf("DeleteEnvironment: %v", err)
	}
	if _, err := s.GetEnvironment(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after delete: %v, want ErrNotFound", err)
	}
	if err := s.DeleteEnvironment(ctx, "gone", 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted twice: %v, want ErrNotFound", err)
	}
	if err := s.DeleteEnvironment(ctx, "never", 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete of a missing environment: %v, want ErrNotFound", err)
	}
	def, err := s.GetEnvironment(ctx, store.DefaultEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEnvironment(ctx, store.DefaultEnv, def.Version); !errors.Is(err, store.ErrConflict) {
		t.Errorf("delete of the default environment: %v, want ErrConflict", err)
	}
	if _, err := s.GetEnvironment(ctx, store.DefaultEnv); err != nil {
		t.Errorf("the default environment after a refused delete: %v", err)
	}
	if list, err := s.ListEnvironments(ctx, store.ListOptions{}); err != nil || len(list) != 1 || list[0].Name != store.DefaultEnv {
		t.Errorf("environments left: %+v %v", list, err)
	}
	// The name is free again.
	if err := s.CreateEnvironment(ctx, environment("gone")); err != nil {
		t.Errorf("re-create: %v", err)
	}
	if e, err := s.GetEnvironment(ctx, "gone"); err != nil || e.Version != 1 || e.DisplayName != "Environment gone" {
		t.Errorf("re-created: %+v %v", e, err)
	}
}

// envFixture is one of everything an environment holds, under the same
// ids in every environment (but for values the server generates at
// random, made unique with uniq).
type envFixture struct {
	s    store.Store
	u    func(string) string
	api  store.API
	c    store.Client // granted api, one secret, a refresh token
	fed  store.Client // bound to trust policy p
	tp   store.TrustPolicy
	rt   store.RefreshToken
	key  store.SigningKey
	rev  store.Revocation
	cs   store.ConsoleSession
	link string // a console link's hash, for client c, expiring at t0+1h
	h0   time.Time
	// How many clients and APIs there are (tests may add some).
	clients, apis int
}

const (
	fxAPI     = "https://a.example"
	fxDeleted = "c-deleted" // a deleted client: its tombstone
	fxAssert  = "assertion-1"
	fxJTI     = "j1"
	fxFamily  = "family-1"
	fxPolicy  = "p"
)

// fill creates one of everything in the environment of s.
func fill(t *testing.T, s store.Store) envFixture {
	t.Helper()
	ctx := context.Background()
	u := uniq(s)
	f := envFixture{s: s, u: u, h0: t0.Truncate(time.Hour)}
	f.api = api(fxAPI, "r", "w")
	f.c = client("c1", store.Grant{Audience: fxAPI, Scopes: []string{"r", "w"}})
	f.c.Secrets[0].ID = u("sec_c1")
	f.c.Grants[0].APITokenLifetime = f.api.TokenLifetime
	f.c.DefaultAudience = fxAPI
	f.clients, f.apis = 2, 1
	f.tp = trustPolicy(fxPolicy, "https://issuer.example")
	f.fed = client("fed")
	f.fed.AuthMethod, f.fed.Secrets = "federated", []store.Secret{}
	f.fed.Federation = []store.FederatedIdentity{{Policy: fxPolicy, Subject: "sub"}}
	f.rt = refreshToken(u("rt"), fxFamily, "c1", t0.Add(24*time.Hour))
	f.key = key(u("k"), store.KeyActive, t0)
	f.rev = store.Revocation{JTI: fxJTI, ClientID: "c1", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0}
	f.cs = store.ConsoleSession{IDHash: u("cs"), ClientID: "c1", CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(8 * time.Hour)}
	f.link = u("link")

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s in %s: %v", what, s.Env(), err)
		}
	}
	must("CreateAPI", s.CreateAPI(ctx, f.api))
	must("CreateClient", s.CreateClient(ctx, f.c))
	must("CreateTrustPolicy", s.CreateTrustPolicy(ctx, f.tp))
	must("CreateClient (federated)", s.CreateClient(ctx, f.fed))
	must("CreateClient (to delete)", s.CreateClient(ctx, client(fxDeleted)))
	must("DeleteClient", s.DeleteClient(ctx, fxDeleted, t0))
	must("CreateRefreshToken", s.CreateRefreshToken(ctx, f.rt))
	created, err := s.CreateSigningKey(ctx, f.key)
	must("CreateSigningKey", err)
	if !created {
		t.Fatalf("CreateSigningKey in %s: an active key exists", s.Env())
	}
	must("RevokeToken", s.RevokeToken(ctx, f.rev))
	fresh, err := s.UseAssertionID(ctx, fxAssert, t0.Add(time.Hour))
	must("UseAssertionID", err)
	if !fresh {
		t.Fatalf("UseAssertionID in %s: not fresh", s.Env())
	}
	must("AddTokenUsage", s.AddTokenUsage(ctx, []store.UsageCount{{ClientID: "c1", Hour: f.h0, Tokens: 7}}))
	must("CreateConsoleSession", s.CreateConsoleSession(ctx, f.cs))
	must("CreateConsoleLink", s.CreateConsoleLink(ctx, f.link, "c1", "", t0.Add(time.Hour)))
	return f
}

// present checks that everything fill made is there, unchanged (the link
// unspent, unless spent).
func (f envFixture) present(t *testing.T, spent bool) {
	t.Helper()
	ctx := context.Background()
	s, env := f.s, f.s.Env()
	if got, err := s.GetAPI(ctx, fxAPI); err != nil || !cmp.Equal(got, f.api) {
		t.Errorf("%s: API: %v\n%s", env, err, cmp.Diff(f.api, got))
	}
	if got, err := s.GetClient(ctx, "c1"); err != nil || !cmp.Equal(got, f.c) {
		t.Errorf("%s: client: %v\n%s", env, err, cmp.Diff(f.c, got))
	}
	if got, err := s.ListClients(ctx, store.ListOptions{}); err != nil || len(got) != f.clients {
		t.Errorf("%s: %d clients, %v; want %d", env, len(got), err, f.clients)
	}
	if err := s.CreateClient(ctx, client(fxDeleted)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("%s: the deleted client's id was reusable: %v", env, err)
	}
	if got, err := s.GetTrustPolicy(ctx, fxPolicy); err != nil || !cmp.Equal(got, f.tp) {
		t.Errorf("%s: trust policy: %v\n%s", env, err, cmp.Diff(f.tp, got))
	}
	if fed, err := s.FederatedIdentities(ctx); err != nil || len(fed) != 1 || !cmp.Equal(fed["fed"], f.fed.Federation) {
		t.Errorf("%s: federated identities %v, %v", env, fed, err)
	}
	if got, err := s.GetRefreshToken(ctx, f.rt.Hash); err != nil || !cmp.Equal(got, f.rt) {
		t.Errorf("%s: refresh token: %v\n%s", env, err, cmp.Diff(f.rt, got))
	}
	if keys, err := s.ListSigningKeys(ctx); err != nil || !cmp.Equal(keys, []store.SigningKey{f.key}) {
		t.Errorf("%s: signing keys: %v\n%s", env, err, cmp.Diff([]store.SigningKey{f.key}, keys))
	}
	if ok, err := s.IsRevoked(ctx, fxJTI); !ok || err != nil {
		t.Errorf("%s: revocation: %v %v", env, ok, err)
	}
	if list, err := s.ListRevocations(ctx, t0, nil, 0); err != nil || !cmp.Equal(list, []store.Revocation{f.rev}) {
		t.Errorf("%s: revocations: %v\n%s", env, err, cmp.Diff([]store.Revocation{f.rev}, list))
	}
	if fresh, err := s.UseAssertionID(ctx, fxAssert, t0.Add(time.Hour)); fresh || err != nil {
		t.Errorf("%s: the assertion id was fresh again: %v", env, err)
	}
	if got, err := s.TokenUsageByHour(ctx, f.h0); err != nil || !cmp.Equal(got, []store.UsageCount{{Hour: f.h0, Tokens: 7}}) {
		t.Errorf("%s: token usage %v, %v", env, got, err)
	}
	if got, err := s.GetConsoleSession(ctx, f.cs.IDHash, t0, time.Hour); err != nil || !cmp.Equal(got, f.cs) {
		t.Errorf("%s: console session: %v\n%s", env, err, cmp.Diff(f.cs, got))
	}
	if !spent {
		if id, _, err := s.UseConsoleLink(ctx, f.link, t0); err != nil || id != "c1" {
			t.Errorf("%s: console link: %q %v", env, id, err)
		}
	}
	if n, err := s.Counts(ctx); err != nil || n != (store.Counts{APIs: f.apis, Clients: f.clients}) {
		t.Errorf("%s: counts %+v %v", env, n, err)
	}
}

// empty checks that the environment of s holds nothing fill makes (s may
// be scoped to a missing environment).
func empty(t *testing.T, s store.Store, f envFixture) {
	t.Helper()
	ctx := context.Background()
	env := s.Env()
	if _, err := s.GetAPI(ctx, fxAPI); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: GetAPI: %v, want ErrNotFound", env, err)
	}
	if list, err := s.ListAPIs(ctx, store.ListOptions{}); err != nil || len(list) != 0 {
		t.Errorf("%s: ListAPIs: %d, %v", env, len(list), err)
	}
	for _, id := range []string{"c1", "fed", fxDeleted} {
		if _, err := s.GetClient(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: GetClient(%s): %v, want ErrNotFound", env, id, err)
		}
	}
	for _, opts := range []store.ListOptions{{}, {Audience: fxAPI}, {NameContains: "c1"}} {
		if list, err := s.ListClients(ctx, opts); err != nil || len(list) != 0 {
			t.Errorf("%s: ListClients(%+v): %d, %v", env, opts, len(list), err)
		}
	}
	var ids []string
	if err := s.ClientIDs(ctx, func(id string) { ids = append(ids, id) }); err != nil || len(ids) != 0 {
		t.Errorf("%s: ClientIDs: %v %v", env, ids, err)
	}
	ids = nil
	if err := s.GrantHolderIDs(ctx, fxAPI, func(id string) { ids = append(ids, id) }); err != nil || len(ids) != 0 {
		t.Errorf("%s: GrantHolderIDs: %v %v", env, ids, err)
	}
	if n, err := s.Counts(ctx); err != nil || n != (store.Counts{}) {
		t.Errorf("%s: Counts: %+v %v", env, n, err)
	}
	if list, err := s.ExpiringSecrets(ctx, t0.Add(-48*time.Hour), t0.Add(48*time.Hour), 10); err != nil || len(list) != 0 {
		t.Errorf("%s: ExpiringSecrets: %+v %v", env, list, err)
	}
	if fed, err := s.FederatedIdentities(ctx); err != nil || len(fed) != 0 {
		t.Errorf("%s: FederatedIdentities: %v %v", env, fed, err)
	}
	if _, err := s.GetTrustPolicy(ctx, fxPolicy); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: GetTrustPolicy: %v, want ErrNotFound", env, err)
	}
	if list, err := s.ListTrustPolicies(ctx); err != nil || len(list) != 0 {
		t.Errorf("%s: ListTrustPolicies: %d %v", env, len(list), err)
	}
	if _, err := s.GetRefreshToken(ctx, f.rt.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: GetRefreshToken: %v, want ErrNotFound", env, err)
	}
	if keys, err := s.ListSigningKeys(ctx); err != nil || len(keys) != 0 {
		t.Errorf("%s: ListSigningKeys: %d %v", env, len(keys), err)
	}
	if ok, err := s.IsRevoked(ctx, fxJTI); ok || err != nil {
		t.Errorf("%s: IsRevoked: %v %v", env, ok, err)
	}
	if list, err := s.ListRevocations(ctx, t0, nil, 0); err != nil || len(list) != 0 {
		t.Errorf("%s: ListRevocations: %v %v", env, list, err)
	}
	for _, q := range []func() ([]store.UsageCount, error){
		func() ([]store.UsageCount, error) { return s.TokenUsageByHour(ctx, f.h0) },
		func() ([]store.UsageCount, error) { return s.TopTokenClients(ctx, f.h0, 10) },
		func() ([]store.UsageCount, error) { return s.TokenUsage(ctx, f.h0, []string{"c1"}) },
	} {
		if got, err := q(); err != nil || len(got) != 0 {
			t.Errorf("%s: token usage: %v %v", env, got, err)
		}
	}
	if _, err := s.GetConsoleSession(ctx, f.cs.IDHash, t0, time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: GetConsoleSession: %v, want ErrNotFound", env, err)
	}
	if _, _, err := s.UseConsoleLink(ctx, f.link, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: UseConsoleLink: %v, want ErrNotFound", env, err)
	}
}

// Deleting an environment deletes everything in it; another environment
// with the same ids, and the default, keep all of theirs.
func testDeleteEnvironmentDeletesEverything(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	def := open()
	a, b := envsAB(t, def)
	fa, fb, fd := fill(t, a), fill(t, b), fill(t, def)
	e, err := def.GetEnvironment(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := def.DeleteEnvironment(ctx, "a", e.Version); err != nil {
		t.Fatalf("DeleteEnvironment: %v", err)
	}
	fb.present(t, false)
	fd.present(t, false)
	empty(t, a, fa)
	if err := a.CreateClient(ctx, client("c9")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a write to the deleted environment: %v, want ErrConflict", err)
	}
	// Re-created, the environment is empty: nothing was left behind under
	// its name (its assertion ids are fresh, its deleted ids free), and the
	// values unique across the database (secret ids, key ids, token and
	// session hashes) are free again.
	if err := def.CreateEnvironment(ctx, environment("a")); err != nil {
		t.Fatal(err)
	}
	empty(t, a, fa)
	// fill succeeds only if the assertion id is fresh, the deleted
	// client's id free and every value unique across the database free.
	fill(t, a).present(t, false)
}

func testKeyWorkDue(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	// The default environment's key work is due from the start (zero).
	for name, at := range map[string]time.Time{
		"e-late": t0.Add(time.Hour), "e-now": t0, "e-1h": t0.Add(-time.Hour), "e-2h-b": t0.Add(-2 * time.Hour), "e-2h-a": t0.Add(-2 * time.Hour),
	} {
		e := environment(name)
		e.KeyWorkAt = at
		if err := s.CreateEnvironment(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	due := func(now time.Time, limit int, want ...string) {
		t.Helper()
		got, err := s.KeyWorkDue(ctx, now, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 || len(want) != 0 {
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("KeyWorkDue(%v, %d) (-want +got):\n%s", now.Sub(t0), limit, diff)
			}
		}
	}
	due(t0, 10, "default", "e-2h-a", "e-2h-b", "e-1h", "e-now")
	due(t0, 3, "default", "e-2h-a", "e-2h-b")
	due(t0.Add(-3*time.Hour), 10, "default")
	if err := s.InEnv("e-2h-a").SetKeyWorkAt(ctx, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeyWorkAt(ctx, t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	due(t0, 10, "e-2h-b", "e-1h", "e-now")
	due(t0.Add(-3*time.Hour), 10)
	due(t0.Add(4*time.Hour), 10, "e-2h-b", "e-1h", "e-now", "e-late", "e-2h-a", "default")
	if e, err := s.GetEnvironment(ctx, "e-2h-a"); err != nil || !e.KeyWorkAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("after SetKeyWorkAt: %v %v", e.KeyWorkAt, err)
	}
	// A new environment (zero) is due at once.
	if err := s.CreateEnvironment(ctx, environment("new")); err != nil {
		t.Fatal(err)
	}
	due(t0, 1, "new")
}

// What is in one environment is not found, listed, counted, updated or
// deleted through another (nor through the default).
func testIsolation(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	def := open()
	a, b := envsAB(t, def)
	fa := fill(t, a)
	for _, other := range []store.Store{b, def} {
		env := other.Env()
		empty(t, other, fa)
		// Writes through the other environment miss.
		if _, err := other.UpdateAPI(ctx, fxAPI, t0, func(a *store.API) error { a.Scopes = nil; return nil }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: UpdateAPI: %v, want ErrNotFound", env, err)
		}
		for _, force := range []bool{false, true} {
			if err := other.DeleteAPI(ctx, fxAPI, force, t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: DeleteAPI(force %v): %v, want ErrNotFound", env, force, err)
			}
		}
		if _, err := other.UpdateClient(ctx, "c1", func(c *store.Client) error { c.Name = "x"; return nil }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: UpdateClient: %v, want ErrNotFound", env, err)
		}
		if err := other.DeleteClient(ctx, "c1", t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: DeleteClient: %v, want ErrNotFound", env, err)
		}
		if err := other.TouchSecrets(ctx, map[string]time.Time{fa.c.Secrets[0].ID: t0.Add(time.Hour)}); err != nil {
			t.Errorf("%s: TouchSecrets: %v", env, err)
		}
		if _, err := other.UpdateTrustPolicy(ctx, fxPolicy, func(p *store.TrustPolicy) error { p.Audience = "x"; return nil }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: UpdateTrustPolicy: %v, want ErrNotFound", env, err)
		}
		if err := other.DeleteTrustPolicy(ctx, fxPolicy); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: DeleteTrustPolicy: %v, want ErrNotFound", env, err)
		}
		if _, err := other.RedeemRefreshToken(ctx, fa.rt.Hash, t0, successor(uniq(other)("rt2"), t0)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: RedeemRefreshToken: %v, want ErrNotFound", env, err)
		}
		if err := other.RevokeRefreshFamily(ctx, fxFamily, t0); err != nil {
			t.Errorf("%s: RevokeRefreshFamily: %v", env, err)
		}
		if err := other.RevokeClientRefreshTokens(ctx, "c1", t0); err != nil {
			t.Errorf("%s: RevokeClientRefreshTokens: %v", env, err)
		}
		if err := other.TouchConsoleSession(ctx, fa.cs.IDHash, t0.Add(time.Hour)); err != nil {
			t.Errorf("%s: TouchConsoleSession: %v", env, err)
		}
		if err := other.DeleteConsoleSession(ctx, fa.cs.IDHash); err != nil {
			t.Errorf("%s: DeleteConsoleSession: %v", env, err)
		}
		if err := other.UpdateSigningKeys(ctx, func(keys []store.SigningKey, _ func(string) string) (store.KeyUpdate, error) {
			if len(keys) != 0 {
				t.Errorf("%s: UpdateSigningKeys sees %d keys", env, len(keys))
			}
			k := fa.key
			k.State = store.KeyRetired
			return store.KeyUpdate{Update: []store.SigningKey{k}, Delete: []string{fa.key.KID}}, nil
		}); err != nil {
			t.Errorf("%s: UpdateSigningKeys: %v", env, err)
		}
		// One active key per environment: the other may have its own.
		if created, err := other.CreateSigningKey(ctx, key(uniq(other)("k"), store.KeyActive, t0)); !created || err != nil {
			t.Errorf("%s: an active key beside another environment's: created %v, %v", env, created, err)
		}
		// The same assertion id is fresh in each environment.
		if fresh, err := other.UseAssertionID(ctx, fxAssert, t0.Add(time.Hour)); !fresh || err != nil {
			t.Errorf("%s: an assertion id used in a: fresh %v, %v", env, fresh, err)
		}
		// A grant names an API of its own environment.
		if err := other.CreateClient(ctx, client("c-grant", store.Grant{Audience: fxAPI, Scopes: []string{"r"}})); !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: a grant for an API of another environment: %v, want ErrConflict", env, err)
		}
	}
	// a's data is untouched, its link unspent.
	fa.present(t, false)
}

// Writes in one environment leave another's records of the same ids
// alone.
func testIsolationOfWrites(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	def := open()
	a, b := envsAB(t, def)
	fa, fb := fill(t, a), fill(t, b)
	// Clients of the same ids holding different grants: a's c2 holds r,
	// b's c2 w; a's c3 holds none, b's c3 r (and a secret that never
	// expires). b's cx holds a grant for b's API https://x; a's
	// https://x is not granted.
	c3b := client("c3", store.Grant{Audience: fxAPI, Scopes: []string{"r"}})
	c3b.Secrets[0].ExpiresAt = time.Time{}
	for _, x := range []struct {
		s store.Store
		c store.Client
	}{
		{a, client("c2", store.Grant{Audience: fxAPI, Scopes: []string{"r"}})},
		{a, client("c3")},
		{b, client("c2", store.Grant{Audience: fxAPI, Scopes: []string{"w"}})},
		{b, c3b},
		{b, client("cx", store.Grant{Audience: "https://x", Scopes: []string{"r"}})},
	} {
		if x.c.ID == "cx" {
			for _, s := range []store.Store{a, b} {
				if err := s.CreateAPI(ctx, api("https://x", "r")); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := x.s.CreateClient(ctx, x.c); err != nil {
			t.Fatal(err)
		}
	}
	fb.clients, fb.apis = fb.clients+3, fb.apis+1
	// Listings by grant and expiring secrets join on the environment.
	for _, x := range []struct {
		s                 store.Store
		holders, expiring []string
	}{
		{a, []string{"c1", "c2"}, []string{"c1", "c2", "c3"}},
		{b, []string{"c1", "c2", "c3"}, []string{"c1", "c2", "cx"}},
	} {
		env := x.s.Env()
		list, err := x.s.ListClients(ctx, store.ListOptions{Audience: fxAPI})
		var got []string
		for _, c := range list {
			got = append(got, c.ID)
		}
		if err != nil || !cmp.Equal(got, x.holders) {
			t.Errorf("%s: ListClients(audience): %v %v, want %v", env, got, err, x.holders)
		}
		got = nil
		if err := x.s.GrantHolderIDs(ctx, fxAPI, func(id string) { got = append(got, id) }); err != nil || !cmp.Equal(got, x.holders) {
			t.Errorf("%s: GrantHolderIDs: %v %v, want %v", env, got, err, x.holders)
		}
		exp, err := x.s.ExpiringSecrets(ctx, t0, t0.Add(2*time.Hour), 10)
		got = nil
		for _, e := range exp {
			got = append(got, e.ClientID)
		}
		if err != nil || !cmp.Equal(got, x.expiring) {
			t.Errorf("%s: ExpiringSecrets: %v %v, want %v", env, got, err, x.expiring)
		}
	}
	if err := a.DeleteAPI(ctx, "https://x", false, t0); err != nil {
		t.Errorf("an API granted only in another environment: %v", err)
	}
	if _, err := b.GetAPI(ctx, "https://x"); err != nil {
		t.Errorf("b's https://x after a's was deleted: %v", err)
	}
	// Versions count each environment's updates of its own client.
	for range 3 {
		if _, err := b.UpdateClient(ctx, "c3", func(*store.Client) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := a.UpdateClient(ctx, "c3", func(*store.Client) error { return nil }); err != nil || c.Version != 2 {
		t.Errorf("a's c3 after one update: version %d, %v; want 2", c.Version, err)
	}
	if c, err := b.UpdateClient(ctx, "c3", func(*store.Client) error { return nil }); err != nil || c.Version != 5 {
		t.Errorf("b's c3 after four updates: version %d, %v; want 5", c.Version, err)
	}
	// b's client "fed" is bound to b's policy p; a's policy p is not in
	// use in a once a's binding is gone.
	if err := a.DeleteClient(ctx, "fed", t0); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteTrustPolicy(ctx, fxPolicy); err != nil {
		t.Errorf("a policy bound only in another environment: %v", err)
	}
	if _, err := b.GetTrustPolicy(ctx, fxPolicy); err != nil {
		t.Errorf("b's policy after a's was deleted: %v", err)
	}
	if err := b.DeleteTrustPolicy(ctx, fxPolicy); !errors.Is(err, store.ErrConflict) {
		t.Errorf("b's policy, bound in b: %v, want ErrConflict", err)
	}
	// A scope removed from a's API is removed from a's grants only.
	cut := t0.Add(time.Minute)
	if _, err := a.UpdateAPI(ctx, fxAPI, cut, func(x *store.API) error { x.Scopes = []string{"r"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if c, _ := a.GetClient(ctx, "c1"); len(c.Grants) != 1 || !cmp.Equal(c.Grants[0].Scopes, []string{"r"}) || !c.TokensRevokedBefore.Equal(cut) {
		t.Errorf("a's client after a's API lost a scope: %+v", c)
	}
	if rt, _ := a.GetRefreshToken(ctx, fa.rt.Hash); rt.RevokedAt.IsZero() {
		t.Error("a's refresh token not revoked")
	}
	if c, _ := a.GetClient(ctx, "c2"); len(c.Grants) != 1 || !cmp.Equal(c.Grants[0].Scopes, []string{"r"}) || c.Version != 1 || !c.TokensRevokedBefore.IsZero() {
		t.Errorf("a's c2, which lost no scope (b's c2 did): %+v", c)
	}
	// Presenting a's revoked token revokes its family in a only.
	if _, err := a.RedeemRefreshToken(ctx, fa.rt.Hash, t0, successor(fa.u("rt2"), t0)); !errors.Is(err, store.ErrTokenSpent) {
		t.Errorf("a's revoked refresh token: %v, want ErrTokenSpent", err)
	}
	// Force-deleting a's API removes a's grants only.
	if err := a.DeleteAPI(ctx, fxAPI, true, cut); err != nil {
		t.Fatal(err)
	}
	if c, _ := a.GetClient(ctx, "c1"); len(c.Grants) != 0 || c.DefaultAudience != "" {
		t.Errorf("a's c1 after its API was deleted: %+v", c)
	}
	if c, _ := a.GetClient(ctx, "c3"); c.Version != 2 || !c.TokensRevokedBefore.IsZero() {
		t.Errorf("a's c3, which held no grant (b's c3 did): %+v", c)
	}
	// a's other writes.
	if _, err := a.UpdateClient(ctx, "c1", func(c *store.Client) error { c.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchSecrets(ctx, map[string]time.Time{fa.c.Secrets[0].ID: t0.Add(time.Hour), fb.c.Secrets[0].ID: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeRefreshFamily(ctx, fxFamily, cut); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeClientRefreshTokens(ctx, "c1", cut); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeToken(ctx, store.Revocation{JTI: "j2", ClientID: "c1", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := a.AddTokenUsage(ctx, []store.UsageCount{{ClientID: "c1", Hour: fa.h0, Tokens: 5}}); err != nil {
		t.Fatal(err)
	}
	if err := a.TouchConsoleSession(ctx, fa.cs.IDHash, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateSigningKeys(ctx, func(keys []store.SigningKey, _ func(string) string) (store.KeyUpdate, error) {
		return store.KeyUpdate{Delete: []string{fa.key.KID}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.UseConsoleLink(ctx, fa.link, t0); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateClient(ctx, client("t1")); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteClient(ctx, "t1", t0); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteClient(ctx, "c1", t0); err != nil {
		t.Fatal(err)
	}
	// b is as it was; a's deleted ids are free in b.
	fb.present(t, false)
	for id, scopes := range map[string][]string{"c2": {"w"}, "c3": {"r"}} {
		if c, _ := b.GetClient(ctx, id); len(c.Grants) != 1 || !cmp.Equal(c.Grants[0].Scopes, scopes) || !c.TokensRevokedBefore.IsZero() {
			t.Errorf("b's %s after a's changes: %+v", id, c)
		}
	}
	if err := b.CreateClient(ctx, client("t1")); err != nil {
		t.Errorf("an id deleted in another environment: %v", err)
	}
	if ok, _ := b.IsRevoked(ctx, "j2"); ok {
		t.Error("a's revocation seen in b")
	}
}

// Writes to an environment that does not exist fail with ErrConflict;
// reads find nothing.
func testMissingEnvironment(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	m := open().InEnv("nowhere")
	u := uniq(m)
	for name, write := range map[string]func() error{
		"CreateAPI":         func() error { return m.CreateAPI(ctx, api(fxAPI, "r")) },
		"CreateClient":      func() error { return m.CreateClient(ctx, client("c1")) },
		"CreateTrustPolicy": func() error { return m.CreateTrustPolicy(ctx, trustPolicy(fxPolicy, "https://issuer.example")) },
		"CreateSigningKey": func() error {
			created, err := m.CreateSigningKey(ctx, key(u("k"), store.KeyActive, t0))
			if created {
				t.Error("CreateSigningKey: created")
			}
			return err
		},
		"UpdateSigningKeys": func() error {
			return m.UpdateSigningKeys(ctx, func([]store.SigningKey, func(string) string) (store.KeyUpdate, error) {
				return store.KeyUpdate{Insert: []store.SigningKey{key(u("k2"), store.KeyNext, t0)}}, nil
			})
		},
		"RevokeToken": func() error {
			return m.RevokeToken(ctx, store.Revocation{JTI: fxJTI, ClientID: "c1", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0})
		},
		"UseAssertionID": func() error { _, err := m.UseAssertionID(ctx, fxAssert, t0.Add(time.Hour)); return err },
		"AddTokenUsage": func() error {
			return m.AddTokenUsage(ctx, []store.UsageCount{{ClientID: "c1", Hour: t0.Truncate(time.Hour), Tokens: 1}})
		},
		"CreateConsoleSession": func() error {
			return m.CreateConsoleSession(ctx, store.ConsoleSession{IDHash: u("cs"), ClientID: "c1", CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(time.Hour)})
		},
		"CreateConsoleLink": func() error { return m.CreateConsoleLink(ctx, u("link"), "c1", "", t0.Add(time.Hour)) },
	} {
		if err := write(); !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s in a missing environment: %v, want ErrConflict", name, err)
		}
	}
	empty(t, m, envFixture{rt: store.RefreshToken{Hash: u("rt")}, cs: store.ConsoleSession{IDHash: u("cs")}, link: u("link"), h0: t0.Truncate(time.Hour)})
	if _, err := m.GetEnvironment(ctx, m.Env()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetEnvironment: %v", err)
	}
}

// The clean-ups of expired records (deployment maintenance) collect them
// in every environment, whichever environment the store is scoped to, and
// keep what is live everywhere.
func testExpiredAcrossEnvironments(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	def := open()
	a, b := envsAB(t, def)
	envs := []store.Store{def, a, b}
	h0, h1 := t0.Truncate(time.Hour), t0.Truncate(time.Hour).Add(time.Hour)
	const idle = 30 * time.Minute
	for _, s := range envs {
		u := uniq(s)
		if err := s.CreateClient(ctx, client("c")); err != nil {
			t.Fatal(err)
		}
		for _, step := range []error{
			s.CreateRefreshToken(ctx, refreshToken(u("expired"), "f1", "c", t0.Add(time.Hour))),
			s.CreateRefreshToken(ctx, refreshToken(u("live"), "f2", "c", t0.Add(24*time.Hour))),
			s.RevokeToken(ctx, store.Revocation{JTI: "j1", ClientID: "c", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0}),
			s.RevokeToken(ctx, store.Revocation{JTI: "j2", ClientID: "c", ExpiresAt: t0.Add(2 * time.Hour), RevokedAt: t0}),
			// At t0+8h: h1 is past its absolute expiry, idle has been idle
			// too long, h3 lives.
			s.CreateConsoleSession(ctx, store.ConsoleSession{IDHash: u("h1"), ClientID: "c", CreatedAt: t0, LastSeenAt: t0.Add(8*time.Hour - time.Minute), ExpiresAt: t0.Add(8 * time.Hour)}),
			s.CreateConsoleSession(ctx, store.ConsoleSession{IDHash: u("idle"), ClientID: "c", CreatedAt: t0, LastSeenAt: t0.Add(8*time.Hour - idle), ExpiresAt: t0.Add(9 * time.Hour)}),
			s.CreateConsoleSession(ctx, store.ConsoleSession{IDHash: u("h3"), ClientID: "c", CreatedAt: t0, LastSeenAt: t0.Add(8*time.Hour - 10*time.Minute), ExpiresAt: t0.Add(9 * time.Hour)}),
			s.CreateConsoleLink(ctx, u("l-expired"), "c", "", t0.Add(time.Minute)),
			s.CreateConsoleLink(ctx, u("l-live"), "c", "", t0.Add(5*time.Minute)),
			s.AddTokenUsage(ctx, []store.UsageCount{{ClientID: "c", Hour: h0, Tokens: 1}, {ClientID: "c", Hour: h1, Tokens: 2}}),
		} {
			if step != nil {
				t.Fatalf("%s: %v", s.Env(), step)
			}
		}
		for _, k := range []struct {
			key string
			exp time.Time
		}{{"k1", t0.Add(time.Minute)}, {"k2", t0.Add(2 * time.Minute)}} {
			if fresh, err := s.UseAssertionID(ctx, k.key, k.exp); !fresh || err != nil {
				t.Fatalf("%s: %s fresh %v, %v", s.Env(), k.key, fresh, err)
			}
		}
	}
	// One clean-up of each kind, through one environment.
	gc := envs[1]
	for _, c := range []struct {
		name string
		run  func() (int, error)
		want int
	}{
		{"DeleteExpiredAssertionIDs", func() (int, error) { return gc.DeleteExpiredAssertionIDs(ctx, t0.Add(90*time.Second)) }, 3},
		{"DeleteExpiredRefreshTokens", func() (int, error) { return gc.DeleteExpiredRefreshTokens(ctx, t0.Add(2*time.Hour)) }, 3},
		{"DeleteExpiredRevocations", func() (int, error) { return gc.DeleteExpiredRevocations(ctx, t0.Add(90*time.Minute)) }, 3},
		{"DeleteExpiredConsoleSessions", func() (int, error) { return gc.DeleteExpiredConsoleSessions(ctx, t0.Add(8*time.Hour), idle) }, 6},
		{"DeleteExpiredConsoleLinks", func() (int, error) { return gc.DeleteExpiredConsoleLinks(ctx, t0.Add(2*time.Minute)) }, 3},
		{"DeleteTokenUsage", func() (int, error) { return gc.DeleteTokenUsage(ctx, h1) }, 3},
	} {
		if n, err := c.run(); n != c.want || err != nil {
			t.Errorf("%s: %d, %v; want %d (one per environment)", c.name, n, err, c.want)
		}
	}
	for _, s := range envs {
		u, env := uniq(s), s.Env()
		if fresh, _ := s.UseAssertionID(ctx, "k2", t0.Add(2*time.Minute)); fresh {
			t.Errorf("%s: a live assertion id was collected", env)
		}
		if fresh, _ := s.UseAssertionID(ctx, "k1", t0.Add(time.Minute)); !fresh {
			t.Errorf("%s: an expired assertion id was not collected", env)
		}
		if _, err := s.GetRefreshToken(ctx, u("expired")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: expired refresh token: %v, want ErrNotFound", env, err)
		}
		if _, err := s.GetRefreshToken(ctx, u("live")); err != nil {
			t.Errorf("%s: live refresh token: %v", env, err)
		}
		if ok, _ := s.IsRevoked(ctx, "j1"); ok {
			t.Errorf("%s: an expired revocation was not collected", env)
		}
		if ok, _ := s.IsRevoked(ctx, "j2"); !ok {
			t.Errorf("%s: a live revocation was collected", env)
		}
		for h, live := range map[string]bool{"h1": false, "idle": false, "h3": true} {
			// Read before the idle or absolute expiry: only what was
			// collected is missing.
			_, err := s.GetConsoleSession(ctx, u(h), t0, 24*time.Hour)
			if live != (err == nil) {
				t.Errorf("%s: console session %s: %v, live %v", env, h, err, live)
			}
		}
		if _, _, err := s.UseConsoleLink(ctx, u("l-live"), t0); err != nil {
			t.Errorf("%s: a live console link: %v", env, err)
		}
		want := []store.UsageCount{{ClientID: "c", Hour: h1, Tokens: 2}}
		if got, err := s.TokenUsage(ctx, h0, []string{"c"}); err != nil || !cmp.Equal(got, want) {
			t.Errorf("%s: token usage after the clean-up: %v %v; want %v", env, got, err, want)
		}
	}
}

// testRecordUsage: one call records secret last-use times and token counts
// of several environments, each in its own; a value without an
// environment is the store's.
func testRecordUsage(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	root := open()
	a, b := envsAB(t, root)
	ca, cb, cd := client("c1"), client("c1"), client("c1")
	for _, x := range []struct {
		s store.Store
		c store.Client
	}{{a, ca}, {b, cb}, {root, cd}} {
		if err := x.s.CreateClient(ctx, x.c); err != nil {
			t.Fatal(err)
		}
	}
	h := t0.Truncate(time.Hour)
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	uses := []store.SecretUse{
		{Env: "a", SecretID: ca.Secrets[0].ID, At: t1},
		{Env: "b", SecretID: cb.Secrets[0].ID, At: t2},
		// a's secret id named in b: nothing in b has it, so nothing changes.
		{Env: "b", SecretID: ca.Secrets[0].ID, At: t2},
		{SecretID: cd.Secrets[0].ID, At: t2}, // the store's (default)
	}
	counts := []store.UsageCount{
		{Env: "a", ClientID: "c1", Hour: h, Tokens: 3},
		{Env: "b", ClientID: "c1", Hour: h, Tokens: 5},
		{ClientID: "c1", Hour: h, Tokens: 7},
	}
	for range 2 { // counts add up; times never go back
		if err := root.RecordUsage(ctx, uses, counts); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []struct {
		s      store.Store
		used   time.Time
		tokens int64
	}{{a, t1, 6}, {b, t2, 10}, {root, t2, 14}} {
		c, err := x.s.GetClient(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if !c.Secrets[0].LastUsedAt.Equal(x.used) {
			t.Errorf("%s: last used %v, want %v", x.s.Env(), c.Secrets[0].LastUsedAt, x.used)
		}
		got, err := x.s.TokenUsage(ctx, h, []string{"c1"})
		if err != nil || len(got) != 1 || got[0].Tokens != x.tokens {
			t.Errorf("%s: token usage %+v %v, want %d", x.s.Env(), got, err, x.tokens)
		}
	}
	if err := root.RecordUsage(ctx, nil, nil); err != nil {
		t.Errorf("nothing to record: %v", err)
	}
	// A count of an environment deleted meanwhile is dropped, and the
	// rest is recorded (kept, it would fail every later flush).
	if err := root.RecordUsage(ctx, nil, []store.UsageCount{{Env: "gone", ClientID: "c1", Hour: h, Tokens: 1}, {Env: "a", ClientID: "c1", Hour: h, Tokens: 1}}); err != nil {
		t.Errorf("a count in a missing environment: %v", err)
	}
	if got, err := a.TokenUsage(ctx, h, []string{"c1"}); err != nil || len(got) != 1 || got[0].Tokens != 7 {
		t.Errorf("a's count beside a missing environment's: %+v %v, want 7", got, err)
	}
}

// envsAB creates the environments a and b in the database of def and
// returns def scoped to each.
func envsAB(t *testing.T, def store.Store) (a, b store.Store) {
	t.Helper()
	for _, name := range []string{"a", "b"} {
		if err := def.CreateEnvironment(context.Background(), environment(name)); err != nil {
			t.Fatal(err)
		}
	}
	return def.InEnv("a"), def.InEnv("b")
}
