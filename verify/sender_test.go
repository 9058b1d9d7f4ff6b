package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/jws"
)

// Cnf is read from the token; a cnf of the wrong shape makes it invalid.
func TestClaimsCnf(t *testing.T) {
	k := getKeys(t)
	v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}, &clock{t: testNow}, JWKSOptions{})
	for _, tc := range []struct {
		name string
		cnf  string // "" for none
		want Confirmation
		bad  bool
	}{
		{"none", "", Confirmation{}, false},
		{"jkt", `{"jkt":"abc"}`, Confirmation{JKT: "abc"}, false},
		{"x5t#S256", `{"x5t#S256":"def"}`, Confirmation{X5tS256: "def"}, false},
		{"both, and another method", `{ "jkt" : "abc", "jwk":{"kty":"EC"}, "x5t#S256":"def"}`, Confirmation{JKT: "abc", X5tS256: "def"}, false},
		{"empty object", `{}`, Confirmation{}, false},
		{"a string", `"abc"`, Confirmation{}, true},
		{"an array", `[{"jkt":"abc"}]`, Confirmation{}, true},
		{"null", `null`, Confirmation{}, true},
		{"jkt a number", `{"jkt":1}`, Confirmation{}, true},
		{"jkt empty", `{"jkt":""}`, Confirmation{}, true},
		{"x5t#S256 null", `{"x5t#S256":null}`, Confirmation{}, true},
		{"jkt twice", `{"jkt":"abc","jkt":"evil"}`, Confirmation{}, true},
		{"case variant is another member", `{"JKT":"abc"}`, Confirmation{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := goodClaims()
			claims := mustJSON(c)
			if tc.cnf != "" {
				claims = strings.TrimSuffix(claims, "}") + `,"cnf":` + tc.cnf + "}"
			}
			tok := sign(t, hdr("RS256", "rsa"), claims, "RS256", k.rsa)
			got, err := v.VerifyBound(context.Background(), tok)
			if tc.bad {
				if got != nil || !errors.Is(err, ErrMalformed) {
					t.Fatalf("VerifyBound = %v, %v; want ErrMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Cnf != tc.want || got.Cnf.Bound() != (tc.want != Confirmation{}) {
				t.Errorf("Cnf %+v, want %+v", got.Cnf, tc.want)
			}
			// Verify, which cannot check a binding, refuses a bound token:
			// it would otherwise work as a bearer token.
			plain, err := v.Verify(context.Background(), tok)
			if got.Cnf.Bound() {
				if plain != nil || !errors.Is(err, ErrBound) || !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("Verify of a bound token = %v, %v; want ErrBound", plain, err)
				}
			} else if err != nil || plain == nil {
				t.Fatalf("Verify of a bearer token: %v", err)
			}
		})
	}
}

// clientKeys are a client's DPoP keys and certificates.
type clientKeys struct {
	dpop, dpop2 *ecdsa.PrivateKey
	ed          ed25519.PrivateKey
	cert, cert2 *x509.Certificate
}

var (
	clientOnce sync.Once
	ck         clientKeys
)

func getClientKeys(t testing.TB) clientKeys {
	clientOnce.Do(func() {
		ck.dpop, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ck.dpop2, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, ck.ed, _ = ed25519.GenerateKey(rand.Reader)
		ck.cert = selfSigned(t, "client-a")
		ck.cert2 = selfSigned(t, "client-b")
	})
	return ck
}

