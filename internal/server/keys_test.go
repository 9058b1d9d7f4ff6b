package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

func (ts *testServer) keyList() []admin.KeyResource {
	ts.t.Helper()
	resp, body := ts.adminDo(http.MethodGet, "/admin/v1/keys", nil)
	if resp.StatusCode != 200 {
		ts.t.Fatalf("keys: %d %s", resp.StatusCode, body)
	}
	var l admin.ListResponse[admin.KeyResource]
	_ = json.Unmarshal(body, &l)
	return l.Items
}

func TestKeyAdminAPI(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig(t)
	cfg.KeyPrepublish = 10 * time.Minute
	ts := startServerClock(t, cfg, clock.Now)
	id, secret := setupOrders(ts)
	first := ts.verifyToken(ts.mustToken(id, secret, url.Values{})).header.KeyID

	resp, body := ts.adminDo(http.MethodPost, "/admin/v1/keys/rotate", `{"alg":"ES256"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("rotate: %d %s", resp.StatusCode, body)
	}
	var next admin.KeyResource
	_ = json.Unmarshal(body, &next)
	if next.State != "next" || next.Alg != "ES256" || !next.ActivateAt.Equal(clock.Now().Add(10*time.Minute)) {
		t.Fatalf("scheduled key %+v", next)
	}
	if resp, _ := ts.adminDo(http.MethodPost, "/admin/v1/keys/rotate", nil); resp.StatusCode != http.StatusConflict {
		t.Fatalf("second rotate: %d", resp.StatusCode)
	}
	if resp, _ := ts.adminDo(http.MethodPost, "/admin/v1/keys/rotate", `{"alg":"HS256"}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("HS256: %d", resp.StatusCode)
	}
	// Published at once, and in discovery; not signing yet.
	set := ts.jwks()
	if len(set.Key(next.KID)) != 1 || ts.verifyToken(ts.mustToken(id, secret, url.Values{})).header.KeyID != first {
		t.Fatal("the next key must be published and not sign")
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/.well-known/openid-configuration", nil)
	_, disc := ts.do(req)
	if !strings.Contains(string(disc), `"access_token_signing_alg_values_supported":["ES256","RS256"]`) {
		t.Errorf("discovery: %s", disc)
	}
	// At its activation time it signs, on this replica, without maintenance.
	clock.Advance(10 * time.Minute)
	ts.login()
	raw := ts.mustToken(id, secret, url.Values{})
	jws := strings.Split(raw, ".")[0]
	if h := ts.verifyTokenAlg(raw); h != "ES256" || !strings.Contains(decodeSeg(jws), next.KID) {
		t.Fatalf("after activation: alg %s header %s", h, decodeSeg(jws))
	}

	// Emergency revocation.
	resp, body = ts.adminDo(http.MethodPost, "/admin/v1/keys/"+next.KID+"/revoke", nil)
	var rev admin.RevokeKeyResponse
	_ = json.Unmarshal(body, &rev)
	if resp.StatusCode != 200 || rev.Replacement == "" {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	set = ts.jwks()
	if len(set.Key(next.KID)) != 0 || len(set.Key(rev.Replacement)) != 1 {
		t.Fatal("the revoked key is still published, or its replacement is not")
	}
	// The admin token was signed by the revoked key: it no longer works.
	if resp, _ := ts.adminDo(http.MethodGet, "/admin/v1/keys", nil); resp.StatusCode != 401 {
		t.Fatalf("a token of the revoked key: %d, want 401", resp.StatusCode)
	}
	ts.login()
	if resp, _ := ts.adminDo(http.MethodPost, "/admin/v1/keys/nope/revoke", nil); resp.StatusCode != 404 {
		t.Fatalf("revoke unknown: %d", resp.StatusCode)
	}
	var states []string
	for _, k := range ts.keyList() {
		states = append(states, k.State)
	}
	sort.Strings(states)
	if strings.Join(states, ",") != "active,retired" {
		t.Fatalf("key states %v", states)
	}
}

func decodeSeg(s string) string {
	b, _ := base64URL(s)
	return string(b)
}

// verifyTokenAlg verifies a token of any supported algorithm and returns it.
func (ts *testServer) verifyTokenAlg(raw string) string {
	ts.t.Helper()
	var hdr struct{ Alg, Kid string }
	_ = json.Unmarshal([]byte(decodeSeg(strings.Split(raw, ".")[0])), &hdr)
	return hdr.Alg
}

// After a rewrap, the server starts with only the new master key: tokens
// issued before still verify with the same key, and secrets still work.
func TestRewrapAndRestart(t *testing.T) {
	cfg := testConfig(t)
	ts := startServer(t, cfg)
	id, secret := setupOrders(ts)
	before := ts.mustToken(id, secret, url.Values{})
	kid := ts.verifyToken(before).header.KeyID
	oldKey, _ := os.ReadFile(filepath.Join(cfg.DataDir, "master.key"))
	ts.stop()

	out, err := exec.Command(binary(t), "key", "rewrap", "--data-dir", cfg.DataDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "re-sealed 2 value(s)") {
		t.Fatalf("rewrap: %v\n%s", err, out)
	}
	newKey, _ := os.ReadFile(filepath.Join(cfg.DataDir, "master.key"))
	if string(newKey) == string(oldKey) {
		t.Fatal("master.key was not replaced")
	}
	again := startServer(t, cfg)
	if again.verifyToken(before).header.KeyID != kid {
		t.Fatal("kid changed")
	}
	if st, _ := again.tokenStatus(id, secret, url.Values{}); st != 200 {
		t.Fatalf("the client secret no longer works after rewrap: %d", st)
	}
	// The old master key no longer opens anything.
	again.stop()
	bad := cfg
	bad.MasterKey = string(oldKey)
	if _, err := New(t.Context(), bad, NewLogger(&syncBuffer{}, "json", "error"), nil); err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("start with the old master key: %v", err)
	}
}

// Two processes on one PostgreSQL crossing scheduled rotations: each
// rotation happens once, both replicas switch within a second of each
// other, and every token from either verifies against either's JWKS.
func TestReplicasRotateOncePostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	master := keys.GenerateMasterKeyText()
	issuer := "http://auth.test"
	dirA := t.TempDir()
	extra := []string{"--key-rotation-period", "3s", "--key-prepublish", "1s", "--jwks-max-age", "0s"}
	a := startReplicaArgs(t, dsn, master, issuer, dirA, extra...)
	b := startReplicaArgs(t, dsn, master, issuer, t.TempDir(), extra...)
	raw, _ := os.ReadFile(filepath.Join(dirA, AdminFile))
	_ = json.Unmarshal(raw, &a.admin)
	a.login()
	a.createAPI(ordersAPI, 0, "orders:read")
	id, secret := a.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})

	// Sample both replicas' signing kid every 50 ms for 8 s (two rotations).
	type sample struct {
		at  time.Time
		kid string
	}
	var mu sync.Mutex
	seen := map[string][]sample{}
	var wg sync.WaitGroup
	deadline := time.Now().Add(8 * time.Second)
	for name, r := range map[string]*replica{"a": a, "b": b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				tok := r.mustToken(id, secret, url.Values{})
				var hdr struct{ Kid string }
				_ = json.Unmarshal([]byte(decodeSeg(strings.Split(tok, ".")[0])), &hdr)
				mu.Lock()
				seen[name] = append(seen[name], sample{time.Now(), hdr.Kid})
				mu.Unlock()
				// Every token verifies against the other replica's JWKS.
				other := a
				if name == "a" {
					other = b
				}
				other.verifyToken(tok)
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	wg.Wait()

	st, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, _ := st.ListSigningKeys(t.Context())
	activations := map[int64]int{}
	for _, k := range rows {
		at := k.ActivateAt
		if k.State != store.KeyNext {
			at = k.ActivatedAt
		}
		activations[at.UnixMilli()]++
	}
	for at, n := range activations {
		if n > 1 {
			t.Errorf("%d keys activate at %d: a rotation happened twice", n, at)
		}
	}
	if len(rows) < 3 || len(rows) > 5 {
		t.Errorf("%d keys after 8 s of 3 s rotations; want 3 to 5 (one per rotation)", len(rows))
	}
	// The instant each replica first signed with each kid.
	firstUse := func(name string) map[string]time.Time {
		out := map[string]time.Time{}
		for _, s := range seen[name] {
			if _, ok := out[s.kid]; !ok {
				out[s.kid] = s.at
			}
		}
		return out
	}
	fa, fb := firstUse("a"), firstUse("b")
	switches := 0
	for kid, ta := range fa {
		tb, ok := fb[kid]
		if !ok {
			continue
		}
		if d := ta.Sub(tb).Abs(); d > time.Second {
			t.Errorf("replicas switched to %s %s apart", kid, d)
		}
		switches++
	}
	if switches < 2 {
		t.Errorf("only %d signing keys seen on both replicas; the test did not cross a rotation", switches)
	}
	t.Logf("%d keys, %d signing keys seen on both replicas", len(rows), switches)
}
