package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/store"
)

// pagesConsole is a signed-in console session driven over HTTP, as a
// browser without JavaScript would (consoleBrowser), with the answers as
// status, body and final URL.
type pagesConsole struct {
	*consoleBrowser
	ts *testServer
}

// pagesSignIn signs in to the console with a one-time link made through the
// admin API with the bootstrap admin's token.
func pagesSignIn(t *testing.T, ts *testServer) *pagesConsole {
	t.Helper()
	return &pagesConsole{consoleBrowser: ts.signIn(), ts: ts}
}

// send makes a request, following redirects; it returns the final status,
// body and URL.
func (pc *pagesConsole) send(method, path string, form url.Values) (int, string, *url.URL) {
	pc.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, pc.ts.URL+path, body)
	if err != nil {
		pc.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, b := pc.do(req)
	return resp.StatusCode, b, resp.Request.URL
}

func (pc *pagesConsole) get(path string) (int, string) {
	pc.t.Helper()
	st, body, _ := pc.send(http.MethodGet, path, nil)
	return st, body
}

// post submits a form with the session's CSRF token.
func (pc *pagesConsole) post(path string, form url.Values) (int, string, *url.URL) {
	pc.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", pc.csrf)
	if _, ok := form["env"]; !ok {
		form.Set("env", pc.env)
	}
	return pc.send(http.MethodPost, path, form)
}

