package console_test

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/server"
)

// appsHarness is a running server and a browser signed in to its console
// (a cookie jar, the CSRF token of the session). The handlers are driven
// through the server's real routes.
type appsHarness struct {
	t          *testing.T
	url        string
	browser    *http.Client
	csrf       string
	env        string // the environment the session views (every form sends it)
	admin      server.AdminCredentials
	adminToken string // admin API token
}

func newAppsHarness(t *testing.T) *appsHarness {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = ln.Addr().String()
	cfg.Issuer = "http://" + cfg.Addr
	srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	h := &appsHarness{t: t, url: "http://" + cfg.Addr}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, server.AdminFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &h.admin); err != nil {
		t.Fatal(err)
	}
	status, body := h.tokenRequest(h.url+"/admin/v1/token", h.admin.ClientID, h.admin.ClientSecret, url.Values{"scope": {"admin"}})
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &tr) != nil {
		t.Fatalf("admin token: %d %s", status, body)
	}
	h.adminToken = tr.AccessToken
	h.signIn()
	return h
}

// signIn follows a one-time link, as a person would.
func (h *appsHarness) signIn() {
	h.t.Helper()
	status, body := h.adminAPI(http.MethodPost, "/admin/v1/console/links", nil)
	var link admin.ConsoleLinkResponse
	if status != http.StatusCreated || json.Unmarshal(body, &link) != nil {
		h.t.Fatalf("console link: %d %s", status, body)
	}
	u, err := url.Parse(link.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	h.browser = &http.Client{Jar: jar}
	resp, err := h.browser.PostForm(h.url+"/console/link", url.Values{"token": {u.Query().Get("token")}})
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	// Every signed-in page carries the session's CSRF token (the
	// sign-out form).
	_, page, _ := h.get("/console/apps")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		h.t.Fatalf("not signed in: %s", page)
	}
	h.csrf = m[1]
	h.env = inputValue(page, "env")
}

// get fetches a console page, following redirects; it returns the status,
// the body and the path (and query) it ended at.
func (h *appsHarness) get(path string) (int, string, string) {
	h.t.Helper()
	resp, err := h.browser.Get(h.url + path)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.read(resp)
}

// post submits a console form with the session's CSRF token.
func (h *appsHarness) post(path string, form url.Values) (int, string, string) {
	h.t.Helper()
	f := url.Values{"csrf": {h.csrf}, "env": {h.env}}
	if path == "/console/apps" && form.Get("nonce") == "" {
		// A create form comes with its one-time nonce.
		_, page, _ := h.get("/console/apps/new")
		f.Set("nonce", inputValue(page, "nonce"))
	}
	for k, v := range form {
		f[k] = v
	}
	resp, err := h.browser.PostForm(h.url+path, f)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.read(resp)
}

func (h *appsHarness) read(resp *http.Response) (int, string, string) {
	h.t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Request.URL.RequestURI()
}

func (h *appsHarness) adminAPI(method, path string, in any) (int, []byte) {
	h.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, h.url+path, body)
	req.Header.Set("Authorization", "Bearer "+h.adminToken)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *appsHarness) createAPI(identifier string, scopes ...string) {
	h.t.Helper()
	status, body := h.adminAPI(http.MethodPost, "/admin/v1/apis", admin.APIInput{Identifier: identifier, Name: "API " + identifier, Scopes: scopes})
	if status != http.StatusCreated {
		h.t.Fatalf("create API: %d %s", status, body)
	}
}

func (h *appsHarness) clients() []admin.ClientResource {
	h.t.Helper()
	status, body := h.adminAPI(http.MethodGet, "/admin/v1/clients?limit=1000", nil)
	var page admin.ListResponse[admin.ClientResource]
	if status != http.StatusOK || json.Unmarshal(body, &page) != nil {
		h.t.Fatalf("list clients: %d %s", status, body)
	}
	return page.Items
}

