package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/config"
)

// accessRecords are the access log's "request" records of one route in
// the server's log, by status.
func accessRecords(ts *testServer, route string) map[int]int {
	out := map[int]int{}
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		var rec struct {
			Msg    string `json:"msg"`
			Route  string `json:"route"`
			Status int    `json:"status"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request" && rec.Route == route {
			out[rec.Status]++
		}
	}
	return out
}

// --access-log decides which requests get a "request" record: by default
// (errors) the failed ones and not the successful token requests; all
// logs every one; off none. A refused token request is logged by the
// endpoint whatever it says, and no record holds the secret sent.
func TestAccessLog(t *testing.T) {
	const tokenRoute = "/oauth/token"
	tests := []struct {
		mode      string
		slow      time.Duration
		wantOK    int // records of the successful token request
		wantFail  int // of the refused one
		wantFound int // of a 404
	}{
		{"", 0, 0, 1, 1}, // the default: errors
		{config.AccessLogErrors, time.Second, 0, 1, 1},
		{config.AccessLogAll, time.Second, 1, 1, 1},
		{config.AccessLogOff, time.Second, 0, 0, 0},
	}
	for _, tc := range tests {
		name := tc.mode
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.LogLevel = "info"
			if tc.mode != "" {
				cfg.AccessLog, cfg.AccessLogSlow = tc.mode, tc.slow
			}
			ts := startServer(t, cfg)
			id, secret := setupOrders(ts)
			ts.mustToken(id, secret, url.Values{})
			const wrong = "wrong-secret-never-logged-0123456789"
			if resp, body := ts.tokenForm(id, wrong, url.Values{}); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("wrong secret: %d %s", resp.StatusCode, body)
			}
			req, _ := http.NewRequest(http.MethodGet, ts.URL+"/no/such/path", nil)
			if resp, _ := ts.do(req); resp.StatusCode != http.StatusNotFound {
				t.Fatalf("unknown path: %d", resp.StatusCode)
			}
			got := accessRecords(ts, tokenRoute)
			if got[http.StatusOK] != tc.wantOK || got[http.StatusUnauthorized] != tc.wantFail {
				t.Errorf("token request records by status %v; want %d for 200 and %d for 401", got, tc.wantOK, tc.wantFail)
			}
			if n := accessRecords(ts, unmatched)[http.StatusNotFound]; n != tc.wantFound {
				t.Errorf("records of the 404: %d; want %d", n, tc.wantFound)
			}
			logs := ts.logs.String()
			if !strings.Contains(logs, `"msg":"request refused"`) {
				t.Error("no record of the refused token request")
			}
			if strings.Contains(logs, wrong) || strings.Contains(logs, secret) {
				t.Error("a secret in the log")
			}
		})
	}
}

// With --access-log=errors a successful request is logged once it took
// --access-log-slow or longer.
func TestAccessLogSlow(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "info"
	cfg.AccessLogSlow = time.Minute
	// Each reading of the clock is two minutes after the last: every
	// request takes at least that long.
	var ticks atomic.Int64
	base := time.Now()
	now := func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * 2 * time.Minute) }
	ts := startServerClock(t, cfg, now)
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/.well-known/openid-configuration", nil)
	if resp, _ := ts.do(req); resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery: %d", resp.StatusCode)
	}
	if n := accessRecords(ts, "GET /.well-known/openid-configuration")[http.StatusOK]; n != 1 {
		t.Errorf("records of the slow request: %d; want 1", n)
	}
}
