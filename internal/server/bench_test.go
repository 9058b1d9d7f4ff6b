package server

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// benchServer builds a server in-process with one API and one client and
// returns its handler and a request factory for the token endpoint.
func benchServer(b *testing.B, cfg config.Config) (http.Handler, func() *http.Request) {
	b.Helper()
	_, h, newReq := benchServerSrv(b, cfg)
	return h, newReq
}

// benchServerSrv is benchServer, also returning the server.
func benchServerSrv(b *testing.B, cfg config.Config) (*Server, http.Handler, func() *http.Request) {
	b.Helper()
	cfg.DataDir = b.TempDir()
	cfg.LogLevel = "error"
	srv, err := New(context.Background(), cfg, NewLogger(io.Discard, "json", "error"), nil)
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
	c, secret, err := svc.CreateClient(context.Background(), admin.ClientInput{Name: "bench",
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, DefaultAudience: ordersAPI})
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

func benchToken(b *testing.B, cfg config.Config) {
	h, newReq := benchServer(b, cfg)
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

// BenchmarkTokenEndpoint measures a whole client-credentials request
// in-process: parse, authenticate (client cache + HMAC), policy, sign,
// render, through the middleware.
func BenchmarkTokenEndpoint(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchToken(b, config.Default()) })
	for _, alg := range []string{"PS256", "ES256", "EdDSA"} {
		b.Run("sqlite-"+alg, func(b *testing.B) {
			cfg := config.Default()
			cfg.SigningAlg = alg
			benchToken(b, cfg)
		})
	}
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