func (h *appsHarness) tokenRequest(endpoint, id, secret string, form url.Values) (int, []byte) {
	h.t.Helper()
	form.Set("grant_type", "client_credentials")
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// token asks the token endpoint for a token and returns the status and the
// access token.
func (h *appsHarness) token(id, secret string) (int, string) {
	h.t.Helper()
	status, body := h.tokenRequest(h.url+"/oauth/token", id, secret, url.Values{})
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(body, &tr)
	return status, tr.AccessToken
}

// appsCreate creates an application through the console form and returns
// its id and secret, read from the secret page.
func (h *appsHarness) appsCreate(form url.Values) (id, secret, page string) {
	h.t.Helper()
	status, page, _ := h.post("/console/apps", form)
	if status != http.StatusCreated {
		h.t.Fatalf("create: %d %s", status, page)
	}
	return elementText(h.t, page, "client-id"), optionalText(page, "client-secret"), page
}

// elementText returns the text of the element with this id.
func elementText(t *testing.T, page, id string) string {
	t.Helper()
	s := optionalText(page, id)
	if s == "" {
		t.Fatalf("no element #%s in %s", id, page)
	}
	return s
}

func optionalText(page, id string) string {
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// fieldError returns the error shown for a form field ("" if none).
func fieldError(page, errID string) string { return optionalText(page, errID) }

// inputValue returns the value attribute of the input named name.
func inputValue(page, name string) string {
	m := regexp.MustCompile(`<input[^>]*name="` + regexp.QuoteMeta(name) + `"[^>]*value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// checked reports whether the checkbox or radio name=value is checked.
func checked(page, name, value string) bool {
	re := regexp.MustCompile(`<input[^>]*name="` + regexp.QuoteMeta(html.EscapeString(name)) + `" value="` + regexp.QuoteMeta(html.EscapeString(value)) + `"[^>]*>`)
	m := re.FindString(page)
	return m != "" && strings.Contains(m, " checked")
}

// tableRows counts the applications the list shows.
func tableRows(page string) int { return strings.Count(page, `<td><a href="/console/app/`) }

// secretsTable returns the secrets table of a detail page.
func secretsTable(t *testing.T, page string) string {
	t.Helper()
	i := strings.Index(page, `<table id="secrets">`)
	if i < 0 {
		t.Fatalf("no secrets table in %s", page)
	}
	j := strings.Index(page[i:], "</table>")
	return page[i : i+j]
}

// version returns the version a detail or edit page's forms carry.
func version(t *testing.T, page string) string {
	t.Helper()
	m := regexp.MustCompile(`name="version" value="(\d+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no version in %s", page)
	}
	return m[1]
}

func appsGrantForm(name, api string, scopes ...string) url.Values {
	return url.Values{
		"name": {name}, "auth_method": {"client_secret_basic"}, "fed_rows": {"2"},
		"grant": {api}, "scope:" + api: scopes,
	}
}

func TestAppCreateInvalidKeepsValues(t *testing.T) {
	h := newAppsHarness(t)
	const api = "https://orders.example"
	h.createAPI(api, "read", "write")
	valid := func() url.Values {
		f := appsGrantForm("Order sync", api, "read")
		f.Set("description", "keeps <every> value")
		f.Set("token_lifetime", "2h")
		f.Set("claims", `{"tenant": "acme"}`)
		f.Set("refresh", "1")
		return f
	}
	cases := []struct {
		name   string
		change func(url.Values)
		errID  string // the error element next to the field
		want   string // in its message
	}{
		{"name missing", func(f url.Values) { f.Set("name", " ") }, "name-err", "name is required"},
		{"name missing, and a problem the form finds", func(f url.Values) { f.Set("name", ""); f.Set("claims", "{") }, "name-err", "name is required"},
		{"lifetime unreadable", func(f url.Values) { f.Set("token_lifetime", "soon") }, "token_lifetime-err", "duration"},
		{"lifetime too short (the service's rule)", func(f url.Values) { f.Set("token_lifetime", "30s") }, "token_lifetime-err", "between 1 minute and 7 days"},
		{"claims not an object", func(f url.Values) { f.Set("claims", `["a"]`) }, "claims-err", "JSON object"},
		{"registered claim", func(f url.Values) { f.Set("claims", `{"sub": "x"}`) }, "claims-err", `"sub" is a registered claim`},
		{"scope the API does not define", func(f url.Values) { f.Add("scope:"+api, "delete") }, "grant-0-err", `does not define scope "delete"`},
		{"scopes without the grant", func(f url.Values) { f.Del("grant"); f.Del("default_audience") }, "grant-0-err", "Grant access"},
		{"default audience not granted", func(f url.Values) {
			h.createAPI("https://other.example")
			f.Set("default_audience", "https://other.example")
		}, "default_audience-err", "must be one of the granted APIs"},
		{"key client without keys", func(f url.Values) { f.Set("auth_method", "private_key_jwt") }, "jwks-err", "needs its public keys"},
		{"private key pasted", func(f url.Values) {
			f.Set("auth_method", "private_key_jwt")
			f.Set("jwks", `{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c"}`)
		}, "jwks-err", "private key material"},
		{"binding without a policy", func(f url.Values) {
			f.Set("auth_method", "federated")
			f.Set("fed_subject_1", "repo:acme/*")
		}, "fed_policy_1-err", "Choose the trust policy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.clients())
			f := valid()
			tc.change(f)
			status, page, _ := h.post("/console/apps", f)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", status, page)
			}
			if got := fieldError(page, tc.errID); !strings.Contains(got, tc.want) {
				t.Errorf("#%s = %q, want it to say %q", tc.errID, got, tc.want)
			}
			if !strings.Contains(page, `aria-describedby="`+tc.errID+`"`) {
				t.Errorf("no control is described by #%s", tc.errID)
			}
			// Nothing typed is lost.
			if got := inputValue(page, "description"); got != "keeps <every> value" {
				t.Errorf("description refilled as %q", got)
			}
			for _, name := range []string{"name", "token_lifetime"} {
				if got := inputValue(page, name); got != f.Get(name) {
					t.Errorf("%s refilled as %q, want %q", name, got, f.Get(name))
				}
			}
			if !strings.Contains(html.UnescapeString(page), f.Get("claims")+"</textarea>") {
				t.Errorf("claims not refilled with %s", f.Get("claims"))
			}
			if !checked(page, "scope:"+api, "read") || !checked(page, "refresh", "1") || !checked(page, "auth_method", f.Get("auth_method")) {
				t.Error("checkboxes not refilled")
			}
			if after := len(h.clients()); after != before {
				t.Errorf("%d clients after a refused create, %d before", after, before)
			}
		})
	}
}

func TestAppCreateShowsSecretOnce(t *testing.T) {
	h := newAppsHarness(t)
	const api = "https://orders.example"
	h.createAPI(api, "read", "write")
	status, page, _ := h.post("/console/apps", appsGrantForm("Order sync", api, "read"))
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, page)
	}
	id, secret := elementText(t, page, "client-id"), elementText(t, page, "client-secret")
	if !strings.Contains(page, "shown only this once") {
		t.Error("no warning that the secret is shown once")
	}
	curl, env := elementText(t, page, "curl"), elementText(t, page, "env")
	for _, want := range []string{h.url + "/oauth/token", "-u " + id + ":" + secret, "audience=" + api, "grant_type=client_credentials"} {
		if !strings.Contains(curl, want) {
			t.Errorf("curl command %q lacks %q", curl, want)
		}
	}
	for _, want := range []string{"M2MAUTH_CLIENT_ID=" + id, "M2MAUTH_CLIENT_SECRET=" + secret, "M2MAUTH_AUDIENCE=" + api, "M2MAUTH_SERVER=" + h.url} {
		if !strings.Contains(env, want) {
			t.Errorf("environment lines %q lack %q", env, want)
		}
	}
	if !strings.Contains(page, `id="continue" href="/console/app/`+id+`"`) {
		t.Error("no a#continue to the detail page")
	}

	detail := func() string {
		status, page, _ := h.get("/console/app/" + id)
		if status != http.StatusOK {
			t.Fatalf("detail: %d %s", status, page)
		}
		if strings.Contains(page, secret) {
			t.Fatal("the detail page shows the secret")
		}
		return page
	}
	if tbl := secretsTable(t, detail()); !strings.Contains(tbl, "never") || strings.Contains(tbl, "just now") {
		t.Errorf("unused secret's table: %s", tbl)
	}
	// The secret works at the token endpoint, for the default audience
	// the single grant made.
	status, tok := h.token(id, secret)
	if status != http.StatusOK || tok == "" {
		t.Fatalf("token with the console's secret: %d", status)
	}
	// The detail page flushes usage first: the secret's last use shows.
	if tbl := secretsTable(t, detail()); !strings.Contains(tbl, "just now") {
		t.Errorf("the secret's last use is not shown: %s", tbl)
	}
	// Nothing kept it: no page and no response header repeats it.
	if _, list, _ := h.get("/console/apps"); strings.Contains(list, secret) || !strings.Contains(list, id) {
		t.Error("the list shows the secret, or not the application")
	}
}

