package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	testIssuer   = "https://issuer.example"
	testAudience = "https://api.example"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// testKeys are the issuer's keys (published) and some others.
type testKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	weak      *rsa.PrivateKey // 1024 bits, published: must be refused at load
	ec        *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
	attacker  *rsa.PrivateKey // never published
}

var (
	keysOnce sync.Once
	tk       testKeys
)

func getKeys(t testing.TB) testKeys {
	keysOnce.Do(func() {
		tk.rsa, _ = rsa.GenerateKey(rand.Reader, 2048)
		tk.rsa2, _ = rsa.GenerateKey(rand.Reader, 2048)
		tk.weak, _ = rsa.GenerateKey(rand.Reader, 1024)
		tk.ec, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, tk.ed, _ = ed25519.GenerateKey(rand.Reader)
		tk.attacker, _ = rsa.GenerateKey(rand.Reader, 2048)
	})
	return tk
}

func jwkJSON(t testing.TB, key crypto.PublicKey, kid, alg string) json.RawMessage {
	b, err := (&jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: "sig"}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwksBody(t testing.TB, keys ...json.RawMessage) []byte {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

func (k testKeys) publishedSet(t testing.TB) []byte {
	return jwksBody(t,
		jwkJSON(t, k.rsa.Public(), "rsa", "RS256"),
		jwkJSON(t, k.rsa2.Public(), "rsa-ps", "PS256"),
		jwkJSON(t, k.weak.Public(), "weak", "RS256"),
		jwkJSON(t, k.ec.Public(), "ec", "ES256"),
		jwkJSON(t, k.ed.Public(), "ed", "EdDSA"),
	)
}

// fakeJWKS serves a key set from memory and counts fetches.
type fakeJWKS struct {
	mu      sync.Mutex
	body    []byte
	status  int
	cc      string
	fetches int
	noCache int
}

func (f *fakeJWKS) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches++
	if r.Header.Get("Cache-Control") == "no-cache" {
		f.noCache++
	}
	status := f.status
	if status == 0 {
		status = 200
	}
	h := http.Header{}
	if f.cc != "" {
		h.Set("Cache-Control", f.cc)
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(string(f.body))), Request: r}, nil
}

func (f *fakeJWKS) set(body []byte, status int, cc string) {
	f.mu.Lock()
	f.body, f.status, f.cc = body, status, cc
	f.mu.Unlock()
}

