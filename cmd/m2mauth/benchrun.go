package main

import (
	"bufio"
	"bytes"
	"context"
	"embed"
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
	"slices"
	"strconv"
	"strings"
	"time"
)

// bench run drives wrk (https://github.com/wg/wrk) with the Lua script of
// benchlua/: wrk generates the load, the script builds each request from a
// credential picked at random and prints its summary as one JSON line, and
// this file parses it and adds the server's CPU and memory, read from its
// Prometheus metrics (--metrics) or from /proc/<pid> (--pid).

//go:embed benchlua/bench.lua
var benchLua embed.FS

// benchScenarios are the scenarios bench run knows, in report order.
var benchScenarios = []struct{ name, about string }{
	{"token", "client_credentials at --token-path, client_secret_basic"},
	{"token-post", "client_credentials at --token-path, client_secret_post"},
	{"introspect", "introspection (--introspect-path) of a token got first, with the caller's Basic credentials"},
	{"machine", "the machine-token surface: POST /v1/oauth/token/machine {apiKey, secretKey}"},
	{"atm", "the ATM surface: POST /auth/token {clientId, clientSecret, grant_types}"},
	{"jwks", "GET --jwks-path"},
}

var defaultBenchScenarios = []string{"token", "token-post", "introspect", "machine", "atm", "jwks"}

// benchCred is one client's credentials.
type benchCred struct{ id, secret string }

// benchCredsFile is what a credentials file of bench seed holds.
type benchCredsFile struct {
	audience string
	creds    []benchCred
}

// parseBenchCreds reads a credentials file: "<client_id>\t<client_secret>"
// per line, "#" comments, blank lines ignored, and the audience from a
// "# m2mauth bench credentials: audience=<aud>" line. hot > 0 keeps the
// first hot credentials only (and stops reading there).
func parseBenchCreds(r io.Reader, hot int) (benchCredsFile, error) {
	var out benchCredsFile
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	const header = "# m2mauth bench credentials:"
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, header) {
			for _, f := range strings.Fields(strings.TrimPrefix(line, header)) {
				if v, ok := strings.CutPrefix(f, "audience="); ok {
					out.audience = v
				}
			}
			continue
		}
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, secret, ok := strings.Cut(line, "\t")
		if !ok || id == "" || secret == "" {
			return out, fmt.Errorf("line %d: want <client_id><TAB><client_secret>", n)
		}
		if strings.ContainsAny(id+secret, " \t\v\f") {
			return out, fmt.Errorf("line %d: whitespace in a client id or secret", n)
		}
		out.creds = append(out.creds, benchCred{id, secret})
		if hot > 0 && len(out.creds) == hot {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return out, err
	}
	if len(out.creds) == 0 {
		return out, errors.New("no credentials in the file")
	}
	if hot > len(out.creds) {
		return out, fmt.Errorf("--hot %d: the file holds %d credentials", hot, len(out.creds))
	}
	return out, nil
}

// wrkResult is the line bench.lua's done() prints.
type wrkResult struct {
	DurationUS int64 `json:"duration_us"`
	Requests   int64 `json:"requests"`
	Bytes      int64 `json:"bytes"`
	Errors     struct {
		Connect int64 `json:"connect"`
		Read    int64 `json:"read"`
		Write   int64 `json:"write"`
		Status  int64 `json:"status"`
		Timeout int64 `json:"timeout"`
	} `json:"errors"`
	LatencyUS struct {
		Min   int64   `json:"min"`
		Mean  float64 `json:"mean"`
		Stdev float64 `json:"stdev"`
		Max   int64   `json:"max"`
		P50   int64   `json:"p50"`
		P90   int64   `json:"p90"`
		P99   int64   `json:"p99"`
		P999  int64   `json:"p999"`
	} `json:"latency_us"`
}

const wrkMarker = "M2MAUTH_BENCH "

// parseWrkOutput finds the summary line of bench.lua in wrk's output.
func parseWrkOutput(out []byte) (wrkResult, error) {
	var r wrkResult
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(line, wrkMarker); ok {
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				return r, fmt.Errorf("wrk summary: %v", err)
			}
			if r.DurationUS <= 0 {
				return r, errors.New("wrk summary: no duration")
			}
			return r, nil
		}
	}
	return r, errors.New("wrk printed no summary (is the script bench.lua?)")
}

