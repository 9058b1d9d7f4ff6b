package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/jws"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// dpopToken posts a client-credentials (or other) request with Basic
// credentials and the given DPoP headers; it returns the status, the
// decoded body and the response headers.
func (ts *testServer) dpopToken(path, id, secret string, form url.Values, proofs ...string) (int, map[string]any, http.Header) {
	ts.t.Helper()
	if form.Get("grant_type") == "" {
		form.Set("grant_type", "client_credentials")
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	resp, body := ts.do(req)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m, resp.Header
}

func newProof(t testing.TB, key crypto.Signer, url string, o dpop.ProofOptions) string {
	t.Helper()
	p, err := dpop.NewProof(key, http.MethodPost, url, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// craftProof builds a proof by hand: header and claims as given, signed
// ES256 by signer, HS256 by hmacKey, or not at all.
func craftProof(t testing.TB, header, claims map[string]any, signer *ecdsa.PrivateKey, hmacKey []byte) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	var sig []byte
	switch {
	case signer != nil:
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, signer, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case hmacKey != nil:
		m := hmac.New(sha256.New, hmacKey)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	}
	return input + "." + enc.EncodeToString(sig)
}

func ecJWK(k *ecdsa.PublicKey) map[string]any {
	b, _ := k.Bytes() // uncompressed point: 0x04 || X || Y
	return map[string]any{"kty": "EC", "crv": "P-256", "x": base64.RawURLEncoding.EncodeToString(b[1:33]), "y": base64.RawURLEncoding.EncodeToString(b[33:])}
}

func thumbprint(t testing.TB, k crypto.PublicKey) string {
	t.Helper()
	tp, err := jws.Thumbprint(k)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// dpopFixture is a server with the orders API and a secret client.
type dpopFixture struct {
	ts         *testServer
	id, secret string
	tokenURL   string
}

func newDPoPFixture(t *testing.T, tweak func(*config.Config)) *dpopFixture {
	cfg := testConfig(t)
	if tweak != nil {
		tweak(&cfg)
	}
	ts := startServer(t, cfg)
	ts.createAPI(ordersAPI, 0, "orders:read")
	f := &dpopFixture{ts: ts, tokenURL: ts.cfg.Issuer + "/oauth/token"}
	f.id, f.secret = ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, RefreshTokens: true})
	return f
}

func TestDPoPTokenEndpoint(t *testing.T) {
	f := newDPoPFixture(t, nil)
	ts := f.ts
	key := pipeKey(t)
	jkt := thumbprint(t, &key.PublicKey)

	code, body, _ := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{}, newProof(t, key, f.tokenURL, dpop.ProofOptions{}))
	if code != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("%d %v", code, body)
	}
	tok := body["access_token"].(string)
	if cnf, _ := ts.verifyToken(tok).claims["cnf"].(map[string]any); len(cnf) != 1 || cnf["jkt"] != jkt {
		t.Fatalf("cnf %v, want jkt %s", cnf, jkt)
	}
	introID, introSecret := ts.createClient(admin.ClientInput{Introspect: []string{ordersAPI}})
	if st, in := ts.form("/oauth/introspect", introID, introSecret, url.Values{"token": {tok}}); st != 200 || in["token_type"] != "DPoP" || in["cnf"].(map[string]any)["jkt"] != jkt {
		t.Fatalf("introspection: %d %v", st, in)
	}
	// Discovery lists the proof algorithms.
	resp, disc := ts.do(mustRequest(t, http.MethodGet, ts.URL+"/.well-known/oauth-authorization-server"))
	if resp.StatusCode != 200 || !strings.Contains(string(disc), `"dpop_signing_alg_values_supported":["ES256","RS256","PS256","EdDSA"]`) {
		t.Fatalf("discovery: %s", disc)
	}

	t.Run("refresh binds the new token to the refresh request's key", func(t *testing.T) {
		rt, _ := body["refresh_token"].(string)
		if rt == "" {
			t.Fatal("no refresh token")
		}
		next := pipeKey(t)
		code, rb, _ := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}},
			newProof(t, next, f.tokenURL, dpop.ProofOptions{}))
		if code != 200 || rb["token_type"] != "DPoP" {
			t.Fatalf("%d %v", code, rb)
		}
		if cnf, _ := ts.verifyToken(rb["access_token"].(string)).claims["cnf"].(map[string]any); cnf["jkt"] != thumbprint(t, &next.PublicKey) {
			t.Fatalf("cnf %v", cnf)
		}
	})

	t.Run("a family begun with DPoP refuses a refresh without a proof", func(t *testing.T) {
		_, first, _ := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{}, newProof(t, key, f.tokenURL, dpop.ProofOptions{}))
		rt, _ := first["refresh_token"].(string)
		// The ATM surface's refresh needs no secret and carries no proof:
		// it would turn the family into bearer tokens (found by the attack).
		resp, ab := ts.post("/auth/token", "application/json",
			fmt.Sprintf(`{"clientId":%q,"refresh_token":%q,"id_token":"","grantType":"refresh_token"}`, f.id, rt))
		if resp.StatusCode != 400 || !strings.Contains(string(ab), "invalid_dpop_proof") {
			t.Fatalf("ATM refresh: %d %s", resp.StatusCode, ab)
		}
		if code, rb, _ := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); code != 400 || rb["error"] != "invalid_dpop_proof" {
			t.Fatalf("standard refresh without a proof: %d %v", code, rb)
		}
		// A refused refresh does not spend the token: with a proof it works.
		if code, rb, _ := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}},
			newProof(t, key, f.tokenURL, dpop.ProofOptions{})); code != 200 || rb["token_type"] != "DPoP" {
			t.Fatalf("with a proof: %d %v", code, rb)
		}
		// A family begun without DPoP refreshes as before.
		_, plain := ts.form("/oauth/token", f.id, f.secret, url.Values{"grant_type": {"client_credentials"}})
		if code, rb, _ := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {plain["refresh_token"].(string)}}); code != 200 || rb["token_type"] != "Bearer" {
			t.Fatalf("bearer family: %d %v", code, rb)
		}
	})

	other := pipeKey(t)
	now := time.Now()
	claims := func(kv ...any) map[string]any {
		c := map[string]any{"jti": randomString(), "htm": "POST", "htu": f.tokenURL, "iat": now.Unix()}
		for i := 0; i < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	header := func(alg string, jwk map[string]any) map[string]any {
		return map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": jwk}
	}
	withD := ecJWK(&key.PublicKey)
	raw, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	withD["d"] = base64.RawURLEncoding.EncodeToString(raw)
	replayed := newProof(t, key, f.tokenURL, dpop.ProofOptions{})
	if code, b, _ := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{}, replayed); code != 200 {
		t.Fatalf("first use: %d %v", code, b)
	}
	// Each row is refused for its own reason: the exact description
	// (package dpop's, or the endpoint's for the header count and the
	// replay), so that a row cannot pass on an earlier check.
	const (
		descHTM        = "the proof's htm does not match the request method"
		descHTU        = "the proof's htu does not match the request URL"
		descOld        = "the proof is too old"
		descFuture     = "the proof's iat is in the future"
		descReplay     = "the proof's jti was used before"
		descSignature  = "the proof's signature does not verify with its jwk"
		descAlg        = "the proof's alg is not allowed"
		descPrivateJWK = "the proof's jwk holds private key material"
		descTyp        = "the proof's typ is not dpop+jwt"
		descMalformed  = "the proof is not a compact JWS with JSON header and claims"
		descHeaders    = "a request carries one DPoP header"
	)
	attacks := []struct {
		name   string
		proofs []string
		desc   string
	}{
		{"wrong htm", []string{craftProof(t, header("ES256", ecJWK(&key.PublicKey)), claims("htm", "GET"), key, nil)}, descHTM},
		{"wrong htu", []string{newProof(t, key, "https://elsewhere.example/oauth/token", dpop.ProofOptions{})}, descHTU},
		{"htu of another path", []string{newProof(t, key, ts.cfg.Issuer+"/oauth/introspect", dpop.ProofOptions{})}, descHTU},
		{"old iat", []string{newProof(t, key, f.tokenURL, dpop.ProofOptions{Now: now.Add(-2 * time.Minute)})}, descOld},
		{"iat in the future", []string{newProof(t, key, f.tokenURL, dpop.ProofOptions{Now: now.Add(time.Minute)})}, descFuture},
		{"replayed jti", []string{replayed}, descReplay},
		{"signed by another key than its jwk", []string{craftProof(t, header("ES256", ecJWK(&key.PublicKey)), claims(), other, nil)}, descSignature},
		// Signed, so that jws.Parse (which refuses an empty signature) lets
		// it reach the alg check.
		{"alg none", []string{craftProof(t, header("none", ecJWK(&key.PublicKey)), claims(), key, nil)}, descAlg},
		{"alg none, unsigned", []string{craftProof(t, header("none", ecJWK(&key.PublicKey)), claims(), nil, nil)}, descMalformed},
		{"HMAC", []string{craftProof(t, map[string]any{"typ": "dpop+jwt", "alg": "HS256", "jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}}, claims(), nil, []byte("secret"))}, descAlg},
		{"private key in jwk", []string{craftProof(t, header("ES256", withD), claims(), key, nil)}, descPrivateJWK},
		{"wrong typ", []string{craftProof(t, map[string]any{"typ": "jwt", "alg": "ES256", "jwk": ecJWK(&key.PublicKey)}, claims(), key, nil)}, descTyp},
		{"not a JWT", []string{"junk"}, descMalformed},
		{"two DPoP headers", []string{newProof(t, key, f.tokenURL, dpop.ProofOptions{}), newProof(t, key, f.tokenURL, dpop.ProofOptions{})}, descHeaders},
	}
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			code, b, _ := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{}, tc.proofs...)
			if code != 400 || b["error"] != "invalid_dpop_proof" || b["error_description"] != tc.desc || b["access_token"] != nil {
				t.Fatalf("%d %v, want 400 invalid_dpop_proof %q", code, b, tc.desc)
			}
		})
	}

	t.Run("a DPoP-bound client without a proof", func(t *testing.T) {
		id, secret := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
		ts.setClient(id, func(c *store.Client) { c.DPoPBoundTokens = true })
		code, b, _ := ts.dpopToken("/oauth/token", id, secret, url.Values{})
		if code != 400 || b["error"] != "invalid_dpop_proof" || b["error_description"] != "a DPoP proof is required for this client" {
			t.Fatalf("%d %v", code, b)
		}
		if code, b, _ := ts.dpopToken("/oauth/token", id, secret, url.Values{}, newProof(t, key, f.tokenURL, dpop.ProofOptions{})); code != 200 || b["token_type"] != "DPoP" {
			t.Fatalf("with a proof: %d %v", code, b)
		}
		// The compatibility surfaces issue bearer tokens only: refused
		// there, in their envelope, proof or not.
		resp, mb := ts.post("/v1/oauth/token/machine", "application/json", fmt.Sprintf(`{"apiKey":%q,"secretKey":%q}`, id, secret),
			"DPoP", newProof(t, key, ts.URL+"/v1/oauth/token/machine", dpop.ProofOptions{}))
		if resp.StatusCode != 400 || !strings.Contains(string(mb), `"errors"`) {
			t.Fatalf("machine surface: %d %s", resp.StatusCode, mb)
		}
		resp, ab := ts.post("/auth/token", "application/json", fmt.Sprintf(`{"clientId":%q,"clientSecret":%q,"grant_types":"client_credentials"}`, id, secret))
		if resp.StatusCode != 400 || strings.Contains(string(ab), "access_token") {
			t.Fatalf("atm surface: %d %s", resp.StatusCode, ab)
		}
	})
	t.Run("the bearer-only endpoints refuse a DPoP header rather than ignore it", func(t *testing.T) {
		// A client asking for a bound token must not take a bearer token
		// for one (found by the attack): these envelopes have no token_type.
		resp, mb := ts.post("/v1/oauth/token/machine", "application/json", fmt.Sprintf(`{"apiKey":%q,"secretKey":%q}`, f.id, f.secret), "DPoP", "junk")
		if resp.StatusCode != 400 || !strings.Contains(string(mb), "INVALID_REQUEST") {
			t.Fatalf("machine: %d %s", resp.StatusCode, mb)
		}
		resp, ab := ts.post("/auth/token", "application/json", fmt.Sprintf(`{"clientId":%q,"clientSecret":%q,"grant_types":"client_credentials"}`, f.id, f.secret),
			"DPoP", newProof(t, key, f.tokenURL, dpop.ProofOptions{}))
		if resp.StatusCode != 400 || !strings.Contains(string(ab), "invalid_request") {
			t.Fatalf("atm: %d %s", resp.StatusCode, ab)
		}
		if code, b, _ := ts.dpopToken("/admin/v1/token", f.id, f.secret, url.Values{}, newProof(t, key, ts.cfg.Issuer+"/admin/v1/token", dpop.ProofOptions{})); code != 400 || b["error"] != "invalid_request" {
			t.Fatalf("admin login: %d %v", code, b)
		}
		// Without the header they answer as before.
		if resp, mb := ts.post("/v1/oauth/token/machine", "application/json", fmt.Sprintf(`{"apiKey":%q,"secretKey":%q}`, f.id, f.secret)); resp.StatusCode != 200 {
			t.Fatalf("machine without DPoP: %d %s", resp.StatusCode, mb)
		}
	})
	// Through a trusted proxy (X-Forwarded-For through the peer
	// middleware), bad proofs from one address drain that address's
	// bucket; the client they name keeps its own: from another address,
	// where it never authenticated (so no known-good pass), it still gets
	// its token. Had the proofs cost the client's bucket, Admit would
	// answer it 429 there.
	t.Run("a bad proof costs the address, not the client", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.AuthFailureRate, cfg.AuthFailureBurst = 0.001, 3
		cfg.TrustedProxies = []string{"10.0.0.0/8"}
		clk := newFakeClock() // no bucket refills
		ts2 := startServerClock(t, cfg, clk.Now)
		ts2.createAPI(ordersAPI, 0, "orders:read")
		id, secret := ts2.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
		tokenURL := ts2.cfg.Issuer + "/oauth/token"
		post := func(xff, proof string) (int, map[string]any) {
			t.Helper()
			r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader("grant_type=client_credentials"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			r.Header.Set("DPoP", proof)
			r.RemoteAddr = "10.1.2.3:40000"
			r.Header.Set("X-Forwarded-For", xff)
			w := httptest.NewRecorder()
			ts2.srv.Handler().ServeHTTP(w, r)
			var b map[string]any
			_ = json.Unmarshal(w.Body.Bytes(), &b)
			return w.Code, b
		}
		const attacker, client = "203.0.113.1", "203.0.113.2"
		for i := range cfg.AuthFailureBurst {
			if code, b := post(attacker, "junk"); code != 400 || b["error"] != "invalid_dpop_proof" {
				t.Fatalf("bad proof %d: %d %v, want 400 invalid_dpop_proof", i, code, b)
			}
		}
		if code, b := post(attacker, "junk"); code != 429 {
			t.Fatalf("the address past its burst: %d %v, want 429", code, b)
		}
		if code, b := post(client, newProof(t, key, tokenURL, dpop.ProofOptions{Now: clk.Now()})); code != 200 || b["token_type"] != "DPoP" {
			t.Fatalf("the client from another address: %d %v, want 200", code, b)
		}
		// The other address is not limited by the first one's failures
		// either: a bad proof from there is answered for what it is.
		if code, b := post(client, "junk"); code != 400 || b["error_description"] != descMalformed {
			t.Fatalf("a bad proof from the other address: %d %v, want 400", code, b)
		}
	})
}

