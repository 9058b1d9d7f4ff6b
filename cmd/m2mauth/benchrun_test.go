package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseWrkOutput(t *testing.T) {
	const summary = `M2MAUTH_BENCH {"duration_us":10001234,"requests":140000,"bytes":98000000,"errors":{"connect":1,"read":2,"write":3,"status":4,"timeout":5},"latency_us":{"min":90,"mean":1100.5,"stdev":300.2,"max":45000,"p50":950,"p90":1800,"p99":4200,"p999":9000}}` + "\n"
	wrkOut := "Running 10s test @ http://127.0.0.1:8080\n  2 threads and 16 connections\n" + summary + "Requests/sec:  13998.27\n"
	tests := []struct {
		name, out, err string
	}{
		{"amid wrk's own output", wrkOut, ""},
		{"no summary", "Running 10s test @ http://x\nRequests/sec: 1\n", "no summary"},
		{"bad JSON", "M2MAUTH_BENCH {\"requests\":\n", "wrk summary"},
		{"no duration", `M2MAUTH_BENCH {"requests":1}` + "\n", "no duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseWrkOutput([]byte(tt.out))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Requests != 140000 || r.DurationUS != 10001234 || r.LatencyUS.P99 != 4200 || r.LatencyUS.Max != 45000 ||
				r.Errors.Status != 4 || r.Errors.Timeout != 5 || r.LatencyUS.P50 != 950 || r.LatencyUS.P90 != 1800 {
				t.Fatalf("parsed %+v", r)
			}
		})
	}
}

const fakeMetrics = `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 12
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_cpu_seconds_total_other 99
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes{instance="a"} 2.5165824e+07 1700000000000
`

func TestMetricsSource(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		err    string
	}{
		{"process collector", 200, fakeMetrics, ""},
		{"no process metrics", 200, "go_goroutines 12\n", "no process_cpu_seconds_total"},
		{"bad value", 200, "process_cpu_seconds_total x\nprocess_resident_memory_bytes 1\n", "process_cpu_seconds_total"},
		{"not found", 404, "", "404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/metrics" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			s, err := metricsSource{srv.URL + "/metrics", srv.Client()}.read(context.Background())
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.cpuSeconds != 12.5 || s.rssBytes != 25165824 {
				t.Fatalf("read %+v", s)
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "4242 (node (x) y) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1234 566 0 0 20 0 11 0 100 1000000 30000 ...\n"
	status := "Name:\tnode\nVmPeak:\t  900000 kB\nVmRSS:\t  176128 kB\nThreads:\t11\n"
	s, err := parseProc([]byte(stat), []byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if s.cpuSeconds != 18 || s.rssBytes != 176128*1024 {
		t.Fatalf("parsed %+v", s)
	}
	if _, err := parseProc([]byte(stat), []byte("Name:\tnode\n")); err == nil {
		t.Fatal("no VmRSS: no error")
	}
	if _, err := parseProc([]byte("4242 (x) S 1"), []byte(status)); err == nil {
		t.Fatal("short stat: no error")
	}
	// This process, through /proc.
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		s, err := procSource{"/proc", os.Getpid()}.read(context.Background())
		if err != nil || s.rssBytes <= 0 {
			t.Fatalf("/proc of this process: %+v, %v", s, err)
		}
	}
}

func TestParseBenchCreds(t *testing.T) {
	const file = "# m2mauth bench credentials: audience=https://api.example.com\n# a comment\n\nc1\ts1\nc2\ts2\r\nc3\ts3\n"
	tests := []struct {
		name, in string
		hot      int
		want     []string
		aud, err string
	}{
		{"all", file, 0, []string{"c1:s1", "c2:s2", "c3:s3"}, "https://api.example.com", ""},
		{"hot", file, 2, []string{"c1:s1", "c2:s2"}, "https://api.example.com", ""},
		{"no header", "c1\ts1\n", 0, []string{"c1:s1"}, "", ""},
		{"hot beyond the file", file, 4, nil, "", "--hot 4: the file holds 3"},
		{"no tab", "c1 s1\n", 0, nil, "", "line 1: want <client_id><TAB><client_secret>"},
		{"empty secret", "# x\nc1\t\n", 0, nil, "", "line 2:"},
		{"whitespace", "c1\ts 1\n", 0, nil, "", "whitespace"},
		{"empty", "# m2mauth bench credentials: audience=a\n", 0, nil, "", "no credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBenchCreds(strings.NewReader(tt.in), tt.hot)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range got.creds {
				ids = append(ids, c.id+":"+c.secret)
			}
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") || got.audience != tt.aud {
				t.Fatalf("got %v %q", ids, got.audience)
			}
		})
	}
}

