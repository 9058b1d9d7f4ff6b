package server

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
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
	again := startServer(t, ts.cfg)
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

// dbState describes what the database of cfg holds: the signing keys, the
// sealed secret hash key, the clients and the APIs.
func dbState(t *testing.T, cfg config.Config) string {
	t.Helper()
	st, err := OpenStore(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ks, err1 := st.ListSigningKeys(t.Context())
	meta, err2 := st.EnsureMeta(t.Context(), "secret_hash_key", "(none)")
	clients, err3 := st.ListClients(t.Context(), store.ListOptions{})
	apis, err4 := st.ListAPIs(t.Context(), store.ListOptions{})
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("keys %+v\nmeta %s\nclients %+v\napis %+v", ks, meta, clients, apis)
}

// The sequence that used to brick a database: a start with the right
// master key, a start with a wrong one and another --signing-alg (which
// scheduled a rotation to a key sealed under the wrong master key before
// failing), then a start with the right key. The wrong start now fails
// naming both master key ids and writes nothing.
func TestWrongMasterKeyThenRightKey(t *testing.T) {
	right, wrong := keys.GenerateMasterKeyText(), keys.GenerateMasterKeyText()
	rightKey, _ := keys.ParseMasterKey(right)
	wrongKey, _ := keys.ParseMasterKey(wrong)
	cfg := testConfig(t)
	cfg.MasterKey = right
	ts := startServer(t, cfg)
	id, secret := setupOrders(ts)
	before := ts.mustToken(id, secret, url.Values{})
	kid := ts.verifyToken(before).header.KeyID
	adminFile, _ := os.ReadFile(filepath.Join(cfg.DataDir, AdminFile))
	ts.stop()
	state := dbState(t, cfg)

	bad := cfg
	bad.MasterKey, bad.SigningAlg = wrong, "EdDSA"
	_, err := New(t.Context(), bad, NewLogger(io.Discard, "json", "error"), nil)
	if err == nil || !strings.Contains(err.Error(), rightKey.ID()) || !strings.Contains(err.Error(), wrongKey.ID()) {
		t.Fatalf("start with the wrong master key: %v; want an error naming %s and %s", err, rightKey.ID(), wrongKey.ID())
	}
	if got := dbState(t, cfg); got != state {
		t.Fatalf("the wrong start wrote to the database:\nbefore %s\nafter  %s", state, got)
	}
	if b, _ := os.ReadFile(filepath.Join(cfg.DataDir, AdminFile)); !bytes.Equal(b, adminFile) {
		t.Fatal("the wrong start rewrote admin.json")
	}

	good := cfg
	good.SigningAlg = "EdDSA"
	good.Issuer = ts.cfg.Issuer
	again := startServer(t, good)
	if again.verifyToken(before).header.KeyID != kid {
		t.Fatal("a token issued before does not verify with the same key")
	}
	if st, _ := again.tokenStatus(id, secret, url.Values{}); st != 200 {
		t.Fatalf("token after the restart: %d", st)
	}
	// The rotation to EdDSA is scheduled now, under the right key.
	rows, _ := again.srv.store.ListSigningKeys(t.Context())
	for _, r := range rows {
		if r.MasterKeyID != rightKey.ID() {
			t.Errorf("key %s (%s) sealed under %s", r.KID, r.State, r.MasterKeyID)
		}
	}
	if len(rows) != 2 {
		t.Errorf("%d keys; want the active one and the scheduled EdDSA key", len(rows))
	}
}

// A master.key generated because the file was missing is removed again
// when the database turns out to hold keys sealed under another key.
func TestMissingMasterKeyFileIsNotReplaced(t *testing.T) {
	cfg := testConfig(t)
	ts := startServer(t, cfg)
	ts.stop()
	path := cfg.MasterKeyPath()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	state := dbState(t, cfg)
	_, err = New(t.Context(), cfg, NewLogger(io.Discard, "json", "error"), nil)
	if err == nil || !strings.Contains(err.Error(), "did not exist") || !errors.Is(err, keys.ErrMasterKeyMismatch) {
		t.Fatalf("start without master.key: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a new master.key was left behind: %v", err)
	}
	if got := dbState(t, cfg); got != state {
		t.Fatal("the start without master.key wrote to the database")
	}
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	startServer(t, ts.cfg)
}

// foreignNextKey stores an EdDSA next key sealed under mk.
func foreignNextKey(t *testing.T, st store.Store, mk *keys.MasterKey, created, activateAt time.Time) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: "EdDSA", Use: "sig"}
	tp, _ := pub.Thumbprint(crypto.SHA256)
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	jwk, _ := pub.MarshalJSON()
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	_, err = st.CreateSigningKey(t.Context(), store.SigningKey{KID: pub.KeyID, Alg: "EdDSA", State: store.KeyNext,
		Private: mk.Seal(der, sealAADForTest(pub.KeyID)), PublicJWK: jwk, MasterKeyID: mk.ID(), CreatedAt: created, ActivateAt: activateAt})
	if err != nil {
		t.Fatal(err)
	}
	return pub.KeyID
}