func selfSigned(t testing.TB, cn string) *x509.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func jktOf(t testing.TB, key crypto.Signer) string {
	jkt, err := jws.Thumbprint(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return jkt
}

func x5tOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// boundToken is an access token of the issuer with cnf (nil: none).
func boundToken(t testing.TB, cnf map[string]string, kv ...any) string {
	k := getKeys(t)
	args := append([]any{"cnf", nil}, kv...)
	if cnf != nil {
		args[1] = cnf
	}
	return sign(t, hdr("ES256", "ec"), claimsWith(args...), "ES256", k.ec)
}

func proof(t testing.TB, key crypto.Signer, method, url string, o dpop.ProofOptions) string {
	if o.Now.IsZero() {
		o.Now = testNow
	}
	p, err := dpop.NewProof(key, method, url, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const apiURL = "http://api.example/api/data"

func TestMiddlewareSenderConstrained(t *testing.T) {
	k := getKeys(t)
	c := getClientKeys(t)
	clk := &clock{t: testNow}
	v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}, clk, JWKSOptions{})
	nonceSecret := []byte("0123456789abcdef0123456789abcdef")
	nonces := dpop.NewNonces(nonceSecret, 0, clk.now)
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

	plain := boundToken(t, nil)
	dpopTok := boundToken(t, map[string]string{"jkt": jktOf(t, c.dpop)})
	edTok := boundToken(t, map[string]string{"jkt": jktOf(t, c.ed)})
	certTok := boundToken(t, map[string]string{"x5t#S256": x5tOf(c.cert)})
	bothTok := boundToken(t, map[string]string{"jkt": jktOf(t, c.dpop), "x5t#S256": x5tOf(c.cert)})
	expiredDPoP := boundToken(t, map[string]string{"jkt": jktOf(t, c.dpop)}, "exp", testNow.Add(-time.Hour).Unix())
	pr := func(key crypto.Signer, method, url, token string) string {
		return proof(t, key, method, url, dpop.ProofOptions{AccessToken: token})
	}
	withTLS := func(cert *x509.Certificate) func(*http.Request) {
		return func(r *http.Request) { r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}} }
	}
	fromProxy := func(addr, header string) func(*http.Request) {
		return func(r *http.Request) {
			r.RemoteAddr = addr
			if header != "" {
				r.Header.Set("X-Client-Cert", header)
			}
		}
	}
	certHeader := base64.StdEncoding.EncodeToString(c.cert.Raw)

	const (
		bearerPlain = `Bearer realm="api"`
		dpopPlain   = `DPoP realm="api", algs="ES256 RS256 PS256 EdDSA"`
	)
	bearerErr := func(desc string) string {
		return `Bearer realm="api", error="invalid_token", error_description="` + desc + `"`
	}
	dpopErr := func(code, desc string) string {
		return `DPoP realm="api", error="` + code + `", error_description="` + desc + `", algs="ES256 RS256 PS256 EdDSA"`
	}
	const (
		invalidProof = "invalid_dpop_proof"
		invalidTok   = "invalid_token"
	)

	type request struct {
		method, path string
		authz        string
		proofs       []string
		tweak        func(*http.Request)
	}
	tests := []struct {
		name    string
		opts    MiddlewareOptions
		req     request
		repeat  bool     // send the same request twice; judge the second answer
		status  int      // 200 or 401
		chals   []string // WWW-Authenticate values, in order
		logged  error    // what OnError must be told (nil: not called)
		nonceHd bool     // a DPoP-Nonce header is expected
	}{
		{name: "no credentials lists both schemes", req: request{}, status: 401, chals: []string{bearerPlain, dpopPlain}},
		{name: "plain bearer token", req: request{authz: "Bearer " + plain}, status: 200},
		{name: "DPoP", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, dpopTok)}}, status: 200},
		{name: "DPoP scheme in another case, EdDSA proof", req: request{authz: "dpop " + edTok, proofs: []string{pr(c.ed, "GET", apiURL, edTok)}}, status: 200},
		{name: "DPoP missing ath", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, "")}},
			status: 401, chals: []string{dpopErr(invalidProof, "the proof's ath is missing or does not match the access token"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP wrong ath", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, edTok)}},
			status: 401, chals: []string{dpopErr(invalidProof, "the proof's ath is missing or does not match the access token"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP proof by another key than cnf.jkt", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop2, "GET", apiURL, dpopTok)}},
			status: 401, chals: []string{dpopErr(invalidProof, "the proof is not signed with the key the access token is bound to"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP replayed proof", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, dpopTok)}}, repeat: true,
			status: 401, chals: []string{dpopErr(invalidProof, "the proof was used before"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP wrong htm", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "POST", apiURL, dpopTok)}},
			status: 401, chals: []string{dpopErr(invalidProof, "the proof's htm does not match the request method"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP wrong htu path", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", "http://api.example/api/other", dpopTok)}},
			status: 401, chals: []string{dpopErr(invalidProof, "the proof's htu does not match the request URL"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP wrong htu host", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", "http://evil.example/api/data", dpopTok)}},
			status: 401, chals: []string{dpopErr(invalidProof, "the proof's htu does not match the request URL"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP htu https over plain http", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", "https://api.example/api/data", dpopTok)}},
			status: 401, chals: []string{dpopErr(invalidProof, "the proof's htu does not match the request URL"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP query of the request ignored", req: request{path: "/api/data?page=2", authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, dpopTok)}}, status: 200},
		{name: "DPoP over TLS", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", "https://api.example/api/data", dpopTok)}, tweak: withTLS(c.cert2)}, status: 200},
		{name: "DPoP https from a trusted proxy's X-Forwarded-Proto", opts: MiddlewareOptions{TrustedProxies: proxies},
			req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", "https://api.example/api/data", dpopTok)},
				tweak: func(r *http.Request) { r.RemoteAddr = "10.1.2.3:5000"; r.Header.Set("X-Forwarded-Proto", "https") }}, status: 200},
		{name: "DPoP X-Forwarded-Proto from anyone else ignored", opts: MiddlewareOptions{TrustedProxies: proxies},
			req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", "https://api.example/api/data", dpopTok)},
				tweak: func(r *http.Request) { r.RemoteAddr = "192.0.2.1:5000"; r.Header.Set("X-Forwarded-Proto", "https") }},
			status: 401, chals: []string{dpopErr(invalidProof, "the proof's htu does not match the request URL"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP with PublicOrigin", opts: MiddlewareOptions{PublicOrigin: "https://API.example:443/v1/"},
			req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", "https://api.example/v1/api/data", dpopTok)}}, status: 200},
		{name: "DPoP token without proof", req: request{authz: "DPoP " + dpopTok},
			status: 401, chals: []string{dpopErr(invalidProof, "a DPoP proof is required with a DPoP-bound access token"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP two proof headers", req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, dpopTok), pr(c.dpop, "GET", apiURL, dpopTok)}},
			status: 401, chals: []string{dpopErr(invalidProof, "exactly one DPoP header is allowed"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP garbage proof", req: request{authz: "DPoP " + dpopTok, proofs: []string{"garbage"}},
			status: 401, chals: []string{dpopErr(invalidProof, "the proof is not a compact JWS with JSON header and claims"), bearerPlain}, logged: ErrDPoPProof},
		{name: "DPoP expired token", req: request{authz: "DPoP " + expiredDPoP, proofs: []string{pr(c.dpop, "GET", apiURL, expiredDPoP)}},
			status: 401, chals: []string{dpopErr(invalidTok, "the access token expired"), bearerPlain}, logged: ErrExpired},
		{name: "DPoP scheme with an unbound token", req: request{authz: "DPoP " + plain, proofs: []string{pr(c.dpop, "GET", apiURL, plain)}},
			status: 401, chals: []string{dpopErr(invalidTok, "the access token is not DPoP-bound"), bearerPlain}, logged: ErrSenderConstraint},
		{name: "DPoP-bound token as Bearer", req: request{authz: "Bearer " + dpopTok},
			status: 401, chals: []string{bearerErr("the access token is DPoP-bound: present it with the DPoP scheme and a proof"), dpopPlain}, logged: ErrSenderConstraint},
		{name: "DPoP-bound token as Bearer with a proof", req: request{authz: "Bearer " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, dpopTok)}},
			status: 401, chals: []string{bearerErr("the access token is DPoP-bound: present it with the DPoP scheme and a proof"), dpopPlain}, logged: ErrSenderConstraint},
		{name: "DPoP nonce missing", opts: MiddlewareOptions{DPoP: DPoPOptions{NonceSecret: nonceSecret}},
			req:    request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, dpopTok)}},
			status: 401, chals: []string{dpopErr("use_dpop_nonce", "a DPoP nonce is required"), bearerPlain}, logged: ErrDPoPProof, nonceHd: true},
		{name: "DPoP nonce forged", opts: MiddlewareOptions{DPoP: DPoPOptions{NonceSecret: nonceSecret}},
			req:    request{authz: "DPoP " + dpopTok, proofs: []string{proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: dpopTok, Nonce: dpop.NewNonces([]byte("another secret!!"), 0, clk.now).Current()})}},
			status: 401, chals: []string{dpopErr("use_dpop_nonce", "the proof's nonce is invalid or expired"), bearerPlain}, logged: ErrDPoPProof, nonceHd: true},
		{name: "DPoP nonce valid", opts: MiddlewareOptions{DPoP: DPoPOptions{NonceSecret: nonceSecret}},
			req:    request{authz: "DPoP " + dpopTok, proofs: []string{proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: dpopTok, Nonce: nonces.Current()})}},
			status: 200},
		{name: "DPoP alg not allowed", opts: MiddlewareOptions{DPoP: DPoPOptions{Algorithms: []string{"ES256"}}},
			req:    request{authz: "DPoP " + edTok, proofs: []string{pr(c.ed, "GET", apiURL, edTok)}},
			status: 401, chals: []string{`DPoP realm="api", error="invalid_dpop_proof", error_description="the proof's alg is not allowed", algs="ES256"`, bearerPlain}, logged: ErrDPoPProof},
		{name: "cert-bound token over its certificate", req: request{authz: "Bearer " + certTok, tweak: withTLS(c.cert)}, status: 200},
		{name: "cert-bound token without a certificate", req: request{authz: "Bearer " + certTok},
			status: 401, chals: []string{bearerErr("the access token is certificate-bound: a client certificate is required"), dpopPlain}, logged: ErrSenderConstraint},
		{name: "cert-bound token over another certificate", req: request{authz: "Bearer " + certTok, tweak: withTLS(c.cert2)},
			status: 401, chals: []string{bearerErr("the access token is bound to another client certificate"), dpopPlain}, logged: ErrSenderConstraint},
		{name: "cert-bound token, certificate from a trusted proxy", opts: MiddlewareOptions{TrustedProxies: proxies, ClientCertHeader: "X-Client-Cert"},
			req: request{authz: "Bearer " + certTok, tweak: fromProxy("10.0.0.7:443", certHeader)}, status: 200},
		{name: "cert-bound token, certificate header from an untrusted address", opts: MiddlewareOptions{TrustedProxies: proxies, ClientCertHeader: "X-Client-Cert"},
			req:    request{authz: "Bearer " + certTok, tweak: fromProxy("192.0.2.1:443", certHeader)},
			status: 401, chals: []string{bearerErr("the access token is certificate-bound: a client certificate is required"), dpopPlain}, logged: ErrSenderConstraint},
		{name: "cert-bound token, proxy's own TLS certificate is not the client's", opts: MiddlewareOptions{TrustedProxies: proxies, ClientCertHeader: "X-Client-Cert"},
			req: request{authz: "Bearer " + certTok, tweak: func(r *http.Request) {
				withTLS(c.cert)(r)
				fromProxy("10.0.0.7:443", "")(r)
			}},
			status: 401, chals: []string{bearerErr("the access token is certificate-bound: a client certificate is required"), dpopPlain}, logged: ErrSenderConstraint},
		{name: "cert-bound token, garbage certificate header", opts: MiddlewareOptions{TrustedProxies: proxies, ClientCertHeader: "X-Client-Cert"},
			req:    request{authz: "Bearer " + certTok, tweak: fromProxy("10.0.0.7:443", "not a certificate")},
			status: 401, chals: []string{bearerErr("the client certificate header holds no certificate"), dpopPlain}, logged: ErrSenderConstraint},
		{name: "DPoP and cert-bound token over its certificate", req: request{authz: "DPoP " + bothTok, proofs: []string{pr(c.dpop, "GET", "https://api.example/api/data", bothTok)}, tweak: withTLS(c.cert)}, status: 200},
		{name: "DPoP and cert-bound token over another certificate", req: request{authz: "DPoP " + bothTok, proofs: []string{pr(c.dpop, "GET", "https://api.example/api/data", bothTok)}, tweak: withTLS(c.cert2)},
			status: 401, chals: []string{dpopErr(invalidTok, "the access token is bound to another client certificate"), bearerPlain}, logged: ErrSenderConstraint},
		{name: "require sender-constrained: plain bearer token", opts: MiddlewareOptions{RequireSenderConstrained: true}, req: request{authz: "Bearer " + plain},
			status: 401, chals: []string{bearerErr("this API requires sender-constrained access tokens"), dpopPlain}, logged: ErrSenderConstraint},
		{name: "require sender-constrained: DPoP", opts: MiddlewareOptions{RequireSenderConstrained: true},
			req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, dpopTok)}}, status: 200},
		{name: "require sender-constrained: cert-bound", opts: MiddlewareOptions{RequireSenderConstrained: true},
			req: request{authz: "Bearer " + certTok, tweak: withTLS(c.cert)}, status: 200},
		{name: "require DPoP: no credentials lists DPoP alone", opts: MiddlewareOptions{RequireDPoP: true}, req: request{}, status: 401, chals: []string{dpopPlain}},
		{name: "require DPoP: cert-bound bearer token", opts: MiddlewareOptions{RequireDPoP: true}, req: request{authz: "Bearer " + certTok, tweak: withTLS(c.cert)},
			status: 401, chals: []string{dpopErr(invalidTok, "this API takes DPoP-bound access tokens only, with the DPoP scheme and a proof")}, logged: ErrSenderConstraint},
		{name: "require DPoP: DPoP", opts: MiddlewareOptions{RequireDPoP: true},
			req: request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", apiURL, dpopTok)}}, status: 200},
		{name: "require mTLS: no credentials lists Bearer alone", opts: MiddlewareOptions{RequireMTLS: true}, req: request{}, status: 401, chals: []string{bearerPlain}},
		{name: "require mTLS: plain bearer token", opts: MiddlewareOptions{RequireMTLS: true}, req: request{authz: "Bearer " + plain, tweak: withTLS(c.cert)},
			status: 401, chals: []string{bearerErr("this API requires certificate-bound access tokens")}, logged: ErrSenderConstraint},
		{name: "require mTLS: DPoP-bound token", opts: MiddlewareOptions{RequireMTLS: true},
			req:    request{authz: "DPoP " + dpopTok, proofs: []string{pr(c.dpop, "GET", "https://api.example/api/data", dpopTok)}, tweak: withTLS(c.cert)},
			status: 401, chals: []string{dpopErr(invalidTok, "this API requires certificate-bound access tokens"), bearerPlain}, logged: ErrSenderConstraint},
		{name: "require mTLS: cert-bound", opts: MiddlewareOptions{RequireMTLS: true}, req: request{authz: "Bearer " + certTok, tweak: withTLS(c.cert)}, status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logged []error
			opts := tc.opts
			opts.OnError = func(_ *http.Request, err error) { logged = append(logged, err) }
			h := Middleware(v, opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, ok := ClaimsFromContext(r.Context())
				if !ok {
					t.Error("no claims in the context")
				}
				fmt.Fprint(w, c.Subject)
			}))
			send := func() *httptest.ResponseRecorder {
				path := tc.req.path
				if path == "" {
					path = "/api/data"
				}
				method := tc.req.method
				if method == "" {
					method = "GET"
				}
				r := httptest.NewRequest(method, path, nil)
				r.Host = "api.example"
				if tc.req.authz != "" {
					r.Header.Set("Authorization", tc.req.authz)
				}
				for _, p := range tc.req.proofs {
					r.Header.Add("DPoP", p)
				}
				if tc.req.tweak != nil {
					tc.req.tweak(r)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			w := send()
			if tc.repeat {
				if w.Code != 200 {
					t.Fatalf("first request: %d %q", w.Code, w.Header().Values("WWW-Authenticate"))
				}
				w = send()
			}
			got := w.Header().Values("WWW-Authenticate")
			if w.Code != tc.status || strings.Join(got, "\n") != strings.Join(tc.chals, "\n") {
				t.Fatalf("%d\n%s\nwant %d\n%s", w.Code, strings.Join(got, "\n"), tc.status, strings.Join(tc.chals, "\n"))
			}
			if tc.status == 200 {
				if w.Body.String() != "m2mc_a" {
					t.Errorf("body %q", w.Body.String())
				}
			} else {
				var body map[string]string
				if json.Unmarshal(w.Body.Bytes(), &body) != nil || body["error"] == "" {
					t.Errorf("body %q", w.Body.String())
				}
				if strings.Contains(w.Body.String(), "eyJ") || strings.Contains(strings.Join(got, ""), "eyJ") {
					t.Error("the answer repeats a token or proof")
				}
			}
			if nonce := w.Header().Get("DPoP-Nonce"); tc.nonceHd != (nonce != "") || tc.nonceHd && nonce != nonces.Current() {
				t.Errorf("DPoP-Nonce %q, want one: %v", nonce, tc.nonceHd)
			}
			switch {
			case tc.logged == nil && len(logged) != 0:
				t.Errorf("OnError told %v", logged)
			case tc.logged != nil && (len(logged) != 1 || !errors.Is(logged[0], tc.logged)):
				t.Errorf("OnError told %v, want %v", logged, tc.logged)
			}
		})
	}
}

