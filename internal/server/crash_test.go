package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

var (
	crashCycles = flag.Int("crash.cycles", 20, "kill -9 cycles of each crash-safety test")
	crashSeed   = flag.Uint64("crash.seed", 0, "seed of the crash-safety tests' random kill points (0: from the clock)")
)

const crashIssuer = "http://auth.test" // the same across restarts on new ports

// crashRNG returns the tests' seeded random source, logging the seed so
// that a failing run's kill points can be replayed with -crash.seed.
func crashRNG(t *testing.T) *rand.Rand {
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -crash.seed=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// proc is one `m2mauth serve` process of the crash tests.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan struct{}
}

// startProc starts the binary on dir without waiting for it to be ready.
func startProc(t *testing.T, dir string) *proc {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(binary(t), "serve", "--addr", addr, "--issuer", crashIssuer, "--data-dir", dir, "--log-level", "info")
	cmd.Env = append(os.Environ(), "M2MAUTH_MASTER_KEY=", "M2MAUTH_DATABASE=")
	p := &proc{t: t, cmd: cmd, url: "http://" + addr, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop stops the process gracefully.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("the server did not stop:\n%s", p.logs)
	}
}

// waitReady waits until the process answers /readyz, failing the test if
// it exits first.
func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			p.t.Fatalf("the server exited before it was ready:\n%s", p.logs)
		default:
		}
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the server was not ready within a minute:\n%s", p.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// crashHTTP opens a connection per request, so that a request to a server
// already killed is refused rather than sent on a dead kept-alive one.
var crashHTTP = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// call sends a request; bearer, basic (id, secret) and a JSON body are
// optional. It returns the status and the body, or an error when no whole
// answer arrived.
func (p *proc) call(method, path, bearer string, basic []string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.url+path, body)
	if err != nil {
		return 0, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if basic != nil {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := crashHTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// tokenStatus asks /oauth/token for a token with the client's secret
// (grantToken), or the admin API's token endpoint for an admin token.
func (p *proc) tokenStatus(path, id, secret string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, p.url+path, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := crashHTTP.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var tr tokenResp
	_ = json.NewDecoder(resp.Body).Decode(&tr)
	return resp.StatusCode, tr.AccessToken
}

// adminLogin gets an admin token with the credentials in dir/admin.json,
// failing the test if the file is missing or does not work.
func (p *proc) adminLogin(dir string) string {
	p.t.Helper()
	creds, err := readAdminFile(filepath.Join(dir, AdminFile))
	if err != nil {
		p.t.Fatalf("admin.json: %v\n%s", err, p.logs)
	}
	st, tok := p.tokenStatus("/admin/v1/token", creds.ClientID, creds.ClientSecret)
	if st != http.StatusOK || tok == "" {
		p.t.Fatalf("admin.json does not work: token endpoint answered %d\n%s", st, p.logs)
	}
	return tok
}

// ackedClient is a client whose creation the server acknowledged, with
// every secret it acknowledged for it.
type ackedClient struct {
	id      string
	secrets []string
	rotated bool // a rotation was sent (acknowledged or not): no second one
}

// acked is what the server acknowledged (a 2xx with its whole answer)
// before it was killed.
type acked struct {
	mu        sync.Mutex
	apis      []string
	clients   []*ackedClient
	rotations int
	unacked   int // writes sent without a whole answer (their outcome is unknown)
}

// failed counts a write without a whole answer, unless it was never sent
// (the server was already gone).
func (a *acked) failed(err error) {
	if !errors.Is(err, syscall.ECONNREFUSED) {
		a.unacked++
	}
}

// Admin writes on SQLite (created APIs, created clients, rotated secrets)
// with the server killed (SIGKILL) at random points, and restarted each
// time: every write the server acknowledged is there after the restart,
// and every acknowledged secret still gets a token.
func TestCrashDuringAdminWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the server many times")
	}
	rng := crashRNG(t)
	dir := t.TempDir()
	p := startProc(t, dir)
	p.waitReady()
	token := p.adminLogin(dir)
	const baseAPI = "https://base.example"
	if st, b, err := p.call(http.MethodPost, "/admin/v1/apis", token, nil, admin.APIInput{Identifier: baseAPI, Name: "base", Scopes: []string{"read"}}); st != http.StatusCreated {
		t.Fatalf("create the base API: %d %s %v", st, b, err)
	}

	var all acked
	checked := 0
	// verify checks the acknowledged writes from index apis/clients on.
	verify := func(p *proc, token string, fromAPI, fromClient int) {
		t.Helper()
		all.mu.Lock()
		apis, clients := all.apis[fromAPI:], all.clients[fromClient:]
		all.mu.Unlock()
		for _, a := range apis {
			if st, b, err := p.call(http.MethodGet, "/admin/v1/apis/"+url.PathEscape(a), token, nil, nil); st != http.StatusOK {
				t.Errorf("acknowledged API %s lost: %d %s %v", a, st, b, err)
			}
			checked++
		}
		for _, c := range clients {
			if st, b, err := p.call(http.MethodGet, "/admin/v1/clients/"+c.id, token, nil, nil); st != http.StatusOK {
				t.Errorf("acknowledged client %s lost: %d %s %v", c.id, st, b, err)
				continue
			}
			checked++
			for i, sec := range c.secrets {
				if st, _ := p.tokenStatus("/oauth/token", c.id, sec); st != http.StatusOK {
					t.Errorf("acknowledged secret %d of client %s no longer authenticates: %d", i, c.id, st)
				}
				checked++
			}
		}
	}

	for cycle := range *crashCycles {
		all.mu.Lock()
		fromAPI, fromClient := len(all.apis), len(all.clients)
		all.mu.Unlock()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					crashWrite(p, token, baseAPI, fmt.Sprintf("%d-%d-%d", cycle, w, i), wrng, &all)
				}
			}()
		}
		time.Sleep(time.Duration(20+rng.IntN(400)) * time.Millisecond)
		p.kill()
		close(stop)
		wg.Wait()

		p = startProc(t, dir)
		p.waitReady()
		token = p.adminLogin(dir)
		verify(p, token, fromAPI, fromClient)
		if t.Failed() {
			t.Fatalf("cycle %d: acknowledged writes lost", cycle)
		}
	}
	// Once more, everything.
	checked = 0
	verify(p, token, 0, 0)
	all.mu.Lock()
	defer all.mu.Unlock()
	secrets := 0
	for _, c := range all.clients {
		secrets += len(c.secrets)
	}
	t.Logf("%d kill -9 cycles; acknowledged: %d APIs, %d clients, %d rotated secrets (%d secrets); %d checks after the last restart, lost 0; %d writes unacknowledged (no whole answer: in flight at a kill)",
		*crashCycles, len(all.apis), len(all.clients), all.rotations, secrets, checked, all.unacked)
}

