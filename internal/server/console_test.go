package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// consoleBrowser is a browser's view of the console: a cookie jar, and the
// CSRF token of the last page it loaded.
type consoleBrowser struct {
	t    *testing.T
	base string
	http *http.Client
	csrf string
	env  string // the environment of the last page (every form sends it)
}

func newConsoleBrowser(t *testing.T, base string) *consoleBrowser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &consoleBrowser{t: t, base: base, http: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

var (
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	envField  = regexp.MustCompile(`name="env" value="([^"]+)"`)
)

// do sends a request, following redirects, and returns the final answer
// with its body; it remembers the page's CSRF token.
func (b *consoleBrowser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfField.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	if m := envField.FindSubmatch(body); m != nil {
		b.env = string(m[1])
	}
	if resp.StatusCode < 500 && strings.Contains(string(body), ` style="`) {
		b.t.Errorf("%s %s: a style attribute (forbidden by the CSP)", req.Method, req.URL.Path)
	}
	return resp, string(body)
}

func (b *consoleBrowser) get(path string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	return b.do(req)
}

// post submits a form, with the last page's CSRF token unless the form
// has one; extra headers come in name, value pairs.
func (b *consoleBrowser) post(path string, form url.Values, headers ...string) (*http.Response, string) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok && b.csrf != "" {
		form.Set("csrf", b.csrf)
	}
	if _, ok := form["env"]; !ok && b.env != "" {
		form.Set("env", b.env)
	}
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.do(req)
}

// consoleLink asks the admin API for a one-time sign-in link.
func (ts *testServer) consoleLink() string {
	ts.t.Helper()
	resp, body := ts.adminDo(http.MethodPost, "/admin/v1/console/links", nil)
	var l admin.ConsoleLinkResponse
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &l) != nil {
		ts.t.Fatalf("console link: %d %s", resp.StatusCode, body)
	}
	return l.URL
}

// linkToken is the token of a sign-in link.
func linkToken(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Query().Get("token") == "" {
		t.Fatalf("not a sign-in link: %q", link)
	}
	return u.Query().Get("token")
}