// procStats is the server's cumulative CPU time and resident memory.
type procStats struct {
	cpuSeconds float64
	rssBytes   float64
}

// statsSource reads the server's process statistics.
type statsSource interface {
	read(ctx context.Context) (procStats, error)
}

// metricsSource scrapes a Prometheus text endpoint.
type metricsSource struct {
	url    string
	client *http.Client
}

func (m metricsSource) read(ctx context.Context) (procStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return procStats{}, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := m.client.Do(req)
	if err != nil {
		return procStats{}, fmt.Errorf("metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return procStats{}, fmt.Errorf("metrics: %s answered %s", m.url, resp.Status)
	}
	return parseProcMetrics(io.LimitReader(resp.Body, 16<<20))
}

// parseProcMetrics reads process_cpu_seconds_total and
// process_resident_memory_bytes from the Prometheus text format.
func parseProcMetrics(r io.Reader) (procStats, error) {
	var s procStats
	var cpu, rss bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		for _, m := range []struct {
			name string
			dst  *float64
			seen *bool
		}{{"process_cpu_seconds_total", &s.cpuSeconds, &cpu}, {"process_resident_memory_bytes", &s.rssBytes, &rss}} {
			rest, ok := strings.CutPrefix(line, m.name)
			if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			if i := strings.LastIndexByte(rest, '}'); i >= 0 {
				rest = rest[i+1:]
			}
			fields := strings.Fields(rest) // value [timestamp]
			if len(fields) == 0 {
				continue
			}
			v, err := strconv.ParseFloat(fields[0], 64)
			if err != nil {
				return s, fmt.Errorf("metrics: %s: %v", m.name, err)
			}
			*m.dst, *m.seen = v, true
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("metrics: %v", err)
	}
	if !cpu || !rss {
		return s, errors.New("metrics: no process_cpu_seconds_total or process_resident_memory_bytes (not a Prometheus process collector?)")
	}
	return s, nil
}

// procSource reads /proc/<pid> (Linux): any server, node-oidc-provider too.
type procSource struct {
	root string // "/proc"
	pid  int
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

func (p procSource) read(context.Context) (procStats, error) {
	dir := filepath.Join(p.root, strconv.Itoa(p.pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procStats{}, fmt.Errorf("--pid: %v", err)
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return procStats{}, fmt.Errorf("--pid: %v", err)
	}
	return parseProc(stat, status)
}

// parseProc reads utime+stime from /proc/<pid>/stat and VmRSS from
// /proc/<pid>/status.
func parseProc(stat, status []byte) (procStats, error) {
	var s procStats
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return s, errors.New("/proc stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return s, fmt.Errorf("/proc stat: %v", err)
	}
	s.cpuSeconds = float64(ut+st) / clockTicks
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return s, fmt.Errorf("/proc status: VmRSS %q", strings.TrimSpace(rest))
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return s, fmt.Errorf("/proc status: %v", err)
			}
			s.rssBytes = float64(kb) * 1024
			return s, nil
		}
	}
	return s, errors.New("/proc status: no VmRSS")
}

// benchRunConfig is bench run's flags, validated.
type benchRunConfig struct {
	url                                 *url.URL
	tokenPath, introspectPath, jwksPath string
	scenarios                           []string
	duration, warmup                    time.Duration
	connections, threads                int
	clientID, clientSecret, audience    string
	scope                               string
	credsPath                           string
	hot                                 int
	metricsURL                          string
	pid                                 int
	wrk                                 string
	json                                bool
	out                                 string
	interval                            time.Duration
}

