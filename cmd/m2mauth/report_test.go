package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// client create/update --token-reuse, client show, and client report
// (text and --json) against a running server.
func TestCLITokenReuseAndReport(t *testing.T) {
	dir := t.TempDir()
	url := startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	must := mustCLI(t, vars)
	must("api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read")
	var c struct {
		ClientID               string  `json:"client_id"`
		ClientSecret           string  `json:"client_secret"`
		TokenReuseMinRemaining float64 `json:"token_reuse_min_remaining"`
	}
	r := must("client", "create", "--name", "chatty", "--audience", "https://api.example.com", "--token-reuse", "0.5", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || c.TokenReuseMinRemaining != 0.5 {
		t.Fatalf("client create --token-reuse: %q %v", r.stdout, err)
	}
	if r := must("client", "show", c.ClientID); !strings.Contains(r.stdout, "token reuse:      while more than 0.5 of a token's lifetime is left") {
		t.Fatalf("client show: %s", r.stdout)
	}
	must("client", "update", c.ClientID, "--token-reuse", "0")
	if r := must("client", "show", c.ClientID); strings.Contains(r.stdout, "token reuse") {
		t.Fatalf("client show after --token-reuse 0: %s", r.stdout)
	}
	for _, bad := range []string{"1", "NaN", "Inf", "-0.1"} {
		if r := cli(t, vars, "client", "update", c.ClientID, "--token-reuse", bad); r.code != 2 || !strings.Contains(r.stderr, "want a fraction of the lifetime") {
			t.Fatalf("--token-reuse %s: %+v", bad, r)
		}
	}
	if r := must("client", "report"); !strings.Contains(r.stdout, "no client was issued more than 10 times") {
		t.Fatalf("empty report: %s", r.stdout)
	}
	for range 35 {
		must("token", "--server", url, "--client-id", c.ClientID, "--client-secret", c.ClientSecret)
	}
	r = must("client", "report")
	if !strings.Contains(r.stdout, "TOKENS PER LIFETIME") || !strings.Contains(r.stdout, c.ClientID) || !strings.Contains(r.stdout, "chatty") {
		t.Fatalf("report: %s", r.stdout)
	}
	var rep struct {
		Clients []struct {
			ClientID string `json:"client_id"`
			Tokens   int64  `json:"tokens"`
		} `json:"clients"`
	}
	r = must("client", "report", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || len(rep.Clients) != 1 || rep.Clients[0].ClientID != c.ClientID || rep.Clients[0].Tokens != 35 {
		t.Fatalf("report --json: %s %v", r.stdout, err)
	}
}