// signIn signs a new browser in with a one-time link, as a person would:
// open the link, press the button.
func (ts *testServer) signIn() *consoleBrowser {
	ts.t.Helper()
	b := newConsoleBrowser(ts.t, ts.URL)
	link := ts.consoleLink()
	if _, body := b.get("/console/link?token=" + linkToken(ts.t, link)); !strings.Contains(body, `id="sign-in"`) {
		ts.t.Fatalf("link page: %s", body)
	}
	resp, body := b.post("/console/link", url.Values{"token": {linkToken(ts.t, link)}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/console/" {
		ts.t.Fatalf("sign in with a link: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	return b
}

// signedOut reports whether the browser's next console page is the
// sign-in page, and why.
func (b *consoleBrowser) signedOut() (bool, string) {
	b.t.Helper()
	resp, _ := b.get("/console/keys")
	if resp.Request.URL.Path != "/console/sign-in" {
		return false, ""
	}
	return true, resp.Request.URL.Query().Get("why")
}

func TestConsoleSignInWithALinkWorksOnce(t *testing.T) {
	ts := startServer(t, testConfig(t))
	link := ts.consoleLink()
	if !strings.HasPrefix(link, ts.URL+"/console/link?token=default.m2mcl_") {
		t.Fatalf("link %q", link)
	}
	if strings.Contains(ts.logs.String(), linkToken(t, link)) {
		t.Fatal("the sign-in link's token is in the log")
	}
	b := newConsoleBrowser(t, ts.URL)
	// Opening the link changes nothing: a prefetch or a preview does not
	// spend it.
	for range 2 {
		if resp, _ := b.get("/console/link?token=" + linkToken(t, link)); resp.StatusCode != http.StatusOK {
			t.Fatalf("link page: %d", resp.StatusCode)
		}
	}
	resp, body := b.post("/console/link", url.Values{"token": {linkToken(t, link)}})
	if resp.Request.URL.Path != "/console/" || !strings.Contains(body, "Overview") || !strings.Contains(body, ts.admin.ClientID) {
		t.Fatalf("after the link: %s %s", resp.Request.URL, body)
	}
	// The cookie: HttpOnly, SameSite=Strict, Path=/; not Secure over
	// plain http (and so without the __Host- prefix).
	resp2, _ := newConsoleBrowser(t, ts.URL).post("/console/link", url.Values{"token": {linkToken(t, ts.consoleLink())}})
	setCookie := resp2.Request.Response.Header.Get("Set-Cookie")
	for _, want := range []string{"m2mauth-console=default.m2mcs_", "Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=43200"} {
		if !strings.Contains(setCookie, want) {
			t.Errorf("Set-Cookie %q lacks %q", setCookie, want)
		}
	}
	if strings.Contains(setCookie, "Secure") {
		t.Errorf("Secure cookie over http: %q", setCookie)
	}
	// A second use, in another browser, signs nobody in.
	other := newConsoleBrowser(t, ts.URL)
	resp, _ = other.post("/console/link", url.Values{"token": {linkToken(t, link)}})
	if resp.Request.URL.Path != "/console/sign-in" || resp.Request.URL.Query().Get("why") != "link" {
		t.Fatalf("link used twice: at %s", resp.Request.URL)
	}
	if out, _ := other.signedOut(); !out {
		t.Fatal("the second use of a link signed in")
	}
	// Malformed tokens go to the sign-in page, never a 500.
	for _, tok := range []string{"", "x", "m2mcl_" + strings.Repeat("A", 43), "default.m2mcl_" + strings.Repeat("A", 43), "nowhere.m2mcl_" + strings.Repeat("A", 43), strings.Repeat("z", 5000)} {
		resp, _ := other.post("/console/link", url.Values{"token": {tok}})
		if resp.Request.URL.Path != "/console/sign-in" {
			t.Errorf("token %.20q: at %s (%d)", tok, resp.Request.URL, resp.StatusCode)
		}
	}
}

func TestConsoleCookieIsHostPrefixedAndSecureUnderHTTPS(t *testing.T) {
	cfg := testConfig(t)
	cfg.Issuer = "https://auth.example.com"
	ts := startServer(t, cfg)
	link := ts.consoleLink()
	if !strings.HasPrefix(link, "https://auth.example.com/console/link?token=") {
		t.Fatalf("link %q", link)
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/console/link", strings.NewReader(url.Values{"token": {linkToken(t, link)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sc := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"__Host-m2mauth-console=default.m2mcs_", "Path=/", "Secure", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %q", sc, want)
		}
	}
	if strings.Contains(sc, "Domain") {
		t.Errorf("a __Host- cookie with a Domain: %q", sc)
	}
}

func TestConsolePagesCarrySecurityHeaders(t *testing.T) {
	ts := startServer(t, testConfig(t))
	b := ts.signIn()
	for _, path := range []string{"/console/", "/console/sign-in", "/console/no-such-page"} {
		resp, _ := b.get(path)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows inline code: %q", path, csp)
		}
		for name, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
			if got := h.Get(name); got != want {
				t.Errorf("%s: %s = %q, want %q", path, name, got, want)
			}
		}
	}
	if resp, _ := b.get("/console/no-such-page"); resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("unknown console page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The root leads to the console.
	if resp, _ := b.get("/"); resp.Request.URL.Path != "/console/" {
		t.Errorf("/ leads to %s", resp.Request.URL)
	}
}

func keyCount(t *testing.T, ts *testServer) int {
	t.Helper()
	resp, body := ts.adminDo(http.MethodGet, "/admin/v1/keys", nil)
	var l struct{ Items []json.RawMessage }
	if resp.StatusCode != 200 || json.Unmarshal(body, &l) != nil {
		t.Fatalf("keys: %d %s", resp.StatusCode, body)
	}
	return len(l.Items)
}

// A state-changing form is refused without the session's CSRF token, with
// another session's, and from another site even with the right one.
func TestConsoleRefusesCrossSiteAndTokenlessPosts(t *testing.T) {
	ts := startServer(t, testConfig(t))
	b := ts.signIn()
	other := ts.signIn()
	before := keyCount(t, ts)
	cases := []struct {
		name    string
		form    url.Values
		headers []string
	}{
		{"no token", url.Values{"csrf": {""}}, nil},
		{"wrong token", url.Values{"csrf": {"forged"}}, nil},
		{"another session's token", url.Values{"csrf": {other.csrf}}, nil},
		{"cross-site, right token", url.Values{}, []string{"Sec-Fetch-Site", "cross-site"}},
		{"cross-origin Origin, right token", url.Values{}, []string{"Origin", "https://evil.example"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := b.post("/console/keys/rotate", tc.form, tc.headers...)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("%d at %s: %s", resp.StatusCode, resp.Request.URL, body)
			}
			if got := keyCount(t, ts); got != before {
				t.Fatalf("keys %d → %d: the refused form changed state", before, got)
			}
		})
	}
	// A cross-site sign-in form is refused before it is read.
	anon := newConsoleBrowser(t, ts.URL)
	resp, _ := anon.post("/console/sign-in", url.Values{"client_id": {ts.admin.ClientID}, "client_secret": {ts.admin.ClientSecret}}, "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site sign-in: %d", resp.StatusCode)
	}
	// The session is still fine, and sign-out by GET does nothing.
	if resp, _ := b.get("/console/sign-out"); resp.StatusCode == http.StatusOK && resp.Request.URL.Path == "/console/sign-in" {
		t.Fatal("GET signed out")
	}
	if out, _ := b.signedOut(); out {
		t.Fatal("signed out by a refused request")
	}
}

