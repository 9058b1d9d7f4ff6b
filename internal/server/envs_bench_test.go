package server

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// BenchmarkEnvironments issues tokens for n clients picked at random
// (EdDSA, PostgreSQL), all in one environment, or each in an environment of
// its own with every environment loaded: the cost of an environment on the
// hot path is a map lookup, so the rates should match. It reports the time
// to create the environments and to load them, and the heap they take.
//
// M2MAUTH_BENCH_ENVS sets the largest n (default 1000; the figure
// is 10000).
func BenchmarkEnvironments(b *testing.B) {
	maxEnvs := 1000
	if v, err := strconv.Atoi(os.Getenv("M2MAUTH_BENCH_ENVS")); err == nil && v > 0 {
		maxEnvs = v
	}
	b.Run(fmt.Sprintf("envs=1/clients=%d", maxEnvs), func(b *testing.B) { benchEnvironments(b, 1, maxEnvs) })
	b.Run(fmt.Sprintf("envs=%d/clients=%d", maxEnvs, maxEnvs), func(b *testing.B) { benchEnvironments(b, maxEnvs, 1) })
}

func benchEnvironments(b *testing.B, n, clientsPerEnv int) {
	cfg := config.Default()
	cfg.Database = pgtest.DSN(b)
	cfg.SigningAlg = "EdDSA"
	cfg.EnvMaxLoaded = n + 1
	cfg.DataDir = b.TempDir()
	ctx := context.Background()
	srv, err := New(ctx, cfg, NewLogger(io.Discard, "json", "error"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })

	type cred struct{ path, id, secret string }
	creds := make([]cred, n*clientsPerEnv)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				name := fmt.Sprintf("tenant-%05d", i)
				cs, err := benchCreateEnv(ctx, srv, name, clientsPerEnv)
				if err != nil {
					errs <- err
					return
				}
				for j, c := range cs {
					creds[i*clientsPerEnv+j] = cred{"/e/" + name + "/oauth/token", c[0], c[1]}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	created := time.Since(start)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start = time.Now()
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if _, err := srv.Env(ctx, fmt.Sprintf("tenant-%05d", i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	loaded := time.Since(start)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.Logf("%d environments: created in %s, loaded in %s, %.1f KB of heap each (%.1f MB in all)",
		n, created.Round(time.Millisecond), loaded.Round(time.Millisecond),
		float64(after.HeapAlloc-before.HeapAlloc)/float64(n)/1024, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20))

	h := srv.Handler()
	const body = "grant_type=client_credentials&scope=orders%3Aread"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := creds[rand.IntN(len(creds))]
			r := httptest.NewRequest(http.MethodPost, c.path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth(c.id, c.secret)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// benchCreateEnv creates an environment with an API and clients granted
// it, and returns the clients' ids and secrets.
func benchCreateEnv(ctx context.Context, srv *Server, name string, clients int) ([][2]string, error) {
	now := srv.now().UTC()
	if err := srv.store.CreateEnvironment(ctx, store.Environment{Name: name, DisplayName: name, CreatedAt: now, UpdatedAt: now}); err != nil {
		return nil, err
	}
	st := srv.store.InEnv(name)
	if err := st.CreateAPI(ctx, store.API{ID: secret.NewID("api_"), Identifier: ordersAPI, Name: "orders",
		Scopes: []string{"orders:read"}, Version: 1, CreatedAt: now, UpdatedAt: now}); err != nil {
		return nil, err
	}
	var out [][2]string
	for range clients {
		c, err := benchCreateClient(ctx, srv, st, now)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func benchCreateClient(ctx context.Context, srv *Server, st store.Store, now time.Time) ([2]string, error) {
	plain := secret.Generate()
	c := store.Client{
		ID: secret.NewID(secret.ClientIDPrefix), Name: "bench", DefaultAudience: ordersAPI,
		Grants:  []store.Grant{{Audience: ordersAPI, Scopes: []string{"orders:read"}}},
		Secrets: []store.Secret{{ID: secret.NewID("sec_"), Hash: srv.hasher.Hash(plain), Hint: secret.Hint(plain), CreatedAt: now}},
		Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	if err := st.CreateClient(ctx, c); err != nil {
		return [2]string{}, err
	}
	return [2]string{c.ID, plain}, nil
}
