package tokensource

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/dpop"
)

// dpopClock is the tests' injected clock: far from the real time, so that
// a proof whose iat is not from Config.Now fails dpop.Check.
var dpopClock = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// dpopServer is a token endpoint or an API that checks DPoP proofs with
// internal/dpop, optionally demanding a nonce, and records what it saw.
type dpopServer struct {
	*httptest.Server
	api bool // an API (else the token endpoint)

	mu sync.Mutex
	// nonce is the nonce proofs must carry ("": none); with rotate, every
	// answer demands a new one, so no proof ever has the current one.
	nonce  string
	rotate bool
	// tokenType answers the token endpoint's requests ("": DPoP when a
	// proof came, else Bearer); refuse makes the API answer 401 without a
	// nonce challenge (a revoked token).
	tokenType string
	refuse    bool

	requests int
	proofs   []dpop.Proof // of the accepted proofs
	auths    []string
	bodies   []string
	jkts     *sync.Map // token → the jkt it is bound to (shared with the API)
	failures []string  // why a request was refused
}

func startDPoPServer(t *testing.T, api bool, jkts *sync.Map) *dpopServer {
	t.Helper()
	s := &dpopServer{api: api, jkts: jkts}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *dpopServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	b, _ := io.ReadAll(r.Body)
	s.bodies = append(s.bodies, string(b))
	s.auths = append(s.auths, r.Header.Get("Authorization"))
	if s.api {
		s.serveAPI(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	proof := r.Header.Get("DPoP")
	if proof == "" {
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":900}`, s.requests)
		return
	}
	p, err := dpop.Check(proof, dpop.Request{Method: http.MethodPost, URL: s.URL + "/oauth/token"}, dpopClock, dpop.Options{})
	if err != nil {
		s.failures = append(s.failures, err.Error())
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":%q}`, err.Code)
		return
	}
	if s.nonce != "" && (p.Nonce != s.nonce || s.rotate) {
		s.nonce = s.nextNonce()
		w.Header().Set("DPoP-Nonce", s.nonce)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"use_dpop_nonce","error_description":"a DPoP nonce is required"}`)
		return
	}
	s.proofs = append(s.proofs, p)
	tok := fmt.Sprintf("tok-%d", s.requests)
	s.jkts.Store(tok, p.JKT)
	typ := s.tokenType
	if typ == "" {
		typ = "DPoP"
	}
	fmt.Fprintf(w, `{"access_token":%q,"token_type":%q,"expires_in":900}`, tok, typ)
}

func (s *dpopServer) nextNonce() string { return fmt.Sprintf("nonce-%d", s.requests) }

func (s *dpopServer) serveAPI(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "DPoP ")
	if !ok {
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") && r.Header.Get("DPoP") == "" {
			fmt.Fprint(w, "bearer ok")
			return
		}
		s.failures = append(s.failures, "no DPoP authorization")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	p, err := dpop.Check(r.Header.Get("DPoP"), dpop.Request{Method: r.Method, URL: "http://" + r.Host + r.URL.Path, AccessToken: tok}, dpopClock, dpop.Options{})
	if jkt, _ := s.jkts.Load(tok); err != nil || p.JKT != jkt || s.refuse {
		s.failures = append(s.failures, fmt.Sprintf("%v, jkt %q for %q", err, p.JKT, tok))
		w.Header().Set("WWW-Authenticate", `DPoP algs="ES256", error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.nonce != "" && (p.Nonce != s.nonce || s.rotate) {
		s.nonce = s.nextNonce()
		w.Header().Set("DPoP-Nonce", s.nonce)
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	s.proofs = append(s.proofs, p)
	fmt.Fprint(w, "ok")
}

func (s *dpopServer) state() (requests int, proofs []dpop.Proof, auths, bodies, failures []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, append([]dpop.Proof(nil), s.proofs...), append([]string(nil), s.auths...),
		append([]string(nil), s.bodies...), append([]string(nil), s.failures...)
}

func (s *dpopServer) set(f func(*dpopServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// newDPoPSource is a DPoP Source of the token endpoint of as, on the
// injected clock.
func newDPoPSource(t *testing.T, as *dpopServer, mod ...func(*Config)) *Source {
	t.Helper()
	cfg := Config{TokenURL: as.URL + "/oauth/token", ClientID: "m2mc_a", ClientSecret: "s", DPoP: true,
		MaxRetries: -1, Now: func() time.Time { return dpopClock }}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bound reports whether the token endpoint bound tok to jkt.
func bound(jkts *sync.Map, tok, jkt string) bool {
	v, ok := jkts.Load(tok)
	return ok && v == jkt
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDPoPTokenAndAPIRequests(t *testing.T) {
	jkts := &sync.Map{}
	as, rs := startDPoPServer(t, false, jkts), startDPoPServer(t, true, jkts)
	s := newDPoPSource(t, as)
	tok, err := s.Token(t.Context())
	if err != nil || tok.TokenType != "DPoP" || tok.AccessToken != "tok-1" {
		t.Fatalf("%+v %v", tok, err)
	}
	_, proofs, auths, _, failures := as.state()
	// dpop.Check passed: typ, alg, jwk, signature, htm POST, htu the token
	// endpoint, iat the injected clock (the real time would be refused).
	if len(proofs) != 1 || len(failures) != 0 || !proofs[0].IssuedAt.Equal(dpopClock) || proofs[0].Alg != "ES256" || !strings.HasPrefix(auths[0], "Basic ") {
		t.Fatalf("token request: proofs %+v failures %q auths %q", proofs, failures, auths)
	}

	api := &http.Client{Transport: s.Transport(nil)}
	if code, body := get(t, api, rs.URL+"/data?page=2#frag"); code != 200 || body != "ok" {
		t.Fatalf("API GET: %d %q", code, body)
	}
	resp, err := api.Post(rs.URL+"/data", "application/json", strings.NewReader(`{"x":1}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("API POST: %v %v", resp, err)
	}
	resp.Body.Close()
	n, proofs, auths, bodies, failures := rs.state()
	// Each request has its own proof (jti) for its method and URL, with
	// ath of the token (Check got AccessToken) and the token's key.
	if n != 2 || len(proofs) != 2 || len(failures) != 0 || proofs[0].JTI == proofs[1].JTI || !bound(jkts, "tok-1", proofs[0].JKT) ||
		auths[0] != "DPoP tok-1" || bodies[1] != `{"x":1}` {
		t.Fatalf("API: %d requests, proofs %+v, auths %q, bodies %q, failures %q", n, proofs, auths, bodies, failures)
	}
	// A proof for another method or URL fails the API's check: the
	// requests above passed because the Transport made each proof for its
	// own request.
	other, err := s.proof(http.MethodGet, rs.URL+"/other", "tok-1")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, rs.URL+"/data", nil)
	req.Header.Set("Authorization", "DPoP tok-1")
	req.Header.Set("DPoP", other)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("a proof for another URL: %v %v", resp, err)
	}
}

func TestDPoPNonces(t *testing.T) {
	jkts := &sync.Map{}
	as, rs := startDPoPServer(t, false, jkts), startDPoPServer(t, true, jkts)
	as.nonce, rs.nonce = "as-start", "rs-start"
	s := newDPoPSource(t, as)

	// The token endpoint asks for its nonce: one more request with it.
	if tok, err := s.Token(t.Context()); err != nil || tok.TokenType != "DPoP" {
		t.Fatalf("%+v %v", tok, err)
	}
	n, proofs, _, _, _ := as.state()
	if n != 2 || len(proofs) != 1 || proofs[0].Nonce != "nonce-1" {
		t.Fatalf("token endpoint: %d requests, proofs %+v", n, proofs)
	}

	// The API (another origin) asks for its own: the POST is sent again
	// with its body and a proof with the API's nonce.
	api := &http.Client{Transport: s.Transport(nil)}
	resp, err := api.Post(rs.URL+"/data", "text/plain", strings.NewReader("payload"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("API: %v %v", resp, err)
	}
	resp.Body.Close()
	n, proofs, auths, bodies, _ := rs.state()
	if n != 2 || len(proofs) != 1 || proofs[0].Nonce != "nonce-1" || bodies[0] != "payload" || bodies[1] != "payload" || auths[1] != "DPoP tok-2" {
		t.Fatalf("API: %d requests, proofs %+v, bodies %q, auths %q", n, proofs, bodies, auths)
	}
	// The nonce is remembered: the next request carries it at once.
	if code, _ := get(t, api, rs.URL+"/data"); code != 200 {
		t.Fatalf("with the remembered nonce: %d", code)
	}
	if n, proofs, _, _, _ := rs.state(); n != 3 || proofs[1].Nonce != "nonce-1" {
		t.Fatalf("%d requests, proofs %+v", n, proofs)
	}

	// A body that cannot be sent again is not: the 401 comes back.
	rs.set(func(d *dpopServer) { d.nonce = "rotated" })
	req, _ := http.NewRequest(http.MethodPost, rs.URL+"/data", io.NopCloser(strings.NewReader("once")))
	resp, err = api.Do(req)
	if err != nil || resp.StatusCode != 401 || resp.Header.Get("DPoP-Nonce") != "nonce-4" {
		t.Fatalf("a body that cannot be replayed: %v %v", resp, err)
	}
	resp.Body.Close()
	if n, _, _, _, _ := rs.state(); n != 4 {
		t.Fatalf("%d API requests, want 4", n)
	}
}

// A server that wants a new nonce every time gets one retry, not a loop.
func TestDPoPNonceRetriedOnce(t *testing.T) {
	jkts := &sync.Map{}
	as, rs := startDPoPServer(t, false, jkts), startDPoPServer(t, true, jkts)
	as.nonce, as.rotate = "x", true
	s := newDPoPSource(t, as)
	var re *RetrieveError
	if _, err := s.Token(t.Context()); !errors.As(err, &re) || re.Code != "use_dpop_nonce" {
		t.Fatalf("err %v", err)
	}
	if n, _, _, _, _ := as.state(); n != 2 {
		t.Fatalf("%d token requests, want 2", n)
	}

	as.set(func(d *dpopServer) { d.nonce, d.rotate = "", false })
	rs.set(func(d *dpopServer) { d.nonce, d.rotate = "x", true })
	api := &http.Client{Transport: s.Transport(nil)}
	if code, _ := get(t, api, rs.URL+"/data"); code != 401 {
		t.Fatalf("API: %d", code)
	}
	if n, _, _, _, _ := rs.state(); n != 2 {
		t.Fatalf("%d API requests, want 2", n)
	}
	if n, _, _, _, _ := as.state(); n != 3 {
		t.Fatalf("%d token requests, want 3 (a nonce challenge is no reason for a new token)", n)
	}
}

// An API that refuses the token (not for a nonce) makes the Transport get
// a new token once and send a proof with the new token's ath.
func TestDPoPNewTokenOn401(t *testing.T) {
	jkts := &sync.Map{}
	as, rs := startDPoPServer(t, false, jkts), startDPoPServer(t, true, jkts)
	s := newDPoPSource(t, as)
	api := &http.Client{Transport: s.Transport(nil)}
	if code, _ := get(t, api, rs.URL+"/data"); code != 200 {
		t.Fatal(code)
	}
	// The API forgets tok-1 (revoked): tok-2 is fetched and accepted.
	jkts.Delete("tok-1")
	if code, _ := get(t, api, rs.URL+"/data"); code != 200 {
		t.Fatal(code)
	}
	if _, proofs, auths, _, _ := rs.state(); len(auths) != 3 || auths[1] != "DPoP tok-1" || auths[2] != "DPoP tok-2" || len(proofs) != 2 {
		t.Fatalf("auths %q proofs %+v", auths, proofs)
	}
	// Refused whatever the token: one new token, then the 401.
	rs.set(func(d *dpopServer) { d.refuse = true })
	if code, _ := get(t, api, rs.URL+"/data"); code != 401 {
		t.Fatal(code)
	}
	if n, _, _, _, _ := rs.state(); n != 5 {
		t.Fatalf("%d API requests, want 5", n)
	}
}

func TestDPoPServerAnswersBearer(t *testing.T) {
	jkts := &sync.Map{}
	as, rs := startDPoPServer(t, false, jkts), startDPoPServer(t, true, jkts)
	as.tokenType = "bearer"
	s := newDPoPSource(t, as)
	tok, err := s.Token(t.Context())
	if err != nil || tok.TokenType != "Bearer" {
		t.Fatalf("%+v %v", tok, err)
	}
	api := &http.Client{Transport: s.Transport(nil)}
	if code, body := get(t, api, rs.URL+"/data"); code != 200 || body != "bearer ok" {
		t.Fatalf("%d %q", code, body)
	}
}

// Without DPoP nothing changes: no proof, Bearer, and a DPoP token type is
// refused (nothing could send it).
func TestNoDPoP(t *testing.T) {
	jkts := &sync.Map{}
	as, rs := startDPoPServer(t, false, jkts), startDPoPServer(t, true, jkts)
	s := newDPoPSource(t, as, func(c *Config) { c.DPoP = false })
	if tok, err := s.Token(t.Context()); err != nil || tok.TokenType != "Bearer" {
		t.Fatalf("%+v %v", tok, err)
	}
	api := &http.Client{Transport: s.Transport(nil)}
	if code, body := get(t, api, rs.URL+"/data"); code != 200 || body != "bearer ok" {
		t.Fatalf("%d %q", code, body)
	}
	srv := &tokenServer{script: []resp{{status: 200, body: `{"access_token":"t","token_type":"DPoP","expires_in":900}`}}}
	if _, err := newSource(t, srv).Token(t.Context()); err == nil || !strings.Contains(err.Error(), `token type "DPoP", want Bearer`) {
		t.Fatalf("err %v", err)
	}
	if srv.forms[0] == nil || srv.auths[0] == "" {
		t.Fatal("no request")
	}
}

func TestDPoPKey(t *testing.T) {
	k := testKeys()
	for _, tc := range []struct {
		key     crypto.Signer
		wantAlg string
		wantErr string
	}{
		{k.ed, "EdDSA", ""},
		{k.rsa, "RS256", ""},
		{k.p256, "ES256", ""},
		{k.p384, "", "unsupported curve P-384"},
		{k.rsa1k, "", "RSA key of 1024 bits"},
	} {
		jkts := &sync.Map{}
		as := startDPoPServer(t, false, jkts)
		s, err := New(Config{TokenURL: as.URL + "/oauth/token", ClientID: "a", ClientSecret: "s", DPoPKey: tc.key, Now: func() time.Time { return dpopClock }})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "DPoPKey") {
				t.Errorf("err %v, want ~ %q", err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Token(t.Context())
		_, proofs, _, _, failures := as.state()
		if err != nil || tok.TokenType != "DPoP" || len(proofs) != 1 || proofs[0].Alg != tc.wantAlg {
			t.Errorf("%s: %+v %v, proofs %+v, failures %q", tc.wantAlg, tok, err, proofs, failures)
		}
	}
}

func TestChallengeParam(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{`DPoP error="use_dpop_nonce"`, "use_dpop_nonce"},
		{`DPoP error=use_dpop_nonce`, "use_dpop_nonce"},
		{`dpop algs="ES256 PS256", error = "use_dpop_nonce", error_description="x, y"`, "use_dpop_nonce"},
		{`Bearer realm="api", error="invalid_token", DPoP algs="ES256", error="use_dpop_nonce"`, "use_dpop_nonce"},
		{`Bearer error="use_dpop_nonce"`, ""},
		{`DPoP error_description="error=\"use_dpop_nonce\""`, ""},
		{`Basic abc==, DPoP error="use_dpop_nonce"`, "use_dpop_nonce"},
		{`DPoP`, ""},
		{`DPoP error="unterminated`, "unterminated"},
		{``, ""},
	} {
		if got := challengeParam(tc.header, "DPoP", "error"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.header, got, tc.want)
		}
	}
	h := http.Header{"Www-Authenticate": {`DPoP error="use_dpop_nonce"`}}
	if useDPoPNonce(h) {
		t.Error("a challenge without DPoP-Nonce")
	}
	h.Set("DPoP-Nonce", "n")
	if !useDPoPNonce(h) {
		t.Error("a nonce challenge not seen")
	}
}

func TestOriginOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://API.example:443/a/b?q": "https://api.example",
		"http://api.example:8080":       "http://api.example:8080",
		"ftp://x/y":                     "",
	} {
		if got := originOf(in); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}