// pageField returns the value of the first input named name.
func pageField(t *testing.T, page, name string) string {
	t.Helper()
	m := regexp.MustCompile(`<input[^>]*name="` + regexp.QuoteMeta(name) + `"[^>]*value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no input %s in the page", name)
	}
	return html.UnescapeString(m[1])
}

// pageText returns the text of the element with this id (its first text
// node run, tags stripped), "" if there is none.
func pageText(page, id string) string {
	i := strings.Index(page, `id="`+id+`"`)
	if i < 0 {
		return ""
	}
	rest := page[i:]
	rest = rest[strings.IndexByte(rest, '>')+1:]
	// Up to the element's end: good enough for the elements these tests
	// read (no nesting of the same tag).
	end := regexp.MustCompile(`</(p|pre|div|dd|textarea|td|code|span)>`).FindStringIndex(rest)
	if end != nil {
		rest = rest[:end[0]]
	}
	return strings.TrimSpace(html.UnescapeString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(rest, "")))
}

// fieldError returns the error shown next to a field ("" if none).
func fieldError(page, field string) string { return pageText(page, field+"-err") }

func TestConsoleKeysRotateAndRevoke(t *testing.T) {
	f := newIntrospectFixture(t)
	ts := f.ts
	pc := pagesSignIn(t, ts)

	st, page := pc.get("/console/keys")
	if st != http.StatusOK {
		t.Fatalf("keys: %d", st)
	}
	set := ts.jwks()
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys at start", len(set.Keys))
	}
	first := set.Keys[0].KeyID
	for _, want := range []string{`id="rotate-key"`, `name="alg"`, `id="rotate"`, `id="revoke-` + first + `"`,
		`<span class="badge active">active</span>`, `<svg class="tl-bar"`, `class="tl-now"`, `<option value="ES256">`} {
		if !strings.Contains(page, want) {
			t.Errorf("keys page lacks %s", want)
		}
	}

	// An algorithm the server does not support is refused next to its field.
	st, page, _ = pc.post("/console/keys/rotate", url.Values{"alg": {"HS256"}})
	if st != http.StatusBadRequest || !strings.Contains(fieldError(page, "alg"), "RS256") {
		t.Fatalf("rotate to HS256: %d, field error %q", st, fieldError(page, "alg"))
	}

	// A rotation to ES256 publishes a next key.
	st, page, final := pc.post("/console/keys/rotate", url.Values{"alg": {"ES256"}})
	if st != http.StatusOK || final.Path != "/console/keys" || final.Query().Get("done") != "key-rotated" {
		t.Fatalf("rotate: %d at %s", st, final)
	}
	if !strings.Contains(page, `<span class="badge next">next</span>`) || !strings.Contains(page, "<td>ES256</td>") {
		t.Fatal("the page does not show the next ES256 key")
	}
	set = ts.jwks()
	if len(set.Keys) != 2 {
		t.Fatalf("%d keys published after the rotation, want 2", len(set.Keys))
	}
	var next string
	for _, k := range set.Keys {
		if k.KeyID != first {
			next = k.KeyID
		}
	}
	// A second rotation is refused while one is scheduled, with a clear
	// message, and changes nothing.
	st, page, _ = pc.post("/console/keys/rotate", url.Values{"alg": {"RS256"}})
	if st != http.StatusConflict || !strings.Contains(page, "A rotation is already scheduled") {
		t.Fatalf("second rotation: %d", st)
	}
	if n := len(ts.jwks().Keys); n != 2 {
		t.Fatalf("%d keys after a refused rotation", n)
	}

	// Emergency revocation of the active key: the confirmation page
	// explains the consequence and names the scheduled replacement.
	token := ts.mustToken(f.app.id, f.app.secret, url.Values{"scope": {"orders:read"}})
	st, page = pc.get("/console/keys/" + first + "/revoke")
	if st != http.StatusOK {
		t.Fatalf("revoke page: %d", st)
	}
	for _, want := range []string{`name="confirm"`, `id="confirm-revoke"`, "Every token it signed stops verifying", next} {
		if !strings.Contains(page, want) {
			t.Errorf("revoke confirmation lacks %q", want)
		}
	}
	// The wrong text is refused, the typed text kept, and nothing revoked.
	st, page, _ = pc.post("/console/keys/"+first+"/revoke", url.Values{"confirm": {"yes"}})
	if st != http.StatusBadRequest || fieldError(page, "confirm") == "" || pageField(t, page, "confirm") != "yes" {
		t.Fatalf("wrong confirmation: %d, error %q", st, fieldError(page, "confirm"))
	}
	if !f.active(t, f.root, token) {
		t.Fatal("a refused revocation revoked the key")
	}
	st, _, final = pc.post("/console/keys/"+first+"/revoke", url.Values{"confirm": {" " + first + " "}})
	if st != http.StatusOK || final.Query().Get("done") != "key-revoked-replaced" {
		t.Fatalf("revoke: %d at %s", st, final)
	}
	set = ts.jwks()
	if len(set.Keys) != 1 || set.Keys[0].KeyID != next {
		t.Fatalf("after the revocation the JWKS holds %d keys (want only %s)", len(set.Keys), next)
	}
	if f.active(t, f.root, token) {
		t.Fatal("a token signed by the revoked key is still active")
	}
	// The tester says why.
	_, page, _ = pc.post("/console/tester", url.Values{"token": {token}})
	if v := pageText(page, "verdict"); !strings.HasPrefix(v, "Invalid") || !strings.Contains(v, "does not publish") {
		t.Fatalf("tester verdict for a token of a revoked key: %q", v)
	}
	// A key that is gone cannot be revoked again.
	if st, _ := pc.get("/console/keys/" + first + "/revoke"); st != http.StatusNotFound {
		t.Fatalf("revoke page of a revoked key: %d", st)
	}
	if strings.Contains(ts.logs.String(), token) {
		t.Fatal("the token is in the log")
	}
}

func TestConsoleRevokeToken(t *testing.T) {
	f := newIntrospectFixture(t)
	ts := f.ts
	pc := pagesSignIn(t, ts)

	st, page, _ := pc.post("/console/revocations", url.Values{"token": {"  "}})
	if st != http.StatusBadRequest || fieldError(page, "token") == "" {
		t.Fatalf("empty token: %d, error %q", st, fieldError(page, "token"))
	}

	token := ts.mustToken(f.app.id, f.app.secret, url.Values{"scope": {"orders:read"}})
	if !f.active(t, f.root, token) {
		t.Fatal("fresh token inactive")
	}
	st, page, final := pc.post("/console/revocations", url.Values{"token": {token}})
	if st != http.StatusOK || final.Query().Get("done") != "token-revoked" {
		t.Fatalf("revoke: %d at %s", st, final)
	}
	if f.active(t, f.root, token) {
		t.Fatal("the revoked token is still active at /oauth/introspect")
	}
	// The list shows it by jti and application, never the token.
	parts := strings.Split(token, ".")
	claims, _ := base64URL(parts[1])
	var c struct{ JTI string }
	if err := json.Unmarshal(claims, &c); err != nil || c.JTI == "" {
		t.Fatalf("jti: %v", err)
	}
	if !strings.Contains(page, "<code>"+c.JTI+"</code>") || !strings.Contains(page, `href="/console/app/`+f.app.id+`"`) {
		t.Fatal("the list does not show the revocation")
	}
	if strings.Contains(page, token) || strings.Contains(ts.logs.String(), token) {
		t.Fatal("the token was echoed or logged")
	}
	// Revoking it again: nothing live to revoke.
	if _, _, final := pc.post("/console/revocations", url.Values{"token": {token}}); final.Query().Get("done") != "token-not-live" {
		t.Fatalf("second revocation: %s", final)
	}
	// A page link that is not a cursor is refused as such.
	if st, _ := pc.get("/console/revocations?after=junk"); st != http.StatusBadRequest {
		t.Fatalf("bad cursor: %d", st)
	}
}

func TestConsoleRevocationsPaging(t *testing.T) {
	f := newIntrospectFixture(t)
	ts := f.ts
	pc := pagesSignIn(t, ts)
	jtis := map[string]bool{}
	for range 51 {
		f.clock.Advance(time.Millisecond)
		token := ts.mustToken(f.app.id, f.app.secret, url.Values{"scope": {"orders:read"}})
		if _, _, final := pc.post("/console/revocations", url.Values{"token": {token}}); final.Query().Get("done") != "token-revoked" {
			t.Fatalf("revoke: %s", final)
		}
	}
	jtiRe := regexp.MustCompile(`<tr>\s*<td><code>([^<]+)</code>`)
	st, page := pc.get("/console/revocations")
	rows := jtiRe.FindAllStringSubmatch(page, -1)
	if st != http.StatusOK || len(rows) != 50 {
		t.Fatalf("first page: %d with %d rows", st, len(rows))
	}
	for _, r := range rows {
		jtis[r[1]] = true
	}
	m := regexp.MustCompile(`id="next-page" rel="next" href="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no next page link")
	}
	st, page = pc.get(html.UnescapeString(m[1]))
	rows = jtiRe.FindAllStringSubmatch(page, -1)
	if st != http.StatusOK || len(rows) != 1 || jtis[rows[0][1]] {
		t.Fatalf("second page: %d with %d rows (%v)", st, len(rows), rows)
	}
	if strings.Contains(page, `id="next-page"`) {
		t.Fatal("the last page links to a next one")
	}
}