// Recovery of a database an earlier version bricked: a next key sealed
// under another master key (what the wrong start left). A start with the
// right key deletes it with a warning and serves; tokens issued before
// still verify.
func TestBrickedDatabaseRecovers(t *testing.T) {
	right, wrong := keys.GenerateMasterKeyText(), keys.GenerateMasterKeyText()
	wrongKey, _ := keys.ParseMasterKey(wrong)
	cfg := testConfig(t)
	cfg.MasterKey = right
	ts := startServer(t, cfg)
	id, secret := setupOrders(ts)
	before := ts.mustToken(id, secret, url.Values{})
	kid := ts.verifyToken(before).header.KeyID
	ts.stop()

	st, err := OpenStore(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	foreign := foreignNextKey(t, st, wrongKey, now.Add(-2*time.Hour), now.Add(-time.Hour))
	st.Close()

	cfg.Issuer = ts.cfg.Issuer
	again := startServer(t, ts.cfg)
	if again.verifyToken(before).header.KeyID != kid {
		t.Fatal("a token issued before does not verify with the same key")
	}
	if set := again.jwks(); len(set.Key(foreign)) != 0 {
		t.Fatal("the foreign key is still published")
	}
	if k := again.verifyToken(again.mustToken(id, secret, url.Values{})).header.KeyID; k != kid {
		t.Fatalf("signing with %s, want %s", k, kid)
	}
	logs := again.logs.String()
	if !strings.Contains(logs, `"level":"WARN"`) || !strings.Contains(logs, foreign) || !strings.Contains(logs, wrongKey.ID()) {
		t.Fatalf("no warning naming the deleted key and its master key:\n%s", logs)
	}
}

// A server whose keys were re-sealed under another master key while it ran
// (key rewrap by another process: PostgreSQL replicas, or an SQLite file
// reached around the lock) keeps issuing tokens, and answers key operations
// with a problem+json that says why they are refused, not a bare 500.
func TestKeyOperationsAfterRewrapByAnotherProcess(t *testing.T) {
	oldText, newText := keys.GenerateMasterKeyText(), keys.GenerateMasterKeyText()
	oldKey, _ := keys.ParseMasterKey(oldText)
	newKey, _ := keys.ParseMasterKey(newText)
	cfg := testConfig(t)
	cfg.MasterKey, cfg.SigningAlg = oldText, "ES256"
	ts := startServer(t, cfg)
	id, secret := setupOrders(ts)
	kid := ts.keyList()[0].KID

	st, err := OpenStore(t.Context(), cfg) // around the lock
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Rewrap(t.Context(), st, oldKey, newKey); err != nil {
		t.Fatal(err)
	}
	st.Close()

	for _, op := range []struct{ path, body string }{
		{"/admin/v1/keys/rotate", `{"alg":"EdDSA"}`},
		{"/admin/v1/keys/" + kid + "/revoke", ""},
	} {
		var in any
		if op.body != "" {
			in = op.body
		}
		resp, body := ts.adminDo(http.MethodPost, op.path, in)
		var p struct {
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(body, &p)
		if resp.StatusCode != http.StatusConflict || resp.Header.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(p.Detail, oldKey.ID()) || !strings.Contains(p.Detail, newKey.ID()) || !strings.Contains(p.Detail, "key rewrap") {
			t.Errorf("POST %s: %d %s; want 409 problem+json naming both master keys", op.path, resp.StatusCode, body)
		}
	}
	if !strings.Contains(ts.logs.String(), "sealed under another master key") {
		t.Error("the refusal is not logged")
	}
	if st, _ := ts.tokenStatus(id, secret, url.Values{}); st != 200 {
		t.Fatalf("token after the rewrap: %d", st)
	}
	if ks := ts.keyList(); len(ks) != 1 || ks[0].KID != kid {
		t.Fatalf("keys changed: %+v", ks)
	}
}
