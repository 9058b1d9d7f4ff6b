package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

func (ts *testServer) rotate(id string, body any, headers ...string) (int, admin.ClientResource) {
	ts.t.Helper()
	resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/secrets", body, headers...)
	var c admin.ClientResource
	_ = json.Unmarshal(b, &c)
	return resp.StatusCode, c
}

func secretByID(c admin.ClientResource, id string) admin.SecretResource {
	for _, s := range c.Secrets {
		if s.ID == id {
			return s
		}
	}
	return admin.SecretResource{}
}

// Rotation with a grace period: both secrets work until the grace ends,
// then only the new one; last_used_at shows which secret a caller uses.
func TestRotateSecretWithGrace(t *testing.T) {
	clock := newFakeClock()
	ts := startServerClock(t, testConfig(t), clock.Now)
	id, oldSecret := setupOrders(ts)
	before, _ := ts.client(id)
	oldID := before.Secrets[0].ID

	status, c := ts.rotate(id, map[string]any{"grace_seconds": 3600})
	if status != http.StatusCreated || c.ClientSecret == "" || c.SecretID == "" || c.ClientSecret == oldSecret {
		t.Fatalf("rotate: %d %+v", status, c)
	}
	newSecret, newID := c.ClientSecret, c.SecretID
	if s := secretByID(c, oldID); s.Status != "expiring" || s.ExpiresAt == nil || !s.ExpiresAt.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("old secret after rotation: %+v", s)
	}

	// Only the old secret is used for a while.
	clock.Advance(10 * time.Minute)
	usedAt := clock.Now()
	for _, sec := range []string{oldSecret, newSecret} {
		if st, code := ts.tokenStatus(id, sec, url.Values{}); st != 200 {
			t.Fatalf("during grace: %d %s", st, code)
		}
		if sec == oldSecret {
			clock.Advance(time.Minute)
		}
	}
	after, _ := ts.client(id)
	if s := secretByID(after, oldID); s.LastUsedAt == nil || !s.LastUsedAt.Equal(usedAt) {
		t.Errorf("old secret last_used_at = %v, want %v", s.LastUsedAt, usedAt)
	}
	if s := secretByID(after, newID); s.LastUsedAt == nil || !s.LastUsedAt.Equal(usedAt.Add(time.Minute)) {
		t.Errorf("new secret last_used_at = %v, want %v", s.LastUsedAt, usedAt.Add(time.Minute))
	}

	// A second rotation while the old secret is in its grace: refused.
	if st, _ := ts.rotate(id, nil); st != http.StatusConflict {
		t.Errorf("rotation during grace: %d, want 409", st)
	}

	// The grace ends at its instant.
	clock.Advance(time.Hour - 11*time.Minute - time.Second)
	ts.login()
	if st, _ := ts.tokenStatus(id, oldSecret, url.Values{}); st != 200 {
		t.Errorf("old secret one second before the end of grace: %d", st)
	}
	clock.Advance(time.Second)
	ts.login()
	if st, code := ts.tokenStatus(id, oldSecret, url.Values{}); st != 401 || code != "invalid_client" {
		t.Errorf("old secret after grace: %d %s", st, code)
	}
	if st, _ := ts.tokenStatus(id, newSecret, url.Values{}); st != 200 {
		t.Errorf("new secret after grace: %d", st)
	}
	if s := secretByID(func() admin.ClientResource { c, _ := ts.client(id); return c }(), oldID); s.Status != "expired" {
		t.Errorf("old secret status %q, want expired", s.Status)
	}

	// --grace 0: the previous secret stops at once; default body: 24 h.
	status, c = ts.rotate(id, map[string]any{"grace_seconds": 0})
	if status != http.StatusCreated {
		t.Fatalf("rotate with grace 0: %d", status)
	}
	if st, _ := ts.tokenStatus(id, newSecret, url.Values{}); st != 401 {
		t.Errorf("secret rotated out with grace 0 still works: %d", st)
	}
	third := c.ClientSecret
	status, c = ts.rotate(id, nil)
	if status != http.StatusCreated || !secretByID(c, secretIDOf(c, third)).ExpiresAt.Equal(clock.Now().Add(24*time.Hour)) {
		t.Errorf("default grace is not 24h: %d %+v", status, c.Secrets)
	}
	if st, _ := ts.rotate(id, map[string]any{"grace_seconds": -1}); st != http.StatusBadRequest {
		t.Errorf("negative grace: %d", st)
	}
}

func secretIDOf(c admin.ClientResource, plain string) string {
	for _, s := range c.Secrets {
		if strings.HasPrefix(plain, s.Hint) && s.Status != "expired" && s.ID != c.SecretID {
			return s.ID
		}
	}
	return ""
}

