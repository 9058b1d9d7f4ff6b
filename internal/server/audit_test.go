package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// auditPage lists the audit trail through the admin API.
func (ts *testServer) auditPage(query string) []admin.AuditEventResource {
	ts.t.Helper()
	resp, body := ts.adminDo(http.MethodGet, "/admin/v1/audit?"+query, nil)
	if resp.StatusCode != http.StatusOK {
		ts.t.Fatalf("list audit: %d %s", resp.StatusCode, body)
	}
	var page admin.ListResponse[admin.AuditEventResource]
	if err := json.Unmarshal(body, &page); err != nil {
		ts.t.Fatal(err)
	}
	return page.Items
}

// TestAuditEveryAdminAction: every management action through the admin
// API makes exactly one audit event, with the caller as actor, its
// address, the action and the target; token issuances and failed
// authentications are events too; and no event, stored or streamed to a
// sink, holds a secret, a token or an Authorization header's value.
func TestAuditEveryAdminAction(t *testing.T) {
	cfg := testConfig(t)
	sinkFile := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg.AuditSinks = []string{"file:" + sinkFile}
	ts := startServer(t, cfg)
	const planted = "planted-secret-0123456789-abcdefghijklmnop"
	const typed = "typed-wrong-secret-0123456789-abcdefghijk"
	secrets := []string{planted, typed, ts.token, ts.admin.ClientSecret}

	// The first start's signing key is the lifecycle's: the system's.
	first := ts.auditPage("kind=admin")
	if len(first) != 1 || first[0].Action != "key.create" || first[0].Actor != "system" {
		t.Fatalf("events of the first start = %+v, want key.create by system", first)
	}
	last := first[0].ID // the id of the newest admin event seen
	step := func(name, action, targetType, targetID string, do func()) {
		t.Helper()
		do()
		evs := ts.auditPage("kind=admin&after=" + last)
		if len(evs) != 1 {
			t.Fatalf("%s: %d new admin events, want exactly 1: %+v", name, len(evs), evs)
		}
		e := evs[0]
		if e.Action != action || e.Target == nil || e.Target.Type != targetType || (targetID != "" && e.Target.ID != targetID) {
			t.Errorf("%s: event %s %+v, want %s %s %s", name, e.Action, e.Target, action, targetType, targetID)
		}
		if e.Actor != ts.admin.ClientID || e.SourceIP != "127.0.0.1" || e.Kind != "admin" || e.Env != "default" {
			t.Errorf("%s: actor %q from %q (%s in %s), want %q from 127.0.0.1", name, e.Actor, e.SourceIP, e.Kind, e.Env, ts.admin.ClientID)
		}
		last = e.ID
	}
	must := func(want int, method, path string, in any, headers ...string) []byte {
		t.Helper()
		resp, body := ts.adminDo(method, path, in, headers...)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
		}
		return body
	}
	const orders = "https://orders.example"
	step("create API", "api.create", "api", orders, func() {
		must(201, http.MethodPost, "/admin/v1/apis", admin.APIInput{Identifier: orders, Name: "Orders", Scopes: []string{"orders:read", "orders:write"}})
	})
	step("update API", "api.update", "api", orders, func() {
		must(200, http.MethodPatch, "/admin/v1/apis/"+url.PathEscape(orders), `{"name":"Orders v2"}`)
	})
	grants := []admin.GrantInput{{Audience: orders, Scopes: []string{"orders:read"}}}
	step("import client", "client.import", "client", "svc-planted", func() {
		must(201, http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "svc-planted", ClientSecret: planted, Name: "planted", Grants: grants})
	})
	var created admin.ClientResource
	step("create client", "client.create", "client", "", func() {
		_ = json.Unmarshal(must(201, http.MethodPost, "/admin/v1/clients", admin.ClientInput{Name: "generated", Grants: grants}), &created)
	})
	secrets = append(secrets, created.ClientSecret)
	step("update client", "client.update", "client", created.ClientID, func() {
		must(200, http.MethodPatch, "/admin/v1/clients/"+created.ClientID, `{"description":"changed","metadata":{"owner":"`+planted+`"},"quota":{"per_minute":10},"token_reuse_min_remaining":0.5}`)
	})
	// The quota and token reuse are in the diff like every other field.
	if evs := ts.auditPage("action=client.update"); len(evs) != 1 ||
		!strings.Contains(compactJSON(evs[0].Diff), `"quota_per_minute":{"before":0,"after":10}`) ||
		!strings.Contains(compactJSON(evs[0].Diff), `"token_reuse_min_remaining":{"before":0,"after":0.5}`) {
		t.Errorf("client.update diff: %+v", evs)
	}
	var rotated admin.ClientResource
	step("rotate secret", "client.secret.rotate", "client", created.ClientID, func() {
		_ = json.Unmarshal(must(201, http.MethodPost, "/admin/v1/clients/"+created.ClientID+"/secrets", map[string]any{"grace_seconds": 3600}), &rotated)
	})
	secrets = append(secrets, rotated.ClientSecret)
	step("revoke secret", "client.secret.revoke", "client", created.ClientID, func() {
		must(200, http.MethodDelete, "/admin/v1/clients/"+created.ClientID+"/secrets/"+secretIDOf(rotated, created.ClientSecret), nil)
	})
	// Token events: one issuance, one failed authentication (with what
	// the caller typed, which must appear nowhere).
	token := ts.mustToken("svc-planted", planted, url.Values{"audience": {orders}})
	secrets = append(secrets, token)
	if code, _ := ts.tokenStatus("svc-planted", typed, url.Values{}); code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", code)
	}
	step("revoke token", "revocation.add", "token", "", func() {
		must(200, http.MethodPost, "/admin/v1/revocations", admin.RevokeRequest{Token: token})
	})
	var next admin.KeyResource
	step("rotate key", "key.rotate", "key", "", func() {
		_ = json.Unmarshal(must(202, http.MethodPost, "/admin/v1/keys/rotate", nil), &next)
	})
	step("revoke key", "key.revoke", "key", next.KID, func() {
		must(200, http.MethodPost, "/admin/v1/keys/"+next.KID+"/revoke", nil)
	})
	step("create trust policy", "trust.create", "trust_policy", "k8s", func() {
		must(201, http.MethodPost, "/admin/v1/trust-policies", admin.TrustPolicyInput{Name: "k8s", Kind: "jwt", Issuer: "https://k8s.example",
			JWKSURI: "https://k8s.example/openid/v1/jwks"})
	})
	step("delete trust policy", "trust.delete", "trust_policy", "k8s", func() {
		must(204, http.MethodDelete, "/admin/v1/trust-policies/k8s", nil)
	})
	step("create environment", "environment.create", "environment", "staging", func() {
		must(201, http.MethodPost, "/admin/v1/environments", admin.EnvironmentInput{Name: "staging", DisplayName: "Staging"})
	})
	step("rename environment", "environment.update", "environment", "staging", func() {
		must(200, http.MethodPatch, "/admin/v1/environments/staging", `{"display_name":"Staging 2"}`)
	})
	step("delete environment", "environment.delete", "environment", "staging", func() {
		var d admin.EnvironmentDeletionResponse
		_ = json.Unmarshal(must(200, http.MethodPost, "/admin/v1/environments/staging/deletion", nil), &d)
		must(204, http.MethodDelete, "/admin/v1/environments/staging?confirmation="+url.QueryEscape(d.Confirmation), nil)
	})
	step("revoke client tokens", "client.tokens.revoke", "client", created.ClientID, func() {
		must(200, http.MethodPost, "/admin/v1/clients/"+created.ClientID+"/revoke-tokens", nil)
	})
	step("delete client", "client.delete", "client", created.ClientID, func() {
		must(204, http.MethodDelete, "/admin/v1/clients/"+created.ClientID, nil)
	})
	step("delete API", "api.delete", "api", orders, func() {
		must(204, http.MethodDelete, "/admin/v1/apis/"+url.PathEscape(orders)+"?force=true", nil)
	})

	issued := ts.auditPage("kind=token_issued&client=svc-planted")
	failed := ts.auditPage("kind=auth_failed&client=svc-planted")
	if len(issued) != 1 || issued[0].Action != "token.issue" || issued[0].Actor != "svc-planted" || issued[0].Outcome != "ok" {
		t.Fatalf("issuance events = %+v", issued)
	}
	// The issuance names the token (its jti) and what it grants.
	var claims struct {
		JTI string `json:"jti"`
	}
	parseJWTPayload(t, token, &claims)
	if tg := issued[0].Target; tg == nil || tg.Type != "token" || tg.ID != claims.JTI || claims.JTI == "" ||
		compactJSON(issued[0].Diff) != `{"audience":{"after":["`+orders+`"]},"reused":{"after":false},"scopes":{"after":["orders:read"]}}` {
		t.Errorf("issuance event: target %+v, diff %s (jti %s)", tg, issued[0].Diff, claims.JTI)
	}
	if len(failed) != 1 || failed[0].Outcome != "invalid_client" || failed[0].SourceIP != "127.0.0.1" {
		t.Errorf("failed authentication events = %+v", failed)
	}
	// The client filter finds the client's management events too.
	if evs := ts.auditPage("client=svc-planted&action=client.*"); len(evs) != 1 || evs[0].Action != "client.import" {
		t.Errorf("client=svc-planted&action=client.* = %+v", evs)
	}
	// Paging: a page of 2 and its cursor.
	resp, body := ts.adminDo(http.MethodGet, "/admin/v1/audit?limit=2", nil)
	var page admin.ListResponse[admin.AuditEventResource]
	if resp.StatusCode != 200 || json.Unmarshal(body, &page) != nil || len(page.Items) != 2 || page.NextCursor == "" {
		t.Fatalf("first page: %d %s", resp.StatusCode, body)
	}
	if evs := ts.auditPage("limit=2&cursor=" + page.NextCursor); len(evs) != 2 || evs[0].ID >= page.Items[1].ID {
		t.Errorf("second page = %+v", evs)
	}
	for _, bad := range []string{"kind=nope", "since=yesterday", "cursor=zz", "action=DROP%20TABLE", "limit=0"} {
		if resp, body := ts.adminDo(http.MethodGet, "/admin/v1/audit?"+bad, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", bad, resp.StatusCode, body)
		}
	}

	// Nothing secret anywhere: the stored events (all of them, raw) and
	// what the sink received (once the server has stopped and flushed).
	_, stored := ts.adminDo(http.MethodGet, "/admin/v1/audit?limit=1000", nil)
	ts.stop()
	streamed, err := os.ReadFile(sinkFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(streamed), "\n"); n < 20 {
		t.Errorf("the file sink got %d lines, want every event", n)
	}
	for _, s := range secrets {
		if s == "" {
			t.Fatal("a planted secret is empty")
		}
		for where, text := range map[string]string{"stored": string(stored), "streamed": string(streamed)} {
			if strings.Contains(text, s) {
				t.Errorf("the %s audit events contain a secret (%.8s…)", where, s)
			}
		}
	}
}