func TestAppSecretPageIsNotStored(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	f := appsGrantForm("x", "https://a.example", "r")
	f.Set("csrf", h.csrf)
	f.Set("env", h.env)
	_, page, _ := h.get("/console/apps/new")
	f.Set("nonce", inputValue(page, "nonce"))
	resp, err := h.browser.PostForm(h.url+"/console/apps", f)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Location") != "" {
		t.Errorf("status %d, Cache-Control %q, Location %q", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("Location"))
	}
}

func TestAppKeyClientHasNoSecret(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	f := appsGrantForm("Signer", "https://a.example", "r")
	f.Set("auth_method", "private_key_jwt")
	// One public JWK, as pasted: made into a set.
	f.Set("jwks", `{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`)
	id, secret, page := h.appsCreate(f)
	if secret != "" || strings.Contains(page, "M2MAUTH_CLIENT_SECRET") {
		t.Fatalf("a key client was shown a secret: %s", page)
	}
	if !strings.Contains(elementText(t, page, "curl"), "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
		t.Error("no assertion in the next steps")
	}
	var cl admin.ClientResource
	for _, c := range h.clients() {
		if c.ClientID == id {
			cl = c
		}
	}
	if cl.TokenEndpointAuthMethod != "private_key_jwt" || len(cl.Secrets) != 0 || !strings.Contains(string(cl.JWKS), `"k1"`) {
		t.Errorf("stored: %+v", cl)
	}
	_, detail, _ := h.get("/console/app/" + id)
	if !strings.Contains(detail, "<code>k1</code>") || strings.Contains(detail, `id="rotate-secret"`) {
		t.Error("the detail page does not list the key, or offers a secret rotation")
	}
}

