package verify

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/peer"
)

// Errors Middleware passes to MiddlewareOptions.OnError besides those of
// Verify, so that logs tell a missing binding from a bad proof.
var (
	// ErrSenderConstraint is a valid token refused for its binding: a
	// DPoP-bound token without its proof, a certificate-bound token
	// without its certificate, a bearer token where bound ones are
	// required.
	ErrSenderConstraint = fmt.Errorf("%w: sender constraint not met", ErrInvalidToken)
	// ErrDPoPProof (an ErrInvalidToken, like every refusal of the
	// caller's credentials) is a DPoP proof refused (RFC 9449 §4.3), or one
	// whose key is not the token's, or one used before.
	ErrDPoPProof = fmt.Errorf("%w: invalid DPoP proof", ErrInvalidToken)
)

type claimsKey struct{}

// presentedKey holds, next to the claims, how Middleware got the token,
// so that RequireScopes challenges in the scheme the client used.
type presentedKey struct{}

// presented is the scheme a token came with and, for a DPoP challenge, the
// realm and algs of the Middleware that accepted it.
type presented struct {
	scheme, realm, algs string
}

// ClaimsFromContext returns the claims Middleware put in the request context.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// MiddlewareOptions configures Middleware. The zero value accepts bearer
// tokens, DPoP-bound tokens with their proof, and certificate-bound tokens
// over their certificate, with the defaults of DPoPOptions.
type MiddlewareOptions struct {
	// Realm is named in WWW-Authenticate (default "api").
	Realm string
	// OnError, if set, is told why a request was refused (for logging);
	// the token itself is never passed.
	OnError func(r *http.Request, err error)

	// RequireSenderConstrained refuses tokens that are not bound to a key
	// or certificate (no cnf), so that a stolen token is worthless
	// without the client's key.
	RequireSenderConstrained bool
	// RequireDPoP accepts only DPoP-bound tokens presented with the DPoP
	// scheme and a proof; the Bearer scheme is refused.
	RequireDPoP bool
	// RequireMTLS accepts only certificate-bound tokens (RFC 8705 §3)
	// presented over their certificate.
	RequireMTLS bool

	// DPoP tunes the checking of DPoP proofs.
	DPoP DPoPOptions

	// TrustedProxies are the addresses (of a TLS-terminating proxy) whose
	// X-Forwarded-Proto and ClientCertHeader are believed; from any other
	// address both are ignored.
	TrustedProxies []netip.Prefix
	// ClientCertHeader names the header in which a trusted proxy passes
	// the client certificate it verified (Envoy's X-Forwarded-Client-Cert,
	// nginx's $ssl_client_escaped_cert, RFC 9440's Client-Cert, PEM or
	// base64 DER), for certificate-bound tokens.
	ClientCertHeader string
	// PublicOrigin is the scheme and host (with a path prefix a proxy
	// strips, if any) clients use to reach this API, e.g.
	// "https://api.example.com": DPoP proofs name it in htu. Empty: the
	// scheme of the connection (or a trusted proxy's X-Forwarded-Proto)
	// and the request's Host.
	PublicOrigin string
}

// DPoPOptions tune the checking of DPoP proofs (RFC 9449 §7.1). The zero
// value accepts ES256, RS256, PS256 and EdDSA proofs issued up to a
// minute ago (5 s ahead), without nonces, with an in-memory replay cache
// of 100 000 proofs.
type DPoPOptions struct {
	// Algorithms allowed for proofs (nil: ES256, RS256, PS256, EdDSA).
	Algorithms []string
	// MaxAge is how old a proof may be (zero: 60 s); Leeway how far
	// ahead its iat may be (zero: 5 s).
	MaxAge, Leeway time.Duration
	// NonceSecret, when set (at least 16 random bytes), makes nonces
	// mandatory (RFC 9449 §9): a proof without a current one is answered
	// use_dpop_nonce with a DPoP-Nonce header. Replicas given the same
	// secret accept each other's nonces.
	NonceSecret []byte
	// NoncePeriod is how often the nonce changes (zero: 5 min); a nonce
	// is accepted for two periods.
	NoncePeriod time.Duration
	// ReplayStore, when set, is asked after the in-memory cache whether a
	// proof is new (its key has not been used before), so that replicas of
	// an API behind a load balancer refuse each other's replays: back it
	// with a store they share (Redis SET NX with an expiry, a database
	// table with a unique key). An error refuses the request with 503
	// rather than let a possible replay through.
	ReplayStore ReplayStore
	// ReplayCacheSize bounds the in-memory memory of used proofs (zero:
	// 100 000). When that many live proofs are held, further ones are
	// answered 503 (or left to ReplayStore), never let an early one be
	// forgotten and replayed. It is per process: behind a load balancer,
	// a proof replayed to another replica within its one-minute window
	// passes unless a ReplayStore is shared (or a client's requests stick
	// to one replica).
	ReplayCacheSize int
}

