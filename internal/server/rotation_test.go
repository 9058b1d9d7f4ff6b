package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/store"
)

// barrierStore makes every rotation of one client read it before any of
// them writes: the worst interleaving of concurrent rotations, every time.
type barrierStore struct {
	store.Store
	id    string
	armed atomic.Bool
	stuck atomic.Bool
	reads sync.WaitGroup
}

// InEnv keeps the barrier in the default environment, whose data the
// admin API reaches through its environment's store.
func (b *barrierStore) InEnv(name string) store.Store {
	if name == b.Store.Env() {
		return b
	}
	return b.Store.InEnv(name)
}

func (b *barrierStore) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := b.Store.GetClient(ctx, id)
	if id == b.id && b.armed.Load() {
		b.reads.Done()
	}
	return c, err
}

func (b *barrierStore) UpdateClient(ctx context.Context, id string, fn func(*store.Client) error) (store.Client, error) {
	if id == b.id && b.armed.Load() {
		all := make(chan struct{})
		go func() { b.reads.Wait(); close(all) }()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			// Not every rotation reads before writing (the code under
			// test does not): go on rather than hang.
			b.stuck.Store(true)
		}
	}
	return b.Store.UpdateClient(ctx, id, fn)
}

// 64 rotations with no grace period that all read the client before any
// writes: exactly one wins, the rest get 412, and the one secret returned
// works (before: 64 × 201, with only the last secret working). Dead secret
// rows are pruned: 64 rotations in a row leave two rows, not 65.
func TestRotationsWithoutGrace(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	cfg.Addr, cfg.Issuer = "127.0.0.1:1", ""
	st, err := OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	bs := &barrierStore{Store: st}
	// The issuer must be the URL the test server gets: start it first.
	hs := httptest.NewUnstartedServer(nil)
	cfg.Issuer = "http://" + hs.Listener.Addr().String()
	clk := newFakeClock()
	srv, err := newServer(context.Background(), cfg, NewLogger(io.Discard, "json", "error"), clk.Now, bs, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = srv.Handler()
	hs.Start()
	t.Cleanup(func() { hs.Close(); srv.Close() })
	ts := &testServer{t: t, URL: hs.URL, cfg: cfg, srv: srv}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, AdminFile))
	if err != nil || json.Unmarshal(b, &ts.admin) != nil {
		t.Fatalf("admin file: %v", err)
	}
	ts.login()
	id, _ := setupOrders(ts)
	bs.id = id
	clk.Advance(admin.MinSecretAge) // the client's first secret is not new any more

	const n = 64
	bs.reads.Add(n)
	bs.armed.Store(true)
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[int]int{}
	var secrets []string
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/secrets", `{"grace_seconds":0}`)
			var c admin.ClientResource
			_ = json.Unmarshal(b, &c)
			mu.Lock()
			defer mu.Unlock()
			counts[resp.StatusCode]++
			if c.ClientSecret != "" {
				secrets = append(secrets, c.ClientSecret)
			}
		}()
	}
	wg.Wait()
	bs.armed.Store(false)
	if counts[201] != 1 || counts[412] != n-1 || len(secrets) != 1 {
		t.Fatalf("statuses %v, %d secrets returned; want one 201 and %d × 412", counts, len(secrets), n-1)
	}
	// A rotation that read the client after the winner committed finds a
	// secret handed out a moment ago: it is refused, not ended at once.
	if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/secrets", `{"grace_seconds":0}`); resp.StatusCode != 409 {
		t.Errorf("a rotation right after another: %d %s, want 409", resp.StatusCode, b)
	}
	if st, code := ts.tokenStatus(id, secrets[0], url.Values{}); st != 200 {
		t.Fatalf("the returned secret does not authenticate: %d %s", st, code)
	}

	var last string
	for range n {
		clk.Advance(admin.MinSecretAge)
		ts.login()
		resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/secrets", `{"grace_seconds":0}`)
		if resp.StatusCode != 201 {
			t.Fatalf("sequential rotation: %d %s", resp.StatusCode, b)
		}
		var c admin.ClientResource
		_ = json.Unmarshal(b, &c)
		last = c.ClientSecret
	}
	c, _ := ts.client(id)
	if len(c.Secrets) > 2 {
		t.Errorf("%d secret rows after %d rotations, want at most 2", len(c.Secrets), n+1)
	}
	if st, _ := ts.tokenStatus(id, last, url.Values{}); st != 200 {
		t.Errorf("the last secret does not authenticate: %d", st)
	}
	if st, _ := ts.tokenStatus(id, secrets[0], url.Values{}); st != 401 {
		t.Errorf("a secret rotated out with no grace still authenticates: %d", st)
	}
}