// TestConsoleAudit: a change made in the console is an event by
// "console:<client id>", listed and filtered on the console's audit page.
func TestConsoleAudit(t *testing.T) {
	f := newIntrospectFixture(t)
	ts := f.ts
	pc := pagesSignIn(t, ts)
	token := ts.mustToken(f.app.id, f.app.secret, url.Values{"scope": {"orders:read"}})
	if _, _, final := pc.post("/console/revocations", url.Values{"token": {token}}); final.Query().Get("done") != "token-revoked" {
		t.Fatalf("revoke: %s", final)
	}
	evs := ts.auditPage("action=revocation.add")
	if len(evs) != 1 || evs[0].Actor != "console:"+ts.admin.ClientID || evs[0].ClientID != f.app.id || evs[0].SourceIP != "127.0.0.1" {
		t.Fatalf("console revocation events = %+v", evs)
	}
	st, page := pc.get("/console/audit?action=revocation.*")
	if st != http.StatusOK || !strings.Contains(page, "<code>revocation.add</code>") || !strings.Contains(page, "console:"+ts.admin.ClientID) ||
		strings.Contains(page, "<code>token.issue</code>") {
		t.Fatalf("audit page filtered by action: %d\n%s", st, page)
	}
	if st, page := pc.get("/console/audit?kind=token_issued"); st != http.StatusOK || !strings.Contains(page, "<code>token.issue</code>") {
		t.Fatalf("audit page of issuances: %d", st)
	}
	if st, page := pc.get("/console/audit?since=yesterday"); st != http.StatusBadRequest || fieldError(page, "since") == "" {
		t.Fatalf("bad since: %d", st)
	}
	if st, _ := pc.get("/console/audit?after=junk"); st != http.StatusBadRequest {
		t.Fatalf("bad cursor: %d", st)
	}
	if strings.Contains(page, token) {
		t.Fatal("the token is on the audit page")
	}
	// The session itself: the link made through the admin API (by the
	// admin client), the sign-in with it, and the sign-out.
	if evs := ts.auditPage("action=console.link.create"); len(evs) != 1 || evs[0].Actor != ts.admin.ClientID || evs[0].ClientID != ts.admin.ClientID {
		t.Errorf("console.link.create events = %+v", evs)
	}
	if evs := ts.auditPage("action=console.sign_in"); len(evs) != 1 || evs[0].Actor != "console:"+ts.admin.ClientID ||
		evs[0].SourceIP != "127.0.0.1" || !strings.Contains(compactJSON(evs[0].Diff), `"method":{"after":"link"}`) {
		t.Errorf("console.sign_in events = %+v", evs)
	}
	pc.post("/console/sign-out", url.Values{})
	if evs := ts.auditPage("action=console.sign_out"); len(evs) != 1 || evs[0].Actor != "console:"+ts.admin.ClientID {
		t.Errorf("console.sign_out events = %+v", evs)
	}
}