// A client that got use_dpop_nonce retries with the nonce it was given
// and passes; after two nonce periods that nonce is refused again, with a
// fresh one handed out; a nonce of the previous period gets the current
// one in a 200's DPoP-Nonce.
func TestMiddlewareDPoPNonceLoop(t *testing.T) {
	k := getKeys(t)
	c := getClientKeys(t)
	clk := &clock{t: testNow}
	v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=86400"}, clk, JWKSOptions{})
	tok := boundToken(t, map[string]string{"jkt": jktOf(t, c.dpop)}, "exp", testNow.Add(time.Hour).Unix())
	h := Middleware(v, MiddlewareOptions{DPoP: DPoPOptions{NonceSecret: []byte("0123456789abcdef"), NoncePeriod: time.Minute}})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	call := func(nonce string) *httptest.ResponseRecorder {
		return dpopGet(h, tok, proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: tok, Nonce: nonce, Now: clk.now()}))
	}
	w := call("")
	nonce := w.Header().Get("DPoP-Nonce")
	if w.Code != 401 || nonce == "" {
		t.Fatalf("no nonce challenge: %d", w.Code)
	}
	if w = call(nonce); w.Code != 200 || w.Header().Get("DPoP-Nonce") != "" {
		t.Fatalf("with the nonce: %d, DPoP-Nonce %q", w.Code, w.Header().Get("DPoP-Nonce"))
	}
	clk.add(time.Minute)
	w = call(nonce)
	if next := w.Header().Get("DPoP-Nonce"); w.Code != 200 || next == "" || next == nonce {
		t.Fatalf("previous period's nonce: %d, DPoP-Nonce %q", w.Code, next)
	}
	clk.add(time.Minute)
	w = call(nonce)
	if next := w.Header().Get("DPoP-Nonce"); w.Code != 401 || next == "" || next == nonce {
		t.Fatalf("stale nonce: %d, DPoP-Nonce %q", w.Code, next)
	}
}

