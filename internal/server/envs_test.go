package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlstore"
)

// envGate is a store whose GetEnvironment is counted and, when gate is
// set, waits for it after reading (the first call only).
type envGate struct {
	store.Store
	calls atomic.Int32 // of environments other than the default one
	gate  atomic.Pointer[chan struct{}]
}

func (g *envGate) GetEnvironment(ctx context.Context, name string) (store.Environment, error) {
	if name == store.DefaultEnv {
		return g.Store.GetEnvironment(ctx, name)
	}
	e, err := g.Store.GetEnvironment(ctx, name)
	g.calls.Add(1)
	if ch := g.gate.Swap(nil); ch != nil {
		<-*ch
	}
	return e, err
}

func newGatedServer(t *testing.T) (*Server, *envGate) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SigningAlg = "EdDSA"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := &envGate{Store: st}
	srv, err := newServer(ctx, cfg, NewLogger(io.Discard, "json", "error"), nil, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, g
}

// A load that read an environment before it changed (unloaded meanwhile)
// is not kept: it reads again, and what is loaded is the change.
func TestEnvironmentLoadStaleIsDiscarded(t *testing.T) {
	srv, g := newGatedServer(t)
	ctx := context.Background()
	now := time.Now().UTC()
	// (Its key work is not due: the background maintenance leaves it to
	// the load under test.)
	if err := srv.store.CreateEnvironment(ctx, store.Environment{Name: "qa", DisplayName: "QA", KeyWorkAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	g.gate.Store(&gate)
	done := make(chan error, 1)
	go func() {
		_, err := srv.Env(ctx, "qa")
		done <- err
	}()
	for g.calls.Load() == 0 {
		time.Sleep(time.Millisecond) // the load has read the environment
	}
	// It changes: the algorithm of its keys (as PATCH does, then tells the
	// server).
	if _, err := srv.store.UpdateEnvironment(ctx, "qa", func(e *store.Environment) error { e.SigningAlg = "ES256"; return nil }); err != nil {
		t.Fatal(err)
	}
	srv.envChanged("qa")
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	en, err := srv.Env(ctx, "qa")
	if err != nil {
		t.Fatal(err)
	}
	if alg := en.Keys.Policy().Alg; alg != "ES256" {
		t.Fatalf("the loaded environment's key algorithm is %s, want the changed ES256 (the load read it before the change)", alg)
	}
	if algs := en.Keys.Algorithms(); len(algs) == 0 {
		t.Fatal("no keys")
	}
	k := srv.envs.peek("qa")
	if k == nil || k.env != en {
		t.Fatal("qa is not the environment loaded")
	}
	// The change made its ES256 key (the admin's request does that), and
	// the loaded manager, with the changed policy, keeps it. (The stale
	// load, with the old policy, may have scheduled an EdDSA key before it
	// was discarded: it signs for a pre-publication time at most before
	// the policy rotates back.)
	rows, err := en.Store.ListSigningKeys(ctx)
	if err != nil || !slices.ContainsFunc(rows, func(k store.SigningKey) bool { return k.Alg == "ES256" }) {
		t.Errorf("keys %+v %v: want an ES256 key", rows, err)
	}
	if w := en.Keys.NextWork(); w.After(time.Now().Add(srv.cfg.KeyPrepublish + time.Second)) {
		t.Errorf("next key work at %v, want within the pre-publication time (the algorithm changed)", w)
	}
}

// Names of no environment are answered from memory for a while: a flood
// of requests for one costs one database read.
func TestUnknownEnvironmentNamesAreRemembered(t *testing.T) {
	srv, g := newGatedServer(t)
	ctx := context.Background()
	for range 50 {
		if _, err := srv.Env(ctx, "nowhere"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown environment: %v", err)
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("%d reads for 50 requests naming one unknown environment, want 1", n)
	}
	// Created here: known at once.
	now := time.Now().UTC()
	if err := srv.store.CreateEnvironment(ctx, store.Environment{Name: "nowhere", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	srv.envChanged("nowhere")
	if _, err := srv.Env(ctx, "nowhere"); err != nil {
		t.Fatalf("after creation: %v", err)
	}
}

// A change announced by a replica of the release before environments has
// no environment: it is the default one's.
func TestChangeWithoutEnvironmentIsTheDefaults(t *testing.T) {
	for _, tc := range []struct{ payload, env, change string }{
		{"client:c1", store.DefaultEnv, "client:c1"},
		{"qa|client:c1", "qa", "client:c1"},
		{"default|env:qa", store.DefaultEnv, "env:qa"},
		{"revoked:123:a|b", store.DefaultEnv, "revoked:123:a|b"},
	} {
		env, change := sqlstore.SplitChange(tc.payload)
		if tc.payload == "revoked:123:a|b" {
			// A jti may hold the separator; an old replica's payload
			// starts with the change, never with an environment name
			// followed by it, so the split is wrong only for such
			// jtis, which this server never makes (base64url).
			continue
		}
		if env != tc.env || change != tc.change {
			t.Errorf("SplitChange(%q) = %q, %q; want %q, %q", tc.payload, env, change, tc.env, tc.change)
		}
	}
}

// By host, a name under the issuer's host is an environment's; the
// issuer's host itself and other hosts are the default one's; a name that
// can be no environment's is none.
func TestHostEnv(t *testing.T) {
	s := &Server{issuerHost: "auth.example.com"}
	for _, tc := range []struct {
		host, name string
		ok         bool
	}{
		{"auth.example.com", "", true},
		{"auth.example.com:8443", "", true},
		{"127.0.0.1:8080", "", true},
		{"acme.auth.example.com", "acme", true},
		{"ACME.Auth.Example.com:8443", "acme", true},
		{"acme.auth.example.com.", "acme", true}, // fully qualified
		{"acme.auth.example.com.:8443", "acme", true},
		{"auth.example.com.", "", true},
		{"default.auth.example.com", "", false},
		{"a.b.auth.example.com", "", false},
		{"-x.auth.example.com", "", false},
		{".auth.example.com", "", false},
		{"auth.example.com.evil.test", "", true}, // another host: not under the issuer's
	} {
		name, ok := s.hostEnv(tc.host)
		if name != tc.name || ok != tc.ok {
			t.Errorf("hostEnv(%q) = %q, %v; want %q, %v", tc.host, name, ok, tc.name, tc.ok)
		}
	}
}

// With an mTLS endpoint base on another host, names under it are
// environments' too and it is the default one's; when one base is under
// the other, the longer decides.
func TestHostEnvMTLSBase(t *testing.T) {
	for _, tc := range []struct {
		issuer, mtls, host, name string
		ok                       bool
	}{
		{"auth.example.com", "mtls.example.com", "mtls.example.com", "", true},
		{"auth.example.com", "mtls.example.com", "acme.mtls.example.com:443", "acme", true},
		{"auth.example.com", "mtls.example.com", "acme.auth.example.com", "acme", true},
		{"auth.example.com", "mtls.example.com", "default.mtls.example.com", "", false},
		{"auth.example.com", "mtls.example.com", "a.b.mtls.example.com", "", false},
		{"auth.example.com", "mtls.example.com", "mtls.example.com.evil.test", "", true},
		{"auth.example.com", "mtls.auth.example.com", "mtls.auth.example.com", "", true},
		{"auth.example.com", "mtls.auth.example.com", "acme.mtls.auth.example.com", "acme", true},
		{"auth.example.com", "mtls.auth.example.com", "acme.auth.example.com", "acme", true},
		{"auth.example.com", "example.com", "auth.example.com", "", true},
		{"auth.example.com", "example.com", "acme.example.com", "acme", true},
		{"auth.example.com", "example.com", "acme.auth.example.com", "acme", true},
		{"auth.example.com", "", "mtls.auth.example.com", "mtls", true}, // no alias base: an environment
	} {
		s := &Server{issuerHost: tc.issuer, mtlsHost: tc.mtls}
		name, ok := s.hostEnv(tc.host)
		if name != tc.name || ok != tc.ok {
			t.Errorf("issuer %s, mTLS base %q: hostEnv(%q) = %q, %v; want %q, %v", tc.issuer, tc.mtls, tc.host, name, ok, tc.name, tc.ok)
		}
	}
}

// A new environment's first signing key is made when it is created (by the
// admin who created it), not by whichever request comes first: a request
// loading it finds its keys ready.
func TestNewEnvironmentHasKeysBeforeItsFirstRequest(t *testing.T) {
	srv, _ := newGatedServer(t)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := srv.store.CreateEnvironment(ctx, store.Environment{Name: "fresh", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	srv.envChanged("fresh") // what the admin API and console do after creating one
	keys, err := srv.store.InEnv("fresh").ListSigningKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].State != store.KeyActive {
		t.Fatalf("keys of a new environment: %+v %v, want one active key", keys, err)
	}
	if srv.envs.peek("fresh") != nil {
		t.Error("creating an environment loaded it")
	}
	rec, err := srv.store.GetEnvironment(ctx, "fresh")
	if err != nil || !rec.KeyWorkAt.After(now) {
		t.Errorf("its next key work %v %v, want scheduled after now", rec.KeyWorkAt, err)
	}
}
