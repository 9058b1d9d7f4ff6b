package verify

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// outageVerifies is how many verifications each outage test makes.
const outageVerifies = 1000

// newJWKSVerifier builds a Verifier whose key set comes through rt.
func newJWKSVerifier(t testing.TB, rt http.RoundTripper, clk *clock, opts JWKSOptions) (*Verifier, *JWKS) {
	t.Helper()
	opts.HTTPClient = &http.Client{Transport: rt}
	opts.Now = clk.now
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://issuer.example/jwks", JWKS: opts, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return v, v.cfg.Keys.(*JWKS)
}

// outageFetches caches a set with max-age=300, moves the clock by advance,
// takes the endpoint down and makes outageVerifies verifications, one per
// millisecond of the injected clock. It reports how many fetches the
// verifications caused; every one of them must succeed from the cached set.
func outageFetches(t *testing.T, advance time.Duration) int {
	t.Helper()
	k := getKeys(t)
	clk := &clock{t: testNow}
	f := &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}
	v := newTestVerifier(t, f, clk, JWKSOptions{StaleIfError: time.Hour})
	tok := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(48*time.Hour).Unix()), "RS256", k.rsa)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	f.set([]byte("down"), http.StatusServiceUnavailable, "")
	clk.add(advance)
	before := f.count()
	failed := 0
	for range outageVerifies {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			failed++
		}
		clk.add(time.Millisecond)
	}
	v.cfg.Keys.(*JWKS).background.Wait()
	if failed > 0 {
		t.Errorf("%d of %d verifications failed; the cached set should serve them all", failed, outageVerifies)
	}
	return f.count() - before
}

// (a) Past max-age but within StaleIfError, with the endpoint down: the
// stale set serves every request and the endpoint sees one attempt, not
// one per request.
func TestJWKSOutageExpiredSetFetchesOnce(t *testing.T) {
	n := outageFetches(t, 6*time.Minute)
	t.Logf("expired set, endpoint down: %d fetches per %d verifies", n, outageVerifies)
	if n != 1 {
		t.Fatalf("%d fetches for %d verifications within one backoff period; want 1", n, outageVerifies)
	}
}

// (b) In the background-refresh window (the last fifth of max-age), with
// the endpoint down: one attempt, then the backoff holds further ones.
func TestJWKSOutageRefreshWindowFetchesOnce(t *testing.T) {
	n := outageFetches(t, 4*time.Minute+30*time.Second)
	t.Logf("refresh window, endpoint down: %d fetches per %d verifies", n, outageVerifies)
	if n != 1 {
		t.Fatalf("%d fetches for %d verifications within one backoff period; want 1", n, outageVerifies)
	}
}

// hangingJWKS serves the key set on its first request; every later request
// blocks until release is closed or the request is cancelled.
type hangingJWKS struct {
	body     []byte
	release  chan struct{}
	mu       sync.Mutex
	requests int
	returned int // hanging requests that have returned
}

func (h *hangingJWKS) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.requests++
	first := h.requests == 1
	h.mu.Unlock()
	if first {
		return &http.Response{StatusCode: 200, Header: http.Header{"Cache-Control": {"max-age=300"}}, Body: io.NopCloser(strings.NewReader(string(h.body))), Request: r}, nil
	}
	defer func() {
		h.mu.Lock()
		h.returned++
		h.mu.Unlock()
	}()
	select {
	case <-h.release:
		return nil, errors.New("connection reset")
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}

func (h *hangingJWKS) counts() (requests, returned int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests, h.returned
}

// (c) A hanging endpoint never holds up a request while a usable set is
// cached: the verifications all complete while the one refresh is still
// blocked in the endpoint.
func TestJWKSHangingEndpointDoesNotBlock(t *testing.T) {
	for _, tc := range []struct {
		name    string
		advance time.Duration
	}{
		{"expired, within StaleIfError", 6 * time.Minute},
		{"in the refresh window", 4*time.Minute + 30*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				k := getKeys(t)
				clk := &clock{t: testNow}
				h := &hangingJWKS{body: k.publishedSet(t), release: make(chan struct{})}
				v, jw := newJWKSVerifier(t, h, clk, JWKSOptions{StaleIfError: time.Hour})
				tok := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(48*time.Hour).Unix()), "RS256", k.rsa)
				if _, err := v.Verify(context.Background(), tok); err != nil {
					t.Fatal(err)
				}
				clk.add(tc.advance)
				for i := range outageVerifies {
					if _, err := v.Verify(context.Background(), tok); err != nil {
						t.Fatalf("verification %d: %v", i, err)
					}
				}
				synctest.Wait() // the refresh is now blocked in the endpoint
				requests, returned := h.counts()
				t.Logf("hanging endpoint: %d fetches started, %d returned, during %d verifies", requests-1, returned, outageVerifies)
				if returned != 0 {
					t.Fatalf("%d fetches returned before the verifications did: the requests waited for the hanging endpoint", returned)
				}
				if requests != 2 {
					t.Fatalf("%d fetches started; want the first and one refresh", requests)
				}
				close(h.release)
				jw.background.Wait()
			})
		})
	}
}