// A proof is remembered until it is too old anyway; the same proof is
// refused on a second try, and the cache forgets it after its window.
func TestMiddlewareDPoPReplayWindow(t *testing.T) {
	k := getKeys(t)
	c := getClientKeys(t)
	clk := &clock{t: testNow}
	v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=86400"}, clk, JWKSOptions{})
	tok := boundToken(t, map[string]string{"jkt": jktOf(t, c.dpop)}, "exp", testNow.Add(time.Hour).Unix())
	var logged []error
	h := Middleware(v, MiddlewareOptions{OnError: func(_ *http.Request, err error) { logged = append(logged, err) }})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	p := proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: tok})
	call := func() int { return dpopGet(h, tok, p).Code }
	if got := call(); got != 200 {
		t.Fatalf("first use: %d", got)
	}
	clk.add(59 * time.Second)
	if got := call(); got != 401 || len(logged) != 1 || !strings.Contains(logged[0].Error(), "used before") {
		t.Fatalf("replay within the window: %d %v", got, logged)
	}
	clk.add(2 * time.Second)
	if got := call(); got != 401 || len(logged) != 2 || !strings.Contains(logged[1].Error(), "too old") {
		t.Fatalf("replay after the window: %d %v", got, logged)
	}
}

// sharedReplay is a ReplayStore two replicas share (a map standing in for
// Redis); fail makes it answer an error.
type sharedReplay struct {
	mu   sync.Mutex
	used map[string]time.Time
	fail bool
}

