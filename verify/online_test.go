package verify

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// issuer serves the JWKS and an introspection endpoint whose answer the
// test sets.
type issuerFake struct {
	jwks  *fakeJWKS
	mu    sync.Mutex
	state string // "active", "inactive", "down"
	calls int
	auth  string
}

func (f *issuerFake) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path != "/oauth/introspect" {
		return f.jwks.RoundTrip(r)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.auth = r.Header.Get("Authorization")
	body, status := `{"active":true,"client_id":"m2mc_a"}`, 200
	switch f.state {
	case "inactive":
		body = `{"active":false}`
	case "down":
		body, status = "", 502
	}
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

func (f *issuerFake) set(state string) { f.mu.Lock(); f.state = state; f.mu.Unlock() }
func (f *issuerFake) n() int           { f.mu.Lock(); defer f.mu.Unlock(); return f.calls }

func TestOnlineMode(t *testing.T) {
	k := getKeys(t)
	clk := &clock{t: testNow}
	fake := &issuerFake{jwks: &fakeJWKS{body: k.publishedSet(t), cc: "max-age=3600"}, state: "active"}
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://issuer.example/jwks",
		HTTPClient: &http.Client{Transport: fake}, Now: clk.now,
		Introspection: &IntrospectionConfig{URL: "https://issuer.example/oauth/introspect", ClientID: "rs", ClientSecret: "pw", CacheTTL: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(10*time.Minute).Unix()), "RS256", k.rsa)
	ctx := context.Background()
	for range 5 {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if fake.n() != 1 || fake.auth == "" {
		t.Fatalf("%d introspection calls for 5 verifications (auth %q)", fake.n(), fake.auth)
	}
	// Revoked at the issuer: seen once the positive answer is 30 s old.
	fake.set("inactive")
	clk.add(29 * time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("within the cache TTL: %v", err)
	}
	clk.add(2 * time.Second)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrRevoked) || !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("after the TTL: %v", err)
	}
	calls := fake.n()
	if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrRevoked) || fake.n() != calls {
		t.Fatalf("the negative answer is not cached: %v, %d calls", err, fake.n())
	}
	// Tokens that fail locally never reach introspection.
	if _, err := v.Verify(ctx, "garbage"); !errors.Is(err, ErrMalformed) || fake.n() != calls {
		t.Fatal("a malformed token was introspected")
	}
	// The cache never outlives the token.
	short := sign(t, hdr("RS256", "rsa"), claimsWith("exp", clk.now().Add(5*time.Second).Unix(), "jti", "short"), "RS256", k.rsa)
	fake.set("active")
	if _, err := v.Verify(ctx, short); err != nil {
		t.Fatal(err)
	}
	for _, e := range v.online.entries {
		if e.active && e.until.After(clk.now().Add(5*time.Second)) {
			t.Fatalf("an entry outlives its token: until %v", e.until)
		}
	}
	// Issuer unreachable: not an invalid token; the middleware answers 503.
	fake.set("down")
	clk.add(time.Minute)
	fresh := sign(t, hdr("RS256", "rsa"), claimsWith("exp", clk.now().Add(10*time.Minute).Unix(), "jti", "fresh"), "RS256", k.rsa)
	_, err = v.Verify(ctx, fresh)
	if !errors.Is(err, ErrIntrospectionUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("issuer down: %v", err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+fresh)
	Middleware(v, MiddlewareOptions{})(http.NotFoundHandler()).ServeHTTP(w, r)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("middleware with the issuer down: %d", w.Code)
	}
}
