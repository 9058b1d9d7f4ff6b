package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// queryCounter counts the database calls a server makes.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) ObserveQuery(string, time.Duration, error) { q.n.Add(1) }

// introspectBench builds a server for cfg with an API, a client and a
// resource server's client that may introspect its tokens, and returns a
// function that introspects one of the client's tokens (Basic auth)
// through the whole handler, and the server's database call counter.
func introspectBench(tb testing.TB, cfg config.Config) (serve func() (int, string), queries *queryCounter) {
	tb.Helper()
	cfg.DataDir = tb.TempDir()
	cfg.LogLevel = "error"
	queries = &queryCounter{}
	srv, err := NewWithOptions(context.Background(), cfg, NewLogger(io.Discard, "json", "error"), nil, Options{QueryObserver: queries})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	mk, _, err := srv.masterKey()
	if err != nil {
		tb.Fatal(err)
	}
	hashKey, err := keys.SecretHashKey(context.Background(), srv.store, mk)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	svc := admin.NewService(srv.store, secret.NewHasher(hashKey), srv.now, invalidator{srv, srv.env})
	if _, err := svc.CreateAPI(ctx, admin.APIInput{Identifier: ordersAPI, Name: "orders", Scopes: []string{"orders:read"}}); err != nil {
		tb.Fatal(err)
	}
	app, appSecret, err := svc.CreateClient(ctx, admin.ClientInput{Name: "app", Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, DefaultAudience: ordersAPI})
	if err != nil {
		tb.Fatal(err)
	}
	rs, rsSecret, err := svc.CreateClient(ctx, admin.ClientInput{Name: "orders API", Introspect: []string{ordersAPI}})
	if err != nil {
		tb.Fatal(err)
	}
	h := srv.Handler()
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader("grant_type=client_credentials"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(app.ID, appSecret)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" {
		tb.Fatalf("token: %d %s", w.Code, w.Body)
	}
	body := "token=" + tok.AccessToken
	serve = func() (int, string) {
		r := httptest.NewRequest(http.MethodPost, "/oauth/introspect", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth(rs.ID, rsSecret)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	return serve, queries
}

// benchIntrospect measures an RFC 7662 introspection of an active access
// token by a resource server's client (Basic auth) through the whole
// handler, and reports the database calls per introspection.
func benchIntrospect(b *testing.B, cfg config.Config) {
	serve, queries := introspectBench(b, cfg)
	// Warm the caches, then count from a clean slate.
	if code, out := serve(); code != 200 || !strings.Contains(out, `"active":true`) {
		b.Fatalf("introspect: %d %s", code, out)
	}
	report := func(b *testing.B, start int64) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		b.ReportMetric(float64(queries.n.Load()-start)/float64(b.N), "queries/op")
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		start := queries.n.Load()
		for b.Loop() {
			if code, out := serve(); code != 200 || !strings.Contains(out, `"active":true`) {
				b.Fatalf("introspect: %d %s", code, out)
			}
		}
		report(b, start)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		start := queries.n.Load()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if code, _ := serve(); code != 200 {
					b.Errorf("introspect: %d", code)
					return
				}
			}
		})
		report(b, start)
	})
}

// BenchmarkIntrospect measures introspection (RFC 7662) in-process, on
// SQLite and PostgreSQL, for each signing algorithm's verification cost:
// parse, authenticate the caller (client cache + HMAC), verify the token,
// the deny-list and client checks, render.
func BenchmarkIntrospect(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		for _, alg := range []string{"EdDSA", "ES256", "RS256"} {
			b.Run(db+"-"+alg, func(b *testing.B) {
				cfg := config.Default()
				cfg.SigningAlg = alg
				if db == "postgres" {
					cfg.Database = pgtest.DSN(b)
				}
				benchIntrospect(b, cfg)
			})
		}
	}
}
