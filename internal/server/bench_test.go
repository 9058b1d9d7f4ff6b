package server

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// benchServer builds a server in-process with one API and one client and
// returns its handler and a request factory for the token endpoint.
func benchServer(b *testing.B, cfg config.Config, opts ...func(*admin.ClientInput)) (http.Handler, func() *http.Request) {
	b.Helper()
	_, h, newReq := benchServerSrv(b, cfg, opts...)
	return h, newReq
}

// benchServerSrv is benchServer, also returning the server; opts change
// the client.
func benchServerSrv(b *testing.B, cfg config.Config, opts ...func(*admin.ClientInput)) (*Server, http.Handler, func() *http.Request) {
	b.Helper()
	return benchServerWith(b, cfg, nil, Options{}, opts...)
}

// benchServerOptions is benchServerSrv with the server's options.
func benchServerOptions(b *testing.B, cfg config.Config, opts Options) (*Server, http.Handler, func() *http.Request) {
	b.Helper()
	return benchServerWith(b, cfg, nil, opts)
}

// benchServerClock is benchServerSrv with the server's clock (nil: real
// time) and the client's quota.
func benchServerClock(b *testing.B, cfg config.Config, now func() time.Time, quota admin.QuotaInput) (*Server, http.Handler, func() *http.Request) {
	b.Helper()
	return benchServerWith(b, cfg, now, Options{}, func(in *admin.ClientInput) { in.Quota = quota })
}

// benchServerWith builds the benchmarks' server with its clock and
// options; client changes the client.
func benchServerWith(b *testing.B, cfg config.Config, now func() time.Time, opts Options, client ...func(*admin.ClientInput)) (*Server, http.Handler, func() *http.Request) {
	b.Helper()
	cfg.DataDir = b.TempDir()
	cfg.LogLevel = "error"
	srv, err := NewWithOptions(context.Background(), cfg, NewLogger(io.Discard, "json", "error"), now, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	mk, _, err := srv.masterKey()
	if err != nil {
		b.Fatal(err)
	}
	hashKey, err := keys.SecretHashKey(context.Background(), srv.store, mk)
	if err != nil {
		b.Fatal(err)
	}
	svc := admin.NewService(srv.store, secret.NewHasher(hashKey), srv.now, invalidator{srv, srv.env})
	if _, err := svc.CreateAPI(context.Background(), admin.APIInput{Identifier: ordersAPI, Name: "orders", Scopes: []string{"orders:read", "orders:write"}}); err != nil {
		b.Fatal(err)
	}
	in := admin.ClientInput{Name: "bench", Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, DefaultAudience: ordersAPI}
	for _, o := range client {
		o(&in)
	}
	c, secret, err := svc.CreateClient(context.Background(), in)
	if err != nil {
		b.Fatal(err)
	}
	body := "grant_type=client_credentials&scope=orders%3Aread"
	return srv, srv.Handler(), func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth(c.ID, secret)
		return r
	}
}

func benchToken(b *testing.B, cfg config.Config, client ...func(*admin.ClientInput)) {
	benchTokenOptions(b, cfg, Options{}, client...)
}

func benchTokenOptions(b *testing.B, cfg config.Config, opts Options, client ...func(*admin.ClientInput)) {
	_, h, newReq := benchServerWith(b, cfg, nil, opts, client...)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, newReq())
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, newReq())
				if w.Code != 200 {
					b.Errorf("status %d", w.Code)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
}