func TestBenchRunUsage(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "creds.tsv")
	if err := os.WriteFile(creds, []byte("c1\ts1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"bench", "run", "--url", "http://127.0.0.1:1"}
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no url", []string{"bench", "run", "--client-id", "a", "--client-secret", "b"}, 2, "--url is required"},
		{"bad url", []string{"bench", "run", "--url", "127.0.0.1:8080", "--scenario", "jwks"}, 2, "want an http(s) base URL"},
		{"unknown scenario", append(base, "--scenario", "token,nope", "--client-id", "a", "--client-secret", "b"), 2, `unknown scenario "nope"`},
		{"scenario twice", append(base, "--scenario", "jwks", "--scenario", "jwks"), 2, "given twice"},
		{"no credentials", append(base, "--scenario", "token"), 2, "credentials needed"},
		{"id without secret", append(base, "--client-id", "a"), 2, "go together"},
		{"creds and id", append(base, "--creds", creds, "--client-id", "a", "--client-secret", "b"), 2, "not both"},
		{"hot without creds", append(base, "--hot", "3", "--client-id", "a", "--client-secret", "b"), 2, "--hot needs --creds"},
		{"short duration", append(base, "--scenario", "jwks", "--duration", "500ms"), 2, "at least 1s"},
		{"fractional duration", append(base, "--scenario", "jwks", "--duration", "1500ms"), 2, "whole seconds"},
		{"few connections", append(base, "--scenario", "jwks", "--connections", "1", "--threads", "2"), 2, "at least --threads"},
		{"bad token path", append(base, "--scenario", "jwks", "--token-path", "token"), 2, "starting with /"},
		{"metrics and pid", append(base, "--scenario", "jwks", "--pid", "1", "--metrics", "http://x/metrics"), 2, "not both"},
		{"bad flag value", append(base, "--connections", "many"), 2, "invalid value"},
		{"no wrk", append(base, "--scenario", "jwks", "--wrk", "/nonexistent/wrk"), 1, "apt-get install wrk"},
		{"missing creds file", append(base, "--creds", filepath.Join(t.TempDir(), "none")), 1, "--creds"},
		{"report over the creds", append(base, "--creds", creds, "--out", creds), 2, "would overwrite the credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, nil, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tt.code, tt.msg)
			}
		})
	}
}

// TestBenchRunAgainstServer runs wrk for a second per scenario against an
// in-process server, reading CPU and RSS from /proc of this process.
func TestBenchRunAgainstServer(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("wrk is not installed (.ci/run installs it)")
		}
		t.Skip("wrk is not installed")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	dir := t.TempDir()
	url := startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	admin := mustCLI(t, vars)
	admin("api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read")
	var creds strings.Builder
	creds.WriteString("# m2mauth bench credentials: audience=https://api.example.com\n")
	for _, name := range []string{"one", "two"} {
		var c struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		r := admin("client", "create", "--name", name, "--audience", "https://api.example.com", "--scopes", "orders:read", "--introspect", "https://api.example.com", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
			t.Fatal(err)
		}
		creds.WriteString(c.ClientID + "\t" + c.ClientSecret + "\n")
	}
	credsPath := filepath.Join(dir, "creds.tsv")
	if err := os.WriteFile(credsPath, []byte(creds.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.md")
	r := cli(t, nil, "bench", "run", "--url", url, "--creds", credsPath, "--scenario", strings.Join(defaultBenchScenarios, ","), "--duration", "1s", "--warmup", "0s",
		"--connections", "4", "--threads", "1", "--pid", strconv.Itoa(os.Getpid()), "--json", "--out", out)
	if r.code != 0 {
		t.Fatalf("bench run: %+v", r)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report %q: %v", r.stdout, err)
	}
	if len(rep.Scenarios) != len(defaultBenchScenarios) || rep.Clients != 2 {
		t.Fatalf("report: %+v", rep)
	}
	for i, s := range rep.Scenarios {
		if s.Scenario != defaultBenchScenarios[i] || s.Requests < 10 || s.Non2xx != 0 || s.SocketErrors != 0 ||
			s.P50MS <= 0 || s.P99MS < s.P50MS || s.MaxMS < s.P99MS || s.CPUSecPer1k == nil || s.PeakRSSMB == nil || *s.PeakRSSMB <= 0 {
			t.Errorf("scenario %d: %+v", i, s)
		}
	}
	md, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(md), "| token (2 clients, uniform) |") || !strings.Contains(string(md), "| jwks |") || strings.Contains(string(md), "Warning") {
		t.Fatalf("markdown report: %q, %v", md, err)
	}

	// A wrong secret: every answer counted as an error.
	r = cli(t, nil, "bench", "run", "--url", url, "--client-id", "m2mc_nobody", "--client-secret", "wrong",
		"--scenario", "token", "--duration", "1s", "--warmup", "0s", "--connections", "2", "--threads", "1", "--json")
	rep = benchReport{}
	if r.code != 1 || !strings.Contains(r.stderr, "not a valid run") || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Scenarios) != 1 {
		t.Fatalf("bench run with a wrong secret: %+v", r)
	}
	if s := rep.Scenarios[0]; s.Requests == 0 || s.Non2xx != s.Requests || s.CPUSecPer1k != nil {
		t.Fatalf("wrong secret: %+v", s)
	}
	if md := rep.markdown(); !strings.Contains(md, "Warning: token had ") || !strings.Contains(md, "not a valid throughput figure") {
		t.Fatalf("no warning in the report:\n%s", md)
	}
}