func (f *fakeJWKS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestVerifier(t testing.TB, f *fakeJWKS, clk *clock, opts JWKSOptions) *Verifier {
	opts.HTTPClient = &http.Client{Transport: f}
	opts.Now = clk.now
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://issuer.example/jwks", JWKS: opts, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func b64(b []byte) string   { return base64.RawURLEncoding.EncodeToString(b) }
func b64s(s string) string  { return b64([]byte(s)) }
func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// sign builds a token from a literal header and claims JSON, signing with
// alg and key (nil key: empty signature).
func sign(t testing.TB, header, claims, alg string, key any) string {
	input := b64s(header) + "." + b64s(claims)
	h := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch k := key.(type) {
	case nil:
	case *rsa.PrivateKey:
		if alg == "PS256" {
			sig, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
		}
	case *ecdsa.PrivateKey:
		r, s, e := ecdsa.Sign(rand.Reader, k, h[:])
		sig, err = make([]byte, 64), e
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	case []byte: // HMAC
		m := hmac.New(sha256.New, k)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case string: // a literal signature
		return input + "." + k
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func goodClaims() map[string]any {
	return map[string]any{"iss": testIssuer, "sub": "m2mc_a", "client_id": "m2mc_a", "aud": testAudience,
		"iat": testNow.Unix(), "nbf": testNow.Unix(), "exp": testNow.Add(10 * time.Minute).Unix(), "jti": "j1", "scope": "orders:read"}
}

func claimsWith(kv ...any) string {
	c := goodClaims()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return mustJSON(c)
}

func hdr(alg, kid string, extra ...string) string {
	s := `{"alg":"` + alg + `","typ":"at+jwt","kid":"` + kid + `"`
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

type corpusCase struct {
	name  string
	token string
	want  error
}

// attackCorpus returns forged and malformed tokens with the error class
// each must be rejected with.
func attackCorpus(t testing.TB) []corpusCase {
	k := getKeys(t)
	good := mustJSON(goodClaims())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustPKIX(k.rsa.Public())})
	valid := sign(t, hdr("RS256", "rsa"), good, "RS256", k.rsa)
	parts := strings.Split(valid, ".")
	attackerJWK := string(jwkJSON(t, k.attacker.Public(), "rsa", "RS256"))
	var cases []corpusCase
	add := func(name, token string, want error) { cases = append(cases, corpusCase{name, token, want}) }

	for _, none := range []string{"none", "None", "NONE", "nOnE"} {
		add("alg "+none, sign(t, hdr(none, "rsa"), good, none, nil), ErrMalformed)
		add("alg "+none+" with a signature", sign(t, hdr(none, "rsa"), good, none, "c2ln"), ErrAlgorithm)
	}
	add("HS256 keyed with the RSA public key (PEM)", sign(t, hdr("HS256", "rsa"), good, "HS256", pubPEM), ErrAlgorithm)
	add("HS256 keyed with the RSA modulus", sign(t, hdr("HS256", "rsa"), good, "HS256", k.rsa.N.Bytes()), ErrAlgorithm)
	add("kid path traversal", sign(t, hdr("RS256", "../../../../etc/passwd"), good, "RS256", k.rsa), ErrUnknownKey)
	add("kid SQL injection", sign(t, hdr("RS256", "' OR '1'='1"), good, "RS256", k.attacker), ErrUnknownKey)
	add("jku to the attacker's JWKS", sign(t, hdr("RS256", "attacker", `"jku":"https://evil.example/jwks"`), good, "RS256", k.attacker), ErrUnknownKey)
	add("x5u to the attacker's certificate", sign(t, hdr("RS256", "attacker", `"x5u":"https://evil.example/cert"`), good, "RS256", k.attacker), ErrUnknownKey)
	add("embedded jwk of the attacker, kid of ours", sign(t, hdr("RS256", "rsa", `"jwk":`+attackerJWK), good, "RS256", k.attacker), ErrSignature)
	add("x5c of the attacker", sign(t, hdr("RS256", "rsa", `"x5c":["MIIB"]`), good, "RS256", k.attacker), ErrSignature)
	add("unknown crit", sign(t, hdr("RS256", "rsa", `"crit":["exp2"]`, `"exp2":1`), good, "RS256", k.rsa), ErrMalformed)
	add("b64 false", sign(t, hdr("RS256", "rsa", `"b64":false`, `"crit":["b64"]`), good, "RS256", k.rsa), ErrMalformed)
	add("b64 false without crit", sign(t, hdr("RS256", "rsa", `"b64":false`), good, "RS256", k.rsa), ErrMalformed)
	add("typ JWT (an ID token or other JWT)", sign(t, `{"alg":"RS256","typ":"JWT","kid":"rsa"}`, good, "RS256", k.rsa), ErrType)
	add("no typ", sign(t, `{"alg":"RS256","kid":"rsa"}`, good, "RS256", k.rsa), ErrType)
	add("expired", sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(-2*time.Minute).Unix()), "RS256", k.rsa), ErrExpired)
	add("nbf in the future", sign(t, hdr("RS256", "rsa"), claimsWith("nbf", testNow.Add(5*time.Minute).Unix()), "RS256", k.rsa), ErrNotYetValid)
	add("iat in the future", sign(t, hdr("RS256", "rsa"), claimsWith("iat", testNow.Add(5*time.Minute).Unix()), "RS256", k.rsa), ErrNotYetValid)
	add("no exp", sign(t, hdr("RS256", "rsa"), claimsWith("exp", nil), "RS256", k.rsa), ErrMalformed)
	add("exp as a string", sign(t, hdr("RS256", "rsa"), claimsWith("exp", "tomorrow"), "RS256", k.rsa), ErrMalformed)
	add("iss prefix", sign(t, hdr("RS256", "rsa"), claimsWith("iss", "https://issuer.example.evil"), "RS256", k.rsa), ErrIssuer)
	add("iss suffix", sign(t, hdr("RS256", "rsa"), claimsWith("iss", "https://evil.issuer.example"), "RS256", k.rsa), ErrIssuer)
	add("iss trailing slash", sign(t, hdr("RS256", "rsa"), claimsWith("iss", testIssuer+"/"), "RS256", k.rsa), ErrIssuer)
	add("aud empty", sign(t, hdr("RS256", "rsa"), claimsWith("aud", ""), "RS256", k.rsa), ErrAudience)
	add("aud empty array", sign(t, hdr("RS256", "rsa"), claimsWith("aud", []string{}), "RS256", k.rsa), ErrAudience)
	add("aud array of others", sign(t, hdr("RS256", "rsa"), claimsWith("aud", []string{"https://other", testAudience + "/x"}), "RS256", k.rsa), ErrAudience)
	add("aud a number", sign(t, hdr("RS256", "rsa"), claimsWith("aud", 42), "RS256", k.rsa), ErrMalformed)
	add("1 MiB token", valid+strings.Repeat("A", 1<<20), ErrMalformed)
	add("two parts", parts[0]+"."+parts[1], ErrMalformed)
	add("five parts (JWE)", valid+".x.y", ErrMalformed)
	add("empty signature", parts[0]+"."+parts[1]+".", ErrMalformed)
	add("bad base64 characters", parts[0]+"."+parts[1]+"!."+parts[2], ErrMalformed)
	add("base64 padding", parts[0]+"=."+parts[1]+"."+parts[2], ErrMalformed)
	add("standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(valid)+"+", ErrMalformed)
	add("duplicate alg members", sign(t, `{"alg":"RS256","alg":"none","typ":"at+jwt","kid":"rsa"}`, good, "RS256", k.rsa), ErrMalformed)
	add("case-variant alg member", sign(t, `{"alg":"RS256","ALG":"none","typ":"at+jwt","kid":"rsa"}`, good, "RS256", k.rsa), ErrMalformed)
	add("duplicate alg member spelled with an escape", sign(t, `{"alg":"RS256","\u0061lg":"none","typ":"at+jwt","kid":"rsa"}`, good, "RS256", k.rsa), ErrMalformed)
	add("duplicate sub claims", sign(t, hdr("RS256", "rsa"), `{"iss":"`+testIssuer+`","aud":"`+testAudience+`","exp":9999999999,"sub":"a","sub":"admin"}`, "RS256", k.rsa), ErrMalformed)
	add("invalid UTF-8 in the claims", sign(t, hdr("RS256", "rsa"), `{"iss":"`+testIssuer+"\xff"+`","aud":"`+testAudience+`","exp":9999999999}`, "RS256", k.rsa), ErrMalformed)
	add("ECDSA r = s = 0", sign(t, hdr("ES256", "ec"), good, "ES256", b64(make([]byte, 64))), ErrSignature)
	add("ES256 signature of the wrong length", sign(t, hdr("ES256", "ec"), good, "ES256", b64(make([]byte, 72))), ErrSignature)
	add("1024-bit RSA key in the JWKS", sign(t, hdr("RS256", "weak"), good, "RS256", k.weak), ErrUnknownKey)
	add("ES256 header, RSA key", sign(t, hdr("ES256", "rsa"), good, "ES256", k.ec), ErrAlgorithm)
	add("RS256 header, EC key", sign(t, hdr("RS256", "ec"), good, "RS256", k.rsa), ErrAlgorithm)
	add("PS256 header, key published for RS256", sign(t, hdr("PS256", "rsa"), good, "PS256", k.rsa), ErrAlgorithm)
	add("EdDSA header, RSA key", sign(t, hdr("EdDSA", "rsa"), good, "EdDSA", k.ed), ErrAlgorithm)
	add("signed by the attacker with our kid", sign(t, hdr("RS256", "rsa"), good, "RS256", k.attacker), ErrSignature)
	add("claims tampered after signing", parts[0]+"."+b64s(claimsWith("scope", "admin"))+"."+parts[2], ErrSignature)
	return cases
}

func mustPKIX(k crypto.PublicKey) []byte {
	b, _ := x509.MarshalPKIXPublicKey(k)
	return b
}

func TestAttackCorpus(t *testing.T) {
	k := getKeys(t)
	f := &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}
	v := newTestVerifier(t, f, &clock{t: testNow}, JWKSOptions{})
	corpus := attackCorpus(t)
	if len(corpus) < 25 {
		t.Fatalf("the corpus has %d tokens; at least 25 are wanted", len(corpus))
	}
	for _, tc := range corpus {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if c != nil {
				t.Fatal("claims returned for a rejected token")
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// And the genuine tokens of every algorithm pass.
	good := mustJSON(goodClaims())
	for _, g := range []struct {
		alg, kid string
		key      any
	}{{"RS256", "rsa", k.rsa}, {"PS256", "rsa-ps", k.rsa2}, {"ES256", "ec", k.ec}, {"EdDSA", "ed", k.ed}} {
		if c, err := v.Verify(context.Background(), sign(t, hdr(g.alg, g.kid), good, g.alg, g.key)); err != nil || c.Subject != "m2mc_a" {
			t.Errorf("genuine %s token: %v", g.alg, err)
		}
	}
}

// FuzzVerify: no input panics the verifier, and nothing but a genuine token
// is ever accepted.
func FuzzVerify(f *testing.F) {
	k := getKeys(f)
	for _, tc := range attackCorpus(f) {
		if len(tc.token) < 8<<10 {
			f.Add(tc.token)
		}
	}
	genuine := sign(f, hdr("RS256", "rsa"), mustJSON(goodClaims()), "RS256", k.rsa)
	f.Add(genuine)
	fj := &fakeJWKS{body: k.publishedSet(f), cc: "max-age=300"}
	v := newTestVerifier(f, fj, &clock{t: testNow}, JWKSOptions{})
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token)
		if err == nil && token != genuine {
			// Only a genuine signature can pass: the token must be a
			// re-encoding of one we signed, which strict base64 forbids.
			t.Fatalf("accepted a token that is not the genuine one: %q", token)
		}
		if err != nil && (c != nil || !errors.Is(err, ErrInvalidToken)) {
			t.Fatalf("error %v with claims %v", err, c)
		}
	})
}

