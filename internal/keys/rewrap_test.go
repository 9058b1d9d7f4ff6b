package keys

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

// A rewrap re-seals the keys of every environment (and the deployment's
// secret hashing key once); when one environment holds a key it cannot
// open, it changes no environment.
func TestRewrapEnvironments(t *testing.T) {
	ctx := context.Background()
	clock := &simClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	policy := Policy{Alg: ES256, Prepublish: time.Minute, Retention: time.Hour}
	// setup makes a database with the environments named (the default one
	// too), each with an active key, "alpha" with a next one as well, and
	// the secret hashing key, all sealed under old.
	setup := func(t *testing.T, old *MasterKey, envs ...string) (store.Store, []byte) {
		t.Helper()
		st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		for _, name := range envs {
			if name != store.DefaultEnv {
				if err := st.CreateEnvironment(ctx, store.Environment{Name: name, CreatedAt: clock.t, UpdatedAt: clock.t}); err != nil {
					t.Fatal(err)
				}
			}
			m := NewManager(st.InEnv(name), old, policy, clock.now, discardLog())
			if err := m.Init(ctx); err != nil {
				t.Fatal(err)
			}
			if name == "alpha" {
				if _, err := m.Rotate(ctx, EdDSA); err != nil {
					t.Fatal(err)
				}
			}
		}
		hashKey, err := SecretHashKey(ctx, st, old)
		if err != nil {
			t.Fatal(err)
		}
		return st, hashKey
	}

	t.Run("every environment", func(t *testing.T) {
		old, next := mustMaster(t), mustMaster(t)
		envs := []string{"alpha", store.DefaultEnv, "zeta"}
		st, hashKey := setup(t, old, envs...)
		signers := map[string]string{}
		for _, name := range envs {
			m := NewManager(st.InEnv(name), old, policy, clock.now, discardLog())
			if err := m.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			signers[name] = m.Signer().KID()
		}
		res, err := Rewrap(ctx, st, old, next)
		if err != nil || res.Resealed != 5 || len(res.Dropped) != 0 {
			t.Fatalf("rewrap: %+v, %v; want 5 values (four keys in three environments, the hash key)", res, err)
		}
		if res, err := Rewrap(ctx, st, old, next); err != nil || res.Resealed != 0 {
			t.Fatalf("second rewrap: %+v, %v; want nothing left to do", res, err)
		}
		for _, name := range envs {
			m := NewManager(st.InEnv(name), next, policy, clock.now, discardLog())
			if err := m.Reload(ctx); err != nil || m.Signer().KID() != signers[name] {
				t.Errorf("%s with the new master key: %v", name, err)
			}
			rows, _ := st.InEnv(name).ListSigningKeys(ctx)
			for _, r := range rows {
				if r.MasterKeyID != next.ID() {
					t.Errorf("%s: key %s sealed under %s", name, r.KID, r.MasterKeyID)
				}
			}
		}
		if got, err := SecretHashKey(ctx, st, next); err != nil || string(got) != string(hashKey) {
			t.Errorf("secret hash key after rewrap: %v", err)
		}
	})

	t.Run("refused in one environment changes none", func(t *testing.T) {
		old, next, third := mustMaster(t), mustMaster(t), mustMaster(t)
		// "zeta" comes after the default environment: a rewrap that went
		// environment by environment would have changed the default one.
		st, _ := setup(t, old, store.DefaultEnv, "zeta")
		zeta := st.InEnv("zeta")
		kid := foreignNextKey(t, zeta, third, EdDSA, clock.t, clock.t)
		_ = zeta.UpdateSigningKeys(ctx, func(keys []store.SigningKey, _ func(string) string) (store.KeyUpdate, error) {
			for _, k := range keys {
				if k.KID == kid {
					k.State, k.RetiredAt, k.RemoveAt = store.KeyRetired, clock.t, clock.t.Add(time.Hour)
					return store.KeyUpdate{Update: []store.SigningKey{k}}, nil
				}
			}
			return store.KeyUpdate{}, nil
		})
		before := map[string][]store.SigningKey{}
		for _, name := range []string{store.DefaultEnv, "zeta"} {
			before[name], _ = st.InEnv(name).ListSigningKeys(ctx)
		}
		hashBefore, _ := st.GetMeta(ctx, secretHashKeyMeta)
		_, err := Rewrap(ctx, st, old, next)
		if err == nil || !strings.Contains(err.Error(), "environment zeta") || !strings.Contains(err.Error(), kid) || !strings.Contains(err.Error(), third.ID()) {
			t.Fatalf("rewrap: %v; want an error naming the environment, the key and its master key", err)
		}
		for name, keys := range before {
			if after, _ := st.InEnv(name).ListSigningKeys(ctx); !reflect.DeepEqual(keys, after) {
				t.Errorf("the refused rewrap changed the keys of %s", name)
			}
		}
		if after, _ := st.GetMeta(ctx, secretHashKeyMeta); after != hashBefore {
			t.Error("the refused rewrap changed the secret hash key")
		}
	})
}