func TestConsoleSessionExpiresIdleAndAbsolute(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig(t)
	cfg.ConsoleIdle, cfg.ConsoleMaxAge = time.Hour, 3*time.Hour
	ts := startServerClock(t, cfg, clock.Now)
	b := ts.signIn()
	// Used every 50 minutes, it lives on until its absolute expiry.
	for i := range 3 {
		clock.Advance(50 * time.Minute)
		if out, _ := b.signedOut(); out {
			t.Fatalf("signed out after %d × 50 min of use", i+1)
		}
	}
	clock.Advance(31 * time.Minute) // 3 h 1 min after sign-in
	if out, why := b.signedOut(); !out || why != "expired" {
		t.Fatalf("past the absolute expiry: signed out %v (%q)", out, why)
	}
	// Idle: an hour without a request ends it.
	ts.login()
	b = ts.signIn()
	clock.Advance(time.Hour)
	if out, why := b.signedOut(); !out || why != "expired" {
		t.Fatalf("idle an hour: signed out %v (%q)", out, why)
	}
}

// signInForm signs in with an admin client's id and secret.
func signInForm(t *testing.T, base, id, secret string) (*consoleBrowser, *http.Response, string) {
	t.Helper()
	b := newConsoleBrowser(t, base)
	resp, body := b.post("/console/sign-in", url.Values{"client_id": {id}, "client_secret": {secret}})
	return b, resp, body
}

// Revoking the admin client's tokens, disabling it, removing its admin
// grant or deleting it ends its console sessions at once.
func TestConsoleSessionsEndWithTheAdminClient(t *testing.T) {
	ts := startServer(t, testConfig(t))
	adminAPI := ts.cfg.AdminAudience()
	newAdmin := func() (string, string) {
		return ts.createClient(admin.ClientInput{Name: "second admin", Grants: []admin.GrantInput{{Audience: adminAPI, Scopes: []string{admin.AdminScope}}}})
	}
	steps := []struct {
		name   string
		change func(id string)
	}{
		{"tokens revoked", func(id string) { ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/revoke-tokens", nil) }},
		{"disabled", func(id string) { ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"disabled":true}`) }},
		{"admin grant removed", func(id string) { ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"grants":[]}`) }},
		{"deleted", func(id string) { ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+id, nil) }},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			id, secret := newAdmin()
			b, resp, body := signInForm(t, ts.URL, id, secret)
			if resp.Request.URL.Path != "/console/" || !strings.Contains(body, id) {
				t.Fatalf("sign-in form: %d at %s", resp.StatusCode, resp.Request.URL)
			}
			st.change(id)
			if out, why := b.signedOut(); !out || why != "revoked" {
				t.Fatalf("after %s: signed out %v (%q)", st.name, out, why)
			}
		})
	}
}

func TestConsoleSignInFormRefusals(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read")
	plainID, plainSecret := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	cases := []struct {
		name, id, secret string
		status           int
		says             string
	}{
		{"wrong secret", ts.admin.ClientID, "m2ms_wrong", http.StatusUnauthorized, "wrong"},
		{"unknown client", "m2mc_nobody", "m2ms_wrong", http.StatusUnauthorized, "wrong"},
		{"not an admin", plainID, plainSecret, http.StatusForbidden, "not an admin"},
		{"empty", "", "", http.StatusBadRequest, "Enter the admin client"},
		{"oversized", strings.Repeat("a", 600), strings.Repeat("b", 600), http.StatusBadRequest, "Enter the admin client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, resp, body := signInForm(t, ts.URL, tc.id, tc.secret)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("%d, want %d saying %q: %s", resp.StatusCode, tc.status, tc.says, body)
			}
			if tc.secret != "" && strings.Contains(body, tc.secret) {
				t.Fatal("the page echoes the secret")
			}
			if out, _ := b.signedOut(); !out {
				t.Fatal("signed in")
			}
		})
	}
	if strings.Contains(ts.logs.String(), plainSecret) {
		t.Fatal("a secret reached the log")
	}
	// The form shares the token endpoint's failure limiter: guessing is
	// soon answered with 429, however it is spread.
	limited := false
	for range 40 {
		if _, resp, _ := signInForm(t, ts.URL, ts.admin.ClientID, "m2ms_guess"); resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("40 wrong secrets in a row, never limited")
	}
	if st, _ := ts.tokenStatus(ts.admin.ClientID, "m2ms_guess", url.Values{}); st != http.StatusTooManyRequests {
		t.Fatalf("the token endpoint does not share the limit: %d", st)
	}
}

