package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/store"
)

// post sends body with a content type to path.
func (ts *testServer) post(path, contentType, body string, headers ...string) (*http.Response, []byte) {
	ts.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return ts.do(req)
}

type machineErr struct {
	I18N  string `json:"i18N"`
	Error string `json:"error"`
	Type  string `json:"type"`
}

// machineErrors decodes the machine surface's error envelope strictly.
func machineErrors(t *testing.T, body []byte) []machineErr {
	t.Helper()
	var env struct {
		Errors []machineErr `json:"errors"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil || len(env.Errors) != 1 {
		t.Fatalf("not the {\"errors\":[…]} envelope: %s", body)
	}
	return env.Errors
}

// Seed 000: the machine-token service. Its example request, as written,
// with our credentials, and each documented error.
func TestSeedMachineToken(t *testing.T) {
	cfg := testConfig(t)
	cfg.AuthFailureBurst = 9 // the failures below, then 429
	cfg.AuthFailureRate = 0.001
	ts := startServer(t, cfg)
	id, secret := setupOrders(ts)

	body := fmt.Sprintf("{\n\"apiKey\": %q,\n\"secretKey\": %q\n}", id, secret)
	resp, b := ts.post("/v1/oauth/token/machine", "application/json", body)
	if resp.StatusCode != 200 {
		t.Fatalf("example request: %d %s", resp.StatusCode, b)
	}
	var ok struct {
		Data struct {
			Token   string `json:"token"`
			Expires string `json:"expires"`
		} `json:"data"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ok); err != nil {
		t.Fatalf("response shape: %s (%v)", b, err)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(ok.Data.Expires) {
		t.Errorf("expires %q is not RFC 3339 UTC with milliseconds and Z", ok.Data.Expires)
	}
	claims := ts.verifyToken(ok.Data.Token).claims
	exp, _ := time.Parse(time.RFC3339, ok.Data.Expires)
	if exp.Unix() != int64(claims["exp"].(float64)) || claims["sub"] != id || claims["aud"] != ordersAPI {
		t.Errorf("expires %s vs exp %v; claims %v", ok.Data.Expires, claims["exp"], claims)
	}
	// Fields that are not part of this API are ignored: the defaults apply.
	resp, b = ts.post("/v1/oauth/token/machine", "application/json", fmt.Sprintf(`{"apiKey":%q,"secretKey":%q,"scope":"orders:write","audience":"https://x"}`, id, secret))
	if resp.StatusCode != 200 {
		t.Errorf("extra fields: %d %s", resp.StatusCode, b)
	}

	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		status      int
		want        machineErr
	}{
		{"malformed JSON", "POST", "application/json", `{"apiKey": "x",`, 400, machineErr{"INVALID_REQUEST", "Bad request - invalid input", "BadRequest"}},
		{"missing secretKey", "POST", "application/json", `{"apiKey":"` + id + `"}`, 400, machineErr{"INVALID_REQUEST", "Bad request - invalid input", "BadRequest"}},
		{"number apiKey", "POST", "application/json", `{"apiKey":5,"secretKey":"x"}`, 400, machineErr{"INVALID_REQUEST", "Bad request - invalid input", "BadRequest"}},
		{"array body", "POST", "application/json", `[]`, 400, machineErr{"INVALID_REQUEST", "Bad request - invalid input", "BadRequest"}},
		{"wrong content type", "POST", "application/x-www-form-urlencoded", "apiKey=a&secretKey=b", 415, machineErr{"UNSUPPORTED_MEDIA_TYPE", "Unsupported media type - use application/json", "UnsupportedMediaType"}},
		{"GET", "GET", "", "", 405, machineErr{"METHOD_NOT_ALLOWED", "Method not allowed - use POST", "MethodNotAllowed"}},
		{"wrong secret", "POST", "application/json", `{"apiKey":"` + id + `","secretKey":"wrong"}`, 401, machineErr{"INVALID_CREDENTIALS", "Invalid API key or secret key", "Unauthorized"}},
		{"unknown key", "POST", "application/json", `{"apiKey":"nobody","secretKey":"` + secret + `"}`, 401, machineErr{"INVALID_CREDENTIALS", "Invalid API key or secret key", "Unauthorized"}},
		{"another wrong secret", "POST", "application/json", `{"apiKey":"` + id + `","secretKey":"wrong2"}`, 401, machineErr{"INVALID_CREDENTIALS", "Invalid API key or secret key", "Unauthorized"}},
		// Nine failures used the burst: this address is now limited.
		{"too many failures", "POST", "application/json", `{"apiKey":"nobody","secretKey":"x"}`, 429, machineErr{"TOO_MANY_REQUESTS", "Too many requests - retry later", "TooManyRequests"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+"/v1/oauth/token/machine", strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, b := ts.do(req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if got := machineErrors(t, b)[0]; got != tc.want {
				t.Fatalf("error %+v, want %+v", got, tc.want)
			}
		})
	}
	// The limit never stops credentials that verify.
	if resp, b := ts.post("/v1/oauth/token/machine", "application/json", body); resp.StatusCode != 200 {
		t.Errorf("correct credentials from a limited address: %d %s", resp.StatusCode, b)
	}
}

// Seed 001: the banking platform. Discovery gives the token endpoint; the
// documented client sends Basic credentials and the same ones in the form,
// with scopes that contain '/'.
func TestSeedBanking(t *testing.T) {
	ts := startServer(t, testConfig(t))
	const bankingAPI = "https://api.bank.example/banking"
	ts.createAPI(bankingAPI, 0, "banking/read", "banking/write", "banking/admin")
	id, secret := ts.createClient(admin.ClientInput{DefaultAudience: bankingAPI,
		Grants: []admin.GrantInput{{Audience: bankingAPI, Scopes: []string{"banking/read", "banking/write"}}}})

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/.well-known/openid-configuration", nil)
	_, b := ts.do(req)
	var disc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	_ = json.Unmarshal(b, &disc)
	if disc.TokenEndpoint != ts.cfg.Issuer+"/oauth/token" {
		t.Fatalf("token_endpoint %q", disc.TokenEndpoint)
	}
	// "client_id=${CLIENT_ID}&client_secret=${CLIENT_SECRET}&scope={SCOPES}&grant_type=client_credentials"
	// with the Basic header too; the scopes separated by a space.
	form := "client_id=" + id + "&client_secret=" + secret + "&scope=banking/read banking/write&grant_type=client_credentials"
	form = strings.ReplaceAll(form, " ", "%20")
	req, _ = http.NewRequest(http.MethodPost, disc.TokenEndpoint, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, b := ts.do(req)
	var tr tokenResp
	if err := json.Unmarshal(b, &tr); err != nil || resp.StatusCode != 200 || tr.TokenType != "Bearer" || tr.ExpiresIn <= 0 || tr.Scope != "banking/read banking/write" {
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	if c := ts.verifyToken(tr.AccessToken).claims; c["scope"] != "banking/read banking/write" || c["aud"] != bankingAPI {
		t.Errorf("claims %v", c)
	}
	// "Authorization: token_type access_token" is a valid RFC 6750 header
	// for the admin API's own bearer check (any RFC 6750 server).
	if parts := strings.SplitN(tr.TokenType+" "+tr.AccessToken, " ", 2); parts[0] != "Bearer" {
		t.Error("token_type is not Bearer")
	}
	// A scope the application was not given is refused, not narrowed.
	form = strings.Replace(form, "banking/write", "banking/admin", 1)
	req, _ = http.NewRequest(http.MethodPost, disc.TokenEndpoint, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	if resp, b := ts.do(req); resp.StatusCode != 400 || !strings.Contains(string(b), "invalid_scope") {
		t.Errorf("ungranted scope: %d %s", resp.StatusCode, b)
	}
}

// Seed 002: the ATM server. Its client-credentials payload, its refresh
// payload (with grantType, an empty id_token and no secret), its JWKS path,
// and the decoded token's iat, iss, exp, aud.
func TestSeedATM(t *testing.T) {
	clock := newFakeClock()
	ts := startServerClock(t, testConfig(t), clock.Now)
	ts.createAPI(ordersAPI, 10*time.Minute, "orders:read")
	id, secret := ts.createClient(admin.ClientInput{RefreshTokens: true, DefaultAudience: ordersAPI,
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	plain, plainSecret := ts.createClient(admin.ClientInput{DefaultAudience: ordersAPI,
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})

	type atmResp struct {
		AccessToken    string `json:"access_token"`
		ExpAccessToken int64  `json:"exp_access_token"`
		RefreshToken   string `json:"refresh_token"`
	}
	call := func(payload map[string]string) (int, atmResp, string) {
		b, _ := json.Marshal(payload)
		resp, body := ts.post("/auth/token", "application/json", string(b))
		var r atmResp
		dec := json.NewDecoder(strings.NewReader(string(body)))
		if resp.StatusCode == 200 {
			dec.DisallowUnknownFields()
		}
		_ = dec.Decode(&r)
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		return resp.StatusCode, r, e.Error
	}

	st, r, _ := call(map[string]string{"clientId": id, "clientSecret": secret, "grant_types": "client_credentials"})
	if st != 200 || r.ExpAccessToken != 600 || !strings.HasPrefix(r.RefreshToken, "m2mr_") {
		t.Fatalf("client credentials: %d %+v", st, r)
	}
	c := ts.verifyToken(r.AccessToken).claims
	for _, claim := range []string{"iat", "iss", "exp", "aud"} {
		if c[claim] == nil {
			t.Errorf("decoded token lacks %s", claim)
		}
	}
	// The refresh request exactly as documented: clientId, refresh_token,
	// an empty id_token and grantType.
	clock.Advance(5 * time.Minute)
	st, r2, _ := call(map[string]string{"clientId": id, "refresh_token": r.RefreshToken, "id_token": "", "grantType": "refresh_token"})
	if st != 200 || r2.AccessToken == "" || r2.RefreshToken == "" || r2.RefreshToken == r.RefreshToken || r2.ExpAccessToken != 600 {
		t.Fatalf("refresh: %d %+v", st, r2)
	}
	// Replaying the spent token fails and revokes the family: the new one dies too.
	if st, _, code := call(map[string]string{"clientId": id, "refresh_token": r.RefreshToken, "grantType": "refresh_token"}); st != 400 || code != "invalid_grant" {
		t.Fatalf("replay: %d %s", st, code)
	}
	if st, _, code := call(map[string]string{"clientId": id, "refresh_token": r2.RefreshToken, "grantType": "refresh_token"}); st != 400 || code != "invalid_grant" {
		t.Fatalf("after a replay the family must be dead: %d %s", st, code)
	}
	// A client without refresh tokens enabled never receives one.
	st, rp, _ := call(map[string]string{"clientId": plain, "clientSecret": plainSecret, "grantType": "client_credentials"})
	if st != 200 || rp.RefreshToken != "" {
		t.Fatalf("client without refresh tokens: %d %+v", st, rp)
	}
	// Another client cannot use a refresh token, and does not spend it.
	_, r3, _ := call(map[string]string{"clientId": id, "clientSecret": secret, "grant_types": "client_credentials"})
	ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+plain, `{"refresh_tokens":true}`)
	if st, _, code := call(map[string]string{"clientId": plain, "refresh_token": r3.RefreshToken, "grantType": "refresh_token"}); st != 400 || code != "invalid_grant" {
		t.Fatalf("another client's refresh token: %d %s", st, code)
	}
	if st, _, _ := call(map[string]string{"clientId": id, "refresh_token": r3.RefreshToken, "grantType": "refresh_token"}); st != 200 {
		t.Fatalf("a refresh token refused for another client was spent: %d", st)
	}
	// Both grant-type names at once must agree; a disabled client's
	// refresh tokens fail.
	if st, _, code := call(map[string]string{"clientId": id, "clientSecret": secret, "grant_types": "client_credentials", "grantType": "refresh_token"}); st != 400 || code != "invalid_request" {
		t.Fatalf("conflicting grant types: %d %s", st, code)
	}
	_, r4, _ := call(map[string]string{"clientId": id, "clientSecret": secret, "grant_types": "client_credentials"})
	ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"disabled":true}`)
	if st, _, code := call(map[string]string{"clientId": id, "refresh_token": r4.RefreshToken, "grantType": "refresh_token"}); st != 401 || code != "invalid_client" {
		t.Fatalf("disabled client's refresh: %d %s", st, code)
	}
	ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"disabled":false}`)
	// The absolute lifetime (24 h) ends the family however often it rotates.
	clock.Advance(24 * time.Hour)
	ts.login()
	if st, _, code := call(map[string]string{"clientId": id, "refresh_token": r4.RefreshToken, "grantType": "refresh_token"}); st != 400 || code != "invalid_grant" {
		t.Fatalf("refresh after the absolute lifetime: %d %s", st, code)
	}

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/auth/.well-known/jwks.json", nil)
	if resp, b := ts.do(req); resp.StatusCode != 200 || !strings.Contains(string(b), `"keys"`) {
		t.Fatalf("ATM JWKS path: %d", resp.StatusCode)
	}
}

// Seed 003: the developer-auth platform. A form request with scope
// "openid profile email", the documented response members, and /keys.
func TestSeedDeveloperAuth(t *testing.T) {
	ts := startServer(t, testConfig(t))
	const api = "https://app.example.com"
	ts.createAPI(api, 0, "openid", "profile", "email")
	id, secret := ts.createClient(admin.ClientInput{DefaultAudience: api,
		Grants: []admin.GrantInput{{Audience: api, Scopes: []string{"openid", "profile", "email"}}}})
	// curl -d "grant_type=client_credentials" -d "client_id=…" -d "client_secret=…" -d "scope=openid profile email"
	form := "grant_type=client_credentials&client_id=" + id + "&client_secret=" + secret + "&scope=openid profile email"
	resp, b := ts.post("/oauth/token", "application/x-www-form-urlencoded", form)
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	if got["token_type"] != "Bearer" || got["scope"] != "openid profile email" || got["expires_in"].(float64) <= 0 || got["access_token"] == "" {
		t.Fatalf("response %v", got)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/keys", nil)
	_, b = ts.do(req)
	var keys struct {
		Keys []map[string]string `json:"keys"`
	}
	_ = json.Unmarshal(b, &keys)
	for _, m := range []string{"use", "kty", "kid", "alg", "n", "e"} {
		if keys.Keys[0][m] == "" {
			t.Errorf("/keys entry lacks %s", m)
		}
	}
	// The token verifies and has iss, aud, exp (the documented checks).
	if c := ts.verifyToken(got["access_token"].(string)).claims; c["iss"] != ts.cfg.Issuer || c["aud"] != api || c["exp"] == nil {
		t.Errorf("claims %v", c)
	}

	// The same request, verbatim, from a client of an ordinary API: the
	// OpenID scopes are accepted, grant nothing and stay out of the token;
	// the answer's scope is "openid", as the platform answers.
	ts.createAPI(ordersAPI, 0, "orders:read", "orders:write")
	oid, osecret := ts.createClient(admin.ClientInput{DefaultAudience: ordersAPI,
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	for _, tc := range []struct{ scope, answer, claim string }{
		{"openid profile email", "openid", ""},
		{"openid orders:read", "openid orders:read", "orders:read"},
		{"profile orders:read email", "orders:read", "orders:read"},
	} {
		form := "grant_type=client_credentials&client_id=" + oid + "&client_secret=" + osecret + "&scope=" + tc.scope
		resp, b := ts.post("/oauth/token", "application/x-www-form-urlencoded", form)
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%q: %d %s", tc.scope, resp.StatusCode, b)
		}
		if got["scope"] != tc.answer {
			t.Errorf("%q answered scope %q, want %q", tc.scope, got["scope"], tc.answer)
		}
		claims := ts.verifyToken(got["access_token"].(string)).claims
		if sc, _ := claims["scope"].(string); sc != tc.claim {
			t.Errorf("%q: token scope %q, want %q", tc.scope, sc, tc.claim)
		}
	}
	// They never widen API scopes: orders:write is still refused.
	if st, code := ts.tokenStatus(oid, osecret, url.Values{"scope": {"openid orders:write"}}); st != 400 || code != "invalid_scope" {
		t.Errorf("openid with an ungranted scope: %d %s", st, code)
	}
}

// --identity-scopes "" turns the OpenID scopes off: they are refused like
// any scope the client is not granted.
func TestIdentityScopesOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.IdentityScopes = nil
	ts := startServer(t, cfg)
	id, secret := setupOrders(ts)
	if st, code := ts.tokenStatus(id, secret, url.Values{"scope": {"openid"}}); st != 400 || code != "invalid_scope" {
		t.Errorf("openid with identity scopes off: %d %s", st, code)
	}
}

// Refresh on the standard surface: the client authenticates; scope may
// narrow; a client without refresh tokens is unauthorized_client.
func TestRefreshStandard(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read", "orders:write")
	id, secret := ts.createClient(admin.ClientInput{RefreshTokens: true, DefaultAudience: ordersAPI,
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read", "orders:write"}}}})
	_, b := ts.tokenForm(id, secret, url.Values{})
	var first struct {
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.Unmarshal(b, &first)
	if first.RefreshToken == "" {
		t.Fatalf("no refresh token: %s", b)
	}
	resp, b := ts.tokenForm(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}, "scope": {"orders:read"}})
	var tr struct {
		AccessToken, Scope, RefreshToken string `json:"-"`
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if resp.StatusCode != 200 || m["scope"] != "orders:read" || m["refresh_token"] == nil {
		t.Fatalf("refresh with a narrower scope: %d %s", resp.StatusCode, b)
	}
	_ = tr
	// Without client authentication the standard surface refuses.
	if st, code := ts.tokenStatus("", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "client_id": {id}}); st != 401 || code != "invalid_client" {
		t.Fatalf("unauthenticated refresh: %d %s", st, code)
	}
	// Wider than the family: invalid_scope, and the token stays live.
	rt := m["refresh_token"].(string)
	if st, code := ts.tokenStatus(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"admin"}}); st != 400 || code != "invalid_scope" {
		t.Fatalf("wider scope: %d %s", st, code)
	}
	if st, _ := ts.tokenStatus(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); st != 200 {
		t.Fatalf("the token was spent by a refused request: %d", st)
	}
	plain, plainSecret := setupClientWithoutRefresh(ts)
	if st, code := ts.tokenStatus(plain, plainSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"m2mr_x"}}); st != 400 || code != "unauthorized_client" {
		t.Fatalf("client without refresh tokens: %d %s", st, code)
	}
}

func setupClientWithoutRefresh(ts *testServer) (string, string) {
	return ts.createClient(admin.ClientInput{DefaultAudience: ordersAPI,
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
}

// Every surface issues the same token for the same client.
func TestSurfacesIssueTheSameClaims(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	_, b1 := ts.tokenForm(id, secret, url.Values{})
	_, b2 := ts.post("/v1/oauth/token/machine", "application/json", fmt.Sprintf(`{"apiKey":%q,"secretKey":%q}`, id, secret))
	_, b3 := ts.post("/auth/token", "application/json", fmt.Sprintf(`{"clientId":%q,"clientSecret":%q,"grant_types":"client_credentials"}`, id, secret))
	var t1 tokenResp
	var t2 struct{ Data struct{ Token string } }
	var t3 struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(b1, &t1)
	_ = json.Unmarshal(b2, &t2)
	_ = json.Unmarshal(b3, &t3)
	var base map[string]any
	for i, raw := range []string{t1.AccessToken, t2.Data.Token, t3.AccessToken} {
		v := ts.verifyToken(raw)
		c := v.claims
		for _, k := range []string{"jti", "iat", "nbf", "exp"} {
			delete(c, k)
		}
		if i == 0 {
			base = c
			continue
		}
		if fmt.Sprint(c) != fmt.Sprint(base) || v.header.ExtraHeaders["typ"] != "at+jwt" {
			t.Errorf("surface %d claims %v, standard %v", i, c, base)
		}
	}
}

// Switched-off surfaces answer 404; malformed bodies on every surface get
// that surface's envelope, never a 5xx.
func TestSurfaceSwitchesAndMalformedBodies(t *testing.T) {
	cfg := testConfig(t)
	cfg.Surfaces = []string{"standard"}
	ts := startServer(t, cfg)
	for _, path := range []string{"/v1/oauth/token/machine", "/auth/token", "/auth/.well-known/jwks.json"} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader("{}"))
		if resp, _ := ts.do(req); resp.StatusCode != 404 {
			t.Errorf("%s with the surface off: %d, want 404", path, resp.StatusCode)
		}
	}
	cfg2 := testConfig(t)
	cfg2.Surfaces = []string{"machine", "atm"}
	ts2 := startServer(t, cfg2)
	if resp, _ := ts2.post("/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials"); resp.StatusCode != 404 {
		t.Errorf("/oauth/token with the standard surface off: %d", resp.StatusCode)
	}

	// The admin login works with the standard surface off, and only for
	// the admin API.
	ts.login()
	ts.createAPI(ordersAPI, 0, "orders:read")
	id, secret := setupClientWithoutRefresh(ts)
	for _, form := range []url.Values{{}, {"audience": {ordersAPI}}} {
		form.Set("grant_type", "client_credentials")
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/admin/v1/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		if resp, b := ts.do(req); resp.StatusCode != 400 || !strings.Contains(string(b), "invalid_target") {
			t.Errorf("/admin/v1/token for a non-admin client (%v): %d %s", form, resp.StatusCode, b)
		}
	}

	all := startServer(t, testConfig(t))
	bodies := []string{"", "{", "[]", "null", "true", `"x"`, `{"a":1,"a":2}`, `{"apiKey":{"x":1}}`, `{"clientId":[],"grantType":5}`,
		"\x00\xff\xfe", `{"grant_type":"client_credentials"}` + strings.Repeat(" ", 70<<10), strings.Repeat("[", 10000)}
	for _, path := range []string{"/oauth/token", "/v1/oauth/token/machine", "/auth/token"} {
		for _, ct := range []string{"application/json", "application/x-www-form-urlencoded", "text/plain", ""} {
			for i, body := range bodies {
				resp, b := all.post(path, ct, body)
				if resp.StatusCode >= 500 {
					t.Errorf("%s %s body %d: %d", path, ct, i, resp.StatusCode)
				}
				if path == "/v1/oauth/token/machine" {
					machineErrors(t, b)
					continue
				}
				var e struct {
					Error string `json:"error"`
				}
				if json.Unmarshal(b, &e) != nil || e.Error == "" {
					t.Errorf("%s %s body %d: not an OAuth error: %s", path, ct, i, b)
				}
			}
		}
	}
}

// A crash between a client's cutoff and the revocation of its refresh
// token families (two writes) must not leave its old refresh tokens
// usable: the cutoff alone refuses them.
func TestRefreshTokensBeforeTheCutoffAreRefused(t *testing.T) {
	clock := newFakeClock()
	ts := startServerClock(t, testConfig(t), clock.Now)
	ts.createAPI(ordersAPI, 0, "orders:read")
	id, secret := ts.createClient(admin.ClientInput{RefreshTokens: true, DefaultAudience: ordersAPI,
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	_, b := ts.tokenForm(id, secret, url.Values{})
	var first struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(b, &first); err != nil || first.RefreshToken == "" {
		t.Fatalf("no refresh token: %s", b)
	}
	clock.Advance(time.Minute)
	// Only the first write: the cutoff, not the families' revocation.
	if _, err := ts.srv.store.UpdateClient(context.Background(), id, func(c *store.Client) error {
		c.TokensRevokedBefore = clock.Now().Truncate(time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ts.srv.env.Clients.Invalidate(id)
	if st, code := ts.tokenStatus(id, secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}); st != 400 || code != "invalid_grant" {
		t.Fatalf("a refresh token issued before the cutoff: %d %s, want 400 invalid_grant", st, code)
	}
}