func (s *sharedReplay) Use(_ context.Context, key string, until time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return false, errors.New("store down")
	}
	if _, ok := s.used[key]; ok {
		return false, nil
	}
	s.used[key] = until
	return true, nil
}

// With a shared ReplayStore, a proof used at one replica is refused at
// another (each has its own in-memory cache); a store that cannot answer
// refuses with 503 rather than let a possible replay through.
func TestMiddlewareDPoPSharedReplayStore(t *testing.T) {
	k := getKeys(t)
	c := getClientKeys(t)
	clk := &clock{t: testNow}
	store := &sharedReplay{used: map[string]time.Time{}}
	replica := func() http.Handler {
		v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=86400"}, clk, JWKSOptions{})
		return Middleware(v, MiddlewareOptions{DPoP: DPoPOptions{ReplayStore: store}})(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	}
	a, b := replica(), replica()
	tok := boundToken(t, map[string]string{"jkt": jktOf(t, c.dpop)}, "exp", testNow.Add(time.Hour).Unix())
	call := func(h http.Handler, p string) *httptest.ResponseRecorder { return dpopGet(h, tok, p) }
	p := proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: tok})
	if w := call(a, p); w.Code != 200 {
		t.Fatalf("first use at replica A: %d", w.Code)
	}
	if w := call(b, p); w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), "invalid_dpop_proof") {
		t.Fatalf("replay at replica B: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	store.fail = true
	if w := call(a, proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: tok})); w.Code != 503 {
		t.Fatalf("store down: %d, want 503", w.Code)
	}
}