// 64 concurrent rotations of one client: exactly one succeeds, the others
// get 409 (or 412 with a stale If-Match), and the one secret returned
// authenticates.
func TestConcurrentRotations(t *testing.T) {
	for _, withIfMatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("if-match=%v", withIfMatch), func(t *testing.T) {
			ts := startServer(t, testConfig(t))
			id, _ := setupOrders(ts)
			_, etag := ts.client(id)
			const n = 64
			var wg sync.WaitGroup
			var mu sync.Mutex
			counts := map[int]int{}
			var secrets []string
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var headers []string
					if withIfMatch {
						headers = []string{"If-Match", etag}
					}
					resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/secrets", nil, headers...)
					var c admin.ClientResource
					_ = json.Unmarshal(b, &c)
					mu.Lock()
					defer mu.Unlock()
					counts[resp.StatusCode]++
					if c.ClientSecret != "" {
						secrets = append(secrets, c.ClientSecret)
					}
				}()
			}
			wg.Wait()
			if counts[201] != 1 || counts[409]+counts[412] != n-1 || len(secrets) != 1 {
				t.Fatalf("statuses %v, %d secrets returned; want one 201 and %d 409/412", counts, len(secrets), n-1)
			}
			if st, code := ts.tokenStatus(id, secrets[0], url.Values{}); st != 200 {
				t.Fatalf("the returned secret does not authenticate: %d %s", st, code)
			}
			if c, _ := ts.client(id); len(c.Secrets) != 2 {
				t.Fatalf("%d secrets stored, want 2", len(c.Secrets))
			}
		})
	}
}

func TestDisableEnableAndRevoke(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	patch := func(body string) int {
		resp, b := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, body)
		if resp.StatusCode != 200 {
			t.Logf("PATCH %s: %s", body, b)
		}
		return resp.StatusCode
	}
	if patch(`{"disabled":true}`) != 200 {
		t.Fatal("disable failed")
	}
	if st, code := ts.tokenStatus(id, secret, url.Values{}); st != 401 || code != "invalid_client" {
		t.Fatalf("disabled client: %d %s", st, code)
	}
	if patch(`{"disabled":false}`) != 200 {
		t.Fatal("enable failed")
	}
	if st, _ := ts.tokenStatus(id, secret, url.Values{}); st != 200 {
		t.Fatalf("re-enabled client: %d", st)
	}
	c, _ := ts.client(id)
	resp, _ := ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+id+"/secrets/"+c.Secrets[0].ID, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if st, _ := ts.tokenStatus(id, secret, url.Values{}); st != 401 {
		t.Fatalf("revoked secret still works: %d", st)
	}
	if resp, _ := ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+id+"/secrets/sec_nope", nil); resp.StatusCode != 404 {
		t.Fatalf("revoke unknown secret: %d", resp.StatusCode)
	}
}

func TestPatchPutAndPreconditions(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	c, etag := ts.client(id)
	if etag != fmt.Sprintf(`"%d"`, c.Version) {
		t.Fatalf("ETag %q for version %d", etag, c.Version)
	}
	resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"description":"d1","metadata":{"team":"billing"}}`, "If-Match", etag)
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == etag {
		t.Fatalf("PATCH with current ETag: %d %s", resp.StatusCode, body)
	}
	// The old ETag is now stale.
	if resp, _ := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"name":"x"}`, "If-Match", etag); resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("PATCH with a stale ETag: %d, want 412", resp.StatusCode)
	}
	if resp, _ := ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+id, nil, "If-Match", etag); resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("DELETE with a stale ETag: %d, want 412", resp.StatusCode)
	}
	// null clears a field (RFC 7396); unknown fields are refused.
	if resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"description":null}`); resp.StatusCode != 200 || strings.Contains(string(body), `"d1"`) {
		t.Fatalf("PATCH null: %d %s", resp.StatusCode, body)
	}
	if resp, _ := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"client_secret":"x"}`); resp.StatusCode != 400 {
		t.Fatalf("PATCH unknown field: %d", resp.StatusCode)
	}
	// PUT replaces every mutable field: grants left out are removed.
	put := admin.ClientInput{Name: "replaced", Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:write"}}}}
	resp, body = ts.adminDo(http.MethodPut, "/admin/v1/clients/"+id, put)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	var got admin.ClientResource
	_ = json.Unmarshal(body, &got)
	if got.Name != "replaced" || got.DefaultAudience != "" || len(got.Metadata) != 0 || len(got.Grants) != 1 || got.Grants[0].Scopes[0] != "orders:write" {
		t.Fatalf("after PUT: %+v", got)
	}
	if st, code := ts.tokenStatus(id, secret, url.Values{"scope": {"orders:read"}}); st != 400 || code != "invalid_scope" {
		t.Fatalf("a grant removed by PUT still works: %d %s", st, code)
	}
	// Validation names the field.
	resp, body = ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"default_audience":"https://elsewhere"}`)
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"field": "default_audience"`) {
		t.Fatalf("bad default audience: %d %s", resp.StatusCode, body)
	}
}

