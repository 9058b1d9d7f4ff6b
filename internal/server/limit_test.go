package server

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/oauth"
)

// tokenFrom sends a client-credentials request through the server's
// handler as if from addr, and returns the status.
func (ts *testServer) tokenFrom(addr, id, secret, extra string) int {
	ts.t.Helper()
	return ts.tokenRequest(addr, "/oauth/token", id, secret, extra)
}

// tokenRequest posts a client-credentials request with Basic credentials to
// path on the handler as if from addr, and returns the status.
func (ts *testServer) tokenRequest(addr, path, id, secret, extra string) int {
	ts.t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader("grant_type=client_credentials"+extra))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	r.RemoteAddr = addr + ":40000"
	w := httptest.NewRecorder()
	ts.srv.Handler().ServeHTTP(w, r)
	return w.Code
}

// An attacker sharing the client's address (NAT, a proxy) brute-forces the
// client's secret and sprays unknown client ids, ten requests for each of
// the client's: the client is never refused. The limiter's clock does not
// move, so no bucket refills during the test.
//
// Measured before the limiter checked credentials first: 1 of 500
// legitimate requests succeeded; after: 500 of 500.
func TestSharedAddressBruteForceSparesTheClient(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	clk := newFakeClock()
	ts := startServerClock(t, cfg, clk.Now)
	id, secret := setupOrders(ts)
	const shared = "198.51.100.7"
	if got := ts.tokenFrom(shared, id, secret, ""); got != 200 {
		t.Fatalf("before the attack: %d", got)
	}
	ok, refused := 0, 0
	for i := range 500 {
		for j := range 10 {
			if j%2 == 0 {
				ts.tokenFrom(shared, id, fmt.Sprintf("m2ms_guess%d_%d", i, j), "")
			} else {
				ts.tokenFrom(shared, fmt.Sprintf("m2mc_guess%d_%d", i, j), secret, "")
			}
		}
		if ts.tokenFrom(shared, id, secret, "") == 200 {
			ok++
		} else {
			refused++
		}
	}
	t.Logf("legitimate requests under same-address brute force: %d of %d succeeded", ok, ok+refused)
	if refused != 0 {
		t.Errorf("%d of %d legitimate requests refused", refused, ok+refused)
	}
	// The attacker was limited all along.
	if got := ts.tokenFrom(shared, id, "m2ms_oneMoreGuess", ""); got != http.StatusTooManyRequests {
		t.Errorf("attacker's guess: %d, want 429", got)
	}
}

// One client's secret guessed from many addresses: after the burst, new
// addresses are refused before their guesses are checked, while the
// client's own address keeps working. Unauthenticated requests that fail
// for other reasons (an oversized scope list) count too.
func TestDistributedBruteForceIsLimitedPerClient(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	clk := newFakeClock()
	ts := startServerClock(t, cfg, clk.Now)
	id, secret := setupOrders(ts)
	const home = "203.0.113.1"
	if got := ts.tokenFrom(home, id, secret, ""); got != 200 {
		t.Fatalf("%d", got)
	}
	statuses := map[int]int{}
	for i := range 100 {
		statuses[ts.tokenFrom(fmt.Sprintf("192.0.2.%d", i), id, fmt.Sprintf("m2ms_guess%d", i), "")]++
	}
	if statuses[401] != cfg.AuthFailureBurst || statuses[429] != 100-cfg.AuthFailureBurst {
		t.Errorf("100 guesses from 100 addresses: %v, want %d × 401 then 429", statuses, cfg.AuthFailureBurst)
	}
	// Even the right secret is not checked from a new address now …
	if got := ts.tokenFrom("192.0.2.250", id, secret, ""); got != 429 {
		t.Errorf("right secret from a new address during the attack: %d, want 429", got)
	}
	// … but the client's own address is served.
	if got := ts.tokenFrom(home, id, secret, ""); got != 200 {
		t.Errorf("the client's own address: %d, want 200", got)
	}

	// Requests without credentials count as failures too.
	scopes := "&scope=" + strings.Repeat("x%20", 201)
	statuses = map[int]int{}
	for range 30 {
		statuses[ts.tokenFrom("198.51.100.99", "", "", scopes)]++
	}
	if statuses[400] != cfg.AuthFailureBurst || statuses[429] != 30-cfg.AuthFailureBurst {
		t.Errorf("30 oversized scope lists without credentials: %v, want %d × 400 then 429", statuses, cfg.AuthFailureBurst)
	}
}