func TestAppRotateSecret(t *testing.T) {
	cases := []struct {
		grace       string
		oldAccepted bool
	}{
		{"0", false},
		{"86400", true},
	}
	for _, tc := range cases {
		t.Run("grace "+tc.grace, func(t *testing.T) {
			h := newAppsHarness(t)
			h.createAPI("https://a.example", "r")
			id, old, _ := h.appsCreate(appsGrantForm("x", "https://a.example", "r"))
			_, detail, _ := h.get("/console/app/" + id)
			v := version(t, detail)
			status, page, _ := h.post("/console/app/"+id+"/secrets", url.Values{"grace": {tc.grace}, "version": {v}})
			if status != http.StatusCreated {
				t.Fatalf("rotate: %d %s", status, page)
			}
			fresh := elementText(t, page, "client-secret")
			if fresh == old || elementText(t, page, "client-id") != id {
				t.Fatal("no new secret shown")
			}
			if !strings.Contains(elementText(t, page, "env"), "M2MAUTH_CLIENT_SECRET="+fresh) {
				t.Error("the environment lines lack the new secret")
			}
			if s, _ := h.token(id, fresh); s != http.StatusOK {
				t.Errorf("new secret: %d", s)
			}
			if s, _ := h.token(id, old); (s == http.StatusOK) != tc.oldAccepted {
				t.Errorf("old secret: %d, accepted want %v", s, tc.oldAccepted)
			}
			// The same form again (a second click): refused, no third
			// secret.
			status, page, _ = h.post("/console/app/"+id+"/secrets", url.Values{"grace": {tc.grace}, "version": {v}})
			if status != http.StatusConflict || optionalText(page, "client-secret") != "" || !strings.Contains(page, "changed since this page was loaded") {
				t.Errorf("stale rotation: %d %s", status, page)
			}
		})
	}
}