type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// benchScenarioResult is one scenario's line of the report.
type benchScenarioResult struct {
	Scenario       string   `json:"scenario"`
	Requests       int64    `json:"requests"`
	DurationS      float64  `json:"duration_s"`
	RequestsPerSec float64  `json:"requests_per_sec"`
	P50MS          float64  `json:"p50_ms"`
	P90MS          float64  `json:"p90_ms"`
	P99MS          float64  `json:"p99_ms"`
	MaxMS          float64  `json:"max_ms"`
	Non2xx         int64    `json:"non_2xx"`
	SocketErrors   int64    `json:"socket_errors"`
	CPUSecPer1k    *float64 `json:"server_cpu_s_per_1k,omitempty"`
	PeakRSSMB      *float64 `json:"server_peak_rss_mb,omitempty"`
	Note           string   `json:"note,omitempty"`
}

type benchReport struct {
	URL         string                `json:"url"`
	Date        string                `json:"date"`
	Duration    string                `json:"duration"`
	Connections int                   `json:"connections"`
	Threads     int                   `json:"threads"`
	Clients     int                   `json:"clients"`
	Scenarios   []benchScenarioResult `json:"scenarios"`
}

func runBenchRun(ctx context.Context, e *env, args []string) error {
	var c benchRunConfig
	var rawURL string
	var scenarios stringList
	f := newFlags(e, "bench run", "", `Loads a running server with wrk (https://github.com/wg/wrk; Debian: apt-get install wrk)
and reports, per scenario, requests/s, p50/p90/p99/max latency, non-2xx answers and
socket errors, and the server's CPU seconds per 1,000 requests and peak RSS when it
can read them: from its Prometheus metrics (--metrics, serve --metrics-addr) or from
/proc/<pid> (--pid, Linux; any server). Scenarios (--scenario, repeatable):
`+scenarioHelp()+`
The credentials come from --client-id/--client-secret or from a credentials file of
bench seed (--creds: a client picked uniformly at random per request, or among the
first --hot lines). The same flags measure node-oidc-provider or Hydra: see
scripts/bench/README.md.`)
	f.envOnly = map[string]bool{"client-id": true, "client-secret": true}
	f.StringVar(&rawURL, "url", "", "base URL of the server (required), e.g. http://127.0.0.1:8080")
	f.StringVar(&c.tokenPath, "token-path", "/oauth/token", "token endpoint path (node-oidc-provider: /token; Hydra: /oauth2/token)")
	f.StringVar(&c.introspectPath, "introspect-path", "/oauth/introspect", "introspection endpoint path (node-oidc-provider: /token/introspection)")
	f.StringVar(&c.jwksPath, "jwks-path", "/.well-known/jwks.json", "JWKS path (node-oidc-provider: /jwks; Hydra: /.well-known/jwks.json)")
	f.Var(&scenarios, "scenario", "scenario to run, repeatable or comma-separated (default "+strings.Join(defaultBenchScenarios, ",")+"; with --creds, all but introspect)")
	f.DurationVar(&c.duration, "duration", 10*time.Second, "measured duration of each scenario")
	f.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured load before each scenario (0: none)")
	f.IntVar(&c.connections, "connections", 16, "open connections")
	f.IntVar(&c.threads, "threads", 2, "wrk threads")
	f.StringVar(&c.clientID, "client-id", "", "client id (or --creds)")
	f.StringVar(&c.clientSecret, "client-secret", "", "client secret; prefer the environment variable")
	f.StringVar(&c.audience, "audience", "", "audience parameter of the token requests (default: the credentials file's; none: the client's default audience)")
	f.StringVar(&c.scope, "scope", "", "scope parameter of the token requests (default: none, the client's default scopes)")
	f.StringVar(&c.credsPath, "creds", "", "credentials file written by bench seed")
	f.IntVar(&c.hot, "hot", 0, "use only the first N credentials of --creds (0: all)")
	f.StringVar(&c.metricsURL, "metrics", "", "the server's Prometheus endpoint for CPU and RSS, e.g. http://127.0.0.1:9464/metrics")
	f.IntVar(&c.pid, "pid", 0, "the server's process id: CPU and RSS from /proc/<pid> (Linux)")
	f.StringVar(&c.wrk, "wrk", "wrk", "the wrk binary")
	f.BoolVar(&c.json, "json", false, "print the report as JSON")
	f.StringVar(&c.out, "out", "", "also write the report as Markdown to this file")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	c.scenarios = scenarios
	if len(c.scenarios) == 0 {
		c.scenarios = defaultBenchScenarios
		if c.credsPath != "" {
			// Clients of bench seed may not introspect: the default set
			// leaves out what would only be refused.
			c.scenarios = slices.DeleteFunc(slices.Clone(c.scenarios), func(s string) bool { return s == "introspect" })
		}
	}
	c.interval = 250 * time.Millisecond
	usage := func(format string, a ...any) error {
		fmt.Fprintf(e.stderr, "m2mauth bench run: %s (run 'm2mauth bench run --help')\n", fmt.Sprintf(format, a...))
		return errUsage
	}
	if err := c.validate(rawURL); err != nil {
		return usage("%v", err)
	}
	var creds benchCredsFile
	if c.out != "" && c.credsPath != "" {
		if a, err := os.Stat(c.out); err == nil {
			if b, err := os.Stat(c.credsPath); err == nil && os.SameFile(a, b) {
				return usage("--out is the --creds file: the report would overwrite the credentials")
			}
		}
	}
	if c.credsPath != "" {
		fh, err := os.Open(c.credsPath)
		if err != nil {
			return fmt.Errorf("--creds: %v", err)
		}
		creds, err = parseBenchCreds(fh, c.hot)
		fh.Close()
		if err != nil {
			return fmt.Errorf("--creds %s: %v", c.credsPath, err)
		}
		if c.audience == "" {
			c.audience = creds.audience
		}
	} else if c.clientID != "" {
		creds.creds = []benchCred{{c.clientID, c.clientSecret}}
	}
	wrkPath, err := exec.LookPath(c.wrk)
	if err != nil {
		return fmt.Errorf("wrk not found (%v): install it (Debian/Ubuntu: apt-get install wrk; Fedora: dnf install wrk; macOS: brew install wrk) or name it with --wrk", err)
	}
	var stats statsSource
	switch {
	case c.metricsURL != "":
		stats = metricsSource{c.metricsURL, &http.Client{Timeout: 5 * time.Second}}
	case c.pid != 0:
		stats = procSource{"/proc", c.pid}
	}
	if stats != nil {
		if _, err := stats.read(ctx); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "m2mauth-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script, _ := benchLua.ReadFile("benchlua/bench.lua")
	scriptPath := filepath.Join(dir, "bench.lua")
	if err := os.WriteFile(scriptPath, script, 0o600); err != nil {
		return err
	}
	b := &benchRunner{cfg: c, creds: creds.creds, wrk: wrkPath, script: scriptPath, dir: dir, stats: stats, stderr: e.stderr, client: &http.Client{Timeout: 10 * time.Second}}
	rep := benchReport{URL: c.url.String(), Date: time.Now().UTC().Format(time.RFC3339), Duration: c.duration.String(), Connections: c.connections, Threads: c.threads, Clients: len(creds.creds)}
	for _, s := range c.scenarios {
		if !c.json {
			fmt.Fprintf(e.stderr, "bench run: %s for %s…\n", s, c.duration)
		}
		r, err := b.scenario(ctx, s)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		rep.Scenarios = append(rep.Scenarios, r)
	}
	md := rep.markdown()
	if c.out != "" {
		if err := os.WriteFile(c.out, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if c.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		_, err = io.WriteString(e.stdout, md)
	}
	if err != nil {
		return err
	}
	// A run with refused requests or socket errors measured something
	// else than the server's throughput: scripts must see it failed.
	for _, s := range rep.Scenarios {
		if s.Non2xx > 0 || s.SocketErrors > 0 {
			return fmt.Errorf("%s had %d non-2xx answers and %d socket errors: not a valid run", s.Scenario, s.Non2xx, s.SocketErrors)
		}
	}
	return nil
}

func scenarioHelp() string {
	var b strings.Builder
	for _, s := range benchScenarios {
		fmt.Fprintf(&b, "  %-11s %s\n", s.name, s.about)
	}
	return b.String()
}

// validate checks the flags (usage errors) and sets c.url.
func (c *benchRunConfig) validate(rawURL string) error {
	if rawURL == "" {
		return errors.New("--url is required")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("--url %q: want an http(s) base URL such as http://127.0.0.1:8080", rawURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c.url = u
	for name, p := range map[string]string{"--token-path": c.tokenPath, "--introspect-path": c.introspectPath, "--jwks-path": c.jwksPath} {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\r\n") {
			return fmt.Errorf("%s %q: want a path starting with /", name, p)
		}
	}
	seen := map[string]bool{}
	needCreds := false
	for _, s := range c.scenarios {
		if !slices.ContainsFunc(benchScenarios, func(k struct{ name, about string }) bool { return k.name == s }) {
			return fmt.Errorf("unknown scenario %q (known: %s)", s, strings.Join(defaultBenchScenarios, ", "))
		}
		if seen[s] {
			return fmt.Errorf("scenario %q given twice", s)
		}
		seen[s] = true
		needCreds = needCreds || s != "jwks"
	}
	switch {
	case c.duration < time.Second:
		return fmt.Errorf("--duration %s: at least 1s", c.duration)
	case c.duration%time.Second != 0 || c.warmup%time.Second != 0:
		return errors.New("--duration and --warmup: whole seconds (wrk's unit)")
	case c.warmup < 0:
		return errors.New("--warmup: not negative")
	case c.threads < 1:
		return errors.New("--threads: at least 1")
	case c.connections < c.threads:
		return fmt.Errorf("--connections %d: at least --threads (%d)", c.connections, c.threads)
	case c.hot < 0:
		return errors.New("--hot: not negative")
	case c.hot > 0 && c.credsPath == "":
		return errors.New("--hot needs --creds")
	case c.credsPath != "" && (c.clientID != "" || c.clientSecret != ""):
		return errors.New("--creds or --client-id/--client-secret, not both")
	case c.credsPath == "" && (c.clientID == "") != (c.clientSecret == ""):
		return errors.New("--client-id and --client-secret go together")
	case needCreds && c.credsPath == "" && c.clientID == "":
		return errors.New("credentials needed: --client-id and --client-secret, or --creds (only the jwks scenario runs without)")
	case c.metricsURL != "" && c.pid != 0:
		return errors.New("--metrics or --pid, not both")
	case c.pid < 0:
		return errors.New("--pid: a process id")
	}
	if c.metricsURL != "" {
		m, err := url.Parse(c.metricsURL)
		if err != nil || (m.Scheme != "http" && m.Scheme != "https") || m.Host == "" {
			return fmt.Errorf("--metrics %q: want an http(s) URL such as http://127.0.0.1:9464/metrics", c.metricsURL)
		}
	}
	return nil
}

// benchRunner runs the scenarios.
type benchRunner struct {
	cfg    benchRunConfig
	creds  []benchCred
	wrk    string
	script string
	dir    string
	stats  statsSource
	stderr io.Writer
	client *http.Client
}

// wrkArgs is what bench.lua reads (see its header).
type wrkArgs struct {
	method, path, ctype, kind string
	// record(i) is the i-th of count records (built twice, not held:
	// a million clients' records would take hundreds of megabytes).
	record   func(i int) string
	count    int
	constant string
}

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// jsonRecord is v as JSON without spaces (records are space-padded).
func jsonRecord(v any) string {
	b, _ := json.Marshal(v)
	return strings.ReplaceAll(string(b), " ", `\u0020`)
}

// tokenParams is the form of a token request besides the credentials.
func (b *benchRunner) tokenParams() url.Values {
	v := url.Values{"grant_type": {"client_credentials"}}
	if b.cfg.audience != "" {
		v.Set("audience", b.cfg.audience)
	}
	if b.cfg.scope != "" {
		v.Set("scope", b.cfg.scope)
	}
	return v
}

// requestFor builds the request set of a scenario.
func (b *benchRunner) requestFor(ctx context.Context, scenario string) (wrkArgs, error) {
	const form, js = "application/x-www-form-urlencoded", "application/json"
	switch scenario {
	case "token":
		a := wrkArgs{method: "POST", path: b.cfg.tokenPath, ctype: form, kind: "header", constant: b.tokenParams().Encode()}
		a.record = func(i int) string { return basicAuth(b.creds[i].id, b.creds[i].secret) }
		a.count = len(b.creds)
		return a, nil
	case "token-post":
		a := wrkArgs{method: "POST", path: b.cfg.tokenPath, ctype: form, kind: "body"}
		a.record = func(i int) string {
			v := b.tokenParams()
			v.Set("client_id", b.creds[i].id)
			v.Set("client_secret", b.creds[i].secret)
			return v.Encode()
		}
		a.count = len(b.creds)
		return a, nil
	case "machine":
		a := wrkArgs{method: "POST", path: "/v1/oauth/token/machine", ctype: js, kind: "body"}
		a.record = func(i int) string {
			return jsonRecord(map[string]string{"apiKey": b.creds[i].id, "secretKey": b.creds[i].secret})
		}
		a.count = len(b.creds)
		return a, nil
	case "atm":
		a := wrkArgs{method: "POST", path: "/auth/token", ctype: js, kind: "body"}
		a.record = func(i int) string {
			return jsonRecord(map[string]string{"clientId": b.creds[i].id, "clientSecret": b.creds[i].secret, "grant_types": "client_credentials"})
		}
		a.count = len(b.creds)
		return a, nil
	case "introspect":
		c := b.creds[0]
		tok, err := b.fetchToken(ctx, c)
		if err != nil {
			return wrkArgs{}, err
		}
		// The caller's credentials go in the records file (mode 0600),
		// never on wrk's command line, which every local user can read.
		static := []string{basicAuth(c.id, c.secret), url.Values{"token": {tok}}.Encode()}
		return wrkArgs{method: "POST", path: b.cfg.introspectPath, ctype: form, kind: "static",
			record: func(i int) string { return static[i] }, count: len(static)}, nil
	case "jwks":
		return wrkArgs{method: "GET", path: b.cfg.jwksPath, kind: "static"}, nil
	}
	return wrkArgs{}, fmt.Errorf("unknown scenario %q", scenario)
}

// fetchToken gets the token the introspect scenario introspects.
func (b *benchRunner) fetchToken(ctx context.Context, c benchCred) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.cfg.url.String()+b.cfg.tokenPath, strings.NewReader(b.tokenParams().Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basicAuth(c.id, c.secret))
	resp, err := b.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("getting a token to introspect: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		return "", fmt.Errorf("getting a token to introspect: %s %s", resp.Status, body.Error)
	}
	return body.AccessToken, nil
}

// writeRecords writes fixed-width, space-padded records; it returns the
// file, the width and the count.
func (b *benchRunner) writeRecords(name string, record func(int) string, count int) (string, int, error) {
	width := 1
	for i := range count {
		width = max(width, len(record(i))+1)
	}
	p := filepath.Join(b.dir, name)
	fh, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", 0, err
	}
	w := bufio.NewWriterSize(fh, 1<<20)
	pad := strings.Repeat(" ", width-1) + "\n"
	for i := range count {
		r := record(i)
		w.WriteString(r)
		w.WriteString(pad[len(r):])
	}
	if err := errors.Join(w.Flush(), fh.Close()); err != nil {
		return "", 0, err
	}
	return p, width, nil
}

// wrk runs wrk for d and parses its summary.
func (b *benchRunner) runWrk(ctx context.Context, a wrkArgs, file string, width, count int, d time.Duration) (wrkResult, error) {
	args := []string{
		"-t", strconv.Itoa(b.cfg.threads), "-c", strconv.Itoa(b.cfg.connections),
		"-d", strconv.Itoa(int(d / time.Second)), "--timeout", "10", "-s", b.script,
		b.cfg.url.String(), "--",
		a.method, b.cfg.url.Path + a.path, a.ctype, a.kind, file, strconv.Itoa(width), strconv.Itoa(count), a.constant,
	}
	cmd := exec.CommandContext(ctx, b.wrk, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseWrkOutput(out)
}

// scenario runs one scenario: warmup, then the measured run with the
// server's statistics read before, after and every interval during it.
func (b *benchRunner) scenario(ctx context.Context, name string) (benchScenarioResult, error) {
	a, err := b.requestFor(ctx, name)
	if err != nil {
		return benchScenarioResult{}, err
	}
	file, width, count := "-", 1, 0
	if a.count > 0 {
		if file, width, err = b.writeRecords(name+".rec", a.record, a.count); err != nil {
			return benchScenarioResult{}, err
		}
		count = a.count
	}
	if b.cfg.warmup > 0 {
		if _, err := b.runWrk(ctx, a, file, width, count, b.cfg.warmup); err != nil {
			return benchScenarioResult{}, fmt.Errorf("warmup: %w", err)
		}
	}
	var before procStats
	var peak float64
	sampled := make(chan struct{})
	stop := make(chan struct{})
	if b.stats != nil {
		if before, err = b.stats.read(ctx); err != nil {
			return benchScenarioResult{}, err
		}
		peak = before.rssBytes
		go func() {
			defer close(sampled)
			t := time.NewTicker(b.cfg.interval)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if s, err := b.stats.read(ctx); err == nil {
						peak = max(peak, s.rssBytes)
					}
				}
			}
		}()
	} else {
		close(sampled)
	}
	res, err := b.runWrk(ctx, a, file, width, count, b.cfg.duration)
	close(stop)
	<-sampled
	if err != nil {
		return benchScenarioResult{}, err
	}
	r := benchScenarioResult{
		Scenario:       name,
		Requests:       res.Requests,
		DurationS:      float64(res.DurationUS) / 1e6,
		RequestsPerSec: float64(res.Requests) / (float64(res.DurationUS) / 1e6),
		P50MS:          float64(res.LatencyUS.P50) / 1000,
		P90MS:          float64(res.LatencyUS.P90) / 1000,
		P99MS:          float64(res.LatencyUS.P99) / 1000,
		MaxMS:          float64(res.LatencyUS.Max) / 1000,
		Non2xx:         res.Errors.Status,
		SocketErrors:   res.Errors.Connect + res.Errors.Read + res.Errors.Write + res.Errors.Timeout,
	}
	if b.stats != nil {
		after, err := b.stats.read(ctx)
		if err != nil {
			return benchScenarioResult{}, err
		}
		peak = max(peak, after.rssBytes)
		mb := peak / (1 << 20)
		r.PeakRSSMB = &mb
		if res.Requests > 0 {
			cpu := (after.cpuSeconds - before.cpuSeconds) / float64(res.Requests) * 1000
			r.CPUSecPer1k = &cpu
		}
	}
	if name != "jwks" && len(b.creds) > 1 {
		r.Note = fmt.Sprintf("%d clients, uniform", len(b.creds))
	}
	return r, nil
}