func TestConsoleSignOutEndsTheSessionEverywhere(t *testing.T) {
	ts := startServer(t, testConfig(t))
	b := ts.signIn()
	u, _ := url.Parse(ts.URL)
	stolen := b.http.Jar.Cookies(u)
	resp, _ := b.post("/console/sign-out", nil)
	if resp.Request.URL.Path != "/console/sign-in" || resp.Request.URL.Query().Get("why") != "signed-out" {
		t.Fatalf("sign-out led to %s", resp.Request.URL)
	}
	if out, _ := b.signedOut(); !out {
		t.Fatal("still signed in")
	}
	// The old cookie, replayed, is worth nothing: the session is gone from
	// the server, not just from the browser.
	replay := newConsoleBrowser(t, ts.URL)
	replay.http.Jar.SetCookies(u, stolen)
	if out, _ := replay.signedOut(); !out {
		t.Fatal("a signed-out session's cookie still works")
	}
}

func TestConsoleSwitchedOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.Console = false
	ts := startServer(t, cfg)
	for _, path := range []string{"/console/", "/console/sign-in", "/"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
	if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/console/links", nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "console=false") {
		t.Fatalf("link with the console off: %d %s", resp.StatusCode, body)
	}
}

// A session started on one replica works on another; disabling its admin
// client through either ends it on both within a second.
func TestConsoleSessionAcrossReplicasPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	master := keys.GenerateMasterKeyText()
	issuer := "http://auth.test"
	dirA := t.TempDir()
	a := startReplica(t, dsn, master, issuer, dirA)
	bRep := startReplica(t, dsn, master, issuer, t.TempDir())
	raw, err := os.ReadFile(filepath.Join(dirA, AdminFile))
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw, &a.admin)
	a.login()
	id, secret := a.createClient(admin.ClientInput{Name: "console admin", Grants: []admin.GrantInput{{Audience: issuer + "/admin", Scopes: []string{admin.AdminScope}}}})
	br, resp, _ := signInForm(t, a.URL, id, secret)
	if resp.Request.URL.Path != "/console/" {
		t.Fatalf("sign-in on A: at %s", resp.Request.URL)
	}
	// The same cookie, on B.
	ua, _ := url.Parse(a.URL)
	ub, _ := url.Parse(bRep.URL)
	br.http.Jar.SetCookies(ub, br.http.Jar.Cookies(ua))
	onB := &consoleBrowser{t: t, base: bRep.URL, http: br.http}
	if out, _ := onB.signedOut(); out {
		t.Fatal("A's session is refused on B")
	}
	a.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"disabled":true}`)
	took := within(t, time.Second, "session ended on B", func() bool { out, _ := onB.signedOut(); return out })
	t.Logf("disabled on A: B's console signed the session out after %s", took.Round(time.Millisecond))
	if out, _ := br.signedOut(); !out {
		t.Fatal("still signed in on A")
	}
}

func TestConsoleOverviewShowsUsageAndExpiringSecrets(t *testing.T) {
	clock := newFakeClock()
	ts := startServerClock(t, testConfig(t), clock.Now)
	ts.createAPI(ordersAPI, 0, "orders:read")
	busyID, busySecret := ts.createClient(admin.ClientInput{Name: "busy batch job", DefaultAudience: ordersAPI,
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	ts.createClient(admin.ClientInput{Name: "expiring soon", SecretLifetimeSeconds: int64(10 * 24 * time.Hour / time.Second),
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	for range 3 {
		ts.mustToken(busyID, busySecret, url.Values{})
	}
	b := ts.signIn()
	_, body := b.get("/console/")
	for _, want := range []string{"busy batch job", `<td class="num">3</td>`, "expiring soon", "expires in 10 days", "<svg"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	// Counts survive the hour: the next hour starts at 0, the day keeps 3.
	clock.Advance(time.Hour)
	ts.login()
	b = ts.signIn()
	ts.mustToken(busyID, busySecret, url.Values{})
	_, body = b.get("/console/")
	if !strings.Contains(body, `<td class="num">1</td>`+"\n        "+`<td class="num">4</td>`) {
		t.Errorf("after an hour, want 1 this hour and 4 in the day:\n%s", body)
	}
}

// With the shortest idle limit, a session in use is never signed out:
// its activity is recorded often enough.
func TestConsoleShortIdleKeepsAnActiveSession(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig(t)
	cfg.ConsoleIdle = time.Minute
	ts := startServerClock(t, cfg, clock.Now)
	b := ts.signIn()
	for i := range 8 {
		clock.Advance(45 * time.Second)
		if out, _ := b.signedOut(); out {
			t.Fatalf("signed out after %d requests 45 s apart", i+1)
		}
	}
	clock.Advance(61 * time.Second)
	if out, why := b.signedOut(); !out || why != "expired" {
		t.Fatalf("idle past the limit: signed out %v (%q)", out, why)
	}
}

// Sign-in returns only to a page of the console, however the path is
// dressed up.
func TestConsoleSignInReturnsOnlyIntoTheConsole(t *testing.T) {
	ts := startServer(t, testConfig(t))
	for next, want := range map[string]string{
		"/console/apps?q=x":       "/console/apps",
		"/console/../evil":        "/console/",
		"/console/..//evil.com":   "/console/",
		"//evil.com/console/":     "/console/",
		"/console/\\evil":         "/console/",
		"https://evil.com/x":      "/console/",
		"/console/./keys":         "/console/",
		"/console/%2e%2e/evil":    "/console/",
		"/console/%2fevil":        "/console/",
		"/console/sign-out":       "/console/",
		"/console/link?token=abc": "/console/",
	} {
		b := newConsoleBrowser(t, ts.URL)
		resp, _ := b.post("/console/sign-in", url.Values{"client_id": {ts.admin.ClientID}, "client_secret": {ts.admin.ClientSecret}, "next": {next}})
		if resp.Request.URL.Host != strings.TrimPrefix(ts.URL, "http://") || resp.Request.URL.Path != want {
			t.Errorf("next %q: ended at %s, want %s", next, resp.Request.URL, want)
		}
	}
}

// The console lives at the root of its host: under an issuer with a path
// it is off (its links and cookie would miss the proxy's prefix), and the
// log says why.
func TestConsoleOffUnderAnIssuerWithAPath(t *testing.T) {
	cfg := testConfig(t)
	cfg.Issuer = "https://example.com/auth"
	ts := startServer(t, cfg)
	if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/console/links", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("link: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(ts.logs.String(), "the admin console is off: the issuer has a path") {
		t.Fatal("the log does not say why the console is off")
	}
}

func TestConsoleStaticFiles(t *testing.T) {
	ts := startServer(t, testConfig(t))
	for path, want := range map[string]int{
		"/console/static/console.css": 200, "/console/static/console.js": 200,
		"/console/static/": 404, "/console/static/nope.js": 404, "/console/static/../console.go": 404,
	} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
		if want == 404 && (!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("Content-Security-Policy") == "") {
			t.Errorf("%s: a 404 outside the console's page: %s", path, resp.Header.Get("Content-Type"))
		}
	}
}

// Every change an admin client makes is logged with its id as caller,
// through the console (marked via=console) as through the admin API.
func TestAdminChangesNameTheirCaller(t *testing.T) {
	ts := startServer(t, testConfig(t))
	b := ts.signIn()
	b.get("/console/keys")
	if resp, _ := b.post("/console/keys/rotate", url.Values{"alg": {""}}); resp.Request.URL.Query().Get("done") != "key-rotated" {
		t.Fatalf("rotate: at %s", resp.Request.URL)
	}
	ts.createAPI(ordersAPI, 0, "orders:read")
	find := func(msg string) map[string]any {
		for line := range strings.Lines(ts.logs.String()) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
				return rec
			}
		}
		t.Fatalf("no %q in the log", msg)
		return nil
	}
	if rec := find("signing key rotation scheduled"); rec["caller"] != ts.admin.ClientID || rec["via"] != "console" {
		t.Errorf("console change: %v", rec)
	}
	if rec := find("api created"); rec["caller"] != ts.admin.ClientID || rec["via"] != nil {
		t.Errorf("admin API change: %v", rec)
	}
}
