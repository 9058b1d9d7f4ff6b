// Command resource-server is a small API protected by m2mauth tokens: it
// serves GET /api/data to callers with a valid access token (and, with
// --require-scope, that scope), using package verify with discovery.
//
//	go run ./examples/resource-server --issuer http://127.0.0.1:8080 --audience https://api.example.com --require-scope orders:read
//
// Sender-constrained tokens are always honoured (a DPoP-bound token needs
// its proof, a certificate-bound one its certificate); --require-dpop and
// --require-mtls refuse every other token. Certificate-bound tokens need
// the client's certificate: serve TLS with --tls-cert and --tls-key (client
// certificates are requested, and compared with the token's binding), or
// run behind a TLS-terminating proxy named by --trusted-proxies that passes
// the certificate in --client-cert-header.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
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
	var o senderOptions
	flag.BoolVar(&o.requireDPoP, "require-dpop", false, "accept only DPoP-bound tokens, presented with a DPoP proof")
	flag.BoolVar(&o.requireMTLS, "require-mtls", false, "accept only certificate-bound tokens, presented over their client certificate")
	flag.StringVar(&o.publicOrigin, "public-origin", "", "the scheme and host clients reach this API at (DPoP proofs name it), when behind a proxy")
	flag.StringVar(&o.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs of TLS-terminating proxies whose X-Forwarded-Proto and certificate header are believed")
	flag.StringVar(&o.certHeader, "client-cert-header", "", "the header in which a trusted proxy passes the client certificate")
	tlsCert := flag.String("tls-cert", "", "serve HTTPS with this certificate (PEM), requesting client certificates")
	tlsKey := flag.String("tls-key", "", "the private key (PEM) of --tls-cert")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	h, err := newHandler(*issuer, *audience, strings.Fields(*scope), o, log)
	if err == nil && (*tlsCert == "") != (*tlsKey == "") {
		err = errors.New("--tls-cert and --tls-key go together")
	}
	if err == nil && o.requireMTLS && *tlsCert == "" && o.certHeader == "" {
		err = errors.New("--require-mtls needs the client certificate: --tls-cert and --tls-key, or --trusted-proxies and --client-cert-header")
	}
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
	// Listen first, so that "listening" is logged only once it is true.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "resource-server:", err)
		os.Exit(1)
	}
	log.Info("resource server listening", "addr", ln.Addr().String(), "issuer", *issuer, "audience", *audience, "tls", *tlsCert != "")
	if *tlsCert != "" {
		// Any client certificate is taken, unverified: a certificate-bound
		// token names the one it is bound to (RFC 8705 §3), and the
		// authorization server checked it when it issued the token.
		srv.TLSConfig = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
		err = srv.ServeTLS(ln, *tlsCert, *tlsKey)
	} else {
		err = srv.Serve(ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "resource-server:", err)
		os.Exit(1)
	}
}

// senderOptions are the flags about sender-constrained tokens.
type senderOptions struct {
	requireDPoP, requireMTLS bool
	publicOrigin             string
	trustedProxies           string // comma-separated CIDRs
	certHeader               string
}

// newHandler builds the API: /api/data behind verify's middleware.
func newHandler(issuer, audience string, scopes []string, o senderOptions, log *slog.Logger) (http.Handler, error) {
	if audience == "" {
		return nil, errors.New("--audience is required")
	}
	var proxies []netip.Prefix
	for _, p := range strings.Split(o.trustedProxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is not a CIDR", p)
		}
		proxies = append(proxies, prefix)
	}
	if o.publicOrigin != "" {
		if u, err := url.Parse(o.publicOrigin); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return nil, errors.New("--public-origin must be an http or https URL such as https://api.example.com")
		}
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
		Realm:            audience,
		OnError:          func(r *http.Request, err error) { log.Info("token refused", "path", r.URL.Path, "reason", err) },
		RequireDPoP:      o.requireDPoP,
		RequireMTLS:      o.requireMTLS,
		PublicOrigin:     o.publicOrigin,
		TrustedProxies:   proxies,
		ClientCertHeader: o.certHeader,
	})(data))
	return mux, nil
}
