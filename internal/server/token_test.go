package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/m2mauth/m2mauth/internal/admin"
)

const ordersAPI = "https://orders.example.com"

// setupOrders creates the orders API and a client granted orders:read.
func setupOrders(ts *testServer) (id, secret string) {
	ts.createAPI(ordersAPI, 0, "orders:read", "orders:write")
	return ts.createClient(admin.ClientInput{
		Grants:          []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read", "orders:write"}}},
		DefaultAudience: ordersAPI,
	})
}

func TestTokenIssuance(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)

	jsonBody := func(m map[string]string) string { b, _ := json.Marshal(m); return string(b) }
	tests := []struct {
		name        string
		contentType string
		body        string
		basic       bool
	}{
		{"basic, form", "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=orders%3Aread", true},
		{"post, form", "application/x-www-form-urlencoded", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {"orders:read"}}.Encode(), false},
		{"post, json", "application/json", jsonBody(map[string]string{"grant_type": "client_credentials", "client_id": id, "client_secret": secret, "scope": "orders:read"}), false},
		{"basic, json", "application/json", jsonBody(map[string]string{"grant_type": "client_credentials", "scope": "orders:read"}), true},
		{"basic and the same credentials in the form", "application/x-www-form-urlencoded", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {"orders:read"}}.Encode(), true},
	}
	jtis := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/oauth/token", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			if tc.basic {
				req.SetBasicAuth(id, secret)
			}
			before := time.Now().Unix()
			resp, body := ts.do(req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" {
				t.Errorf("cache headers: %q %q", resp.Header.Get("Cache-Control"), resp.Header.Get("Pragma"))
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var tr tokenResp
			if err := json.Unmarshal(body, &tr); err != nil {
				t.Fatal(err)
			}
			if tr.TokenType != "Bearer" || tr.Scope != "orders:read" || tr.ExpiresIn != 900 {
				t.Errorf("response = %+v, want Bearer, orders:read, 900", tr)
			}
			v := ts.verifyToken(tr.AccessToken)
			if v.header.Algorithm != "RS256" || v.header.ExtraHeaders["typ"] != "at+jwt" || v.header.KeyID == "" {
				t.Errorf("header alg=%s typ=%v kid=%q", v.header.Algorithm, v.header.ExtraHeaders["typ"], v.header.KeyID)
			}
			c := v.claims
			for claim, want := range map[string]any{"iss": ts.cfg.Issuer, "sub": id, "client_id": id, "aud": ordersAPI, "scope": "orders:read"} {
				if c[claim] != want {
					t.Errorf("claim %s = %v, want %v", claim, c[claim], want)
				}
			}
			iat, nbf, exp := int64(c["iat"].(float64)), int64(c["nbf"].(float64)), int64(c["exp"].(float64))
			if iat < before-1 || iat > time.Now().Unix() || nbf != iat {
				t.Errorf("iat %d nbf %d, request at %d", iat, nbf, before)
			}
			if exp-iat != tr.ExpiresIn {
				t.Errorf("exp - iat = %d, expires_in = %d", exp-iat, tr.ExpiresIn)
			}
			jti, _ := c["jti"].(string)
			if len(jti) < 22 || jtis[jti] { // 22 base64url characters = 132 bits
				t.Errorf("jti %q is short or repeated", jti)
			}
			jtis[jti] = true
		})
	}
}

