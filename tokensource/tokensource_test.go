package tokensource

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// tokenServer is an in-memory token endpoint: it answers from a script of
// responses, then with fresh tokens ("tok-1", "tok-2", …).
type tokenServer struct {
	mu        sync.Mutex
	requests  int
	script    []resp
	expiresIn int
	delay     time.Duration
	lastAuth  string
	lastForm  string
	forms     []url.Values // every request's form, in order
	auths     []string     // every request's Authorization header
}

type resp struct {
	status int
	body   string
	header map[string]string
	err    error
}

func (s *tokenServer) RoundTrip(r *http.Request) (*http.Response, error) {
	if s.delay > 0 {
		time.Sleep(s.delay) // synctest: a fake, instant wait
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.lastAuth = r.Header.Get("Authorization")
	b, _ := io.ReadAll(r.Body)
	s.lastForm = string(b)
	form, _ := url.ParseQuery(s.lastForm)
	s.forms = append(s.forms, form)
	s.auths = append(s.auths, s.lastAuth)
	out := resp{status: 200, body: fmt.Sprintf(`{"access_token":"tok-%d","token_type":"Bearer","expires_in":%d}`, s.requests, s.expiresIn)}
	if len(s.script) > 0 {
		out, s.script = s.script[0], s.script[1:]
	}
	if out.err != nil {
		return nil, out.err
	}
	h := http.Header{}
	for k, v := range out.header {
		h.Set(k, v)
	}
	return &http.Response{StatusCode: out.status, Header: h, Body: io.NopCloser(strings.NewReader(out.body)), Request: r}, nil
}

func (s *tokenServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func newSource(t *testing.T, srv *tokenServer, mod ...func(*Config)) *Source {
	t.Helper()
	cfg := Config{TokenURL: "https://auth.example/oauth/token", ClientID: "m2mc_a", ClientSecret: "s3cr:et",
		Scopes: []string{"orders:read"}, Audience: "https://api", HTTPClient: &http.Client{Transport: srv}}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCachesAndSendsTheRightRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 900}
		s := newSource(t, srv)
		for range 10 {
			tok, err := s.Token(t.Context())
			if err != nil || tok.AccessToken != "tok-1" {
				t.Fatalf("%v %v", tok, err)
			}
		}
		if srv.count() != 1 {
			t.Fatalf("%d requests for 10 Token calls", srv.count())
		}
		wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("m2mc_a:s3cr%3Aet"))
		if srv.lastAuth != wantAuth || srv.lastForm != "audience=https%3A%2F%2Fapi&grant_type=client_credentials&scope=orders%3Aread" {
			t.Fatalf("request: %q %q", srv.lastAuth, srv.lastForm)
		}
	})
}

// Past the refresh point the current token is returned at once and a new
// one fetched in the background; past expiry callers wait for a new one.
func TestEarlyRefreshAndExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 1000}
		s := newSource(t, srv)
		if tok, _ := s.Token(t.Context()); tok.AccessToken != "tok-1" {
			t.Fatal("first")
		}
		time.Sleep(699 * time.Second) // before 70 %: never refreshed
		s.Token(t.Context())
		synctest.Wait()
		if srv.count() != 1 {
			t.Fatalf("refreshed before 70%% of the lifetime")
		}
		time.Sleep(101 * time.Second) // at 80 %: always past the refresh point
		tok, _ := s.Token(t.Context())
		if tok.AccessToken != "tok-1" {
			t.Fatal("the caller waited for the early refresh")
		}
		synctest.Wait() // the background refresh completes
		if tok, _ := s.Token(t.Context()); tok.AccessToken != "tok-2" || srv.count() != 2 {
			t.Fatalf("after the early refresh: %s, %d requests", tok.AccessToken, srv.count())
		}
		// An expired token is never returned: the caller waits.
		srv.mu.Lock()
		srv.script = []resp{{status: 503}, {status: 503}}
		srv.mu.Unlock()
		time.Sleep(2000 * time.Second)
		tok, err := s.Token(t.Context())
		if err != nil || tok.AccessToken != "tok-5" || !tok.Valid(time.Now()) {
			t.Fatalf("after expiry: %v %v", tok, err)
		}
	})
}

func TestConcurrentCallersShareOneRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 900, delay: 100 * time.Millisecond}
		s := newSource(t, srv)
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if tok, err := s.Token(t.Context()); err != nil || tok.AccessToken != "tok-1" {
					t.Errorf("%v %v", tok, err)
				}
			}()
		}
		wg.Wait()
		if srv.count() != 1 {
			t.Fatalf("%d requests for 50 concurrent callers", srv.count())
		}
	})
}

func TestRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 900, script: []resp{
			{err: errors.New("connection refused")}, {status: 500}, {status: 503, header: map[string]string{"Retry-After": "3"}},
		}}
		s := newSource(t, srv)
		start := time.Now()
		tok, err := s.Token(t.Context())
		if err != nil || tok.AccessToken != "tok-4" || srv.count() != 4 {
			t.Fatalf("%v %v after %d requests", tok, err, srv.count())
		}
		// Backoffs: ≤200 ms, ≤400 ms, then the 3 s Retry-After.
		if d := time.Since(start); d < 3*time.Second || d > 3600*time.Millisecond {
			t.Fatalf("retried for %s", d)
		}
	})
}

func TestGivesUpAndDoesNotRetry4xx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{script: []resp{{status: 401, body: `{"error":"invalid_client","error_description":"client authentication failed"}`}}}
		s := newSource(t, srv)
		_, err := s.Token(t.Context())
		var re *RetrieveError
		if !errors.As(err, &re) || re.Code != "invalid_client" || re.StatusCode != 401 || srv.count() != 1 {
			t.Fatalf("err %v after %d requests", err, srv.count())
		}
		// 5xx forever: bounded retries, then the error.
		srv2 := &tokenServer{}
		for range 10 {
			srv2.script = append(srv2.script, resp{status: 502})
		}
		s2 := newSource(t, srv2, func(c *Config) { c.MaxRetries = 3 })
		if _, err := s2.Token(t.Context()); !errors.As(err, &re) || re.StatusCode != 502 || srv2.count() != 4 {
			t.Fatalf("err %v after %d requests, want 502 after 4", err, srv2.count())
		}
		// Negative MaxRetries: no retry at all.
		srv3 := &tokenServer{script: []resp{{status: 503}, {status: 503}}}
		s3 := newSource(t, srv3, func(c *Config) { c.MaxRetries = -1 })
		if _, err := s3.Token(t.Context()); !errors.As(err, &re) || re.StatusCode != 503 || srv3.count() != 1 {
			t.Fatalf("err %v after %d requests, want 503 after 1", err, srv3.count())
		}
	})
}

func TestContextCancelsTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{delay: time.Hour, expiresIn: 3 * 3600}
		s := newSource(t, srv)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := s.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
		// The shared fetch goes on for other callers; once it completes, the
		// next caller gets its token at once.
		time.Sleep(2 * time.Hour)
		if tok, err := s.Token(t.Context()); err != nil || tok.AccessToken != "tok-1" {
			t.Fatalf("%v %v", tok, err)
		}
	})
}

// api answers 401 to every token but the current good one.
type api struct {
	mu     sync.Mutex
	good   string
	bodies []string
	auths  []string
}

func (a *api) RoundTrip(r *http.Request) (*http.Response, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.auths = append(a.auths, r.Header.Get("Authorization"))
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		a.bodies = append(a.bodies, string(b))
	}
	status := 200
	if r.Header.Get("Authorization") != "Bearer "+a.good {
		status = 401
	}
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

func TestTransportRetriesOnceOn401(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 900}
		s := newSource(t, srv)
		a := &api{good: "tok-1"}
		client := &http.Client{Transport: s.Transport(a)}
		if resp, err := client.Get("https://api.example/data"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		// The API stops accepting tok-1 (say, revoked): one retry with a new token.
		a.good = "tok-2"
		resp, err := client.Post("https://api.example/data", "application/json", strings.NewReader(`{"x":1}`))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after a 401: %v %v", resp, err)
		}
		if len(a.bodies) != 2 || a.bodies[0] != `{"x":1}` || a.bodies[1] != `{"x":1}` || a.auths[1] != "Bearer tok-1" || a.auths[2] != "Bearer tok-2" {
			t.Fatalf("retry: bodies %q auths %q", a.bodies, a.auths)
		}
		// Still 401 with the new token: no second retry.
		a.good = "never"
		if resp, _ := client.Get("https://api.example/data"); resp.StatusCode != 401 || srv.count() != 3 || len(a.auths) != 5 {
			t.Fatalf("a second 401: status %d, %d token requests, %d API calls", resp.StatusCode, srv.count(), len(a.auths))
		}
		// A body that cannot be replayed is not retried.
		req, _ := http.NewRequest(http.MethodPost, "https://api.example/data", io.NopCloser(strings.NewReader("once")))
		req.GetBody = nil
		calls := len(a.auths)
		if resp, _ := client.Do(req); resp.StatusCode != 401 || len(a.auths) != calls+1 {
			t.Fatalf("non-replayable body retried")
		}
	})
}

func TestOAuth2Adapter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 900}
		s := newSource(t, srv)
		a := &api{good: "tok-1"}
		ctx := context.WithValue(t.Context(), oauth2.HTTPClient, &http.Client{Transport: a})
		client := oauth2.NewClient(ctx, s.OAuth2())
		if resp, err := client.Get("https://api.example/data"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
	})
}

func TestDiscovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 900}
		rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path == "/.well-known/openid-configuration" {
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"token_endpoint":"https://auth.example/oauth/token"}`))}, nil
			}
			if r.URL.Path != "/oauth/token" {
				return nil, fmt.Errorf("unexpected %s", r.URL)
			}
			return srv.RoundTrip(r)
		})
		s, _ := New(Config{Issuer: "https://auth.example", ClientID: "a", ClientSecret: "b", HTTPClient: &http.Client{Transport: rt}})
		if tok, err := s.Token(t.Context()); err != nil || tok.AccessToken != "tok-1" {
			t.Fatalf("%v %v", tok, err)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A background refresh that fails is not started again on every Token call
// while the cached token is still good: the next attempt waits, MinBackoff
// doubling up to MaxBackoff, so a busy client does not hammer the token
// endpoint or the assertion source.
func TestFailedEarlyRefreshBacksOff(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config, *tokenServer, *int, *error)
	}{
		{"token endpoint refuses", func(c *Config, srv *tokenServer, calls *int, fail *error) {
			srv.script = []resp{{status: 200, body: `{"access_token":"tok-1","token_type":"Bearer","expires_in":1000}`}}
			for range 200 {
				srv.script = append(srv.script, resp{status: 400, body: `{"error":"invalid_scope"}`})
			}
		}},
		{"assertion source fails", func(c *Config, srv *tokenServer, calls *int, fail *error) {
			c.ClientSecret = ""
			c.AssertionFunc = func(context.Context) (string, error) {
				*calls++
				if *calls > 1 {
					return "", *fail
				}
				return jwtLike(`{}`), nil
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := &tokenServer{expiresIn: 1000}
				var calls int
				fail := errors.New("unavailable")
				s := newSource(t, srv, func(c *Config) { tc.mod(c, srv, &calls, &fail) })
				if tok, err := s.Token(t.Context()); err != nil || tok.AccessToken != "tok-1" {
					t.Fatalf("%v %v", tok, err)
				}
				attempts := func() int { return max(srv.count(), calls) - 1 }
				time.Sleep(800 * time.Second) // past the refresh point
				for range 100 {
					if tok, err := s.Token(t.Context()); err != nil || tok.AccessToken != "tok-1" {
						t.Fatalf("%v %v", tok, err)
					}
					synctest.Wait()
					time.Sleep(10 * time.Millisecond)
				}
				// 1 s of calls: attempts at 0, 0.2 s and 0.6 s (then 1.4 s).
				if n := attempts(); n != 3 {
					t.Fatalf("%d refresh attempts during 1 s of Token calls, want 3", n)
				}
				// The waits grow to MaxBackoff and stay there.
				for range 60 {
					s.Token(t.Context())
					synctest.Wait()
					time.Sleep(time.Second)
				}
				if n := attempts(); n < 3+6 || n > 3+9 {
					t.Fatalf("%d refresh attempts after 61 s, want 3 + 6..9 (one per 10 s at most)", n)
				}
			})
		})
	}
}

// redirector is an API that redirects some paths and records the
// Authorization header of every request it sees, by host.
type redirector struct {
	mu    sync.Mutex
	auths map[string][]string
}

func (r *redirector) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.auths[req.URL.Host] = append(r.auths[req.URL.Host], req.Header.Get("Authorization"))
	r.mu.Unlock()
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), Request: req}
	if to := strings.TrimPrefix(req.URL.Path, "/go/"); to != req.URL.Path {
		resp.StatusCode = http.StatusFound
		resp.Header.Set("Location", "https://"+to)
	}
	return resp, nil
}

// The token follows a redirect within the API's origin, and never one to
// another host (found by the attack: http.Client drops Authorization on
// such a redirect, and the transport used to add it back).
func TestTransportNeverFollowsARedirectAcrossOrigins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := &tokenServer{expiresIn: 900}
		s := newSource(t, srv)
		api := &redirector{auths: map[string][]string{}}
		client := &http.Client{Transport: s.Transport(api)}
		for _, u := range []string{"https://api.example/go/api.example/here", "https://api.example/go/evil.example/steal"} {
			resp, err := client.Get(u)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v %v", u, resp, err)
			}
		}
		if got := api.auths["api.example"]; len(got) != 3 || got[0] != "Bearer tok-1" || got[1] != "Bearer tok-1" || got[2] != "Bearer tok-1" {
			t.Fatalf("the API's own requests: %q", got)
		}
		if got := api.auths["evil.example"]; len(got) != 1 || got[0] != "" {
			t.Fatalf("the other host got %q", got)
		}
	})
}