// ---- JWKS behaviour ----

func TestJWKSMaxAgeHonoured(t *testing.T) {
	k := getKeys(t)
	clk := &clock{t: testNow}
	f := &fakeJWKS{body: k.publishedSet(t), cc: "public, max-age=600"}
	v := newTestVerifier(t, f, clk, JWKSOptions{})
	tok := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(time.Hour).Unix()), "RS256", k.rsa)
	verifyOK := func() {
		t.Helper()
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	verifyOK()
	for range 100 {
		verifyOK()
	}
	clk.add(7 * time.Minute) // before the last fifth of 10 min: no fetch
	verifyOK()
	if f.count() != 1 {
		t.Fatalf("%d fetches within max-age, want 1", f.count())
	}
	clk.add(2 * time.Minute) // in the last fifth: one background refresh
	verifyOK()
	v.cfg.Keys.(*JWKS).background.Wait()
	if f.count() != 2 {
		t.Fatalf("%d fetches after the background refresh, want 2", f.count())
	}
	// max-age is bounded: max-age=1 is raised to MinAge (30 s).
	f.set(k.publishedSet(t), 200, "max-age=1")
	clk.add(11 * time.Minute)
	verifyOK() // served from the expired set, which is refreshed in the background
	v.cfg.Keys.(*JWKS).background.Wait()
	fetches := f.count()
	clk.add(20 * time.Second)
	verifyOK()
	if f.count() != fetches {
		t.Fatalf("refetched within the 30 s minimum lifetime")
	}
}