func TestDPoPNonces(t *testing.T) {
	f := newDPoPFixture(t, func(c *config.Config) { c.DPoPNonces = true })
	ts, key := f.ts, pipeKey(t)
	code, b, h := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{}, newProof(t, key, f.tokenURL, dpop.ProofOptions{}))
	nonce := h.Get("DPoP-Nonce")
	if code != 400 || b["error"] != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("without a nonce: %d %v nonce %q", code, b, nonce)
	}
	code, b, h = ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{}, newProof(t, key, f.tokenURL, dpop.ProofOptions{Nonce: nonce}))
	if code != 200 || b["token_type"] != "DPoP" {
		t.Fatalf("with the nonce: %d %v", code, b)
	}
	if h.Get("DPoP-Nonce") != "" {
		t.Errorf("a nonce was sent again though the client holds the current one")
	}
	code, b, h = ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{}, newProof(t, key, f.tokenURL, dpop.ProofOptions{Nonce: "AAAAAAAAAAAAAAAAAAAAAA"}))
	if code != 400 || b["error"] != "use_dpop_nonce" || h.Get("DPoP-Nonce") != nonce {
		t.Fatalf("a wrong nonce: %d %v", code, b)
	}
	// Without DPoP, nonces change nothing.
	if code, b, h := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{}); code != 200 || b["token_type"] != "Bearer" || h.Get("DPoP-Nonce") != "" {
		t.Fatalf("bearer: %d %v", code, b)
	}
}