func TestTokenErrors(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	ts.createAPI("https://billing.example.com", 0, "billing:read")
	form := "application/x-www-form-urlencoded"
	type tc struct {
		name        string
		method      string
		contentType string
		body        string
		basic       [2]string
		wantStatus  int
		wantCode    string
	}
	tests := []tc{
		{name: "wrong secret, basic", body: "grant_type=client_credentials", basic: [2]string{id, secret + "x"}, wantStatus: 401, wantCode: "invalid_client"},
		{name: "unknown client, basic", body: "grant_type=client_credentials", basic: [2]string{"m2mc_nobody", secret}, wantStatus: 401, wantCode: "invalid_client"},
		{name: "wrong secret, post", body: "grant_type=client_credentials&client_id=" + id + "&client_secret=nope", wantStatus: 401, wantCode: "invalid_client"},
		{name: "bad assertion", body: "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=e30.e30.c2ln", wantStatus: 401, wantCode: "invalid_client"},
		{name: "no credentials", body: "grant_type=client_credentials", wantStatus: 401, wantCode: "invalid_client"},
		{name: "id without secret", body: "grant_type=client_credentials&client_id=" + id, wantStatus: 401, wantCode: "invalid_client"},
		{name: "credentials only in the query", body: "grant_type=client_credentials", wantStatus: 401, wantCode: "invalid_client"},
		{name: "different credentials basic and body", body: "grant_type=client_credentials&client_id=" + id + "&client_secret=other", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_request"},
		{name: "missing grant_type", body: "scope=orders:read", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_request"},
		{name: "password grant", body: "grant_type=password&username=a&password=b", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "unsupported_grant_type"},
		{name: "authorization_code grant", body: "grant_type=authorization_code&code=x", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "unsupported_grant_type"},
		{name: "scope not granted", body: "grant_type=client_credentials&scope=orders:delete", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_scope"},
		{name: "one of two scopes not granted", body: "grant_type=client_credentials&scope=orders:read+admin", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_scope"},
		{name: "unknown audience", body: "grant_type=client_credentials&audience=https://nowhere", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_target"},
		{name: "existing API not granted", body: "grant_type=client_credentials&audience=https://billing.example.com", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_target"},
		{name: "resource not granted", body: "grant_type=client_credentials&resource=" + url.QueryEscape(ordersAPI) + "&resource=https://billing.example.com", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_target"},
		{name: "duplicate scope parameter", body: "grant_type=client_credentials&scope=orders:read&scope=orders:read", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_request"},
		{name: "duplicate audience parameter", body: "grant_type=client_credentials&audience=a&audience=b", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_request"},
		{name: "unsupported content type", contentType: "text/plain", body: "grant_type=client_credentials", basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_request"},
		{name: "malformed json", contentType: "application/json", body: `{"grant_type":`, basic: [2]string{id, secret}, wantStatus: 400, wantCode: "invalid_request"},
		{name: "body too large", body: "grant_type=client_credentials&pad=" + strings.Repeat("x", 70<<10), basic: [2]string{id, secret}, wantStatus: 413, wantCode: "invalid_request"},
		{name: "GET", method: http.MethodGet, wantStatus: 405, wantCode: "invalid_request"},
		{name: "PUT", method: http.MethodPut, body: "grant_type=client_credentials", basic: [2]string{id, secret}, wantStatus: 405, wantCode: "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, ct := tc.method, tc.contentType
			if method == "" {
				method = http.MethodPost
			}
			if ct == "" {
				ct = form
			}
			target := ts.URL + "/oauth/token"
			if tc.name == "credentials only in the query" {
				target += "?client_id=" + id + "&client_secret=" + secret
			}
			req, _ := http.NewRequest(method, target, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", ct)
			if tc.basic[0] != "" {
				req.SetBasicAuth(tc.basic[0], tc.basic[1])
			}
			resp, body := ts.do(req)
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %q is not JSON: %v", body, err)
			}
			if resp.StatusCode != tc.wantStatus || e.Error != tc.wantCode {
				t.Fatalf("got %d %s (%s), want %d %s", resp.StatusCode, e.Error, e.Description, tc.wantStatus, tc.wantCode)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Pragma") != "no-cache" {
				t.Error("error response lacks no-store / no-cache")
			}
			// A 401 names Basic when Basic was used or no credentials came;
			// a client that authenticated in the body gets none.
			wantChallenge := resp.StatusCode == 401 && (tc.basic[0] != "" || !strings.Contains(tc.body, "client_id=") && !strings.Contains(tc.body, "client_assertion="))
			if got := resp.Header.Get("WWW-Authenticate"); wantChallenge != strings.HasPrefix(got, "Basic realm=") {
				t.Errorf("status %d with WWW-Authenticate %q", resp.StatusCode, got)
			}
			if resp.StatusCode == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST")
			}
			if strings.Contains(string(body), secret) {
				t.Error("the error body contains the secret")
			}
		})
	}
}

// An unknown client and a wrong secret must be indistinguishable.
func TestUnknownClientAndWrongSecretLookAlike(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	r1, b1 := ts.tokenForm(id, secret+"x", url.Values{})
	r2, b2 := ts.tokenForm("m2mc_doesnotexist0000000000000", secret, url.Values{})
	if r1.StatusCode != r2.StatusCode || string(b1) != string(b2) {
		t.Fatalf("wrong secret: %d %s; unknown client: %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
	}
	for _, h := range []string{"WWW-Authenticate", "Content-Type", "Cache-Control", "Pragma", "Content-Length"} {
		if r1.Header.Get(h) != r2.Header.Get(h) {
			t.Errorf("header %s differs: %q vs %q", h, r1.Header.Get(h), r2.Header.Get(h))
		}
	}
}

func TestAudienceScopeAndLifetimePolicy(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxTokenLifetime = 2 * time.Hour
	ts := startServer(t, cfg)
	ts.createAPI("https://a.example", 5*time.Minute, "read", "write", "a-only")
	ts.createAPI("https://b.example", 0, "read", "write", "b-only")
	both := []admin.GrantInput{
		{Audience: "https://a.example", Scopes: []string{"read", "write", "a-only"}},
		{Audience: "https://b.example", Scopes: []string{"read", "b-only"}},
	}
	noDefault, noDefaultSecret := ts.createClient(admin.ClientInput{Grants: both})
	withDefault, withDefaultSecret := ts.createClient(admin.ClientInput{Grants: both, DefaultAudience: "https://b.example"})
	long, longSecret := ts.createClient(admin.ClientInput{Grants: both[:1], TokenLifetimeSeconds: int64((3 * time.Hour).Seconds())})

	type want struct {
		status int
		code   string
		aud    any
		scope  string
		life   int64
	}
	tests := []struct {
		name       string
		id, secret string
		form       url.Values
		want       want
	}{
		{"several grants, no default, no audience", noDefault, noDefaultSecret, url.Values{}, want{status: 400, code: "invalid_target"}},
		{"default audience, default scopes, server lifetime", withDefault, withDefaultSecret, url.Values{}, want{status: 200, aud: "https://b.example", scope: "read b-only", life: 900}},
		{"audience picks the API and its lifetime", noDefault, noDefaultSecret, url.Values{"audience": {"https://a.example"}}, want{status: 200, aud: "https://a.example", scope: "read write a-only", life: 300}},
		{"resource works like audience", noDefault, noDefaultSecret, url.Values{"resource": {"https://a.example"}, "scope": {"write"}}, want{status: 200, aud: "https://a.example", scope: "write", life: 300}},
		{"two resources: array aud, common scopes, shortest lifetime", noDefault, noDefaultSecret, url.Values{"resource": {"https://a.example", "https://b.example"}},
			want{status: 200, aud: []any{"https://a.example", "https://b.example"}, scope: "read", life: 300}},
		{"two resources: a scope granted on one only", noDefault, noDefaultSecret, url.Values{"resource": {"https://a.example", "https://b.example"}, "scope": {"write"}},
			want{status: 400, code: "invalid_scope"}},
		{"scope of another API", withDefault, withDefaultSecret, url.Values{"scope": {"a-only"}}, want{status: 400, code: "invalid_scope"}},
		{"client lifetime capped by the server maximum", long, longSecret, url.Values{}, want{status: 200, aud: "https://a.example", scope: "read write a-only", life: 7200}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := ts.tokenForm(tc.id, tc.secret, tc.form)
			if resp.StatusCode != tc.want.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.want.status)
			}
			if tc.want.status != 200 {
				var e struct{ Error string }
				_ = json.Unmarshal(body, &e)
				if e.Error != tc.want.code {
					t.Fatalf("error %q, want %q", e.Error, tc.want.code)
				}
				return
			}
			var tr tokenResp
			_ = json.Unmarshal(body, &tr)
			c := ts.verifyToken(tr.AccessToken).claims
			gotAud, _ := json.Marshal(c["aud"])
			wantAud, _ := json.Marshal(tc.want.aud)
			if string(gotAud) != string(wantAud) || tr.Scope != tc.want.scope || c["scope"] != tc.want.scope || tr.ExpiresIn != tc.want.life {
				t.Errorf("aud %s scope %q/%v life %d; want aud %s scope %q life %d", gotAud, tr.Scope, c["scope"], tr.ExpiresIn, wantAud, tc.want.scope, tc.want.life)
			}
		})
	}
}

// golang.org/x/oauth2/clientcredentials works against the server unchanged,
// with either authentication style.
func TestOAuth2ClientCredentials(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	for _, style := range []struct {
		name  string
		style int
	}{{"auto-detect", 0}, {"in params", 1}, {"in header", 2}} {
		t.Run(style.name, func(t *testing.T) {
			cc := clientcredentials.Config{
				ClientID: id, ClientSecret: secret, TokenURL: ts.URL + "/oauth/token",
				Scopes: []string{"orders:read"}, EndpointParams: url.Values{"audience": {ordersAPI}},
			}
			cc.AuthStyle = oauth2AuthStyle(style.style)
			tok, err := cc.Token(context.Background())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
				t.Errorf("token %+v", tok)
			}
			if c := ts.verifyToken(tok.AccessToken).claims; c["scope"] != "orders:read" || c["aud"] != ordersAPI {
				t.Errorf("claims %v", c)
			}
		})
	}
}

func oauth2AuthStyle(i int) oauth2.AuthStyle { return oauth2.AuthStyle(i) }