// 10,000 tokens with random kids cause at most one fetch per cooldown.
func TestUnknownKIDRefetchIsRateLimited(t *testing.T) {
	k := getKeys(t)
	clk := &clock{t: testNow}
	f := &fakeJWKS{body: k.publishedSet(t), cc: "max-age=3600"}
	v := newTestVerifier(t, f, clk, JWKSOptions{UnknownKIDCooldown: 30 * time.Second})
	good := mustJSON(goodClaims())
	var wg sync.WaitGroup
	for i := range 10000 {
		if i%1000 == 0 {
			clk.add(time.Second) // 10 s in all, within one cooldown
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := sign(t, hdr("RS256", fmt.Sprintf("random-%d", i)), good, "RS256", nil)
			if _, err := v.Verify(context.Background(), tok+"AAAA"); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("random kid: %v", err)
			}
		}()
		if i%100 == 0 {
			wg.Wait()
		}
	}
	wg.Wait()
	// One initial fetch plus at most one unknown-kid refetch.
	if n := f.count(); n > 2 {
		t.Fatalf("%d fetches for 10,000 unknown kids within one cooldown; want at most 2", n)
	}
	if f.noCache > 1 {
		t.Fatalf("%d no-cache refetches, want at most 1", f.noCache)
	}
	// After the cooldown, a newly published key is found by one refetch.
	clk.add(31 * time.Second)
	f.set(jwksBody(t, jwkJSON(t, k.rsa.Public(), "rsa", "RS256"), jwkJSON(t, k.attacker.Public(), "new", "RS256")), 200, "max-age=3600")
	if _, err := v.Verify(context.Background(), sign(t, hdr("RS256", "new"), good, "RS256", k.attacker)); err != nil {
		t.Fatalf("a newly published key after the cooldown: %v", err)
	}
}

