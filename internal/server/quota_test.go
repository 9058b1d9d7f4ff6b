package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

// quotaSurfaces are the token endpoints a quota applies to, each with its
// request and the envelope of its 429.
var quotaSurfaces = []struct {
	name    string
	request func(prefix string, c cred) *http.Request
	// refused checks a 429 body in the surface's envelope.
	refused func(body []byte) error
}{
	{"standard", func(prefix string, c cred) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, prefix+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth(c.id, c.secret)
		return r
	}, oauthRefusal},
	{"machine", func(prefix string, c cred) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, prefix+"/v1/oauth/token/machine", strings.NewReader(fmt.Sprintf(`{"apiKey":%q,"secretKey":%q}`, c.id, c.secret)))
		r.Header.Set("Content-Type", "application/json")
		return r
	}, func(body []byte) error {
		var m struct{ Errors []machineErr }
		if err := json.Unmarshal(body, &m); err != nil || len(m.Errors) != 1 || m.Errors[0].I18N != "TOO_MANY_REQUESTS" || m.Errors[0].Type != "TooManyRequests" {
			return fmt.Errorf("not the machine surface's 429 envelope: %s", body)
		}
		return nil
	}},
	{"atm", func(prefix string, c cred) *http.Request {
		r, _ := http.NewRequest(http.MethodPost, prefix+"/auth/token", strings.NewReader(fmt.Sprintf(`{"clientId":%q,"clientSecret":%q,"grant_types":"client_credentials"}`, c.id, c.secret)))
		r.Header.Set("Content-Type", "application/json")
		return r
	}, oauthRefusal},
}

// oauthRefusal checks a 429 in the RFC 6749 §5.2 envelope.
func oauthRefusal(body []byte) error {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m["error"] != "too_many_requests" || m["error_description"] == "" {
		return fmt.Errorf("not an RFC 6749 error object with too_many_requests: %s", body)
	}
	return nil
}

// quotaToken sends one token request on a surface.
func (ts *testServer) quotaToken(surface int, prefix string, c cred) (*http.Response, []byte) {
	ts.t.Helper()
	r := quotaSurfaces[surface].request(ts.URL+prefix, c)
	return ts.do(r)
}

// untilMinuteEnds is the Retry-After (and RateLimit t) at instant now of a
// full minute window.
func untilMinuteEnds(now time.Time) int {
	return int(now.Truncate(time.Minute).Add(time.Minute).Sub(now) / time.Second)
}

// Acceptance 4: a quota of 10 tokens a minute holds across two replicas on
// one PostgreSQL database. Requests alternate between the replicas; exactly
// 10 get a token, the 11th gets 429 with Retry-After and the RateLimit
// fields, in the envelope of every surface; the next minute has room again.
func TestQuotaAcrossReplicasPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	master := keys.GenerateMasterKeyText()
	clock := newFakeClock()
	// 25 s into a minute, so that Retry-After is not a whole minute.
	clock.Advance(clock.Now().Truncate(time.Minute).Add(time.Minute + 25*time.Second).Sub(clock.Now()))
	replicas := make([]*testServer, 2)
	for i := range replicas {
		cfg := testConfig(t)
		cfg.Database, cfg.MasterKey, cfg.Issuer = dsn, master, "http://auth.test"
		replicas[i] = startServerClock(t, cfg, clock.Now)
	}
	a := replicas[0] // wrote admin.json: the first start
	a.createAPI(ordersAPI, 0, "orders:read")
	grant := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	for si, s := range quotaSurfaces {
		t.Run(s.name, func(t *testing.T) {
			id, secret := a.createClient(admin.ClientInput{Name: "quota " + s.name, Grants: grant, DefaultAudience: ordersAPI,
				Quota: admin.QuotaInput{PerMinute: 10}})
			c := cred{id, secret}
			for i := range 10 {
				resp, body := replicas[i%2].quotaToken(si, "", c)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d (replica %d): %d %s", i+1, i%2, resp.StatusCode, body)
				}
				wantLimit := fmt.Sprintf(`"minute";r=%d;t=%d`, 9-i, untilMinuteEnds(clock.Now()))
				if got := resp.Header.Get("RateLimit"); got != wantLimit {
					t.Errorf("request %d: RateLimit %q, want %q", i+1, got, wantLimit)
				}
				if got := resp.Header.Get("RateLimit-Policy"); got != `"minute";q=10;w=60` {
					t.Errorf("request %d: RateLimit-Policy %q", i+1, got)
				}
			}
			for r, ts := range replicas {
				resp, body := ts.quotaToken(si, "", c)
				wait := untilMinuteEnds(clock.Now())
				if resp.StatusCode != http.StatusTooManyRequests {
					t.Fatalf("11th request (replica %d): %d %s; want 429", r, resp.StatusCode, body)
				}
				if err := s.refused(body); err != nil {
					t.Error(err)
				}
				if got := resp.Header.Get("Retry-After"); got != strconv.Itoa(wait) {
					t.Errorf("replica %d: Retry-After %q, want %d", r, got, wait)
				}
				if got, want := resp.Header.Get("RateLimit"), fmt.Sprintf(`"minute";r=0;t=%d`, wait); got != want {
					t.Errorf("replica %d: RateLimit %q, want %q", r, got, want)
				}
				if resp.Header.Get("RateLimit-Policy") != `"minute";q=10;w=60` || resp.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("replica %d: headers %v", r, resp.Header)
				}
			}
		})
	}
	// The next minute (rolled over by the injected clock) has room again,
	// on both replicas.
	id, secret := a.createClient(admin.ClientInput{Name: "rollover", Grants: grant, DefaultAudience: ordersAPI, Quota: admin.QuotaInput{PerMinute: 2}})
	c := cred{id, secret}
	for i := range 2 {
		if resp, _ := replicas[i].quotaToken(0, "", c); resp.StatusCode != http.StatusOK {
			t.Fatalf("rollover client, request %d: %d", i+1, resp.StatusCode)
		}
	}
	if resp, _ := replicas[0].quotaToken(0, "", c); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("3rd request of a 2/min quota: %d", resp.StatusCode)
	}
	clock.Advance(time.Duration(untilMinuteEnds(clock.Now())) * time.Second)
	for i := range 2 {
		resp, _ := replicas[1-i].quotaToken(0, "", c)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit") != fmt.Sprintf(`"minute";r=%d;t=60`, 1-i) {
			t.Fatalf("next minute, request %d: %d %q", i+1, resp.StatusCode, resp.Header.Get("RateLimit"))
		}
	}
	if resp, _ := replicas[1].quotaToken(0, "", c); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("next minute, 3rd request: %d", resp.StatusCode)
	}
}