// Behind an mTLS endpoint alias (RFC 8705 §5), a proof may name the token
// endpoint there as well as under the issuer; any other URL is refused.
func TestDPoPAtTheMTLSAlias(t *testing.T) {
	f := newDPoPFixture(t, func(c *config.Config) {
		c.MTLSEndpointBase = "https://mtls.auth.example"
		c.TrustedProxies, c.ClientCertHeader = []string{"192.0.2.1"}, "X-Client-Cert"
	})
	ts, key := f.ts, pipeKey(t)
	for _, tc := range []struct {
		htu  string
		want int
	}{
		{f.tokenURL, 200},
		{"https://mtls.auth.example/oauth/token", 200},
		{"https://mtls.auth.example/e/other/oauth/token", 400},
		{"https://elsewhere.example/oauth/token", 400},
	} {
		if code, b, _ := ts.dpopToken("/oauth/token", f.id, f.secret, url.Values{}, newProof(t, key, tc.htu, dpop.ProofOptions{})); code != tc.want {
			t.Errorf("htu %s: %d %v, want %d", tc.htu, code, b, tc.want)
		}
	}
}

// Two replicas on one PostgreSQL database: a proof used on A is a replay
// on B, and a nonce handed out by A is accepted by B (both derive the
// nonce secret from the shared master key).
func TestDPoPAcrossReplicasPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	master := keys.GenerateMasterKeyText()
	cfgFor := func() config.Config {
		c := testConfig(t)
		c.Database, c.MasterKey, c.Issuer, c.DPoPNonces = dsn, master, "http://auth.test", true
		return c
	}
	a := startServer(t, cfgFor())
	b := startServer(t, cfgFor())
	a.createAPI(ordersAPI, 0, "orders:read")
	id, secret := a.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	tokenURL := "http://auth.test/oauth/token" // the advertised URL, not the address the replicas listen on
	key := pipeKey(t)

	_, _, h := a.dpopToken("/oauth/token", id, secret, url.Values{}, newProof(t, key, tokenURL, dpop.ProofOptions{}))
	nonce := h.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("A sent no nonce")
	}
	proof := newProof(t, key, tokenURL, dpop.ProofOptions{Nonce: nonce})
	if code, body, _ := b.dpopToken("/oauth/token", id, secret, url.Values{}, proof); code != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("A's nonce on B: %d %v", code, body)
	}
	if code, body, _ := a.dpopToken("/oauth/token", id, secret, url.Values{}, proof); code != 400 || body["error_description"] != "the proof's jti was used before" {
		t.Fatalf("B's proof replayed on A: %d %v", code, body)
	}
	// A proof for the listening address rather than the issuer's is
	// refused: htu is checked against the advertised URL.
	if code, body, _ := a.dpopToken("/oauth/token", id, secret, url.Values{}, newProof(t, key, a.URL+"/oauth/token", dpop.ProofOptions{Nonce: nonce})); code != 400 || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("htu of the listening address: %d %v", code, body)
	}
}