// When the JWKS endpoint fails, the last good set is used for StaleIfError;
// then verification fails.
func TestStaleIfError(t *testing.T) {
	k := getKeys(t)
	clk := &clock{t: testNow}
	f := &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}
	v := newTestVerifier(t, f, clk, JWKSOptions{StaleIfError: time.Hour})
	tok := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(48*time.Hour).Unix()), "RS256", k.rsa)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	f.set([]byte("oops"), 503, "")
	clk.add(30 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("stale set not used during an outage: %v", err)
	}
	clk.add(40 * time.Minute) // 5 min + 1 h of staleness exceeded
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("after StaleIfError: %v, want ErrUnknownKey", err)
	}
	f.set(k.publishedSet(t), 200, "max-age=300")
	fetches := v.cfg.Keys.(*JWKS).Fetches()
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("within the backoff after a failed fetch: %v, want ErrUnknownKey", err)
	}
	if n := v.cfg.Keys.(*JWKS).Fetches() - fetches; n != 0 {
		t.Fatalf("%d fetches within the backoff, want 0", n)
	}
	clk.add(5 * time.Minute) // past the longest backoff
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// A process started while the issuer is down does not fetch once per
// request: after a failed fetch with nothing cached, requests fail at once
// until the backoff has passed.
func TestJWKSColdStartOutageBacksOff(t *testing.T) {
	k := getKeys(t)
	clk := &clock{t: testNow}
	f := &fakeJWKS{body: []byte("down"), status: 503}
	v := newTestVerifier(t, f, clk, JWKSOptions{})
	tok := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(48*time.Hour).Unix()), "RS256", k.rsa)
	for i := range 1000 {
		if _, err := v.Verify(context.Background(), tok); err == nil {
			t.Fatal("verified without keys")
		}
		if i%100 == 0 {
			clk.add(100 * time.Millisecond)
		}
	}
	if n := v.cfg.Keys.(*JWKS).Fetches(); n != 1 {
		t.Errorf("%d fetches for 1,000 verifications within the first backoff, want 1", n)
	}
	f.set(k.publishedSet(t), 200, "max-age=300")
	clk.add(5 * time.Second)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after the backoff and recovery: %v", err)
	}
}

