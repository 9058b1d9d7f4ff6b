package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
	"github.com/m2mauth/m2mauth/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() store.Store {
		dsn := pgtest.DSN(t)
		return func() store.Store {
			s, err := postgres.Open(context.Background(), dsn)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}

// Several replicas starting at once on an empty database each run the
// migrations; every migration must be applied exactly once.
func TestConcurrentMigrate(t *testing.T) {
	dsn := pgtest.DSN(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := postgres.Open(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent open: %v", err)
		}
	}
}

// Signing key changes are serialised per environment: while one holds the
// default environment's keys lock, another environment's keys change at
// once, and the default environment's wait.
func TestKeysLockPerEnvironment(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.CreateEnvironment(ctx, store.Environment{Name: "other", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	insert := func(kid string) func([]store.SigningKey, func(string) string) (store.KeyUpdate, error) {
		return func([]store.SigningKey, func(string) string) (store.KeyUpdate, error) {
			return store.KeyUpdate{Insert: []store.SigningKey{{KID: kid, Alg: "ES256", State: store.KeyNext, Private: []byte{1},
				PublicJWK: []byte(`{}`), MasterKeyID: "mk", CreatedAt: now}}}, nil
		}
	}
	entered, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- s.UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
			close(entered)
			<-release
			return insert("held")(keys, meta)
		})
	}()
	<-entered
	// A deadline, so that a lock shared by environments fails the test
	// instead of hanging it.
	bounded, cancelOther := context.WithTimeout(ctx, 10*time.Second)
	defer cancelOther()
	if err := s.InEnv("other").UpdateSigningKeys(bounded, insert("other")); err != nil {
		t.Errorf("another environment's keys while the default environment's are locked: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := s.UpdateSigningKeys(short, insert("waiting")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the same environment's keys while locked: %v, want to wait until the deadline", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for env, want := range map[string]string{store.DefaultEnv: "held", "other": "other"} {
		keys, err := s.InEnv(env).ListSigningKeys(ctx)
		if err != nil || len(keys) != 1 || keys[0].KID != want {
			t.Errorf("keys of %s: %+v %v, want %s", env, keys, err, want)
		}
	}
}