// ReplayStore remembers used DPoP proofs across the replicas of an API.
// Use records key until the given time and reports whether it was new;
// it must be atomic (two replicas using one key at once: one gets true).
// Keys are fixed-size hashes; they never contain the proof or the token.
type ReplayStore interface {
	Use(ctx context.Context, key string, until time.Time) (fresh bool, err error)
}

// Middleware returns net/http middleware that requires a valid access
// token and puts its claims in the request context.
//
//   - Bearer (RFC 6750 §2.1): a token without cnf passes as before. A
//     DPoP-bound token (cnf.jkt) is refused (RFC 9449 §7.2); a
//     certificate-bound one (cnf x5t#S256) needs the request's client
//     certificate — of the TLS connection, or ClientCertHeader from a
//     trusted proxy — to have that SHA-256 thumbprint (RFC 8705 §3).
//   - DPoP (RFC 9449 §7.1): "Authorization: DPoP <token>" and exactly one
//     DPoP header holding a proof for this request's method and URL with
//     the token's hash (ath), signed by the key the token is bound to
//     (cnf.jkt), not seen before, and carrying a nonce if NonceSecret is
//     set.
//
// Failures are answered 401 with WWW-Authenticate (RFC 6750 §3, RFC 9449
// §7.1): the scheme the client used carries error="invalid_token" (or
// invalid_dpop_proof, use_dpop_nonce) and a fixed error_description, and
// the other scheme this middleware accepts is listed too; with no token,
// each accepted scheme is listed without an error. The DPoP challenge
// carries algs.
//
// Middleware panics on options that cannot work (a NonceSecret under 16
// bytes, a PublicOrigin that is not an http(s) URL, an unknown algorithm):
// a configuration mistake to catch at startup.
func Middleware(v *Verifier, opts MiddlewareOptions) func(http.Handler) http.Handler {
	m := newMiddleware(v, opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(w, r, next)
		})
	}
}

type middleware struct {
	v          *Verifier
	opts       MiddlewareOptions
	realm      string
	dpop       dpop.Options
	algs       string // the algs challenge parameter
	replay     *dpop.ReplayCache
	proxies    peer.Config // TrustedProxies
	origin     string
	bearerOK   bool // the Bearer scheme is accepted
	dpopListed bool // the DPoP scheme is offered in challenges
}

func newMiddleware(v *Verifier, opts MiddlewareOptions) *middleware {
	m := &middleware{v: v, opts: opts, realm: opts.Realm, bearerOK: !opts.RequireDPoP, dpopListed: !opts.RequireMTLS || opts.RequireDPoP}
	if m.realm == "" {
		m.realm = "api"
	}
	d := opts.DPoP
	algs := d.Algorithms
	if algs == nil {
		algs = dpop.DefaultAlgs
	}
	for _, a := range algs {
		if !slices.Contains(dpop.DefaultAlgs, a) {
			panic(fmt.Sprintf("verify: DPoP algorithm %q is not supported (only %s)", a, strings.Join(dpop.DefaultAlgs, ", ")))
		}
	}
	m.algs = strings.Join(algs, " ")
	m.dpop = dpop.Options{Algs: algs, MaxAge: d.MaxAge, Leeway: d.Leeway}
	if d.NonceSecret != nil {
		m.dpop.Nonces = dpop.NewNonces(d.NonceSecret, d.NoncePeriod, v.cfg.Now)
	}
	m.replay = dpop.NewReplayCache(d.ReplayCacheSize)
	m.proxies = peer.Config{TrustedProxies: opts.TrustedProxies}
	if opts.PublicOrigin != "" {
		if _, err := dpop.NormalizeURL(opts.PublicOrigin); err != nil {
			panic(fmt.Sprintf("verify: PublicOrigin %q is not an http or https URL", opts.PublicOrigin))
		}
		m.origin = strings.TrimRight(opts.PublicOrigin, "/")
	}
	return m
}

// Schemes of Authorization.
const (
	schemeBearer = "Bearer"
	schemeDPoP   = "DPoP"
)