func TestAppRevokeSecret(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	id, secret, _ := h.appsCreate(appsGrantForm("x", "https://a.example", "r"))
	_, detail, _ := h.get("/console/app/" + id)
	m := regexp.MustCompile(`action="(/console/app/[^"]+/secrets/[^"]+/revoke)"`).FindStringSubmatch(detail)
	if m == nil {
		t.Fatalf("no revoke form: %s", detail)
	}
	status, page, at := h.post(m[1], nil)
	if status != http.StatusOK || !strings.HasSuffix(at, "done=secret-revoked") || !strings.Contains(page, "The secret was revoked.") {
		t.Fatalf("revoke: %d at %s", status, at)
	}
	if s, _ := h.token(id, secret); s != http.StatusUnauthorized {
		t.Errorf("revoked secret: %d", s)
	}
}

func TestAppDisableEnable(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	id, secret, _ := h.appsCreate(appsGrantForm("x", "https://a.example", "r"))
	if s, _ := h.token(id, secret); s != http.StatusOK {
		t.Fatalf("token: %d", s)
	}
	// Without the CSRF token nothing changes.
	resp, err := h.browser.PostForm(h.url+"/console/app/"+id+"/disable", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("disable without CSRF token: %d", resp.StatusCode)
	}
	if s, _ := h.token(id, secret); s != http.StatusOK {
		t.Fatalf("token after a refused disable: %d", s)
	}

	status, page, at := h.post("/console/app/"+id+"/disable", nil)
	if status != http.StatusOK || at != "/console/app/"+id+"?done=app-disabled" || !strings.Contains(page, `id="enable"`) {
		t.Fatalf("disable: %d at %s", status, at)
	}
	if s, _ := h.token(id, secret); s != http.StatusUnauthorized {
		t.Errorf("token of a disabled application: %d, want 401", s)
	}
	status, page, _ = h.post("/console/app/"+id+"/enable", nil)
	if status != http.StatusOK || !strings.Contains(page, `id="disable"`) {
		t.Fatalf("enable: %d", status)
	}
	if s, _ := h.token(id, secret); s != http.StatusOK {
		t.Errorf("token after enable: %d", s)
	}
}