// A DPoP-bound token of the admin API (a client granted it asked
// /oauth/token with a proof) is refused there: the admin API takes bearer
// tokens only and cannot check the proof, so accepting it would let a
// stolen bound token work without its key.
func TestDPoPBoundTokenRefusedByTheAdminAPI(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := ts.createClient(admin.ClientInput{
		Grants: []admin.GrantInput{{Audience: ts.cfg.AdminAudience(), Scopes: []string{admin.AdminScope}}}})
	code, body, _ := ts.dpopToken("/oauth/token", id, secret, url.Values{"audience": {ts.cfg.AdminAudience()}},
		newProof(t, pipeKey(t), ts.cfg.Issuer+"/oauth/token", dpop.ProofOptions{}))
	if code != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("token: %d %v", code, body)
	}
	for _, scheme := range []string{"Bearer", "DPoP"} {
		req := mustRequest(t, http.MethodGet, ts.URL+"/admin/v1/clients")
		req.Header.Set("Authorization", scheme+" "+body["access_token"].(string))
		if resp, b := ts.do(req); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %d %s", scheme, resp.StatusCode, b)
		}
	}
	// The same client's bearer token works.
	bearer := ts.mustToken(id, secret, url.Values{"audience": {ts.cfg.AdminAudience()}})
	req := mustRequest(t, http.MethodGet, ts.URL+"/admin/v1/clients")
	req.Header.Set("Authorization", "Bearer "+bearer)
	if resp, b := ts.do(req); resp.StatusCode != 200 {
		t.Fatalf("bearer: %d %s", resp.StatusCode, b)
	}
}
