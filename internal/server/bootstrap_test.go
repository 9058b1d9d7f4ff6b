package server

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

var errCrash = errors.New("simulated crash")

// crashAt makes the next starts stop at the bootstrap step named (as a
// crash there would), and records every step reached.
func crashAt(t *testing.T, step string) *[]string {
	t.Helper()
	var mu sync.Mutex
	var steps []string
	testHookBootstrap = func(s string) error {
		mu.Lock()
		steps = append(steps, s)
		mu.Unlock()
		if s == step {
			return errCrash
		}
		return nil
	}
	t.Cleanup(func() { testHookBootstrap = nil })
	return &steps
}

// startCrashing runs New on cfg and expects it to stop at the simulated
// crash.
func startCrashing(t *testing.T, cfg config.Config) {
	t.Helper()
	srv, err := New(context.Background(), cfg, NewLogger(io.Discard, "json", "error"), nil)
	if err == nil {
		srv.Close()
		t.Fatal("New succeeded; want the simulated crash")
	}
	if !errors.Is(err, errCrash) {
		t.Fatalf("New: %v; want the simulated crash", err)
	}
}

// pendingFiles lists the pending admin files in dir.
func pendingFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), adminPendingPrefix) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func mustReadAdminFile(t *testing.T, path string) AdminCredentials {
	t.Helper()
	c, err := readAdminFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return c
}

func bootstrapConfig(t *testing.T) config.Config {
	cfg := testConfig(t)
	cfg.Issuer = "http://auth.test" // the same across restarts on new ports
	return cfg
}