// http.StripPrefix changes r.URL; the proof names the path the client
// sent.
func TestMiddlewareDPoPUnderStripPrefix(t *testing.T) {
	k := getKeys(t)
	c := getClientKeys(t)
	v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}, &clock{t: testNow}, JWKSOptions{})
	tok := boundToken(t, map[string]string{"jkt": jktOf(t, c.dpop)})
	h := http.StripPrefix("/v1", Middleware(v, MiddlewareOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	r := httptest.NewRequest("GET", "/v1/api/data", nil)
	r.Host = "api.example"
	r.Header.Set("Authorization", "DPoP "+tok)
	r.Header.Set("DPoP", proof(t, c.dpop, "GET", "http://api.example/v1/api/data", dpop.ProofOptions{AccessToken: tok}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("%d %q", w.Code, w.Header().Values("WWW-Authenticate"))
	}
}

func TestMiddlewarePanicsOnBadOptions(t *testing.T) {
	k := getKeys(t)
	v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}, &clock{t: testNow}, JWKSOptions{})
	for name, opts := range map[string]MiddlewareOptions{
		"short nonce secret": {DPoP: DPoPOptions{NonceSecret: []byte("short")}},
		"HS256":              {DPoP: DPoPOptions{Algorithms: []string{"HS256"}}},
		"relative origin":    {PublicOrigin: "/api"},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			Middleware(v, opts)
		})
	}
}

