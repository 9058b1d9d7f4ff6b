package main

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bench seed writes clients straight into the database (refusing while a
// SQLite server runs, and refusing ids that exist), and the credentials it
// writes get tokens from the server.
func TestCLIBenchSeed(t *testing.T) {
	dir := t.TempDir()
	srvURL, stop := runServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	out := filepath.Join(t.TempDir(), "creds.txt")
	if r := cli(t, vars, "bench", "seed", "--clients", "25", "--out", out); r.code != 1 || !strings.Contains(r.stderr, "a server is running on this database") {
		t.Fatalf("bench seed beside a server: %+v", r)
	}
	stop()
	r := mustCLI(t, vars)("bench", "seed", "--clients", "25", "--out", out)
	if !strings.Contains(r.stdout, "inserted 25 clients") {
		t.Errorf("bench seed said %q", r.stdout)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, %v", fi, err)
	}
	b, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 26 || lines[0] != "# m2mauth bench credentials: audience=https://bench.m2mauth.invalid" {
		t.Fatalf("credentials file: %d lines, first %q", len(lines), lines[0])
	}
	id, sec, ok := strings.Cut(lines[25], "\t")
	if !ok || id != "bench-24" || !strings.HasPrefix(sec, "m2ms_") {
		t.Fatalf("last line %q", lines[25])
	}
	// Again with the same prefix: refused, and the file is not overwritten.
	if r := cli(t, vars, "bench", "seed", "--clients", "5", "--out", out+"2"); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("seed over existing ids: %+v", r)
	}
	// A prefix that is an existing id (bench-24): refused too.
	if r := cli(t, vars, "bench", "seed", "--clients", "5", "--prefix", "bench-24", "--out", out+"3"); r.code != 1 || !strings.Contains(r.stderr, "client bench-24 exists") {
		t.Errorf("seed with a prefix that is an id: %+v", r)
	}
	if r := cli(t, vars, "bench", "seed", "--clients", "5", "--prefix", "other-", "--out", out); r.code != 1 {
		t.Errorf("seed over an existing credentials file: %+v", r)
	}
	runServerOn(t, dir, strings.TrimPrefix(srvURL, "http://"))
	req, _ := http.NewRequest("POST", srvURL+"/oauth/token", strings.NewReader(url.Values{
		"grant_type": {"client_credentials"}, "audience": {"https://bench.m2mauth.invalid"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, sec)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("token request with seeded credentials: %d", resp.StatusCode)
	}
	// The seed is in the audit trail: one event for the batch.
	if r := mustCLI(t, vars)("audit", "list", "--json"); strings.Count(r.stdout, `"client.bench_seed"`) != 1 || !strings.Contains(r.stdout, `"bench-"`) {
		t.Errorf("audit trail: %s", r.stdout)
	}
}