// markdown is the report as a short Markdown table.
func (rep benchReport) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "m2mauth bench run: %s, %s, %s per scenario, %d connections, %d threads\n\n", rep.URL, rep.Date, rep.Duration, rep.Connections, rep.Threads)
	b.WriteString("| scenario | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | socket errors | server CPU s / 1k req | server peak RSS MB |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	opt := func(v *float64, format string) string {
		if v == nil {
			return "–"
		}
		return fmt.Sprintf(format, *v)
	}
	for _, s := range rep.Scenarios {
		name := s.Scenario
		if s.Note != "" {
			name += " (" + s.Note + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f | %.2f | %.2f | %.2f | %d | %d | %s | %s |\n", name, groupThousands(s.RequestsPerSec),
			s.P50MS, s.P90MS, s.P99MS, s.MaxMS, s.Non2xx, s.SocketErrors, opt(s.CPUSecPer1k, "%.3f"), opt(s.PeakRSSMB, "%.0f"))
	}
	for _, s := range rep.Scenarios {
		if s.Non2xx > 0 || s.SocketErrors > 0 {
			fmt.Fprintf(&b, "\nWarning: %s had %d non-2xx answers and %d socket errors in %d requests: not a valid throughput figure.\n",
				s.Scenario, s.Non2xx, s.SocketErrors, s.Requests)
		}
	}
	return b.String()
}

// groupThousands formats a rate as 12,345.
func groupThousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