// A refresh replaces the set: a key the issuer removed stops verifying.
func TestJWKSReplaceNotMerge(t *testing.T) {
	k := getKeys(t)
	clk := &clock{t: testNow}
	f := &fakeJWKS{body: k.publishedSet(t), cc: "max-age=60"}
	v := newTestVerifier(t, f, clk, JWKSOptions{})
	tok := sign(t, hdr("ES256", "ec"), claimsWith("exp", testNow.Add(time.Hour).Unix()), "ES256", k.ec)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	f.set(jwksBody(t, jwkJSON(t, k.rsa.Public(), "rsa", "RS256")), 200, "max-age=60")
	clk.add(61 * time.Second)
	clk.add(31 * time.Second) // past the unknown-kid cooldown too
	// The expired set still serves this request while it is refreshed in
	// the background; once the refresh is in, the removed key is gone.
	_, _ = v.Verify(context.Background(), tok)
	v.cfg.Keys.(*JWKS).background.Wait()
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a removed key still verifies: %v", err)
	}
}

func TestJWKSCaps(t *testing.T) {
	k := getKeys(t)
	var many []json.RawMessage
	for i := range 101 {
		many = append(many, jwkJSON(t, k.rsa.Public(), fmt.Sprint(i), "RS256"))
	}
	if _, err := parseJWKS(jwksBody(t, many...), 100); err == nil {
		t.Error("101 keys accepted")
	}
	f := &fakeJWKS{body: append(k.publishedSet(t), []byte(strings.Repeat(" ", 2<<20))...)}
	v := newTestVerifier(t, f, &clock{t: testNow}, JWKSOptions{})
	if _, err := v.Verify(context.Background(), sign(t, hdr("RS256", "rsa"), mustJSON(goodClaims()), "RS256", k.rsa)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("a 2 MiB JWKS: %v", err)
	}
	// An EC point off the curve is refused at load.
	bad := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"off","x":"%s","y":"%s"}]}`, b64(make([]byte, 32)), b64(append(make([]byte, 31), 1)))
	keys, _ := parseJWKS([]byte(bad), 100)
	if _, ok := keys["off"]; ok {
		t.Error("an off-curve EC key was loaded")
	}
	// An encryption key is not a signature key.
	enc, _ := (&jose.JSONWebKey{Key: k.rsa.Public(), KeyID: "enc", Use: "enc"}).MarshalJSON()
	keys, _ = parseJWKS(jwksBody(t, enc), 100)
	if _, ok := keys["enc"]; ok {
		t.Error("a use=enc key was loaded")
	}
}

// Discovery finds the JWKS; a document of another issuer is refused.
func TestDiscovery(t *testing.T) {
	k := getKeys(t)
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		body := ""
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			body = `{"issuer":"` + testIssuer + `","jwks_uri":"https://issuer.example/keys"}`
		case "/keys":
			body = string(k.publishedSet(t))
		default:
			return &http.Response{StatusCode: 404, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}}, nil
		}
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(body)), Header: http.Header{}}, nil
	})
	v, _ := New(Config{Issuer: testIssuer, Audience: testAudience, HTTPClient: &http.Client{Transport: tr}, Now: func() time.Time { return testNow }})
	if _, err := v.Verify(context.Background(), sign(t, hdr("EdDSA", "ed"), mustJSON(goodClaims()), "EdDSA", k.ed)); err != nil {
		t.Fatalf("via discovery: %v", err)
	}
	v2, _ := New(Config{Issuer: "https://other.example", Audience: testAudience, HTTPClient: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(`{"issuer":"` + testIssuer + `","jwks_uri":"https://issuer.example/keys"}`)), Header: http.Header{}}, nil
	})}})
	if _, err := v2.Verify(context.Background(), sign(t, hdr("EdDSA", "ed"), mustJSON(goodClaims()), "EdDSA", k.ed)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("discovery document of another issuer: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