// Admin inputs as long as the 1 MiB body allows are refused by their
// caps, before any per-entry work (each introspect entry is an API lookup).
func TestAdminListInputsAreCapped(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read")
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("s%d", i)
		}
		return out
	}
	tests := []struct {
		name, path string
		body       any
		field      string
	}{
		{"API scopes", "/admin/v1/apis", map[string]any{"identifier": "https://big", "name": "big", "scopes": many(80_000)}, "scopes"},
		{"grant scopes", "/admin/v1/clients", map[string]any{"name": "c", "grants": []any{map[string]any{"audience": ordersAPI, "scopes": many(80_000)}}}, "grants[0].scopes"},
		{"introspect", "/admin/v1/clients", map[string]any{"name": "c", "introspect": many(80_000)}, "introspect"},
		{"grants", "/admin/v1/clients", map[string]any{"name": "c", "grants": func() []any {
			out := []any{}
			for _, a := range many(20_000) {
				out = append(out, map[string]any{"audience": a})
			}
			return out
		}()}, "grants"},
		{"federation", "/admin/v1/clients", map[string]any{"name": "c", "token_endpoint_auth_method": "federated", "federation": func() []any {
			out := []any{}
			for _, p := range many(20_000) {
				out = append(out, map[string]any{"policy": p, "subject": "x"})
			}
			return out
		}()}, "federation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := ts.adminDo(http.MethodPost, tc.path, tc.body)
			if resp.StatusCode != 400 || !strings.Contains(string(b), `"field": "`+tc.field+`"`) || !strings.Contains(string(b), "at most") {
				t.Errorf("%d %.300s", resp.StatusCode, b)
			}
			// Refused by the cap alone: no entry was looked up.
			if strings.Contains(string(b), `[0].`) && tc.field == "federation" {
				t.Errorf("each binding was checked before the cap: %.300s", b)
			}
		})
	}
}

// A secret with '+' and '%' sent in a Basic header raw, as curl -u, Python
// requests and axios send it, or form-encoded as RFC 6749 §2.3.1 says:
// both authenticate.
func TestBasicCredentialsRawAndEncoded(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read")
	const id, sec = "legacy+reporter", "imported+secret%2Fwith%plus-and-percent-0123"
	resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients", map[string]any{"client_id": id, "client_secret": sec, "name": "legacy",
		"grants": []any{map[string]any{"audience": ordersAPI, "scopes": []string{"orders:read"}}}})
	if resp.StatusCode != 201 {
		t.Fatalf("import: %d %s", resp.StatusCode, b)
	}
	raw := "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+sec))
	encoded := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(sec)))
	wrongRaw := "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+sec+"x"))
	for _, tc := range []struct {
		name, authz string
		want        int
	}{{"raw", raw, 200}, {"form-encoded", encoded, 200}, {"wrong, raw", wrongRaw, 401}} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", tc.authz)
		if resp, b := ts.do(req); resp.StatusCode != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, b, tc.want)
		}
	}
}

// assertionFrom sends a client-assertion token request through the
// server's handler as if from addr, and returns the status.
func (ts *testServer) assertionFrom(addr, assertion string, extra url.Values) int {
	ts.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {oauth.AssertionJWTBearer}, "client_assertion": {assertion}}
	for k, v := range extra {
		form[k] = v
	}
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = addr + ":40000"
	w := httptest.NewRecorder()
	ts.srv.Handler().ServeHTTP(w, r)
	return w.Code
}

// Anyone who knows a private_key_jwt client's id (not a secret) can send
// assertions naming it that fail; a signature cannot be guessed, so such
// failures must not stop the client itself: its next assertion, sent with
// client_id (as tokensource and m2mauth token do) from an address it never
// used (a new pod), gets a token. The limiter's clock does not move, so no
// bucket refills during the test.
//
// Measured before: 0 of 20 legitimate requests from new addresses
// succeeded after 100 forged assertions; after: 20 of 20.
func TestForgedAssertionsDoNotLockOutAKeyClient(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	clk := newFakeClock()
	ts := startServerClock(t, cfg, clk.Now)
	ts.createAPI(ordersAPI, 0, "orders:read")
	key := newTestKey(t, jose.ES256, "k1")
	forger := newTestKey(t, jose.ES256, "k1")
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "keyed", Name: "keyed", Grants: grants,
		TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKS: jwkSet(t, key)}); resp.StatusCode != 201 {
		t.Fatalf("create a key client: %d %s", resp.StatusCode, b)
	}
	iss := ts.cfg.Issuer
	statuses := map[int]int{}
	for i := range 100 {
		forged := forger.sign(t, assertionClaims("keyed", iss, clk.Now()), nil)
		statuses[ts.assertionFrom(fmt.Sprintf("192.0.2.%d", i), forged, nil)]++
	}
	if statuses[200] != 0 {
		t.Fatalf("forged assertions: %v", statuses)
	}
	ok := 0
	for i := range 20 {
		good := key.sign(t, assertionClaims("keyed", iss, clk.Now()), nil)
		if st := ts.assertionFrom(fmt.Sprintf("198.51.100.%d", i), good, url.Values{"client_id": {"keyed"}}); st == 200 {
			ok++
		}
	}
	t.Logf("after 100 forged assertions, %d of 20 legitimate requests from new addresses succeeded", ok)
	if ok != 20 {
		t.Errorf("%d of 20 legitimate assertions from new addresses refused", 20-ok)
	}
}

