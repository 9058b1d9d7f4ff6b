package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// client create/update --quota-per-… set a client's quota (update changes
// only the windows given), and client show prints it.
func TestCLIClientQuota(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	must := mustCLI(t, vars)
	type quota struct {
		PerMinute int64 `json:"per_minute"`
		PerHour   int64 `json:"per_hour"`
		PerDay    int64 `json:"per_day"`
	}
	var c struct {
		ClientID string `json:"client_id"`
		Quota    quota  `json:"quota"`
	}
	_ = json.Unmarshal([]byte(must("client", "create", "--name", "q", "--quota-per-minute", "10", "--quota-per-day", "-1", "--json").stdout), &c)
	if c.Quota != (quota{10, 0, -1}) {
		t.Fatalf("created with quota %+v", c.Quota)
	}
	_ = json.Unmarshal([]byte(must("client", "update", c.ClientID, "--quota-per-hour", "100", "--json").stdout), &c)
	if c.Quota != (quota{10, 100, -1}) {
		t.Fatalf("after update: quota %+v, want only per_hour changed", c.Quota)
	}
	if out := must("client", "show", c.ClientID).stdout; !strings.Contains(out, "quota:            10/minute, 100/hour, unlimited/day") {
		t.Errorf("client show:\n%s", out)
	}
	if r := cli(t, vars, "client", "update", c.ClientID, "--quota-per-minute", "-2"); r.code != 1 || !strings.Contains(r.stderr, "quota.per_minute") {
		t.Errorf("an invalid quota: %+v", r)
	}
}