// A crash after the credentials were saved but before the client was
// committed: the next start bootstraps afresh, removes the stale file, and
// admin.json works.
func TestBootstrapCrashBeforeCommit(t *testing.T) {
	cfg := bootstrapConfig(t)
	crashAt(t, "pending written")
	startCrashing(t, cfg)
	left := pendingFiles(t, cfg.DataDir)
	if len(left) != 1 {
		t.Fatalf("after the crash: pending files %v, want 1", left)
	}
	stale := mustReadAdminFile(t, left[0])
	if _, err := os.Stat(filepath.Join(cfg.DataDir, AdminFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admin.json exists before the client was committed: %v", err)
	}

	testHookBootstrap = nil
	ts := startServer(t, cfg) // logs in with admin.json, failing the test if it does not work
	if ts.admin.ClientID == "" || ts.admin.ClientID == stale.ClientID {
		t.Fatalf("admin.json client %q; want a new client, not the never-created %q", ts.admin.ClientID, stale.ClientID)
	}
	if left := pendingFiles(t, cfg.DataDir); len(left) != 0 {
		t.Fatalf("pending files remain: %v", left)
	}
	if !strings.Contains(ts.logs.String(), "never created") {
		t.Errorf("the removal of the stale credentials is not logged:\n%s", ts.logs)
	}
}

// A crash after the client was committed but before admin.json was
// written: the next start moves the saved credentials to admin.json.
func TestBootstrapCrashAfterCommit(t *testing.T) {
	cfg := bootstrapConfig(t)
	steps := crashAt(t, "committed")
	startCrashing(t, cfg)
	if want := []string{"pending written", "committed"}; !slices.Equal(*steps, want) {
		t.Fatalf("steps %v, want %v", *steps, want)
	}
	left := pendingFiles(t, cfg.DataDir)
	if len(left) != 1 {
		t.Fatalf("after the crash: pending files %v, want 1", left)
	}
	saved := mustReadAdminFile(t, left[0])
	if fi, err := os.Stat(left[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pending file mode: %v %v; want 0600", fi, err)
	}

	*steps = nil
	ts := startServer(t, cfg)
	if len(*steps) != 0 {
		t.Errorf("a bootstrapped database still went through bootstrap steps %v", *steps)
	}
	if ts.admin != saved {
		t.Fatalf("admin.json %+v; want the saved credentials %+v", ts.admin, saved)
	}
	if left := pendingFiles(t, cfg.DataDir); len(left) != 0 {
		t.Fatalf("pending files remain: %v", left)
	}
	if !strings.Contains(ts.logs.String(), "recovered admin.json") {
		t.Errorf("the recovery is not logged:\n%s", ts.logs)
	}
	ts.stop()

	// And the next start finds everything in order: no warning.
	again := startServer(t, cfg)
	if again.admin != saved || strings.Contains(again.logs.String(), `"level":"WARN"`) {
		t.Fatalf("third start: admin %+v, logs:\n%s", again.admin, again.logs)
	}
}

// A crash while the pending file was written leaves an incomplete file:
// it is removed and the bootstrap proceeds.
func TestBootstrapIncompletePendingFile(t *testing.T) {
	cfg := bootstrapConfig(t)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	torn := filepath.Join(cfg.DataDir, adminPendingPrefix+"m2mc_torn")
	if err := os.WriteFile(torn, []byte(`{"server": "http://auth.test", "client_id": "m2mc_to`), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, cfg)
	if ts.admin.ClientID == "" {
		t.Fatal("no admin.json")
	}
	if left := pendingFiles(t, cfg.DataDir); len(left) != 0 {
		t.Fatalf("pending files remain: %v", left)
	}
	if !strings.Contains(ts.logs.String(), "incomplete admin credentials file") {
		t.Errorf("the removal is not logged:\n%s", ts.logs)
	}
}

// A bootstrapped database without admin.json (and no pending file): the
// start warns and names the command that restores admin access.
func TestBootstrapMissingAdminFileWarns(t *testing.T) {
	cfg := bootstrapConfig(t)
	ts := startServer(t, cfg)
	if strings.Contains(ts.logs.String(), "admin recover") {
		t.Fatalf("first start warns about a missing admin.json:\n%s", ts.logs)
	}
	ts.stop()
	if err := os.Remove(filepath.Join(cfg.DataDir, AdminFile)); err != nil {
		t.Fatal(err)
	}
	again := startServer(t, cfg)
	var warned bool
	for _, line := range strings.Split(again.logs.String(), "\n") {
		if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "admin.json is missing") && strings.Contains(line, "m2mauth admin recover") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no warning naming `m2mauth admin recover`:\n%s", again.logs)
	}
}

// A leftover pending file whose client exists does not replace an
// admin.json holding the credentials of another existing client (written
// by `m2mauth admin recover`, say); it does replace a stale admin.json
// whose client does not exist (left from an earlier database).
func TestBootstrapLeftoverBesideAdminFile(t *testing.T) {
	for _, tc := range []struct {
		name         string
		otherExists  bool
		wantPromoted bool
	}{
		{"admin.json of an existing client is kept", true, false},
		{"admin.json of an unknown client is replaced", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bootstrapConfig(t)
			crashAt(t, "committed")
			startCrashing(t, cfg)
			testHookBootstrap = nil
			saved := mustReadAdminFile(t, pendingFiles(t, cfg.DataDir)[0])

			other := AdminCredentials{Server: "http://auth.test", ClientID: "m2mc_other", ClientSecret: "m2ms_other"}
			if tc.otherExists {
				st, err := OpenStore(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				now := time.Now()
				if err := st.CreateClient(context.Background(), store.Client{ID: other.ClientID, Name: "recovered admin", Version: 1, CreatedAt: now, UpdatedAt: now}); err != nil {
					t.Fatal(err)
				}
				st.Close()
			}
			if _, err := WriteAdminFile(cfg.DataDir, other); err != nil {
				t.Fatal(err)
			}
			srv, err := New(context.Background(), cfg, NewLogger(io.Discard, "json", "error"), nil)
			if err != nil {
				t.Fatal(err)
			}
			srv.Close()
			got := mustReadAdminFile(t, filepath.Join(cfg.DataDir, AdminFile))
			want := other
			if tc.wantPromoted {
				want = saved
			}
			if got.ClientID != want.ClientID {
				t.Fatalf("admin.json holds %s; want %s", got.ClientID, want.ClientID)
			}
			if left := pendingFiles(t, cfg.DataDir); len(left) != 0 {
				t.Fatalf("pending files remain: %v", left)
			}
		})
	}
}

// Replicas racing on the first start of one PostgreSQL database, each in
// its own data dir or all in one shared data dir: exactly one admin.json
// results, its client exists, and no pending file remains.
func TestBootstrapRacePostgres(t *testing.T) {
	for _, shared := range []bool{false, true} {
		name := map[bool]string{false: "own data dirs", true: "shared data dir"}[shared]
		t.Run(name, func(t *testing.T) {
			dsn := pgtest.DSN(t)
			master := keys.GenerateMasterKeyText()
			const n = 6
			dirs := make([]string, n)
			for i := range dirs {
				dirs[i] = t.TempDir()
				if shared {
					dirs[i] = dirs[0]
				}
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cfg := testConfig(t)
					cfg.DataDir, cfg.Database, cfg.MasterKey = dirs[i], dsn, master
					cfg.Issuer = "http://auth.example"
					<-start
					srv, err := New(context.Background(), cfg, NewLogger(io.Discard, "json", "info"), nil)
					if err != nil {
						t.Errorf("replica %d: %v", i, err)
						return
					}
					srv.Close()
				}()
			}
			close(start)
			wg.Wait()

			var files []string
			for _, d := range slices.Compact(slices.Clone(dirs)) {
				if _, err := os.Stat(filepath.Join(d, AdminFile)); err == nil {
					files = append(files, filepath.Join(d, AdminFile))
				}
				if left := pendingFiles(t, d); len(left) != 0 {
					t.Errorf("pending files remain in %s: %v", d, left)
				}
			}
			if len(files) != 1 {
				t.Fatalf("%d admin.json files after %d racing first starts; want 1", len(files), n)
			}
			creds := mustReadAdminFile(t, files[0])
			st, err := postgres.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			clients, err := st.ListClients(context.Background(), store.ListOptions{})
			if err != nil || len(clients) != 1 || clients[0].ID != creds.ClientID {
				t.Fatalf("clients %v (%v); want only the admin.json client %s", clients, err, creds.ClientID)
			}
		})
	}
}