// crashWrite sends one admin write and records it if acknowledged.
func crashWrite(p *proc, token, baseAPI, name string, rng *rand.Rand, all *acked) {
	switch op := rng.IntN(10); {
	case op < 3:
		id := "https://api-" + name + ".example"
		st, _, err := p.call(http.MethodPost, "/admin/v1/apis", token, nil, admin.APIInput{Identifier: id, Name: name, Scopes: []string{"read"}})
		all.mu.Lock()
		defer all.mu.Unlock()
		if err == nil && st == http.StatusCreated {
			all.apis = append(all.apis, id)
		} else {
			all.failed(err)
		}
	case op < 7:
		st, b, err := p.call(http.MethodPost, "/admin/v1/clients", token, nil, admin.ClientInput{Name: name, DefaultAudience: baseAPI,
			Grants: []admin.GrantInput{{Audience: baseAPI, Scopes: []string{"read"}}}})
		var c admin.ClientResource
		all.mu.Lock()
		defer all.mu.Unlock()
		if err == nil && st == http.StatusCreated && json.Unmarshal(b, &c) == nil && c.ClientSecret != "" {
			all.clients = append(all.clients, &ackedClient{id: c.ClientID, secrets: []string{c.ClientSecret}})
		} else {
			all.failed(err)
		}
	default:
		all.mu.Lock()
		var target *ackedClient
		for _, c := range all.clients {
			if !c.rotated {
				target = c
				break
			}
		}
		if target == nil {
			all.mu.Unlock()
			return
		}
		target.rotated = true // the old secret keeps working for a day
		all.mu.Unlock()
		st, b, err := p.call(http.MethodPost, "/admin/v1/clients/"+target.id+"/secrets", token, nil, map[string]int{"grace_seconds": 86400})
		var c admin.ClientResource
		all.mu.Lock()
		defer all.mu.Unlock()
		if err == nil && st == http.StatusCreated && json.Unmarshal(b, &c) == nil && c.ClientSecret != "" {
			target.secrets = append(target.secrets, c.ClientSecret)
			all.rotations++
		} else {
			all.failed(err)
		}
	}
}