// refusal is why a request is refused: the scheme whose challenge carries
// the error, the RFC's code and a fixed description, and what OnError is
// told. A refusal without a code is a token that could not be judged.
type refusal struct {
	scheme, code, desc string
	err                error
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	scheme, token := credentials(r)
	var claims *Claims
	var f *refusal
	switch scheme {
	case schemeBearer:
		claims, f = m.bearer(r, token)
	case schemeDPoP:
		claims, f = m.dpopToken(w, r, token)
	default:
		m.challenge(w, http.StatusUnauthorized, nil)
		return
	}
	if f != nil {
		if m.opts.OnError != nil && f.err != nil {
			m.opts.OnError(r, f.err)
		}
		if f.code == "" {
			// The token could not be judged (online mode, issuer
			// unreachable): not the caller's fault.
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"temporarily_unavailable"}` + "\n"))
			return
		}
		m.challenge(w, http.StatusUnauthorized, f)
		return
	}
	ctx := context.WithValue(r.Context(), claimsKey{}, claims)
	ctx = context.WithValue(ctx, presentedKey{}, presented{scheme: scheme, realm: m.realm, algs: m.algs})
	next.ServeHTTP(w, r.WithContext(ctx))
}

// credentials reads "Authorization: <scheme> <token>" for the Bearer and
// DPoP schemes, whose names are case-insensitive (RFC 7235 §2.1); scheme
// is "" for anything else or an empty token.
func credentials(r *http.Request) (scheme, token string) {
	s, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	switch {
	case !ok || token == "":
		return "", ""
	case strings.EqualFold(s, schemeBearer):
		return schemeBearer, token
	case strings.EqualFold(s, schemeDPoP):
		return schemeDPoP, token
	}
	return "", ""
}

// verifyToken runs Verify, mapping its errors to a refusal in scheme.
func (m *middleware) verifyToken(r *http.Request, scheme, token string) (*Claims, *refusal) {
	claims, err := m.v.VerifyBound(r.Context(), token)
	if err == nil {
		return claims, nil
	}
	if !errors.Is(err, ErrInvalidToken) {
		return nil, &refusal{err: err} // 503
	}
	desc := "the access token is invalid"
	switch {
	case errors.Is(err, ErrExpired):
		desc = "the access token expired"
	case errors.Is(err, ErrNotYetValid):
		desc = "the access token is not valid yet"
	case errors.Is(err, ErrRevoked):
		desc = "the access token was revoked"
	}
	return nil, &refusal{scheme: scheme, code: "invalid_token", desc: desc, err: err}
}

func invalidToken(scheme, desc string) *refusal {
	return &refusal{scheme: scheme, code: "invalid_token", desc: desc, err: fmt.Errorf("%w: %s", ErrSenderConstraint, desc)}
}

func invalidProof(desc string) *refusal {
	return &refusal{scheme: schemeDPoP, code: dpop.CodeInvalidProof, desc: desc, err: fmt.Errorf("%w: %s", ErrDPoPProof, desc)}
}

// bearer checks a token presented as Bearer.
func (m *middleware) bearer(r *http.Request, token string) (*Claims, *refusal) {
	if !m.bearerOK {
		return nil, invalidToken(schemeDPoP, "this API takes DPoP-bound access tokens only, with the DPoP scheme and a proof")
	}
	claims, f := m.verifyToken(r, schemeBearer, token)
	if f != nil {
		return nil, f
	}
	switch {
	case claims.Cnf.JKT != "":
		// RFC 9449 §7.2: a DPoP-bound token is never a bearer token.
		return nil, invalidToken(schemeBearer, "the access token is DPoP-bound: present it with the DPoP scheme and a proof")
	case claims.Cnf.X5tS256 != "":
		if f := m.certificate(r, schemeBearer, claims); f != nil {
			return nil, f
		}
	case m.opts.RequireMTLS:
		return nil, invalidToken(schemeBearer, "this API requires certificate-bound access tokens")
	case m.opts.RequireSenderConstrained:
		return nil, invalidToken(schemeBearer, "this API requires sender-constrained access tokens")
	}
	return claims, nil
}

// dpopToken checks a token presented with the DPoP scheme and its proof
// (RFC 9449 §7.1).
func (m *middleware) dpopToken(w http.ResponseWriter, r *http.Request, token string) (*Claims, *refusal) {
	proofs := r.Header.Values("DPoP")
	switch len(proofs) {
	case 0:
		return nil, invalidProof("a DPoP proof is required with a DPoP-bound access token")
	case 1:
	default:
		return nil, invalidProof("exactly one DPoP header is allowed")
	}
	claims, f := m.verifyToken(r, schemeDPoP, token)
	if f != nil {
		return nil, f
	}
	now := m.v.cfg.Now()
	p, perr := dpop.Check(proofs[0], dpop.Request{Method: r.Method, URL: m.requestURL(r), AccessToken: token}, now, m.dpop)
	if perr != nil {
		if perr.Code == dpop.CodeUseNonce {
			w.Header().Set("DPoP-Nonce", m.dpop.Nonces.Current())
		}
		return nil, &refusal{scheme: schemeDPoP, code: perr.Code, desc: perr.Description, err: fmt.Errorf("%w: %s", ErrDPoPProof, perr.Description)}
	}
	if claims.Cnf.JKT == "" {
		return nil, invalidToken(schemeDPoP, "the access token is not DPoP-bound")
	}
	if subtle.ConstantTimeCompare([]byte(p.JKT), []byte(claims.Cnf.JKT)) != 1 {
		return nil, invalidProof("the proof is not signed with the key the access token is bound to")
	}
	if claims.Cnf.X5tS256 != "" {
		if f := m.certificate(r, schemeDPoP, claims); f != nil {
			return nil, f
		}
	} else if m.opts.RequireMTLS {
		return nil, invalidToken(schemeDPoP, "this API requires certificate-bound access tokens")
	}
	// Last, so that only a proof good in every other way is remembered.
	key, until := dpop.ReplayKey(p), m.dpop.ReplayUntil(p)
	store := m.opts.DPoP.ReplayStore
	fresh, full := m.replay.TryUse(key, until, now)
	switch {
	case full && store == nil:
		// More live proofs than the cache holds: refusing is safe,
		// forgetting one early would let it be replayed (found by the
		// attack). ReplayStore, when set, decides alone.
		return nil, &refusal{err: errors.New("verify: the DPoP replay cache is full (raise DPoPOptions.ReplayCacheSize or set a ReplayStore)")} // 503
	case !full && !fresh:
		return nil, invalidProof("the proof was used before")
	}
	if store != nil {
		fresh, err := store.Use(r.Context(), key, until)
		if err != nil {
			return nil, &refusal{err: fmt.Errorf("verify: DPoP replay store: %w", err)} // 503
		}
		if !fresh {
			return nil, invalidProof("the proof was used before")
		}
	}
	if m.dpop.Nonces != nil && p.Nonce != m.dpop.Nonces.Current() {
		// The nonce changed: hand out the new one (RFC 9449 §9).
		w.Header().Set("DPoP-Nonce", m.dpop.Nonces.Current())
	}
	return claims, nil
}

// certificate checks that the request comes with the client certificate a
// token's cnf x5t#S256 names (RFC 8705 §3).
func (m *middleware) certificate(r *http.Request, scheme string, claims *Claims) *refusal {
	cert, err := m.clientCert(r)
	switch {
	case err != nil:
		return invalidToken(scheme, "the client certificate header holds no certificate")
	case cert == nil:
		return invalidToken(scheme, "the access token is certificate-bound: a client certificate is required")
	}
	if subtle.ConstantTimeCompare([]byte(peer.Thumbprint(cert)), []byte(claims.Cnf.X5tS256)) != 1 {
		return invalidToken(scheme, "the access token is bound to another client certificate")
	}
	return nil
}

// clientCert is the request's client certificate: from ClientCertHeader
// when the connection comes from a trusted proxy (none when the proxy sent
// no header: the connection's certificate would be the proxy's), else the
// TLS connection's. (The rules of internal/peer, without its rewriting of
// RemoteAddr: this middleware changes nothing in the request it passes on.)
func (m *middleware) clientCert(r *http.Request) (*x509.Certificate, error) {
	if m.fromTrustedProxy(r) {
		if m.opts.ClientCertHeader == "" {
			return nil, nil
		}
		cert, _, err := peer.HeaderCertificate(r.Header, m.opts.ClientCertHeader)
		return cert, err
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return r.TLS.PeerCertificates[0], nil
	}
	return nil, nil
}

// fromTrustedProxy reports whether the connection comes from one of
// TrustedProxies (the rule of package peer, which the server uses too).
func (m *middleware) fromTrustedProxy(r *http.Request) bool {
	return m.proxies.Trusted(r.RemoteAddr)
}

// requestURL is the URL the client reached, for htu: PublicOrigin, or the
// connection's scheme (a trusted proxy's X-Forwarded-Proto) and Host;
// then the path of the request line, as sent (http.StripPrefix changes
// r.URL, not what the client signed).
func (m *middleware) requestURL(r *http.Request) string {
	path := r.URL.EscapedPath()
	if uri := r.RequestURI; strings.HasPrefix(uri, "/") {
		path, _, _ = strings.Cut(uri, "?")
	} else if u, err := url.Parse(uri); err == nil && u.Host != "" {
		path = u.EscapedPath()
	}
	if m.origin != "" {
		return m.origin + path
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if m.fromTrustedProxy(r) {
		proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
		if proto = strings.ToLower(strings.TrimSpace(proto)); proto == "http" || proto == "https" {
			scheme = proto
		}
	}
	return scheme + "://" + r.Host + path
}

// challenge answers status with a WWW-Authenticate value per accepted
// scheme, f's first and carrying its error (none without f), and a JSON
// body with the error.
func (m *middleware) challenge(w http.ResponseWriter, status int, f *refusal) {
	var code, desc, first string
	if f != nil {
		code, desc, first = f.code, f.desc, f.scheme
	}
	bearer := `Bearer realm="` + m.realm + `"`
	dpopC := `DPoP realm="` + m.realm + `"`
	if f != nil {
		errParams := `, error="` + code + `", error_description="` + desc + `"`
		if first == schemeBearer {
			bearer += errParams
		} else {
			dpopC += errParams
		}
	}
	dpopC += `, algs="` + m.algs + `"`
	h := w.Header()
	if first == schemeDPoP {
		h.Add("WWW-Authenticate", dpopC)
		if m.bearerOK {
			h.Add("WWW-Authenticate", bearer)
		}
	} else {
		if m.bearerOK {
			h.Add("WWW-Authenticate", bearer)
		}
		if m.dpopListed {
			h.Add("WWW-Authenticate", dpopC)
		}
	}
	writeError(w, status, code, desc)
}

// RequireScopes returns middleware, to be placed inside Middleware, that
// answers 403 with error="insufficient_scope" (RFC 6750 §3.1) unless the
// token has every one of scopes. The challenge is in the scheme the token
// came with, with Middleware's realm: a token presented with DPoP gets a
// DPoP challenge with Middleware's algs too (RFC 9449 §7.1).
func RequireScopes(scopes ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, ok := ClaimsFromContext(r.Context())
			if !ok {
				challenge(w, "api", http.StatusUnauthorized, "invalid_token", "no verified token", "")
				return
			}
			for _, s := range scopes {
				if !c.HasScope(s) {
					p, _ := r.Context().Value(presentedKey{}).(presented)
					if p.scheme == schemeDPoP {
						dpopScopeChallenge(w, p, strings.Join(scopes, " "))
						return
					}
					realm := p.realm
					if realm == "" {
						realm = "api"
					}
					challenge(w, realm, http.StatusForbidden, "insufficient_scope", "the access token lacks a required scope", strings.Join(scopes, " "))
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

func challenge(w http.ResponseWriter, realm string, status int, code, desc, scope string) {
	v := `Bearer realm="` + realm + `"`
	if code != "" {
		v += `, error="` + code + `"`
	}
	if desc != "" {
		v += `, error_description="` + desc + `"`
	}
	if scope != "" {
		v += `, scope="` + scope + `"`
	}
	w.Header().Set("WWW-Authenticate", v)
	writeError(w, status, code, desc)
}

// dpopScopeChallenge answers 403 insufficient_scope to a token presented
// with the DPoP scheme: one DPoP challenge, for the client to see that the
// scheme it used is right and only the scope is missing.
func dpopScopeChallenge(w http.ResponseWriter, p presented, scope string) {
	const code, desc = "insufficient_scope", "the access token lacks a required scope"
	w.Header().Set("WWW-Authenticate", `DPoP realm="`+p.realm+`", error="`+code+`", error_description="`+desc+`", scope="`+scope+`", algs="`+p.algs+`"`)
	writeError(w, http.StatusForbidden, code, desc)
}

// writeError writes the JSON error body of a refusal.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]string{"error": code}
	if code == "" {
		body["error"] = "unauthorized"
	}
	if desc != "" {
		body["error_description"] = desc
	}
	_ = json.NewEncoder(w).Encode(body)
}