// On SQLite: the server's default quota applies to clients that set none;
// a client's own limit or "unlimited" (-1) overrides it; clients without a
// quota get no RateLimit fields; introspection is not counted; and the
// counters of one client id in two environments are separate.
func TestQuotaDefaultsAndEnvironments(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig(t)
	cfg.QuotaPerMinute = 2
	ts := startServerClock(t, cfg, clock.Now)
	ts.createAPI(ordersAPI, 0, "orders:read")
	grant := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	// The bootstrap admin has the server's default too: lift it, as its
	// logins are what the test (and an operator) manage the server with.
	if resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+ts.admin.ClientID, `{"quota":{"per_minute":-1}}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("lift the admin's quota: %d %s", resp.StatusCode, body)
	}
	newClient := func(q admin.QuotaInput, introspect ...string) cred {
		id, secret := ts.createClient(admin.ClientInput{Grants: grant, DefaultAudience: ordersAPI, Quota: q, Introspect: introspect})
		return cred{id, secret}
	}
	count := func(c cred, n int) (ok int, last *http.Response) {
		for range n {
			last, _ = ts.quotaToken(0, "", c)
			if last.StatusCode == http.StatusOK {
				ok++
			}
		}
		return ok, last
	}
	cases := []struct {
		name   string
		quota  admin.QuotaInput
		want   int
		policy string
	}{
		{"the server's default", admin.QuotaInput{}, 2, `"minute";q=2;w=60`},
		{"its own limit", admin.QuotaInput{PerMinute: 4}, 4, `"minute";q=4;w=60`},
		{"unlimited despite the default", admin.QuotaInput{PerMinute: -1}, 8, ""},
		{"its own hour limit, the default minute", admin.QuotaInput{PerHour: 1}, 1, `"minute";q=2;w=60, "hour";q=1;w=3600`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, last := count(newClient(tc.quota), 8)
			if ok != tc.want || last.Header.Get("RateLimit-Policy") != tc.policy {
				t.Errorf("%d of 8 requests got a token (RateLimit-Policy %q); want %d (%q)", ok, last.Header.Get("RateLimit-Policy"), tc.want, tc.policy)
			}
			if tc.policy == "" && (last.Header.Get("RateLimit") != "" || last.Header.Get("Retry-After") != "") {
				t.Errorf("a client without a quota got quota headers: %v", last.Header)
			}
		})
	}

	t.Run("introspection is not counted", func(t *testing.T) {
		gw := newClient(admin.QuotaInput{PerMinute: 1}, "*")
		tok := ts.mustToken(gw.id, gw.secret, url.Values{})
		for i := range 3 {
			if st, m := ts.form("/oauth/introspect", gw.id, gw.secret, url.Values{"token": {tok}}); st != http.StatusOK || m["active"] != true {
				t.Fatalf("introspection %d: %d %v", i+1, st, m)
			}
		}
	})

	t.Run("per environment", func(t *testing.T) {
		ctx := context.Background()
		now := clock.Now()
		if err := ts.srv.store.CreateEnvironment(ctx, store.Environment{Name: "qa", DisplayName: "QA", CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		en, err := ts.srv.Env(ctx, "qa")
		if err != nil {
			t.Fatal(err)
		}
		svc := admin.NewService(en.Store, en.Hasher, clock.Now, en.Changed)
		ectx := env.NewContext(ctx, en)
		if _, err := svc.CreateAPI(ectx, admin.APIInput{Identifier: ordersAPI, Name: "Orders", Scopes: []string{"orders:read"}}); err != nil {
			t.Fatal(err)
		}
		creds := map[string]cred{}
		for _, prefix := range []string{"", "/e/qa"} {
			in := admin.ClientInput{ClientID: "same-id", Name: "same", Grants: grant, DefaultAudience: ordersAPI, Quota: admin.QuotaInput{PerMinute: 1}}
			s, ctx := ts.srv.env, ctx
			if prefix != "" {
				s, ctx = en, ectx
			}
			c, secret, err := admin.NewService(s.Store, s.Hasher, clock.Now, s.Changed).CreateClient(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			creds[prefix] = cred{c.ID, secret}
		}
		if resp, _ := ts.quotaToken(0, "", creds[""]); resp.StatusCode != http.StatusOK {
			t.Fatalf("default environment: %d", resp.StatusCode)
		}
		if resp, _ := ts.quotaToken(0, "", creds[""]); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("default environment, 2nd: %d", resp.StatusCode)
		}
		for si := range quotaSurfaces {
			resp, body := ts.quotaToken(si, "/e/qa", creds["/e/qa"])
			want := http.StatusTooManyRequests
			if si == 0 {
				want = http.StatusOK // its own counter: untouched by the default environment's
			}
			if resp.StatusCode != want {
				t.Errorf("qa, %s: %d %s; want %d", quotaSurfaces[si].name, resp.StatusCode, body, want)
			}
		}
	})
}

// The admin API sets a client's quota on create, changes the limits a
// merge patch names (null: back to the server's default), and refuses
// limits out of range and unknown members.
func TestQuotaAdminAPI(t *testing.T) {
	ts := startServer(t, testConfig(t))
	id, _ := ts.createClient(admin.ClientInput{Quota: admin.QuotaInput{PerMinute: 10, PerHour: -1}})
	steps := []struct {
		patch  string
		status int
		want   admin.QuotaInput
		field  string // in the error
	}{
		{`{"quota":{"per_day":1000}}`, 200, admin.QuotaInput{PerMinute: 10, PerHour: -1, PerDay: 1000}, ""},
		{`{"quota":{"per_minute":null}}`, 200, admin.QuotaInput{PerHour: -1, PerDay: 1000}, ""},
		{`{"quota":{"per_hour":-2}}`, 400, admin.QuotaInput{PerHour: -1, PerDay: 1000}, "quota.per_hour"},
		{`{"quota":{"per_day":1000000001}}`, 400, admin.QuotaInput{PerHour: -1, PerDay: 1000}, "quota.per_day"},
		{`{"quota":{"per_week":1}}`, 400, admin.QuotaInput{PerHour: -1, PerDay: 1000}, "per_week"},
		{`{"quota":{"per_day":"many"}}`, 400, admin.QuotaInput{PerHour: -1, PerDay: 1000}, "quota.per_day"},
		{`{"quota":null}`, 200, admin.QuotaInput{}, ""},
	}
	for _, st := range steps {
		resp, body := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, st.patch)
		if resp.StatusCode != st.status || !strings.Contains(string(body), st.field) {
			t.Errorf("PATCH %s: %d %s; want %d naming %q", st.patch, resp.StatusCode, body, st.status, st.field)
		}
		if c, _ := ts.client(id); c.Quota != st.want {
			t.Errorf("after PATCH %s: quota %+v, want %+v", st.patch, c.Quota, st.want)
		}
	}
}

// BenchmarkTokenQuota measures the token endpoint (EdDSA; compare with
// BenchmarkTokenEndpoint/sqlite-EdDSA) for a client with a quota: "batched" has room for batches of 16 (one reservation per 16
// tokens), "exact" a quota of 150 a minute (one reservation per token; the
// injected clock moves to the next minute every 150 tokens).
func BenchmarkTokenQuota(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		for _, q := range []struct {
			name  string
			limit int64
		}{{"batched", 1_000_000_000}, {"exact", 150}} {
			b.Run(db+"/"+q.name, func(b *testing.B) {
				cfg := config.Default()
				cfg.SigningAlg = "EdDSA" // the cheapest signature: what the quota adds shows
				if db == "postgres" {
					cfg.Database = pgtest.DSN(b)
				}
				clock := newFakeClock()
				_, h, newReq := benchServerClock(b, cfg, clock.Now, admin.QuotaInput{PerMinute: q.limit})
				b.ReportAllocs()
				n := int64(0)
				for b.Loop() {
					if n++; n%q.limit == 0 {
						clock.Advance(time.Minute)
					}
					w := httptest.NewRecorder()
					h.ServeHTTP(w, newReq())
					if w.Code != 200 {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