func TestCustomClaims(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"custom_claims":{"tenant":"acme","iss":"https://evil"}}`)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "custom_claims") {
		t.Fatalf("registered claim accepted: %d %s", resp.StatusCode, body)
	}
	if resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"custom_claims":{"tenant":"acme","tier":2,"features":["a","b"]}}`); resp.StatusCode != 200 {
		t.Fatalf("custom claims: %d %s", resp.StatusCode, body)
	}
	c := ts.verifyToken(ts.mustToken(id, secret, url.Values{})).claims
	if c["tenant"] != "acme" || c["tier"] != float64(2) || c["iss"] != ts.cfg.Issuer || c["sub"] != id {
		t.Fatalf("claims %v", c)
	}
}

func TestImportClient(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read")
	const legacyID, legacySecret = "NmN78x6DMfde1XRx9hQg", "480nulBeBGqJDoAOADC0CW2frGTDVEmq"
	in := admin.ClientInput{ClientID: legacyID, ClientSecret: legacySecret, Name: "legacy",
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}}
	resp, body := ts.adminDo(http.MethodPost, "/admin/v1/clients", in)
	if resp.StatusCode != 201 || strings.Contains(string(body), legacySecret) {
		t.Fatalf("import: %d %s", resp.StatusCode, body)
	}
	if st, code := ts.tokenStatus(legacyID, legacySecret, url.Values{}); st != 200 {
		t.Fatalf("imported credentials: %d %s", st, code)
	}
	if resp, _ := ts.adminDo(http.MethodPost, "/admin/v1/clients", in); resp.StatusCode != 409 {
		t.Fatalf("importing the same id again: %d", resp.StatusCode)
	}
	if resp, _ := ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+legacyID, nil); resp.StatusCode != 204 {
		t.Fatal("delete")
	}
	if resp, _ := ts.adminDo(http.MethodPost, "/admin/v1/clients", in); resp.StatusCode != 409 {
		t.Fatalf("re-using a deleted id: %d, want 409", resp.StatusCode)
	}
	short := in
	short.ClientID, short.ClientSecret = "other", "tooshort"
	if resp, body := ts.adminDo(http.MethodPost, "/admin/v1/clients", short); resp.StatusCode != 400 || !strings.Contains(string(body), "client_secret") {
		t.Fatalf("short imported secret: %d %s", resp.StatusCode, body)
	}
}

func TestAPIUpdateAndForcedDelete(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, secret := setupOrders(ts)
	path := "/admin/v1/apis/" + url.PathEscape(ordersAPI)
	if st, _ := ts.tokenStatus(id, secret, url.Values{"scope": {"orders:write"}}); st != 200 {
		t.Fatal("setup")
	}
	resp, body := ts.adminDo(http.MethodPatch, path, `{"scopes":["orders:read"],"token_lifetime_seconds":600}`)
	if resp.StatusCode != 200 {
		t.Fatalf("PATCH API: %d %s", resp.StatusCode, body)
	}
	// Removing the scope removed it from the grant, at once.
	if st, code := ts.tokenStatus(id, secret, url.Values{"scope": {"orders:write"}}); st != 400 || code != "invalid_scope" {
		t.Fatalf("removed scope still granted: %d %s", st, code)
	}
	c, _ := ts.client(id)
	if len(c.Grants) != 1 || strings.Join(c.Grants[0].Scopes, " ") != "orders:read" {
		t.Fatalf("grant after scope removal: %+v", c.Grants)
	}
	var tr tokenResp
	_, b := ts.tokenForm(id, secret, url.Values{})
	_ = json.Unmarshal(b, &tr)
	if tr.ExpiresIn != 600 {
		t.Fatalf("the API's new lifetime does not apply: %d", tr.ExpiresIn)
	}
	if resp, _ := ts.adminDo(http.MethodDelete, path, nil); resp.StatusCode != 409 {
		t.Fatalf("delete granted API: %d", resp.StatusCode)
	}
	if resp, _ := ts.adminDo(http.MethodDelete, path+"?force=true", nil); resp.StatusCode != 204 {
		t.Fatalf("forced delete: %d", resp.StatusCode)
	}
	if st, code := ts.tokenStatus(id, secret, url.Values{}); st != 400 || code != "invalid_target" {
		t.Fatalf("token for a deleted API: %d %s", st, code)
	}
	adminPath := "/admin/v1/apis/" + url.PathEscape(ts.cfg.AdminAudience())
	if resp, _ := ts.adminDo(http.MethodPatch, adminPath, `{"scopes":[]}`); resp.StatusCode != 409 {
		t.Fatalf("changing the admin API: %d", resp.StatusCode)
	}
}