// postFrom sends body to path through the server's handler as if from addr,
// and returns the status.
func (ts *testServer) postFrom(addr, path, contentType, body string) int {
	ts.t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	r.RemoteAddr = addr + ":40000"
	w := httptest.NewRecorder()
	ts.srv.Handler().ServeHTTP(w, r)
	return w.Code
}

// The ATM surface's refresh request names its client without a secret: a
// junk refresh token must not make the sender's address one the client
// proved itself from (which would let it guess the secret past the
// client's empty bucket).
func TestUnprovenRefreshDoesNotTrustTheAddress(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	clk := newFakeClock()
	ts := startServerClock(t, cfg, clk.Now)
	id, secret := setupOrders(ts)
	const attacker = "198.51.100.50"
	ts.postFrom(attacker, "/auth/token", "application/json", `{"clientId":"`+id+`","grantType":"refresh_token","refresh_token":"m2mr_junk"}`)
	for i := range cfg.AuthFailureBurst {
		ts.tokenFrom(fmt.Sprintf("192.0.2.%d", i), id, fmt.Sprintf("m2ms_guess%d", i), "")
	}
	// A guess from there is not even checked: the right secret stands for
	// a lucky guess, and is answered 429 like any other.
	if got := ts.tokenFrom(attacker, id, secret, ""); got != 429 {
		t.Errorf("a (lucky) guess from an address that sent a junk refresh token: %d, want 429 (the client's bucket is empty)", got)
	}
}

// Junk refresh tokens on the ATM surface's public refresh (the client named
// by id alone) are failed authentications of the sending address: past its
// burst the address gets 429, while the client itself, named by anyone, is
// not locked out (its secret still works from another address).
func TestJunkPublicRefreshesAreLimited(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	clk := newFakeClock()
	ts := startServerClock(t, cfg, clk.Now)
	id, secret := setupOrders(ts)
	const attacker = "198.51.100.60"
	junk := `{"clientId":"` + id + `","grantType":"refresh_token","refresh_token":"m2mr_junk"}`
	for i := range cfg.AuthFailureBurst {
		if got := ts.postFrom(attacker, "/auth/token", "application/json", junk); got == 429 {
			t.Fatalf("junk refresh %d refused as over the limit already", i+1)
		}
	}
	if got := ts.postFrom(attacker, "/auth/token", "application/json", junk); got != 429 {
		t.Errorf("junk refresh past the burst: %d, want 429", got)
	}
	if got := ts.tokenFrom("192.0.2.77", id, secret, ""); got != 200 {
		t.Errorf("the client from another address: %d, want 200", got)
	}
}

// Forged assertions naming a secret client, from many addresses, cost
// those addresses only: the client's own bucket, which guards its secret,
// is not drained, and the client still gets tokens from a new address.
func TestForgedAssertionsDoNotDrainAClientsBucket(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	clk := newFakeClock()
	ts := startServerClock(t, cfg, clk.Now)
	id, secret := setupOrders(ts)
	enc := base64.RawURLEncoding.EncodeToString
	for i := range 3 * cfg.AuthFailureBurst {
		claims := fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":%q,"exp":%d,"jti":"j%d"}`, id, id, ts.cfg.Issuer, clk.Now().Add(time.Minute).Unix(), i)
		forged := enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(claims)) + "." + enc(make([]byte, 64))
		form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {oauth.AssertionJWTBearer}, "client_assertion": {forged}}
		if got := ts.postFrom(fmt.Sprintf("192.0.2.%d", i), "/oauth/token", "application/x-www-form-urlencoded", form.Encode()); got != 401 {
			t.Fatalf("forged assertion %d: %d, want 401", i, got)
		}
	}
	if got := ts.tokenFrom("203.0.113.9", id, secret, ""); got != 200 {
		t.Errorf("the client's secret from a new address after forged assertions: %d, want 200", got)
	}
}