func TestWriteRecords(t *testing.T) {
	b := &benchRunner{dir: t.TempDir()}
	recs := []string{"Basic YTpi", "Basic bG9uZ2VyOnNlY3JldA==", `{"apiKey":"a\u0020b"}`}
	p, width, err := b.writeRecords("x.rec", func(i int) string { return recs[i] }, len(recs))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if width != len(recs[1])+1 || len(got) != width*len(recs) {
		t.Fatalf("width %d, %d bytes", width, len(got))
	}
	for i, r := range recs {
		rec := string(got[i*width : (i+1)*width])
		if !strings.HasSuffix(rec, "\n") || strings.TrimRight(rec, " \n") != r {
			t.Errorf("record %d = %q, want %q", i, rec, r)
		}
	}
	if jsonRecord(map[string]string{"k": "a b"}) != `{"k":"a\u0020b"}` {
		t.Error("jsonRecord keeps a space")
	}
}

// No scenario puts a secret on wrk's command line, which every local user
// can read (ps, /proc/<pid>/cmdline): credentials go in the records file.
func TestBenchRunKeepsSecretsOffWrkCommandLine(t *testing.T) {
	dir := t.TempDir()
	url := startServer(t, dir)
	admin := mustCLI(t, map[string]string{"M2MAUTH_DATA_DIR": dir})
	admin("api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read")
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	r := admin("client", "create", "--name", "one", "--audience", "https://api.example.com", "--scopes", "orders:read", "--introspect", "https://api.example.com", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatal(err)
	}
	// A wrk that records its arguments and reports a one-request run.
	argsFile := filepath.Join(dir, "wrk-args")
	wrk := filepath.Join(dir, "wrk")
	summary := `M2MAUTH_BENCH {"duration_us":1000000,"requests":1,"bytes":1,"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},"latency_us":{"min":1,"mean":1,"stdev":0,"max":1,"p50":1,"p90":1,"p99":1,"p999":1}}`
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + argsFile + "\necho '" + summary + "'\n"
	if err := os.WriteFile(wrk, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	r = cli(t, map[string]string{"M2MAUTH_CLIENT_ID": c.ClientID, "M2MAUTH_CLIENT_SECRET": c.ClientSecret},
		"bench", "run", "--url", url, "--wrk", wrk, "--scenario", "token,token-post,introspect,machine,atm",
		"--duration", "1s", "--warmup", "0s", "--json")
	if r.code != 0 {
		t.Fatalf("bench run: %+v", r)
	}
	args, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(args), "\n"); n != 5 {
		t.Fatalf("wrk ran %d times, want 5 (one per scenario, no warm-up):\n%s", n, args)
	}
	basic := basicAuth(c.ClientID, c.ClientSecret)
	for _, secret := range []string{c.ClientSecret, url2Query(c.ClientSecret), strings.TrimPrefix(basic, "Basic ")} {
		if strings.Contains(string(args), secret) {
			t.Errorf("a secret on wrk's command line:\n%s", args)
		}
	}
}

func url2Query(s string) string { return neturl.QueryEscape(s) }