func TestAppRevokeTokens(t *testing.T) {
	h := newAppsHarness(t)
	const api = "https://a.example"
	h.createAPI(api, "r")
	id, secret, _ := h.appsCreate(appsGrantForm("worker", api, "r"))
	// An introspector, made with the console's introspection checkbox.
	f := appsGrantForm("gateway", api)
	f.Set("introspect", api)
	gw, gwSecret, _ := h.appsCreate(f)
	_, tok := h.token(id, secret)
	active := func() bool {
		status, body := h.tokenRequest(h.url+"/oauth/introspect", gw, gwSecret, url.Values{"token": {tok}})
		var r struct{ Active bool }
		if status != http.StatusOK || json.Unmarshal(body, &r) != nil {
			t.Fatalf("introspect: %d %s", status, body)
		}
		return r.Active
	}
	if !active() {
		t.Fatal("a fresh token is inactive")
	}
	status, page, _ := h.post("/console/app/"+id+"/revoke-tokens", nil)
	if status != http.StatusOK || !strings.Contains(page, "Every token the application held was revoked.") {
		t.Fatalf("revoke tokens: %d", status)
	}
	if active() {
		t.Error("the token is still active after revoke all tokens")
	}
	if s, _ := h.token(id, secret); s != http.StatusOK {
		t.Errorf("a new token after revoking: %d", s)
	}
}

func TestAppDelete(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	id, secret, _ := h.appsCreate(appsGrantForm("Doomed worker", "https://a.example", "r"))
	status, page, _ := h.get("/console/app/" + id + "/delete")
	if status != http.StatusOK || !strings.Contains(page, `id="confirm-delete"`) || !strings.Contains(page, "can no longer get tokens") ||
		!strings.Contains(page, "deletes its 1 live secret, its grant to 1 API and its settings") {
		t.Fatalf("confirmation page: %d %s", status, page)
	}
	if s, _ := h.token(id, secret); s != http.StatusOK {
		t.Fatalf("the confirmation page changed something: %d", s)
	}
	// The application changes after the confirmation was shown (made an
	// admin elsewhere): the deletion asks again, and deletes nothing.
	shown := version(t, page)
	if st, body := h.adminAPI(http.MethodPatch, "/admin/v1/clients/"+id, map[string]any{"description": "changed meanwhile"}); st != http.StatusOK {
		t.Fatalf("patch: %d %s", st, body)
	}
	status, page, _ = h.post("/console/app/"+id+"/delete", url.Values{"version": {shown}})
	if status != http.StatusConflict || !strings.Contains(page, "changed since this page was shown") || !strings.Contains(page, `id="confirm-delete"`) {
		t.Fatalf("stale delete: %d %s", status, page)
	}
	if s, _ := h.token(id, secret); s != http.StatusOK {
		t.Fatalf("a stale confirmation deleted the application: %d", s)
	}
	status, page, at := h.post("/console/app/"+id+"/delete", url.Values{"version": {version(t, page)}})
	if status != http.StatusOK || at != "/console/apps?done=app-deleted" || strings.Contains(page, "Doomed worker") {
		t.Fatalf("delete: %d at %s", status, at)
	}
	if s, _ := h.token(id, secret); s != http.StatusUnauthorized {
		t.Errorf("token of a deleted application: %d", s)
	}
	if status, _, _ := h.get("/console/app/" + id); status != http.StatusNotFound {
		t.Errorf("detail of a deleted application: %d", status)
	}
}

