// Command resource-server is a small API protected by m2mauth tokens: it
// serves GET /api/data to callers with a valid access token (and, with
// --require-scope, that scope), using package verify with discovery.
//
//	go run ./examples/resource-server --issuer http://127.0.0.1:8080 --audience https://api.example.com --require-scope orders:read
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/m2mauth/m2mauth/verify"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9090", "listen address")
	issuer := flag.String("issuer", "http://127.0.0.1:8080", "the m2mauth server (its discovery document gives the JWKS)")
	audience := flag.String("audience", "", "this API's identifier, required in the tokens' aud")
	scope := flag.String("require-scope", "", "space-separated scopes every request's token must have")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	h, err := newHandler(*issuer, *audience, strings.Fields(*scope), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "resource-server:", err)
		os.Exit(2)
	}
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 32 << 10}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("resource server listening", "addr", *addr, "issuer", *issuer, "audience", *audience)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "resource-server:", err)
		os.Exit(1)
	}
}

// newHandler builds the API: /api/data behind verify's middleware.
func newHandler(issuer, audience string, scopes []string, log *slog.Logger) (http.Handler, error) {
	if audience == "" {
		return nil, errors.New("--audience is required")
	}
	v, err := verify.New(verify.Config{Issuer: issuer, Audience: audience})
	if err != nil {
		return nil, err
	}
	data := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFromContext(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"message": "Authenticated successfully", "sub": c.Subject})
	}))
	if len(scopes) > 0 {
		data = verify.RequireScopes(scopes...)(data)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/data", verify.Middleware(v, verify.MiddlewareOptions{
		Realm:   audience,
		OnError: func(r *http.Request, err error) { log.Info("token refused", "path", r.URL.Path, "reason", err) },
	})(data))
	return mux, nil
}
