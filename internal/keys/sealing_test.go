package keys

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

// countingStore counts the key transactions and tells whether one is
// running.
type countingStore struct {
	store.Store
	txs    atomic.Int64
	inTx   atomic.Bool
	writes atomic.Int64 // CreateSigningKey and EnsureMeta calls
}

func (c *countingStore) UpdateSigningKeys(ctx context.Context, fn func([]store.SigningKey, func(string) string) (store.KeyUpdate, error)) error {
	c.txs.Add(1)
	return c.Store.UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
		c.inTx.Store(true)
		defer c.inTx.Store(false)
		return fn(keys, meta)
	})
}

func (c *countingStore) CreateSigningKey(ctx context.Context, k store.SigningKey) (bool, error) {
	c.writes.Add(1)
	return c.Store.CreateSigningKey(ctx, k)
}

func (c *countingStore) EnsureMeta(ctx context.Context, key, value string) (string, error) {
	c.writes.Add(1)
	return c.Store.EnsureMeta(ctx, key, value)
}

func newCountingStore(t *testing.T) *countingStore {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &countingStore{Store: st}
}

// countGenerations makes m count the keys it generates, and those generated
// while a transaction of st runs.
func countGenerations(m *Manager, st *countingStore) (total, inTx *atomic.Int64) {
	total, inTx = new(atomic.Int64), new(atomic.Int64)
	m.generate = func(alg string) (crypto.Signer, error) {
		total.Add(1)
		if st.inTx.Load() {
			inTx.Add(1)
		}
		return generate(alg)
	}
	return total, inTx
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Periodic maintenance opens a transaction only when a step is due, and
// never generates a key inside one (SQLite's single writer would wait for
// an RSA key generation).
func TestMaintenanceTransactions(t *testing.T) {
	ctx := context.Background()
	st := newCountingStore(t)
	clock := &simClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	policy := Policy{Alg: ES256, RotationPeriod: time.Hour, Prepublish: 10 * time.Minute, Retention: 30 * time.Minute}
	m := NewManager(st, mustMaster(t), policy, clock.now, discardLog())
	gens, gensInTx := countGenerations(m, st)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	first := m.Signer().KID()

	// runs maintains n times, one minute apart, and returns how many
	// transactions they opened.
	runs := func(n int) int64 {
		before := st.txs.Load()
		for range n {
			if err := m.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
			clock.t = clock.t.Add(time.Minute)
		}
		return st.txs.Load() - before
	}
	steps := []struct {
		name    string
		minutes int
		wantTxs int64
	}{
		{"nothing due for 50 min", 50, 0},
		{"rotation due at 50 min", 1, 1},
		{"next key published, nothing due", 9, 0},
		{"activation at 60 min", 1, 1},
		{"nothing due until the retired key's removal", 29, 0},
		{"removal at 90 min", 1, 1},
		{"nothing due until the next rotation at 110 min", 18, 0},
	}
	for _, s := range steps {
		if got := runs(s.minutes); got != s.wantTxs {
			t.Errorf("%s: %d transactions over %d runs, want %d", s.name, got, s.minutes, s.wantTxs)
		}
	}
	if m.Signer().KID() == first {
		t.Error("no rotation happened")
	}
	if _, err := m.Rotate(ctx, EdDSA); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Revoke(ctx, m.Signer().KID()); err != nil { // promotes the next key
		t.Fatal(err)
	}
	if _, err := m.Revoke(ctx, m.Signer().KID()); err != nil { // generates a replacement
		t.Fatal(err)
	}
	if gens.Load() != 4 || gensInTx.Load() != 0 {
		t.Errorf("%d keys generated, %d of them inside a transaction; want 4 (init, scheduled rotation, Rotate, Revoke), none inside", gens.Load(), gensInTx.Load())
	}
}

// A replica that finds a rotation due generates a key, and then finds in
// its transaction that another replica has scheduled it meanwhile: it
// writes nothing.
func TestMaintenanceRechecksInTransaction(t *testing.T) {
	ctx := context.Background()
	st := newCountingStore(t)
	clock := &simClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	mk := mustMaster(t)
	policy := Policy{Alg: ES256, RotationPeriod: time.Hour, Prepublish: 10 * time.Minute, Retention: 30 * time.Minute}
	a := NewManager(st, mk, policy, clock.now, discardLog())
	if err := a.Init(ctx); err != nil {
		t.Fatal(err)
	}
	b := NewManager(st, mk, policy, clock.now, discardLog())
	if err := b.Init(ctx); err != nil {
		t.Fatal(err)
	}
	clock.t = clock.t.Add(55 * time.Minute)
	b.generate = func(alg string) (crypto.Signer, error) {
		// The other replica runs its step while b generates.
		if err := a.Maintain(ctx); err != nil {
			t.Error(err)
		}
		return generate(alg)
	}
	if err := b.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	rows, _ := st.ListSigningKeys(ctx)
	next := 0
	for _, r := range rows {
		if r.State == store.KeyNext {
			next++
		}
	}
	if next != 1 {
		t.Fatalf("%d next keys; want 1: the second replica must not schedule the rotation again", next)
	}
}

func mustMaster(t *testing.T) *MasterKey {
	t.Helper()
	mk, err := ParseMasterKey(GenerateMasterKeyText())
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

// foreignNextKey stores a next key sealed under mk, as a server of an
// earlier version started with the wrong master key left it.
func foreignNextKey(t *testing.T, st store.Store, mk *MasterKey, alg string, created, activateAt time.Time) string {
	t.Helper()
	m := NewManager(st, mk, Policy{Alg: alg}, time.Now, discardLog())
	k, err := m.newKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSigningKey(context.Background(), k.row(mk, store.KeyNext, created, activateAt)); err != nil {
		t.Fatal(err)
	}
	return k.kid
}

// The sequence that bricked a database: a correct start, then a start with
// the wrong master key and another algorithm. The wrong start fails naming
// both key ids and writes nothing; the correct key still works.
func TestWrongMasterKeyWritesNothing(t *testing.T) {
	ctx := context.Background()
	st := newCountingStore(t)
	clock := &simClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	right, wrong := mustMaster(t), mustMaster(t)
	policy := Policy{Alg: ES256, RotationPeriod: 24 * time.Hour, Prepublish: 10 * time.Minute, Retention: time.Hour}
	m := NewManager(st, right, policy, clock.now, discardLog())
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	kid := m.Signer().KID()
	before, _ := st.ListSigningKeys(ctx)
	txs, writes := st.txs.Load(), st.writes.Load()

	clock.t = clock.t.Add(time.Minute)
	policy.Alg = EdDSA
	for name, fn := range map[string]func() error{
		"CheckMasterKey": func() error { return CheckMasterKey(ctx, st, wrong) },
		"Init":           func() error { return NewManager(st, wrong, policy, clock.now, discardLog()).Init(ctx) },
	} {
		err := fn()
		if !errors.Is(err, ErrMasterKeyMismatch) || !strings.Contains(err.Error(), right.ID()) || !strings.Contains(err.Error(), wrong.ID()) {
			t.Errorf("%s with the wrong master key: %v; want an error naming %s and %s", name, err, right.ID(), wrong.ID())
		}
	}
	after, _ := st.ListSigningKeys(ctx)
	if !reflect.DeepEqual(before, after) || st.txs.Load() != txs || st.writes.Load() != writes {
		t.Fatalf("the wrong master key wrote: %d → %d keys, %d transactions, %d writes", len(before), len(after), st.txs.Load()-txs, st.writes.Load()-writes)
	}
	again := NewManager(st, right, policy, clock.now, discardLog())
	if err := again.Init(ctx); err != nil {
		t.Fatalf("the right master key after a wrong start: %v", err)
	}
	if again.Signer().KID() != kid {
		t.Fatal("the signing key changed")
	}
}

// A database an earlier version left with next keys sealed under another
// master key is repaired by a start with its own master key: they are
// deleted with a warning, tokens keep verifying. Anything else sealed under
// another master key is refused, naming both ids.
func TestForeignNextKeysAreDeleted(t *testing.T) {
	ctx := context.Background()
	clock := &simClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	right, wrong := mustMaster(t), mustMaster(t)
	policy := Policy{Alg: ES256, RotationPeriod: 24 * time.Hour, Prepublish: 10 * time.Minute, Retention: time.Hour}

	// setup returns a database with an active key and the secret hash key
	// sealed under right, and the kid of the active key.
	setup := func(t *testing.T) (*countingStore, string) {
		st := newCountingStore(t)
		m := NewManager(st, right, policy, clock.now, discardLog())
		if err := m.Init(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := SecretHashKey(ctx, st, right); err != nil {
			t.Fatal(err)
		}
		return st, m.Signer().KID()
	}
	for _, tc := range []struct {
		name       string
		activateAt time.Duration // of the foreign key, from now
	}{
		{"activation still ahead", 10 * time.Minute},
		{"activation time passed", -time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, kid := setup(t)
			foreign := foreignNextKey(t, st, wrong, EdDSA, clock.t, clock.t.Add(tc.activateAt))
			if err := NewManager(st, wrong, policy, clock.now, discardLog()).Init(ctx); !errors.Is(err, ErrMasterKeyMismatch) {
				t.Fatalf("Init with the other master key: %v", err)
			}
			var logs bytes.Buffer
			m := NewManager(st, right, policy, clock.now, slog.New(slog.NewTextHandler(&logs, nil)))
			if err := CheckMasterKey(ctx, st, right); err != nil {
				t.Fatalf("CheckMasterKey: %v", err)
			}
			if err := m.Init(ctx); err != nil {
				t.Fatalf("Init with the right master key: %v", err)
			}
			if _, ok := m.PublicKey(foreign); ok || m.Signer().KID() != kid {
				t.Fatalf("foreign key still published (%v), or the signer changed", ok)
			}
			rows, _ := st.ListSigningKeys(ctx)
			if len(rows) != 1 || rows[0].KID != kid {
				t.Fatalf("keys after repair: %+v", rows)
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), foreign) || !strings.Contains(logs.String(), wrong.ID()) {
				t.Fatalf("no warning naming the deleted key and its master key:\n%s", logs.String())
			}
		})
	}
	t.Run("key rewrap deletes them too", func(t *testing.T) {
		st, kid := setup(t)
		foreign := foreignNextKey(t, st, wrong, EdDSA, clock.t, clock.t.Add(time.Minute))
		third := mustMaster(t)
		res, err := Rewrap(ctx, st, right, third)
		if err != nil || res.Resealed != 2 || len(res.Dropped) != 1 || res.Dropped[0] != foreign {
			t.Fatalf("rewrap: %+v, %v", res, err)
		}
		m := NewManager(st, third, policy, clock.now, discardLog())
		if err := m.Init(ctx); err != nil || m.Signer().KID() != kid {
			t.Fatalf("after rewrap: %v", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			state func(st store.Store)
		}{
			{"a retired key under another master key", func(st store.Store) {
				kid := foreignNextKey(t, st, wrong, EdDSA, clock.t, clock.t)
				_ = st.UpdateSigningKeys(ctx, func(keys []store.SigningKey, _ func(string) string) (store.KeyUpdate, error) {
					for _, k := range keys {
						if k.KID == kid {
							k.State, k.RetiredAt, k.RemoveAt = store.KeyRetired, clock.t, clock.t.Add(time.Hour)
							return store.KeyUpdate{Update: []store.SigningKey{k}}, nil
						}
					}
					return store.KeyUpdate{}, nil
				})
			}},
			{"the secret hash key under another master key", func(st store.Store) {
				foreignNextKey(t, st, wrong, EdDSA, clock.t, clock.t)
				_ = st.UpdateSigningKeys(ctx, func([]store.SigningKey, func(string) string) (store.KeyUpdate, error) {
					return store.KeyUpdate{Meta: map[string]string{secretHashKeyMeta: sealMeta(wrong, secretHashKeyAAD, make([]byte, 32))}}, nil
				})
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, _ := setup(t)
				tc.state(st)
				before, _ := st.ListSigningKeys(ctx)
				err := NewManager(st, right, policy, clock.now, discardLog()).Init(ctx)
				if !errors.Is(err, ErrMasterKeyMismatch) || !strings.Contains(err.Error(), right.ID()) || !strings.Contains(err.Error(), wrong.ID()) {
					t.Fatalf("Init: %v; want an error naming both master keys", err)
				}
				if after, _ := st.ListSigningKeys(ctx); !reflect.DeepEqual(before, after) {
					t.Fatal("a refused Init changed the keys")
				}
				// The way out when the other key is at hand: rewrap from it
				// to the right one, which leaves the right one's values.
				if _, err := Rewrap(ctx, st, wrong, right); err != nil {
					t.Fatalf("rewrap from the other key: %v", err)
				}
				if err := NewManager(st, right, policy, clock.now, discardLog()).Init(ctx); err != nil {
					t.Fatalf("Init after the rewrap: %v", err)
				}
			})
		}
	})
}

// After a rewrap by another process, a running manager keeps signing with
// the keys it holds, writes nothing, and says why it cannot change them.
func TestRunningManagerAfterRewrap(t *testing.T) {
	ctx := context.Background()
	st := newCountingStore(t)
	clock := &simClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	old, next := mustMaster(t), mustMaster(t)
	policy := Policy{Alg: ES256, RotationPeriod: time.Hour, Prepublish: 10 * time.Minute, Retention: time.Hour}
	m := NewManager(st, old, policy, clock.now, discardLog())
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	kid := m.Signer().KID()
	if _, err := Rewrap(ctx, st, old, next); err != nil {
		t.Fatal(err)
	}
	before, _ := st.ListSigningKeys(ctx)
	clock.t = clock.t.Add(55 * time.Minute) // a rotation is due
	for name, fn := range map[string]func() error{
		"Maintain": func() error { return m.Maintain(ctx) },
		"Reload":   func() error { return m.Reload(ctx) },
		"Rotate":   func() error { _, err := m.Rotate(ctx, ""); return err },
		"Revoke":   func() error { _, err := m.Revoke(ctx, kid); return err },
	} {
		if err := fn(); !errors.Is(err, ErrMasterKeyMismatch) || !strings.Contains(err.Error(), next.ID()) || !strings.Contains(err.Error(), old.ID()) {
			t.Errorf("%s: %v; want ErrMasterKeyMismatch naming both key ids", name, err)
		}
	}
	if after, _ := st.ListSigningKeys(ctx); !reflect.DeepEqual(before, after) {
		t.Fatal("the keys changed")
	}
	if m.Signer().KID() != kid {
		t.Fatal("the manager lost its signing key")
	}
}