func TestPagination(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read")
	for i := range 5 {
		in := admin.ClientInput{Name: fmt.Sprintf("svc-%d", i)}
		if i%2 == 0 {
			in.Grants = []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
		}
		ts.createClient(in)
	}
	list := func(q string) admin.ListResponse[admin.ClientResource] {
		resp, body := ts.adminDo(http.MethodGet, "/admin/v1/clients?"+q, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("list %s: %d %s", q, resp.StatusCode, body)
		}
		var l admin.ListResponse[admin.ClientResource]
		_ = json.Unmarshal(body, &l)
		return l
	}
	var seen []string
	q := "limit=2"
	for pages := 0; ; pages++ {
		l := list(q)
		for _, c := range l.Items {
			seen = append(seen, c.ClientID)
		}
		if l.NextCursor == "" {
			if pages != 2 {
				t.Errorf("%d pages for 6 clients at 2 a page", pages+1)
			}
			break
		}
		q = "limit=2&cursor=" + l.NextCursor
	}
	if len(seen) != 6 { // 5 + the bootstrap admin
		t.Fatalf("paged through %d clients, want 6", len(seen))
	}
	if l := list("name=SVC-&audience=" + url.QueryEscape(ordersAPI)); len(l.Items) != 3 {
		t.Fatalf("filtered: %d, want 3", len(l.Items))
	}
	for _, bad := range []string{"limit=0", "limit=x", "cursor=!!!"} {
		if resp, _ := ts.adminDo(http.MethodGet, "/admin/v1/clients?"+bad, nil); resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

// A secret may be given a lifetime, on creation or on rotation: it stops
// authenticating when it ends.
func TestSecretLifetime(t *testing.T) {
	clock := newFakeClock()
	ts := startServerClock(t, testConfig(t), clock.Now)
	ts.createAPI(ordersAPI, 0, "orders:read")
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	id, sec := ts.createClient(admin.ClientInput{Grants: grants, DefaultAudience: ordersAPI, SecretLifetimeSeconds: 2 * 3600})
	c, etag := ts.client(id)
	if got := c.Secrets[0].ExpiresAt; got == nil || !got.Equal(clock.Now().Add(2*time.Hour)) {
		t.Fatalf("secret expires at %v, want %v", got, clock.Now().Add(2*time.Hour))
	}
	if st, _ := ts.tokenStatus(id, sec, url.Values{}); st != http.StatusOK {
		t.Fatalf("fresh secret: %d", st)
	}
	// A rotation gives the new secret its own lifetime, longer than the
	// grace.
	for _, body := range []string{`{"grace_seconds":3600,"secret_lifetime_seconds":3600}`, `{"secret_lifetime_seconds":59}`} {
		if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/secrets", body, "If-Match", etag); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "secret_lifetime_seconds") {
			t.Fatalf("rotate %s: %d %s", body, resp.StatusCode, b)
		}
	}
	resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/secrets", `{"grace_seconds":0,"secret_lifetime_seconds":7200}`, "If-Match", etag)
	var rotated admin.ClientResource
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &rotated) != nil {
		t.Fatalf("rotate: %d %s", resp.StatusCode, b)
	}
	clock.Advance(2*time.Hour - time.Second)
	ts.login()
	if st, _ := ts.tokenStatus(id, rotated.ClientSecret, url.Values{}); st != http.StatusOK {
		t.Fatalf("rotated secret before its end: %d", st)
	}
	clock.Advance(time.Second)
	if st, _ := ts.tokenStatus(id, rotated.ClientSecret, url.Values{}); st != http.StatusUnauthorized {
		t.Fatalf("rotated secret at its end: %d, want 401", st)
	}
	// Out-of-range lifetimes, and a lifetime where it cannot apply.
	for _, in := range []string{
		`{"name":"x","secret_lifetime_seconds":10}`,
		`{"name":"x","secret_lifetime_seconds":999999999}`,
		`{"name":"x","token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://keys.example.com/jwks.json","secret_lifetime_seconds":7200}`,
	} {
		if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients", in); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "secret_lifetime_seconds") {
			t.Errorf("create %s: %d %s", in, resp.StatusCode, b)
		}
	}
	if resp, b := ts.adminDo(http.MethodPut, "/admin/v1/clients/"+id, `{"name":"x","grants":[],"secret_lifetime_seconds":7200}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("PUT with a secret lifetime: %d %s", resp.StatusCode, b)
	}
}