func TestAppEdit(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r", "w")
	h.createAPI("https://b.example", "x")
	id, secret, _ := h.appsCreate(appsGrantForm("Before", "https://a.example", "r"))

	status, page, _ := h.get("/console/app/" + id + "/edit")
	if status != http.StatusOK || inputValue(page, "name") != "Before" || !checked(page, "scope:https://a.example", "r") || checked(page, "scope:https://a.example", "w") {
		t.Fatalf("edit form not filled: %d %s", status, page)
	}
	v := version(t, page)
	f := appsGrantForm("After", "https://a.example", "r", "w")
	f.Add("grant", "https://b.example")
	f.Set("default_audience", "https://a.example")
	f.Set("token_lifetime", "1h")
	f.Set("version", v)
	status, page, at := h.post("/console/app/"+id+"/edit", f)
	if status != http.StatusOK || at != "/console/app/"+id+"?done=app-updated" {
		t.Fatalf("save: %d at %s: %s", status, at, page)
	}
	for _, c := range h.clients() {
		if c.ClientID == id && (c.Name != "After" || len(c.Grants) != 2 || len(c.Grants[0].Scopes) != 2 || c.TokenLifetimeSeconds != 3600) {
			t.Errorf("stored after edit: %+v", c)
		}
	}
	if s, _ := h.token(id, secret); s != http.StatusOK {
		t.Errorf("the secret stopped working after an edit: %d", s)
	}

	// The same form again, from the old version: refused, nothing lost.
	f.Set("name", "Lost update?")
	status, page, _ = h.post("/console/app/"+id+"/edit", f)
	if status != http.StatusConflict || !strings.Contains(page, "Someone else changed this application") || inputValue(page, "name") != "Lost update?" {
		t.Fatalf("stale edit: %d %s", status, page)
	}
	for _, c := range h.clients() {
		if c.ClientID == id && c.Name != "After" {
			t.Errorf("a stale edit was applied: %q", c.Name)
		}
	}
	// The form now carries the current version: saving again applies it.
	f.Set("version", version(t, page))
	if status, _, _ := h.post("/console/app/"+id+"/edit", f); status != http.StatusOK {
		t.Errorf("save after the conflict: %d", status)
	}
}