// With nothing cached, concurrent requests wait for one shared fetch, and
// each waits no longer than its own context allows.
func TestJWKSColdStartWaitersShareOneFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := getKeys(t)
		clk := &clock{t: testNow}
		h := &hangingJWKS{body: k.publishedSet(t), release: make(chan struct{})}
		h.requests = 1 // every request hangs
		v, jw := newJWKSVerifier(t, h, clk, JWKSOptions{})
		tok := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(48*time.Hour).Unix()), "RS256", k.rsa)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range errs {
			wg.Go(func() { _, errs[i] = v.Verify(ctx, tok) })
		}
		synctest.Wait()
		if requests, _ := h.counts(); requests != 2 {
			t.Fatalf("%d fetches for %d waiting requests; want 1", requests-1, len(errs))
		}
		wg.Wait() // the requests' deadline passes; the fetch still hangs
		for i, err := range errs {
			if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "deadline exceeded") {
				t.Fatalf("request %d: %v, want ErrUnknownKey wrapping the deadline", i, err)
			}
		}
		if _, returned := h.counts(); returned != 0 {
			t.Fatalf("the fetch returned before the requests gave up")
		}
		close(h.release)
		jw.background.Wait()
	})
}

func TestJWKSBackoffSchedule(t *testing.T) {
	j := NewJWKS("https://issuer.example/jwks", testIssuer, JWKSOptions{MinBackoff: 5 * time.Second, MaxBackoff: 40 * time.Second})
	for _, tc := range []struct {
		failures int
		jitter   float64
		want     time.Duration
	}{
		{1, 0, 5 * time.Second},
		{2, 0, 10 * time.Second},
		{3, 0, 20 * time.Second},
		{4, 0, 40 * time.Second},
		{5, 0, 40 * time.Second},
		{1000, 0, 40 * time.Second},
		{1, 0.5, 4500 * time.Millisecond},
		{4, 0.5, 36 * time.Second},
	} {
		j.jitter = func() float64 { return tc.jitter }
		if got := j.backoff(tc.failures); got != tc.want {
			t.Errorf("backoff after %d failures with jitter %v = %v, want %v", tc.failures, tc.jitter, got, tc.want)
		}
	}
}

// (d) While the endpoint stays down, the pause between attempts doubles up
// to MaxBackoff; a successful fetch resets it.
func TestJWKSBackoffGrowsAndResets(t *testing.T) {
	k := getKeys(t)
	clk := &clock{t: testNow}
	f := &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}
	v, jw := newJWKSVerifier(t, f, clk, JWKSOptions{StaleIfError: time.Hour, MinBackoff: 5 * time.Second, MaxBackoff: 40 * time.Second})
	jw.jitter = func() float64 { return 0 }
	tok := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(48*time.Hour).Unix()), "RS256", k.rsa)
	// verify makes one verification and reports whether it caused a fetch.
	verify := func() bool {
		t.Helper()
		before := f.count()
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		jw.background.Wait()
		return f.count() > before
	}
	// expectGap checks that, after a fetch, the next one comes gap later.
	expectGap := func(gap time.Duration) {
		t.Helper()
		clk.add(gap - time.Millisecond)
		if verify() {
			t.Fatalf("a fetch %v after a failure, within a backoff of %v", gap-time.Millisecond, gap)
		}
		clk.add(time.Millisecond)
		if !verify() {
			t.Fatalf("no fetch once the backoff of %v had passed", gap)
		}
	}
	verify()
	f.set([]byte("down"), http.StatusServiceUnavailable, "")
	clk.add(6 * time.Minute)
	if !verify() {
		t.Fatal("no refresh of the expired set")
	}
	for _, gap := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 40 * time.Second} {
		expectGap(gap)
	}
	// The endpoint recovers: the next attempt succeeds and resets the backoff.
	f.set(k.publishedSet(t), 200, "max-age=300")
	expectGap(40 * time.Second)
	f.set([]byte("down"), http.StatusServiceUnavailable, "")
	clk.add(6 * time.Minute)
	if !verify() {
		t.Fatal("no refresh of the expired set")
	}
	expectGap(5 * time.Second)
}

// Unknown-kid refetches keep their cooldown and, while fetches fail, also
// wait for the backoff.
func TestJWKSUnknownKIDRespectsBackoff(t *testing.T) {
	k := getKeys(t)
	clk := &clock{t: testNow}
	f := &fakeJWKS{body: k.publishedSet(t), cc: "max-age=3600"}
	v, jw := newJWKSVerifier(t, f, clk, JWKSOptions{UnknownKIDCooldown: time.Second, MinBackoff: 10 * time.Second})
	jw.jitter = func() float64 { return 0 }
	good := sign(t, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(48*time.Hour).Unix()), "RS256", k.rsa)
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	f.set([]byte("down"), http.StatusServiceUnavailable, "")
	unknown := func() int {
		t.Helper()
		before := f.count()
		for range outageVerifies {
			if _, err := v.Verify(context.Background(), sign(t, hdr("RS256", "new"), mustJSON(goodClaims()), "RS256", "AAAA")); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("unknown kid: %v", err)
			}
		}
		jw.background.Wait()
		return f.count() - before
	}
	if n := unknown(); n != 1 {
		t.Fatalf("%d fetches for %d unknown-kid tokens, want 1", n, outageVerifies)
	}
	clk.add(2 * time.Second) // past the cooldown, within the backoff
	if n := unknown(); n != 0 {
		t.Fatalf("%d fetches for unknown kids within the backoff, want 0", n)
	}
	clk.add(8 * time.Second) // the backoff has passed
	if n := unknown(); n != 1 {
		t.Fatalf("%d fetches for unknown kids after the backoff, want 1", n)
	}
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("a known kid during the outage: %v", err)
	}
}
