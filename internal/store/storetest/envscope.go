package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mauth/m2mauth/internal/store"
)

// twoEnvs returns the default environment's store and one scoped to a new
// environment of the same database.
func twoEnvs(t *testing.T, open func() store.Store) (def, other store.Store) {
	t.Helper()
	def = open()
	if err := def.CreateEnvironment(context.Background(), store.Environment{Name: "other", CreatedAt: t0, UpdatedAt: t0}); err != nil {
		t.Fatalf("CreateEnvironment: %v", err)
	}
	return def, def.InEnv("other")
}

// APIs are per environment: the same id and identifier (and a built-in
// API each) live in two environments, and changing or deleting one in
// one environment leaves the other's API and the grants for it alone.
func testEnvAPIs(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	def, other := twoEnvs(t, open)
	a := api("https://orders.example", "r", "w")
	a.Builtin = "admin"
	b := a
	b.Name = "theirs"
	if err := def.CreateAPI(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := other.CreateAPI(ctx, b); err != nil {
		t.Fatalf("the same API in another environment: %v", err)
	}
	if err := other.CreateAPI(ctx, b); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate in the other environment: %v, want ErrConflict", err)
	}
	only := api("https://only.example", "r")
	only.ID = "api_only"
	if err := other.CreateAPI(ctx, only); err != nil {
		t.Fatal(err)
	}
	if _, err := def.GetAPI(ctx, only.Identifier); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another environment's API: %v, want ErrNotFound", err)
	}
	if got, err := other.GetAPI(ctx, a.Identifier); err != nil || got.Name != "theirs" {
		t.Errorf("get in the other environment: %+v %v", got, err)
	}
	for _, tc := range []struct {
		name string
		s    store.Store
		want []string
	}{{"default", def, []string{a.Identifier}}, {"other", other, []string{only.Identifier, a.Identifier}}} {
		list, err := tc.s.ListAPIs(ctx, store.ListOptions{})
		var ids []string
		for _, x := range list {
			ids = append(ids, x.Identifier)
		}
		if err != nil || !cmp.Equal(ids, tc.want) {
			t.Errorf("ListAPIs in %s: %v %v, want %v", tc.name, ids, err, tc.want)
		}
	}

	// A client of the default environment holds a grant for its API.
	c := client("m2mc_env", store.Grant{Audience: a.Identifier, Scopes: []string{"r", "w"}})
	c.DefaultAudience = a.Identifier
	if err := def.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := other.UpdateAPI(ctx, a.Identifier, t0, func(x *store.API) error { x.Scopes = []string{"r"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := def.GetAPI(ctx, a.Identifier); got.Version != 1 || len(got.Scopes) != 2 {
		t.Errorf("the default environment's API changed: %+v", got)
	}
	if err := other.DeleteAPI(ctx, only.Identifier, true, t0); err != nil {
		t.Fatal(err)
	}
	got, err := def.GetClient(ctx, c.ID)
	if err != nil || got.Version != 1 || !got.TokensRevokedBefore.IsZero() || got.DefaultAudience != a.Identifier ||
		len(got.Grants) != 1 || !cmp.Equal(got.Grants[0].Scopes, []string{"r", "w"}) {
		t.Errorf("another environment's API changes touched the client: %+v %v", got, err)
	}
	if _, err := def.GetAPI(ctx, a.Identifier); err != nil {
		t.Errorf("the default environment's API: %v", err)
	}
}

// Trust policies are per environment, names and issuers alike; assertion
// ids are single-use per environment, and their clean-up covers every
// environment.
func testEnvTrust(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	def, other := twoEnvs(t, open)
	p := trustPolicy("p", "https://idp.example")
	if err := def.CreateTrustPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := other.CreateTrustPolicy(ctx, p); err != nil {
		t.Fatalf("the same policy in another environment: %v", err)
	}
	if _, err := other.UpdateTrustPolicy(ctx, "p", func(x *store.TrustPolicy) error { x.Description = "theirs"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := def.GetTrustPolicy(ctx, "p"); err != nil || got.Version != 1 || got.Description != "" {
		t.Errorf("the default environment's policy: %+v %v", got, err)
	}
	if err := other.DeleteTrustPolicy(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if list, err := def.ListTrustPolicies(ctx); err != nil || len(list) != 1 {
		t.Errorf("the default environment's policies: %+v %v", list, err)
	}
	if list, err := other.ListTrustPolicies(ctx); err != nil || len(list) != 0 {
		t.Errorf("the other environment's policies: %+v %v", list, err)
	}
	if _, err := other.GetTrustPolicy(ctx, "p"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted policy: %v", err)
	}

	for _, s := range []store.Store{def, other} {
		if ok, err := s.UseAssertionID(ctx, "jti", t0.Add(time.Minute)); !ok || err != nil {
			t.Fatalf("first use in %s: %v %v", s.Env(), ok, err)
		}
		if ok, err := s.UseAssertionID(ctx, "jti", t0.Add(time.Minute)); ok || err != nil {
			t.Fatalf("second use in %s: %v %v", s.Env(), ok, err)
		}
	}
	if n, err := def.DeleteExpiredAssertionIDs(ctx, t0.Add(2*time.Minute)); n != 2 || err != nil {
		t.Fatalf("clean-up: %d %v, want both environments' ids", n, err)
	}
}

// Signing keys are per environment: each has its own active key, and
// listing or updating keys sees the environment's only.
func testEnvSigningKeys(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	def, other := twoEnvs(t, open)
	kd, ko := key("kd", store.KeyActive, t0), key("ko", store.KeyActive, t0)
	if created, err := def.CreateSigningKey(ctx, kd); err != nil || !created {
		t.Fatalf("active key: %v %v", created, err)
	}
	if created, err := other.CreateSigningKey(ctx, ko); err != nil || !created {
		t.Fatalf("another environment's active key: %v %v", created, err)
	}
	err := other.UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
		if len(keys) != 1 || keys[0].KID != ko.KID {
			t.Errorf("keys seen by an update of the other environment: %+v", keys)
		}
		retired := keys[0]
		retired.State, retired.RetiredAt = store.KeyRetired, t0
		next := key("ko2", store.KeyActive, t0.Add(time.Second))
		return store.KeyUpdate{Update: []store.SigningKey{retired}, Insert: []store.SigningKey{next}, Delete: []string{kd.KID}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := def.ListSigningKeys(ctx); err != nil || !cmp.Equal(keys, []store.SigningKey{kd}) {
		t.Errorf("the default environment's keys: %+v %v", keys, err)
	}
	keys, err := other.ListSigningKeys(ctx)
	if err != nil || len(keys) != 2 || keys[0].KID != "ko2" || keys[1].KID != ko.KID || keys[1].State != store.KeyRetired {
		t.Errorf("the other environment's keys: %+v %v", keys, err)
	}
}