func TestAppListSearchAndPaging(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	for i := range 30 {
		status, body := h.adminAPI(http.MethodPost, "/admin/v1/clients", admin.ClientInput{Name: "svc-" + strconv.Itoa(i)})
		if status != http.StatusCreated {
			t.Fatalf("create: %d %s", status, body)
		}
	}
	other, _, _ := h.appsCreate(appsGrantForm("Other thing", "https://a.example", "r"))

	status, page, _ := h.get("/console/apps?q=SVC")
	if status != http.StatusOK || tableRows(page) != 25 || strings.Contains(page, "Other thing") {
		t.Fatalf("first page: %d, %d rows", status, tableRows(page))
	}
	m := regexp.MustCompile(`<a [^>]*id="next-page"[^>]*href="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no a#next-page")
	}
	_, page2, _ := h.get(html.UnescapeString(m[1]))
	if tableRows(page2) != 5 || strings.Contains(page2, `id="next-page"`) || inputValue(page2, "q") != "SVC" {
		t.Errorf("second page: %d rows", tableRows(page2))
	}
	seen := map[string]bool{}
	for _, p := range []string{page, page2} {
		for _, m := range regexp.MustCompile(`>(svc-\d+)</a>`).FindAllStringSubmatch(p, -1) {
			seen[m[1]] = true
		}
	}
	if len(seen) != 30 {
		t.Errorf("the two pages show %d distinct applications, want 30", len(seen))
	}

	for _, q := range []string{"other", other} {
		_, page, _ := h.get("/console/apps?q=" + url.QueryEscape(q))
		if tableRows(page) != 1 || !strings.Contains(page, "Other thing") || !strings.Contains(page, "https://a.example: r") {
			t.Errorf("search %q: %d rows", q, tableRows(page))
		}
	}
	if _, page, _ := h.get("/console/apps?q=nothing-like-this"); tableRows(page) != 0 || !strings.Contains(page, "No application") {
		t.Error("a search without matches")
	}
}

func TestAppFormMarksTheAdminAPI(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	_, page, _ := h.get("/console/apps/new")
	adminAud := h.url + "/admin"
	if !strings.Contains(page, `id="app-form"`) || !strings.Contains(page, `name="grant" value="`+adminAud+`"`) || !strings.Contains(page, "makes this application an <strong>administrator</strong>") {
		t.Fatalf("admin API not offered, or not marked: %s", page)
	}
	// User APIs come first.
	if strings.Index(page, `value="https://a.example"`) > strings.Index(page, `value="`+adminAud+`"`) {
		t.Error("the built-in admin API is listed before the user's APIs")
	}
	id, _, created := h.appsCreate(appsGrantForm("Second admin", adminAud, "admin"))
	if !strings.Contains(created, "can manage this whole server") {
		t.Error("the secret page does not say the new application is an admin")
	}
	if _, list, _ := h.get("/console/apps?q=" + id); !strings.Contains(list, `>admin</span>`) {
		t.Error("the list does not mark the admin application")
	}
}

// A secret may be given a lifetime when the application is made and when
// the secret is rotated; the service stores the expiry.
func TestAppSecretLifetime(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	form := appsGrantForm("expiring", "https://a.example", "r")
	form.Set("secret_lifetime", "90d")
	id, _, _ := h.appsCreate(form)
	expiresIn := func() time.Duration {
		for _, c := range h.clients() {
			if c.ClientID == id {
				var last time.Duration
				for _, s := range c.Secrets {
					if s.ExpiresAt != nil {
						last = max(last, time.Until(*s.ExpiresAt))
					}
				}
				return last
			}
		}
		t.Fatalf("no client %s", id)
		return 0
	}
	if d := expiresIn(); d < 89*24*time.Hour || d > 90*24*time.Hour {
		t.Fatalf("created with 90d: the secret expires in %s", d)
	}
	_, detail, _ := h.get("/console/app/" + id)
	status, page, _ := h.post("/console/app/"+id+"/secrets", url.Values{"grace": {"0"}, "secret_lifetime": {"1y"}, "version": {version(t, detail)}})
	if status != http.StatusCreated {
		t.Fatalf("rotate: %d %s", status, page)
	}
	if d := expiresIn(); d < 364*24*time.Hour || d > 365*24*time.Hour {
		t.Fatalf("rotated with 1y: the secret expires in %s", d)
	}
	// Anything but a listed choice is refused, and nothing is created.
	form.Set("name", "odd lifetime")
	form.Set("secret_lifetime", "17s")
	status, page, _ = h.post("/console/apps", form)
	if status != http.StatusBadRequest || fieldError(page, "secret_lifetime-err") == "" {
		t.Fatalf("odd lifetime: %d %s", status, page)
	}
}

// A create form submitted twice (a double click, a reload of the secret
// page) creates one application; a form shown again after a refusal can
// be submitted.
func TestAppCreateFormIsOneTime(t *testing.T) {
	h := newAppsHarness(t)
	h.createAPI("https://a.example", "r")
	_, page, _ := h.get("/console/apps/new")
	form := appsGrantForm("once", "https://a.example", "r")
	form.Set("nonce", inputValue(page, "nonce"))
	if status, page, _ := h.post("/console/apps", form); status != http.StatusCreated {
		t.Fatalf("first submission: %d %s", status, page)
	}
	status, page, _ := h.post("/console/apps", form)
	if status != http.StatusConflict || optionalText(page, "client-secret") != "" || !strings.Contains(page, "already submitted") ||
		!strings.Contains(page, "the application may have been created — check the list of applications before submitting again.") {
		t.Fatalf("second submission: %d %s", status, page)
	}
	n := 0
	for _, c := range h.clients() {
		if c.Name == "once" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d applications named once, want 1", n)
	}
	// The refused page's form has a fresh nonce: submitting it creates
	// another, deliberately.
	fresh := inputValue(page, "nonce")
	if fresh == "" || fresh == form.Get("nonce") {
		t.Fatalf("the form shown again has nonce %q", fresh)
	}
	form.Set("nonce", fresh)
	if status, _, _ := h.post("/console/apps", form); status != http.StatusCreated {
		t.Fatalf("a new form: %d", status)
	}
	// A form without a nonce of the console's shape is refused.
	for _, bad := range []string{"x", "m2mcf_short"} {
		form.Set("nonce", bad)
		if status, _, _ := h.post("/console/apps", form); status != http.StatusConflict {
			t.Errorf("nonce %q: %d", bad, status)
		}
	}
}