// First starts killed (SIGKILL) at random points, half of them just after
// the bootstrap admin's credentials were saved (the window in which the
// client is committed): the restart always ends with a working admin.json
// and no leftover pending file.
func TestCrashDuringFirstStart(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the server many times")
	}
	rng := crashRNG(t)
	// How long a first start takes to bootstrap, to spread the untargeted
	// kills over it.
	calib := t.TempDir()
	began := time.Now()
	p := startProc(t, calib)
	p.waitReady()
	boot := time.Since(began)
	p.adminLogin(calib)
	p.stop()

	found := map[string]int{} // what each kill left in the data dir
	for cycle := range *crashCycles {
		dir := filepath.Join(t.TempDir(), "data")
		p := startProc(t, dir)
		targeted := cycle%2 == 1
		if targeted {
			// Kill 0–1.5 ms after the pending file appears (watched in a
			// busy loop: the window is short).
			deadline := time.Now().Add(time.Minute)
			for len(pendingIn(dir)) == 0 && time.Now().Before(deadline) {
				select {
				case <-p.done:
					t.Fatalf("cycle %d: the first start exited:\n%s", cycle, p.logs)
				default:
				}
			}
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
		} else {
			time.Sleep(time.Duration(rng.Int64N(int64(boot))))
		}
		p.kill()
		state := dirState(dir)
		var saved []AdminCredentials
		for _, name := range pendingIn(dir) {
			if c, err := readAdminFile(filepath.Join(dir, name)); err == nil {
				saved = append(saved, c)
			}
		}

		again := startProc(t, dir)
		again.waitReady()
		tok := again.adminLogin(dir)
		if st, b, err := again.call(http.MethodGet, "/admin/v1/clients", tok, nil, nil); st != http.StatusOK {
			t.Fatalf("cycle %d (killed with %s): the admin API refuses admin.json's token: %d %s %v", cycle, state, st, b, err)
		}
		if left := pendingIn(dir); len(left) != 0 {
			t.Fatalf("cycle %d (killed with %s): pending files remain after the restart: %v", cycle, state, left)
		}
		if state == "pending file, no admin.json" && len(saved) == 0 {
			state = "incomplete pending file"
		}
		if len(saved) > 0 {
			// Killed between saving the credentials and renaming them:
			// before the commit they were discarded, after it recovered.
			state += ", discarded"
			if creds, _ := readAdminFile(filepath.Join(dir, AdminFile)); creds.ClientID == saved[0].ClientID {
				state = strings.TrimSuffix(state, ", discarded") + ", recovered"
			}
		}
		found[state]++
		again.stop()
	}
	t.Logf("%d first starts killed (bootstrap took %s when calibrated); data dir found after the kill: %v; admin.json worked after every restart",
		*crashCycles, boot.Round(time.Millisecond), found)
}

func pendingIn(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), adminPendingPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// dirState names what a killed first start left in its data dir.
func dirState(dir string) string {
	has := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	switch {
	case has(AdminFile):
		return "admin.json"
	case len(pendingIn(dir)) > 0:
		return "pending file, no admin.json"
	case has("m2mauth.db"):
		return "database, no credentials file"
	case has("master.key"):
		return "master key only"
	}
	return "nothing"
}