func TestConsoleTokenTester(t *testing.T) {
	f := newIntrospectFixture(t)
	ts := f.ts
	pc := pagesSignIn(t, ts)
	check := func(token string) (int, string) {
		t.Helper()
		st, page, _ := pc.post("/console/tester", url.Values{"token": {token}})
		return st, page
	}
	token := ts.mustToken(f.app.id, f.app.secret, url.Values{"scope": {"orders:read"}})
	parts := strings.Split(token, ".")

	st, page := check(token)
	if v := pageText(page, "verdict"); st != http.StatusOK || !strings.HasPrefix(v, "Valid") {
		t.Fatalf("valid token: %d %q", st, v)
	}
	if h := pageText(page, "header"); !strings.Contains(h, `"typ": "at+jwt"`) {
		t.Errorf("decoded header: %q", h)
	}
	if c := pageText(page, "claims"); !strings.Contains(c, `"client_id": "`+f.app.id+`"`) || !strings.Contains(c, `"scope": "orders:read"`) {
		t.Errorf("decoded claims: %q", c)
	}
	if !strings.Contains(pageText(page, "expires"), "in 15 minutes") {
		t.Errorf("expiry: %q", pageText(page, "expires"))
	}
	// The token is shown again only inside its textarea.
	if n := strings.Count(page, token); n != 1 || pageText(page, "token") != token {
		t.Fatalf("the token appears %d times in the page", n)
	}

	claims, _ := base64URL(parts[1])
	tampered := parts[0] + "." + b64url(strings.Replace(string(claims), "orders:read", "orders:write", 1)) + "." + parts[2]
	garbledSig := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	for _, tc := range []struct {
		name, token, want, header string
	}{
		{"tampered claims", tampered, "signature does not match", "at+jwt"},
		{"another signature", garbledSig, "signature does not match", "at+jwt"},
		{"not a JWT", "hello", "malformed", ""},
		{"two parts", parts[0] + "." + parts[1], "malformed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, page := check(tc.token)
			v := pageText(page, "verdict")
			if st != http.StatusOK || !strings.HasPrefix(v, "Invalid") || !strings.Contains(v, tc.want) {
				t.Fatalf("%d %q, want Invalid … %s", st, v, tc.want)
			}
			if !strings.Contains(pageText(page, "header"), tc.header) {
				t.Errorf("header %q", pageText(page, "header"))
			}
		})
	}
	// Tampered claims are still shown, decoded without trust.
	if _, page := check(tampered); !strings.Contains(pageText(page, "claims"), "orders:write") || !strings.Contains(page, "cannot be trusted") {
		t.Error("the tampered token's claims are not shown as untrusted")
	}

	// Revoked.
	if _, _, final := pc.post("/console/revocations", url.Values{"token": {token}}); final.Query().Get("done") != "token-revoked" {
		t.Fatalf("revoke: %s", final)
	}
	if _, page := check(token); !strings.HasPrefix(pageText(page, "verdict"), "Invalid: it was revoked") {
		t.Fatalf("revoked token: %q", pageText(page, "verdict"))
	}
	// The client disabled.
	other := ts.mustToken(f.app.id, f.app.secret, url.Values{"scope": {"orders:read"}})
	ts.login()
	if resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+f.app.id, `{"disabled":true}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("disable: %d %s", resp.StatusCode, body)
	}
	if _, page := check(other); !strings.Contains(pageText(page, "verdict"), "is disabled") {
		t.Fatalf("token of a disabled client: %q", pageText(page, "verdict"))
	}

	// Expired: the server's clock moves past the token's lifetime (and
	// the verifier's leeway).
	f.clock.Advance(17 * time.Minute)
	if _, page := check(other); !strings.HasPrefix(pageText(page, "verdict"), "Invalid: it expired 2 minutes ago") {
		t.Fatalf("expired token: %q", pageText(page, "verdict"))
	}

	// Refused input: empty, oversized (never echoed), a refresh token.
	for _, tc := range []struct{ name, token string }{
		{"empty", ""}, {"oversized", strings.Repeat("a", 17<<10)}, {"refresh token", "m2mr_abc"},
	} {
		st, page := check(tc.token)
		if st != http.StatusBadRequest || fieldError(page, "token") == "" || strings.Contains(page, `id="verdict"`) {
			t.Errorf("%s: %d, error %q", tc.name, st, fieldError(page, "token"))
		}
		if tc.name == "oversized" && strings.Contains(page, tc.token) {
			t.Error("the oversized token was echoed")
		}
	}
	if strings.Contains(ts.logs.String(), parts[2]) {
		t.Fatal("a token is in the log")
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// pagesAPI reads an API through the admin API (nil if it does not exist).
func pagesAPI(t *testing.T, ts *testServer, identifier string) *admin.APIResource {
	t.Helper()
	ts.login()
	resp, body := ts.adminDo(http.MethodGet, "/admin/v1/apis/"+url.PathEscape(identifier), nil)
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var a admin.APIResource
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil {
		t.Fatalf("get API: %d %s", resp.StatusCode, body)
	}
	return &a
}

// deleteConfirmation is the form an API's deletion confirmation posts.
func deleteConfirmation(t *testing.T, page string) url.Values {
	t.Helper()
	return url.Values{"version": {pageField(t, page, "version")}, "holders": {pageField(t, page, "holders")},
		"holders_fingerprint": {pageField(t, page, "holders_fingerprint")}}
}

// textareaValue returns the text of the textarea named name.
func textareaValue(page, name string) string {
	m := regexp.MustCompile(`(?s)<textarea[^>]*name="` + regexp.QuoteMeta(name) + `"[^>]*>(.*?)</textarea>`).FindStringSubmatch(page)
	if m == nil {
		return "<no textarea>"
	}
	return html.UnescapeString(strings.TrimPrefix(m[1], "\n"))
}

func TestConsoleAPIs(t *testing.T) {
	f := newIntrospectFixture(t)
	ts := f.ts
	pc := pagesSignIn(t, ts)
	const id = "https://inventory.example.com"
	path := "/console/api/" + url.PathEscape(id)

	st, page := pc.get("/console/apis")
	adminAPI := ts.cfg.Issuer + "/admin"
	if st != http.StatusOK || !strings.Contains(page, `id="new-api"`) || !strings.Contains(page, "<code>"+ordersAPI+"</code>") ||
		!strings.Contains(page, "<code>"+adminAPI+`</code></a> <span class="badge info">built-in</span>`) {
		t.Fatalf("API list: %d\n%s", st, page)
	}
	st, page = pc.get("/console/apis/new")
	for _, want := range []string{`id="api-form"`, `name="identifier"`, `name="name"`, `<textarea id="scopes" name="scopes"`, `name="token_lifetime"`, `id="save"`} {
		if st != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("new API form lacks %s", want)
		}
	}

	// Errors are shown next to their fields and nothing typed is lost.
	form := url.Values{"identifier": {id}, "name": {"Inventory"}, "scopes": {"stock:read\nstock:write"}, "token_lifetime": {"ten minutes"}}
	st, page, _ = pc.post("/console/apis", form)
	if st != http.StatusBadRequest || !strings.Contains(fieldError(page, "token_lifetime"), "15m") {
		t.Fatalf("bad duration: %d %q", st, fieldError(page, "token_lifetime"))
	}
	if pageField(t, page, "identifier") != id || pageField(t, page, "name") != "Inventory" || textareaValue(page, "scopes") != "stock:read\nstock:write" ||
		pageField(t, page, "token_lifetime") != "ten minutes" {
		t.Fatal("the form was not refilled")
	}
	form = url.Values{"identifier": {id}, "name": {" "}, "scopes": {"stock:read\nstöck:write"}, "token_lifetime": {"30s"}}
	st, page, _ = pc.post("/console/apis", form)
	if st != http.StatusBadRequest || !strings.Contains(fieldError(page, "name"), "required") ||
		!strings.Contains(fieldError(page, "scopes"), "stöck:write") || !strings.Contains(fieldError(page, "token_lifetime"), "1m to 168h") {
		t.Fatalf("invalid API: %d name %q scopes %q lifetime %q", st, fieldError(page, "name"), fieldError(page, "scopes"), fieldError(page, "token_lifetime"))
	}
	if textareaValue(page, "scopes") != "stock:read\nstöck:write" || pageField(t, page, "token_lifetime") != "30s" {
		t.Fatal("the form was not refilled")
	}
	if pagesAPI(t, ts, id) != nil {
		t.Fatal("an invalid API was created")
	}

	// A description too long is refused next to the scopes.
	form = url.Values{"identifier": {id}, "name": {"Inventory"}, "scopes": {"stock:read " + strings.Repeat("x", 501)}}
	st, page, _ = pc.post("/console/apis", form)
	if st != http.StatusBadRequest || !strings.Contains(fieldError(page, "scopes"), "The description of stock:read must be at most 500") {
		t.Fatalf("long description: %d %q", st, fieldError(page, "scopes"))
	}

	// Create, with descriptions after some of the scopes.
	form = url.Values{"identifier": {id}, "name": {"Inventory"}, "scopes": {"stock:read\tRead the  stock levels \n\n  stock:write  \n"}, "token_lifetime": {"10m"}}
	st, page, final := pc.post("/console/apis", form)
	if st != http.StatusOK || final.EscapedPath() != path || final.Query().Get("done") != "api-created" || !strings.Contains(page, "The API was created.") {
		t.Fatalf("create: %d at %s", st, final)
	}
	a := pagesAPI(t, ts, id)
	if a == nil || a.Name != "Inventory" || strings.Join(a.Scopes, " ") != "stock:read stock:write" || a.TokenLifetimeSeconds != 600 ||
		len(a.ScopeDescriptions) != 1 || a.ScopeDescriptions["stock:read"] != "Read the  stock levels" {
		t.Fatalf("created API: %+v", a)
	}
	if pageField(t, page, "token_lifetime") != "10m" || textareaValue(page, "scopes") != "stock:read Read the  stock levels\nstock:write" || !strings.Contains(page, `id="delete"`) {
		t.Fatalf("the edit form is not filled with the API: %q", textareaValue(page, "scopes"))
	}
	if !strings.Contains(page, `<li><code>stock:read</code> <span class="muted">Read the  stock levels</span></li>`) {
		t.Fatal("the scope's description is not shown")
	}
	// The identifier is taken now.
	st, page, _ = pc.post("/console/apis", form)
	if st != http.StatusConflict || !strings.Contains(fieldError(page, "identifier"), "already exists") {
		t.Fatalf("duplicate: %d %q", st, fieldError(page, "identifier"))
	}

	// An application granted it is named on its page.
	appID, appSecret := ts.createClient(admin.ClientInput{Name: "Warehouse robot",
		Grants: []admin.GrantInput{{Audience: id, Scopes: []string{"stock:read", "stock:write"}}}})
	_, page = pc.get(path)
	if !strings.Contains(pageText(page, "holders"), "Warehouse robot") {
		t.Fatalf("holders: %q", pageText(page, "holders"))
	}
	version := pageField(t, page, "version")

	// Edit with the version the form was made from.
	edit := url.Values{"version": {version}, "name": {"Inventory v2"}, "scopes": {"stock:read How much is left"}, "token_lifetime": {""}, "discoverable": {"on"}}
	st, _, final = pc.post(path, edit)
	if st != http.StatusOK || final.Query().Get("done") != "api-updated" {
		t.Fatalf("edit: %d at %s", st, final)
	}
	a = pagesAPI(t, ts, id)
	if a.Name != "Inventory v2" || strings.Join(a.Scopes, " ") != "stock:read" || a.TokenLifetimeSeconds != 0 || !a.Discoverable ||
		a.ScopeDescriptions["stock:read"] != "How much is left" {
		t.Fatalf("edited API: %+v", a)
	}
	// A description removed from the textarea is removed.
	_, page = pc.get(path)
	st, _, _ = pc.post(path, url.Values{"version": {pageField(t, page, "version")}, "name": {"Inventory v2"}, "scopes": {"stock:read"}, "discoverable": {"on"}})
	if a = pagesAPI(t, ts, id); st != http.StatusOK || len(a.ScopeDescriptions) != 0 {
		t.Fatalf("description not removed: %d %+v", st, a)
	}
	edit.Set("scopes", "stock:read")
	// A form made from the old version is refused, the edits kept.
	edit.Set("name", "Stale")
	st, page, _ = pc.post(path, edit)
	if st != http.StatusConflict || !strings.Contains(page, "Someone else changed this API") || pageField(t, page, "name") != "Stale" {
		t.Fatalf("stale edit: %d", st)
	}
	if pagesAPI(t, ts, id).Name != "Inventory v2" {
		t.Fatal("a stale edit was saved")
	}
	// Validation errors on edit are shown next to the fields too.
	st, page, _ = pc.post(path, url.Values{"version": {pageField(t, page, "version")}, "name": {"x"}, "scopes": {"bad scope\\"}, "token_lifetime": {"8d"}})
	if st != http.StatusBadRequest || fieldError(page, "token_lifetime") == "" {
		t.Fatalf("invalid edit: %d %q", st, fieldError(page, "token_lifetime"))
	}

	// Delete: the confirmation names the application that loses access.
	f.clock.Advance(2 * time.Second) // past the cutoff of the narrowing edit
	token := ts.mustToken(appID, appSecret, url.Values{"audience": {id}})
	if !f.active(t, f.root, token) {
		t.Fatal("fresh token inactive")
	}
	st, page = pc.get(path + "/delete")
	if st != http.StatusOK || !strings.Contains(pageText(page, "affected"), "Warehouse robot") || !strings.Contains(page, `id="confirm-delete"`) ||
		!strings.Contains(page, "every token they hold is revoked") || !strings.Contains(page, "and its 1 scope will be gone") ||
		!strings.Contains(page, "<strong>1 application holds a grant for it.</strong>") {
		t.Fatalf("delete confirmation: %d %q", st, pageText(page, "affected"))
	}
	if pageField(t, page, "holders") != "1" || len(pageField(t, page, "holders_fingerprint")) != 64 || strings.Contains(page, `name="app"`) {
		t.Fatal("the confirmation does not carry the holders' count and fingerprint alone")
	}
	confirm := deleteConfirmation(t, page)
	st, page, final = pc.post(path+"/delete", confirm)
	if st != http.StatusOK || final.Path != "/console/apis" || final.Query().Get("done") != "api-deleted" || strings.Contains(page, "<code>"+id+"</code>") {
		t.Fatalf("delete: %d at %s", st, final)
	}
	if pagesAPI(t, ts, id) != nil {
		t.Fatal("the API still exists")
	}
	if f.active(t, f.root, token) {
		t.Fatal("the application's token is still active")
	}
	if c, _ := ts.client(appID); len(c.Grants) != 0 {
		t.Fatalf("grants left: %+v", c.Grants)
	}

	// An application granted the API after the confirmation was shown is
	// not dropped unannounced.
	ts.createAPI("https://late.example.com", 0, "late:read")
	late := "/console/api/" + url.PathEscape("https://late.example.com")
	_, page = pc.get(late + "/delete")
	confirm = deleteConfirmation(t, page)
	latecomer, _ := ts.createClient(admin.ClientInput{Name: "Latecomer", Grants: []admin.GrantInput{{Audience: "https://late.example.com", Scopes: []string{"late:read"}}}})
	st, page, _ = pc.post(late+"/delete", confirm)
	if st != http.StatusConflict || !strings.Contains(pageText(page, "affected"), "Latecomer") || pagesAPI(t, ts, "https://late.example.com") == nil ||
		!strings.Contains(page, "The applications that hold a grant for this API changed") {
		t.Fatalf("delete with a new holder: %d", st)
	}
	// The same count, another application: asked again too.
	confirm = deleteConfirmation(t, page)
	ts.createClient(admin.ClientInput{Name: "Second", Grants: []admin.GrantInput{{Audience: "https://late.example.com", Scopes: []string{"late:read"}}}})
	if resp, body := ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+url.PathEscape(latecomer), nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete client: %d %s", resp.StatusCode, body)
	}
	st, page, _ = pc.post(late+"/delete", confirm)
	if st != http.StatusConflict || !strings.Contains(pageText(page, "affected"), "Second") || pagesAPI(t, ts, "https://late.example.com") == nil {
		t.Fatalf("delete with another holder: %d", st)
	}
	// Confirmed again, it is deleted.
	st, _, final = pc.post(late+"/delete", deleteConfirmation(t, page))
	if st != http.StatusOK || final.Query().Get("done") != "api-deleted" || pagesAPI(t, ts, "https://late.example.com") != nil {
		t.Fatalf("delete after confirming again: %d at %s", st, final)
	}

	// The built-in admin API is read-only.
	adminPath := "/console/api/" + url.PathEscape(adminAPI)
	st, page = pc.get(adminPath)
	if st != http.StatusOK || strings.Contains(page, `id="api-form"`) || strings.Contains(page, `id="delete"`) || !strings.Contains(page, "built in") {
		t.Fatalf("admin API page: %d", st)
	}
	adminVersion := pagesAPI(t, ts, adminAPI).Version
	st, _, _ = pc.post(adminPath, url.Values{"version": {strconv.FormatInt(adminVersion, 10)}, "name": {"mine"}, "scopes": {""}})
	if st != http.StatusConflict || strings.Join(pagesAPI(t, ts, adminAPI).Scopes, " ") != "admin deployment" {
		t.Fatalf("editing the admin API: %d", st)
	}
	if st, _ := pc.get(adminPath + "/delete"); st != http.StatusConflict {
		t.Fatalf("deleting the admin API: %d", st)
	}
	if st, _, _ := pc.post(adminPath+"/delete", url.Values{"version": {strconv.FormatInt(adminVersion, 10)}}); st != http.StatusConflict || pagesAPI(t, ts, adminAPI) == nil {
		t.Fatalf("deleting the admin API: %d", st)
	}
	if st, _ := pc.get("/console/api/" + url.PathEscape("https://nothing.example.com")); st != http.StatusNotFound {
		t.Fatalf("unknown API: %d", st)
	}
}

// An API held by more applications than its pages name: they show the
// first 100 and count the others, and the confirmation (a count and a
// fingerprint, not one field per application) still deletes it.
func TestConsoleAPIManyHolders(t *testing.T) {
	f := newIntrospectFixture(t)
	ts := f.ts
	pc := pagesSignIn(t, ts)
	const id = "https://crowded.example.com"
	path := "/console/api/" + url.PathEscape(id)
	ts.createAPI(id, 0, "crowd:read")
	const n = 103
	for i := range n {
		ts.createClient(admin.ClientInput{Name: "Holder " + strconv.Itoa(i), Grants: []admin.GrantInput{{Audience: id, Scopes: []string{"crowd:read"}}}})
	}
	holders := func(page, list string) int {
		i := strings.Index(page, `id="`+list+`"`)
		if i < 0 {
			return -1
		}
		return strings.Count(page[i:i+strings.Index(page[i:], "</ul>")], "<li>")
	}

	st, page := pc.get(path)
	if st != http.StatusOK || holders(page, "holders") != 100 || pageText(page, "holders-more") != "and 3 more (103 in all)." {
		t.Fatalf("API page: %d, %d named, %q", st, holders(page, "holders"), pageText(page, "holders-more"))
	}
	st, page = pc.get(path + "/delete")
	if st != http.StatusOK || holders(page, "affected") != 100 || pageText(page, "affected-more") != "and 3 more." ||
		!strings.Contains(page, "<strong>103 applications hold a grant for it.</strong>") {
		t.Fatalf("confirmation: %d, %d named, %q", st, holders(page, "affected"), pageText(page, "affected-more"))
	}
	confirm := deleteConfirmation(t, page)
	form := page[strings.Index(page, `action="`+path+`/delete"`):]
	form = form[:strings.Index(form, "</form>")]
	if confirm.Get("holders") != "103" || strings.Count(form, `type="hidden"`) != 5 { // CSRF, environment, version, count, fingerprint
		t.Fatalf("confirmation form: %v\n%s", confirm, form)
	}
	// A forged fingerprint is not taken for the real set.
	forged := deleteConfirmation(t, page)
	forged.Set("holders_fingerprint", strings.Repeat("0", 64))
	if st, _, _ := pc.post(path+"/delete", forged); st != http.StatusConflict || pagesAPI(t, ts, id) == nil {
		t.Fatalf("forged fingerprint: %d", st)
	}
	st, _, final := pc.post(path+"/delete", confirm)
	if st != http.StatusOK || final.Query().Get("done") != "api-deleted" || pagesAPI(t, ts, id) != nil {
		t.Fatalf("delete: %d at %s", st, final)
	}
}

// The application form lists at most 2,000 APIs; editing an application
// granted one past them keeps its box, its grant and its introspection
// permission, and the form says the listing is cut.
func TestConsoleAppFormPastTheAPIListing(t *testing.T) {
	ts := startServer(t, testConfig(t))
	pc := pagesSignIn(t, ts)
	// Written to the store directly: 2,000 creations through the admin API
	// would take most of the test's time.
	ctx := t.Context()
	now := time.Now()
	for i := range 2000 {
		id := fmt.Sprintf("https://api-%04d.example.com", i)
		if err := ts.srv.store.CreateAPI(ctx, store.API{ID: fmt.Sprintf("api_filler%04d", i), Identifier: id, Name: "Filler",
			Scopes: []string{"read"}, ScopeDescriptions: map[string]string{}, Version: 1, CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	const far = "https://zz-last.example.com"
	ts.createAPI(far, 0, "far:read", "far:write")
	appID, _ := ts.createClient(admin.ClientInput{Name: "Far reacher", Grants: []admin.GrantInput{{Audience: far, Scopes: []string{"far:read"}}},
		Introspect: []string{far}})

	path := "/console/app/" + url.PathEscape(appID) + "/edit"
	st, page := pc.get(path)
	if st != http.StatusOK || !strings.Contains(pageText(page, "apis-truncated"), "more APIs than this form lists") ||
		!strings.Contains(page, `name="grant" value="`+far+`" checked`) || !strings.Contains(page, `name="scope:`+far+`" value="far:read" checked`) ||
		!strings.Contains(page, `name="introspect" value="`+far+`" checked`) {
		t.Fatalf("edit form: %d %q", st, pageText(page, "apis-truncated"))
	}
	// Saved as shown (the browser posts the ticked boxes), with a new
	// name: the grant and the introspection permission stay.
	form := url.Values{"version": {pageField(t, page, "version")}, "name": {"Far reacher 2"}, "auth_method": {admin.AuthSecretBasic},
		"grant": {far}, "scope:" + far: {"far:read"}, "introspect": {far}, "fed_rows": {"2"}}
	st, _, final := pc.post(path, form)
	if st != http.StatusOK || final.Query().Get("done") != "app-updated" {
		t.Fatalf("save: %d at %s", st, final)
	}
	c, _ := ts.client(appID)
	if c.Name != "Far reacher 2" || len(c.Grants) != 1 || c.Grants[0].Audience != far || strings.Join(c.Introspect, " ") != far {
		t.Fatalf("saved client: %+v", c)
	}
	// The new-application form says the listing is cut too.
	if _, page := pc.get("/console/apps/new"); !strings.Contains(pageText(page, "apis-truncated"), "the first 2000") {
		t.Fatalf("new form: %q", pageText(page, "apis-truncated"))
	}
}

// The application form and page carry the RFC 8705 and RFC 9449
// metadata: the two certificate methods, the certificate subject (its kind
// and value, with the service's refusal shown next to the field), and the
// token binding switches.
func TestConsoleAppTLSClient(t *testing.T) {
	ts := startServer(t, testConfig(t))
	pc := pagesSignIn(t, ts)
	ts.createAPI(ordersAPI, 0, "orders:read")

	_, page := pc.get("/console/apps/new")
	for _, want := range []string{`id="auth-tls" name="auth_method" value="tls_client_auth"`, `id="auth-selfsigned" name="auth_method" value="self_signed_tls_client_auth"`,
		`<select id="tls_subject_kind" name="tls_subject_kind">`, `<option value="uri">`, `id="tls_subject" name="tls_subject" value=""`,
		`id="cert_bound" name="cert_bound" value="1">`, `id="dpop_bound" name="dpop_bound" value="1">`} {
		if !strings.Contains(page, want) {
			t.Errorf("new form lacks %s", want)
		}
	}
	create := func(subject string) url.Values {
		return url.Values{"nonce": {pageField(t, page, "nonce")}, "name": {"Payments"}, "auth_method": {admin.AuthTLSClient},
			"tls_subject_kind": {store.TLSSubjectDN}, "tls_subject": {subject}, "cert_bound": {"1"}, "dpop_bound": {"1"},
			"grant": {ordersAPI}, "scope:" + ordersAPI: {"orders:read"}, "fed_rows": {"2"}}
	}
	st, page, _ := pc.post("/console/apps", create("CN=payments, O=Acme"))
	if st != http.StatusBadRequest || !strings.Contains(fieldError(page, "tls_subject"), "The certificate subject is not an RFC 4514 distinguished name") {
		t.Fatalf("a DN with a space: %d %q", st, fieldError(page, "tls_subject"))
	}
	// The form shown again keeps what was typed, the kind and the switches.
	if pageField(t, page, "tls_subject") != "CN=payments, O=Acme" || !strings.Contains(page, `<option value="dn" selected>`) ||
		!strings.Contains(page, `name="cert_bound" value="1" checked`) || !strings.Contains(page, `name="dpop_bound" value="1" checked`) {
		t.Fatal("the refused form lost what was typed")
	}
	st, page, _ = pc.post("/console/apps", create("CN=payments,O=Acme"))
	if st != http.StatusCreated || !strings.Contains(page, "Payments") {
		t.Fatalf("create: %d", st)
	}
	resp, body := ts.adminDo(http.MethodGet, "/admin/v1/clients?name=Payments", nil)
	var list admin.ListResponse[admin.ClientResource]
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Items) != 1 {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	c := list.Items[0]
	if c.TokenEndpointAuthMethod != admin.AuthTLSClient || c.TLSClientAuthSubjectDN != "CN=payments,O=Acme" || !c.TLSClientCertificateBoundAccessTokens ||
		!c.DPoPBoundAccessTokens || len(c.Secrets) != 0 {
		t.Fatalf("created %+v", c)
	}

	// The application page shows the method, the subject and the binding.
	_, page = pc.get("/console/app/" + url.PathEscape(c.ClientID))
	if got := pageText(page, "tls-subject"); got != "Subject distinguished name: CN=payments,O=Acme" {
		t.Errorf("subject shown as %q", got)
	}
	if got := pageText(page, "token-binding"); got != "bound to its TLS client certificate (RFC 8705); DPoP required (RFC 9449)" {
		t.Errorf("binding shown as %q", got)
	}
	if !strings.Contains(page, "Certificate (tls_client_auth)") {
		t.Error("the method is not named")
	}

	// The edit form starts from the client; a subject of another kind
	// replaces the DN, and unticking a switch turns it off.
	path := "/console/app/" + url.PathEscape(c.ClientID) + "/edit"
	_, page = pc.get(path)
	if pageField(t, page, "tls_subject") != "CN=payments,O=Acme" || !strings.Contains(page, `<option value="dn" selected>`) ||
		!strings.Contains(page, `id="auth-tls" name="auth_method" value="tls_client_auth" checked`) || !strings.Contains(page, `name="dpop_bound" value="1" checked`) {
		t.Fatal("the edit form does not show the client's settings")
	}
	edit := func(method, kind, subject string) url.Values {
		return url.Values{"version": {pageField(t, page, "version")}, "name": {"Payments"}, "auth_method": {method},
			"tls_subject_kind": {kind}, "tls_subject": {subject}, "cert_bound": {"1"},
			"grant": {ordersAPI}, "scope:" + ordersAPI: {"orders:read"}, "fed_rows": {"2"}}
	}
	if st, page, _ := pc.post(path, edit(admin.AuthTLSClient, store.TLSSubjectIP, "192.0.2.300")); st != http.StatusBadRequest ||
		!strings.Contains(fieldError(page, "tls_subject"), "IPv4 or IPv6") {
		t.Fatalf("bad IP: %d %q", st, fieldError(page, "tls_subject"))
	}
	if st, page, _ := pc.post(path, edit(admin.AuthTLSClient, store.TLSSubjectIP, "")); st != http.StatusBadRequest ||
		!strings.Contains(fieldError(page, "tls_subject"), "needs the subject") {
		t.Fatalf("no subject: %d %q", st, fieldError(page, "tls_subject"))
	}
	if st, _, final := pc.post(path, edit(admin.AuthTLSClient, store.TLSSubjectURI, "spiffe://example.org/payments")); st != http.StatusOK || final.Query().Get("done") != "app-updated" {
		t.Fatalf("save: %d at %s", st, final)
	}
	if c, _ := ts.client(c.ClientID); c.TLSClientAuthSANURI != "spiffe://example.org/payments" || c.TLSClientAuthSubjectDN != "" ||
		!c.TLSClientCertificateBoundAccessTokens || c.DPoPBoundAccessTokens {
		t.Fatalf("saved %+v", c)
	}
	// Another method drops the subject its hidden fields still hold; a
	// self-signed certificate needs the keys, as a key does.
	_, page = pc.get(path)
	if st, page, _ := pc.post(path, edit(admin.AuthSelfSignedTLSClient, store.TLSSubjectURI, "spiffe://example.org/payments")); st != http.StatusBadRequest ||
		!strings.Contains(fieldError(page, "jwks"), "needs its public keys") || fieldError(page, "tls_subject") != "" {
		t.Fatalf("self-signed without keys: %d %q %q", st, fieldError(page, "jwks"), fieldError(page, "tls_subject"))
	}
	form := edit(admin.AuthSelfSignedTLSClient, store.TLSSubjectURI, "spiffe://example.org/payments")
	form.Set("jwks_uri", "https://payments.example/jwks")
	if st, _, final := pc.post(path, form); st != http.StatusOK || final.Query().Get("done") != "app-updated" {
		t.Fatalf("save: %d at %s", st, final)
	}
	if c, _ := ts.client(c.ClientID); c.TokenEndpointAuthMethod != admin.AuthSelfSignedTLSClient || c.TLSClientAuthSANURI != "" {
		t.Fatalf("saved %+v", c)
	}
	_, page = pc.get("/console/app/" + url.PathEscape(c.ClientID))
	if pageText(page, "tls-subject") != "" || pageText(page, "token-binding") != "bound to its TLS client certificate (RFC 8705)" {
		t.Errorf("page after the switch: %q %q", pageText(page, "tls-subject"), pageText(page, "token-binding"))
	}
}