// benchTokenDPoP is benchToken with a fresh DPoP proof on every request.
func benchTokenDPoP(b *testing.B, cfg config.Config) {
	srv, h, newReq := benchServerWith(b, cfg, nil, Options{})
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	url := srv.env.Issuer + "/oauth/token"
	proof := func() string {
		p, err := dpop.NewProof(key, http.MethodPost, url, dpop.ProofOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	serve := func(p string) int {
		r := newReq()
		r.Header.Set("DPoP", p)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == 200 && !strings.Contains(w.Body.String(), `"token_type":"DPoP"`) {
			return 0
		}
		return w.Code
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			p := proof()
			b.StartTimer()
			if code := serve(p); code != 200 {
				b.Fatalf("status %d", code)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		proofs := make(chan string, b.N)
		for range b.N {
			proofs <- proof()
		}
		close(proofs)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if code := serve(<-proofs); code != 200 {
					b.Errorf("status %d", code)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
}

// BenchmarkTokenEndpoint measures a whole client-credentials request
// in-process: parse, authenticate (client cache + HMAC), policy, sign,
// render, through the middleware.
func BenchmarkTokenEndpoint(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchToken(b, config.Default()) })
	// The same with the metrics on: the endpoints' observer counts every
	// request (the listener itself is not started by New).
	b.Run("sqlite-metrics", func(b *testing.B) {
		cfg := config.Default()
		cfg.MetricsAddr = "127.0.0.1:0"
		benchToken(b, cfg)
	})
	// EdDSA signs in microseconds: what the metrics add shows most here.
	b.Run("sqlite-EdDSA-metrics", func(b *testing.B) {
		cfg := config.Default()
		cfg.SigningAlg = "EdDSA"
		cfg.MetricsAddr = "127.0.0.1:0"
		benchToken(b, cfg)
	})
	// A client that asks for a token per call, with token reuse on: the
	// token is signed once and handed out again.
	b.Run("sqlite-reuse", func(b *testing.B) {
		benchToken(b, config.Default(), func(in *admin.ClientInput) { in.TokenReuseMinRemaining = 0.5 })
	})
	for _, alg := range []string{"PS256", "ES256", "EdDSA"} {
		b.Run("sqlite-"+alg, func(b *testing.B) {
			cfg := config.Default()
			cfg.SigningAlg = alg
			benchToken(b, cfg)
		})
	}
	// The EdDSA case with a DPoP proof (an Ed25519 key) per request:
	// proof checking, the replay cache and its database write, and the
	// cnf claim. The proofs are made outside the timer (serial) and
	// before the loop (parallel).
	b.Run("sqlite-EdDSA-DPoP", func(b *testing.B) {
		cfg := config.Default()
		cfg.SigningAlg = "EdDSA"
		benchTokenDPoP(b, cfg)
	})
	b.Run("postgres", func(b *testing.B) {
		cfg := config.Default()
		cfg.Database = pgtest.DSN(b)
		benchToken(b, cfg)
	})
}

// BenchmarkRSA2048Sign is the floor under the token endpoint: one
// RSASSA-PKCS1-v1_5 SHA-256 signature with a 2048-bit key.
func BenchmarkRSA2048Sign(b *testing.B) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("header.payload"))
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:])
			}
		})
	})
}

// BenchmarkTokenAuditSample is BenchmarkTokenEndpoint's EdDSA case (the
// cheapest signature, where the audit trail's share shows most) with a
// fraction of the issuances recorded in the audit trail: 0 (the
// observer's cost alone), 0.1 and 1 (every issuance stored).
func BenchmarkTokenAuditSample(b *testing.B) {
	for _, p := range []float64{0, 0.1, 1} {
		b.Run(fmt.Sprintf("EdDSA-sample-%g", p), func(b *testing.B) {
			cfg := config.Default()
			cfg.SigningAlg = "EdDSA"
			cfg.AuditIssuanceSample = p
			benchToken(b, cfg)
		})
	}
}

// BenchmarkObservability is the token endpoint with what issue 14 adds,
// against BenchmarkTokenEndpoint/sqlite and /sqlite-EdDSA of the release
// before it: "off" records no issuance (failures only) with the metrics
// off; the others have the metrics on and record every tenth issuance or
// every one in the audit trail (tracing stays off: no OTEL_* variable).
func BenchmarkObservability(b *testing.B) {
	for _, alg := range []string{"RS256", "EdDSA"} {
		for _, c := range []struct {
			name    string
			metrics bool
			sample  float64
		}{{"off", false, 0}, {"metrics-audit0.1", true, 0.1}, {"metrics-audit1", true, 1}} {
			b.Run(alg+"-"+c.name, func(b *testing.B) {
				cfg := config.Default()
				cfg.SigningAlg = alg
				cfg.AuditIssuanceSample = c.sample
				if c.metrics {
					cfg.MetricsAddr = "127.0.0.1:0"
				}
				benchToken(b, cfg)
			})
		}
	}
}

// BenchmarkTokenLatency is the token endpoint under 16 concurrent callers
// (wrk -c16's load, in-process): it reports the p50 and p99 of a
// request's time, where a tail shows.
func BenchmarkTokenLatency(b *testing.B) {
	for _, alg := range []string{"RS256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			cfg := config.Default()
			cfg.SigningAlg = alg
			_, h, newReq := benchServerWith(b, cfg, nil, Options{})
			b.ReportAllocs()
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			var mu sync.Mutex
			var all []time.Duration
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					start := time.Now()
					w := httptest.NewRecorder()
					h.ServeHTTP(w, newReq())
					mine = append(mine, time.Since(start))
					if w.Code != 200 {
						b.Errorf("status %d", w.Code)
						return
					}
				}
				mu.Lock()
				all = append(all, mine...)
				mu.Unlock()
			})
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}