// TestAuditOfDeletedEnvironment: an environment's trail outlives it, but
// a new environment of the same name does not list it.
func TestAuditOfDeletedEnvironment(t *testing.T) {
	ts := startServer(t, testConfig(t))
	must := func(want int, method, path string, in any) []byte {
		t.Helper()
		resp, body := ts.adminDo(method, path, in)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
		}
		return body
	}
	must(201, http.MethodPost, "/admin/v1/environments", admin.EnvironmentInput{Name: "staging", DisplayName: "Staging"})
	must(201, http.MethodPost, "/e/staging/admin/v1/apis", admin.APIInput{Identifier: "https://a.example", Name: "A"})
	list := func() []admin.AuditEventResource {
		var page admin.ListResponse[admin.AuditEventResource]
		_ = json.Unmarshal(must(200, http.MethodGet, "/e/staging/admin/v1/audit?kind=admin&action=api.*", nil), &page)
		return page.Items
	}
	if evs := list(); len(evs) != 1 || evs[0].Actor != "deployment:"+ts.admin.ClientID || evs[0].Env != "staging" {
		t.Fatalf("staging's events = %+v", evs)
	}
	var d admin.EnvironmentDeletionResponse
	_ = json.Unmarshal(must(200, http.MethodPost, "/admin/v1/environments/staging/deletion", nil), &d)
	must(204, http.MethodDelete, "/admin/v1/environments/staging?confirmation="+url.QueryEscape(d.Confirmation), nil)
	must(201, http.MethodPost, "/admin/v1/environments", admin.EnvironmentInput{Name: "staging", DisplayName: "Staging"})
	if evs := list(); len(evs) != 0 {
		t.Errorf("the new staging lists the old one's events: %+v", evs)
	}
	if evs := ts.auditPage("action=environment.*"); len(evs) != 3 {
		t.Errorf("environment events in the default environment = %d, want 3 (create, delete, create)", len(evs))
	}
}

// compactJSON is b without insignificant space.
func compactJSON(b []byte) string {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return string(b)
	}
	return out.String()
}