// A full replay cache refuses new proofs (503) rather than forget a live
// one, which a flood of fresh proofs could otherwise push out and then
// replay (found by the attack); with a ReplayStore, the store decides.
func TestMiddlewareDPoPReplayCacheFull(t *testing.T) {
	k := getKeys(t)
	c := getClientKeys(t)
	clk := &clock{t: testNow}
	tok := boundToken(t, map[string]string{"jkt": jktOf(t, c.dpop)}, "exp", testNow.Add(time.Hour).Unix())
	serve := func(h http.Handler, p string) int { return dpopGet(h, tok, p).Code }
	for _, tc := range []struct {
		name  string
		store ReplayStore
		third int
	}{
		{"no store: 503", nil, http.StatusServiceUnavailable},
		{"a store decides", &sharedReplay{used: map[string]time.Time{}}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=86400"}, clk, JWKSOptions{})
			h := Middleware(v, MiddlewareOptions{DPoP: DPoPOptions{ReplayCacheSize: 2, ReplayStore: tc.store}})(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			first := proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: tok})
			if got := serve(h, first); got != 200 {
				t.Fatalf("first: %d", got)
			}
			if got := serve(h, proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: tok})); got != 200 {
				t.Fatalf("second: %d", got)
			}
			if got := serve(h, proof(t, c.dpop, "GET", apiURL, dpop.ProofOptions{AccessToken: tok})); got != tc.third {
				t.Fatalf("third, cache full: %d, want %d", got, tc.third)
			}
			// The first proof is still remembered: its replay is refused.
			if got := serve(h, first); got != http.StatusUnauthorized {
				t.Fatalf("replay of the first: %d", got)
			}
		})
	}
}

// dpopGet sends GET http://api.example/api/data to h with the token in
// the DPoP scheme and the proof.
func dpopGet(h http.Handler, tok, proof string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/api/data", nil)
	r.Host = "api.example"
	r.Header.Set("Authorization", "DPoP "+tok)
	r.Header.Set("DPoP", proof)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}
