package server

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/m2mauth once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "m2mauth-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "m2mauth")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/m2mauth/m2mauth/cmd/m2mauth").CombinedOutput()
		if err != nil {
			buildErr = &buildError{string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("build m2mauth: %v", buildErr)
	}
	return binPath
}

type buildError struct{ out string }

func (e *buildError) Error() string { return e.out }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// replica is an `m2mauth serve` process.
type replica struct {
	*testServer
	cmd *exec.Cmd
}

// startReplica runs the binary against the database in its own data dir.
func startReplica(t *testing.T, dsn, master, issuer, dataDir string) *replica {
	t.Helper()
	return startReplicaArgs(t, dsn, master, issuer, dataDir)
}

// startReplicaArgs is startReplica with extra serve flags.
func startReplicaArgs(t *testing.T, dsn, master, issuer, dataDir string, extra ...string) *replica {
	t.Helper()
	addr := freeAddr(t)
	args := append([]string{"serve", "--addr", addr, "--issuer", issuer, "--data-dir", dataDir, "--database", dsn, "--log-level", "info"}, extra...)
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), "M2MAUTH_MASTER_KEY="+master)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("replica %s log:\n%s", addr, logs.String())
		}
	})
	r := &replica{testServer: &testServer{t: t, URL: "http://" + addr, logs: logs}, cmd: cmd}
	r.cfg = config.Default()
	r.cfg.Issuer = issuer
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(r.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica did not become ready:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// within polls check until it reports true, and fails the test unless that
// happens within limit; it returns how long it took.
func within(t *testing.T, limit time.Duration, what string, check func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !check() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not seen within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// Changes made through replica A reach the token endpoint of replica B
// within a second: disable, secret revocation, grant removal, deletion.
func TestReplicaPropagationPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	master := keys.GenerateMasterKeyText()
	issuer := "http://auth.test"
	dirA := t.TempDir()
	a := startReplica(t, dsn, master, issuer, dirA)
	b := startReplica(t, dsn, master, issuer, t.TempDir())

	var creds AdminCredentials
	raw, err := os.ReadFile(filepath.Join(dirA, AdminFile))
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw, &creds)
	a.admin = creds
	a.login()

	a.createAPI(ordersAPI, 0, "orders:read", "orders:write")
	id, secret := a.createClient(admin.ClientInput{
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read", "orders:write"}}}, DefaultAudience: ordersAPI,
	})
	ok := func(form url.Values) func() bool {
		return func() bool { st, _ := b.tokenStatus(id, secret, form); return st == 200 }
	}
	refused := func(form url.Values, want int) func() bool {
		return func() bool { st, _ := b.tokenStatus(id, secret, form); return st == want }
	}
	if !strings.Contains(b.logs.String(), "client cache on") {
		t.Fatal("B's change feed did not connect: its client cache is off, and this test would prove nothing")
	}
	// B learns of the new client (it may have cached "no such client").
	within(t, time.Second, "new client usable on B", ok(url.Values{}))
	// Warm B's cache, so that what follows tests invalidation, not a miss.
	for range 3 {
		b.tokenStatus(id, secret, url.Values{"scope": {"orders:write"}})
	}

	// Introspection across replicas: a token from A is active on B; revoked
	// on A, it is inactive on B within a second.
	rsID, rsSecret := a.createClient(admin.ClientInput{Name: "orders API", Introspect: []string{ordersAPI}})
	tok := a.mustToken(id, secret, url.Values{})
	activeOnB := func() bool {
		_, m := b.form("/oauth/introspect", rsID, rsSecret, url.Values{"token": {tok}})
		return m["active"] == true
	}
	within(t, time.Second, "A's token active on B", activeOnB)
	if st, _ := a.form("/oauth/revoke", id, secret, url.Values{"token": {tok}}); st != 200 {
		t.Fatalf("revoke on A: %d", st)
	}
	took := within(t, time.Second, "revocation on A seen on B", func() bool { return !activeOnB() })
	t.Logf("revoked on A: inactive on B after %s", took.Round(time.Millisecond))

	steps := []struct {
		name   string
		change func()
		check  func() bool
	}{
		{"grant narrowed on A", func() {
			a.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"grants":[{"audience":"`+ordersAPI+`","scopes":["orders:read"]}]}`)
		}, refused(url.Values{"scope": {"orders:write"}}, 400)},
		{"disabled on A", func() { a.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"disabled":true}`) }, refused(url.Values{}, 401)},
		{"enabled on A", func() { a.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, `{"disabled":false}`) }, ok(url.Values{})},
		{"secret revoked on A", func() {
			c, _ := a.client(id)
			a.adminDo(http.MethodDelete, "/admin/v1/clients/"+id+"/secrets/"+c.Secrets[0].ID, nil)
		}, refused(url.Values{}, 401)},
	}
	for _, st := range steps {
		st.change()
		took := within(t, time.Second, st.name+": seen on B", st.check)
		t.Logf("%s: B answered accordingly after %s", st.name, took.Round(time.Millisecond))
	}
}
