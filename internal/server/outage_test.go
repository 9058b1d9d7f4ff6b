package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/keys"
)

// privatePostgres runs a PostgreSQL instance of the test's own on a spare
// port, so that restarting it disturbs no other test.
type privatePostgres struct {
	t    *testing.T
	dir  string
	port string
}

// asPostgres runs a PostgreSQL tool, as the postgres user when the test
// runs as root (initdb and postgres refuse to run as root).
func (p *privatePostgres) run(name string, args ...string) error {
	bin, err := pgTool(name)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	if os.Getuid() == 0 {
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		cmd = exec.Command("su", "postgres", "-s", "/bin/sh", "-c", bin+" "+strings.Join(quoted, " "))
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", name, err, out)
	}
	return nil
}

// pgTool finds a PostgreSQL server tool: on PATH, or where Debian's
// packages install it (/usr/lib/postgresql/<version>/bin).
func pgTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) == 0 {
		return "", fmt.Errorf("%s not found", name)
	}
	return matches[len(matches)-1], nil
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	if _, err := pgTool("initdb"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("initdb is not installed; CI must run the outage test")
		}
		t.Skip("initdb not installed")
	}
	dir, err := os.MkdirTemp("", "m2mauth-pg")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	data := filepath.Join(dir, "data")
	if os.Getuid() == 0 {
		if err := exec.Command("chown", "postgres", dir).Run(); err != nil {
			t.Fatal(err)
		}
	}
	p := &privatePostgres{t: t, dir: dir, port: strings.Split(freeAddr(t), ":")[1]}
	t.Cleanup(func() {
		_ = p.run("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w")
		os.RemoveAll(dir)
	})
	if err := p.run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	p.start()
	return p
}

func (p *privatePostgres) data() string { return filepath.Join(p.dir, "data") }

func (p *privatePostgres) start() {
	p.t.Helper()
	opts := fmt.Sprintf("-p %s -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.port, p.dir)
	if err := p.run("pg_ctl", "start", "-D", p.data(), "-o", opts, "-l", filepath.Join(p.dir, "log"), "-w", "-t", "30"); err != nil {
		p.t.Fatal(err)
	}
}

func (p *privatePostgres) stop() {
	p.t.Helper()
	if err := p.run("pg_ctl", "stop", "-D", p.data(), "-m", "fast", "-w"); err != nil {
		p.t.Fatal(err)
	}
}

func (p *privatePostgres) dsn() string {
	return "postgres://postgres@127.0.0.1:" + p.port + "/postgres?sslmode=disable"
}

type outcome struct {
	at      time.Time
	replica int
	status  int
	code    string
}

// Restart PostgreSQL under a load of token requests against two replicas:
// during the outage only 503s (with Retry-After), never invalid_client,
// never another 5xx; both replicas recover within 5 s of the database
// returning.
func TestDatabaseRestartUnderLoad(t *testing.T) {
	if os.Getenv("M2MAUTH_TEST_POSTGRES_DSN") == "" && os.Getenv("CI") == "" {
		t.Skip("PostgreSQL tests are off (M2MAUTH_TEST_POSTGRES_DSN unset)")
	}
	pg := startPrivatePostgres(t)
	master := keys.GenerateMasterKeyText()
	dirA := t.TempDir()
	replicas := []*replica{
		startReplica(t, pg.dsn(), master, "http://auth.test", dirA),
		startReplica(t, pg.dsn(), master, "http://auth.test", t.TempDir()),
	}
	a := replicas[0]
	raw, _ := os.ReadFile(filepath.Join(dirA, AdminFile))
	_ = json.Unmarshal(raw, &a.admin)
	a.login()
	a.createAPI(ordersAPI, 0, "orders:read")
	var clients [][2]string
	for range 6 {
		id, sec := a.createClient(admin.ClientInput{DefaultAudience: ordersAPI, Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
		clients = append(clients, [2]string{id, sec})
	}

	var mu sync.Mutex
	var results []outcome
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	// Below the server's request deadline (20 s), above the seconds a
	// loaded two-core CI machine can stall every process for (a 5 s
	// timeout failed there once, with the test's own requests, not the
	// server, waiting).
	client := &http.Client{Timeout: 15 * time.Second}
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				r := (w + i) % 2
				c := clients[(w+i)%len(clients)]
				req, _ := http.NewRequest(http.MethodPost, replicas[r].URL+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(c[0], c[1])
				o := outcome{replica: r}
				resp, err := client.Do(req)
				o.at = time.Now()
				if err != nil {
					o.status = -1
				} else {
					var e struct{ Error string }
					_ = json.NewDecoder(resp.Body).Decode(&e)
					resp.Body.Close()
					o.status, o.code = resp.StatusCode, e.Error
					if o.status == 503 && resp.Header.Get("Retry-After") == "" {
						o.code = "503 without Retry-After"
					}
				}
				mu.Lock()
				results = append(results, o)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Second)
	down := time.Now()
	pg.stop()
	time.Sleep(2 * time.Second)
	pg.start()
	back := time.Now()
	time.Sleep(7 * time.Second)
	close(stopLoad)
	wg.Wait()

	counts := map[string]int{}
	lastFailure := map[int]time.Time{}
	for _, o := range results {
		key := fmt.Sprint(o.status)
		if o.code != "" {
			key += " " + o.code
		}
		counts[key]++
		switch {
		case o.status == 200:
		case o.status == 503 && o.code == "temporarily_unavailable":
			if o.at.After(lastFailure[o.replica]) {
				lastFailure[o.replica] = o.at
			}
			if o.at.Before(down) {
				t.Errorf("503 before the outage began")
			}
		default:
			t.Errorf("replica %d answered %d %q at %s (outage %s–%s)", o.replica, o.status, o.code,
				o.at.Format("15:04:05.000"), down.Format("15:04:05.000"), back.Format("15:04:05.000"))
		}
	}
	for r := range replicas {
		if d := lastFailure[r].Sub(back); d > 5*time.Second {
			t.Errorf("replica %d still failing %s after the database returned", r, d)
		}
		if lastFailure[r].IsZero() {
			t.Logf("replica %d never failed (it answered from its cache)", r)
		}
	}
	t.Logf("%d requests: %v; last 503 after the database returned: A %s, B %s", len(results), counts,
		maxDur(lastFailure[0].Sub(back)), maxDur(lastFailure[1].Sub(back)))
	if counts["200"] == 0 {
		t.Fatal("no request succeeded")
	}
}

func maxDur(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d.Round(time.Millisecond)
}
