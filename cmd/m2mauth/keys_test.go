package main

import (
	"strings"
	"testing"
)

func TestCLIKeys(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	r := cli(t, vars, "key", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "active") || !strings.Contains(r.stdout, "RS256") {
		t.Fatalf("key list: %+v", r)
	}
	r = cli(t, vars, "key", "rotate", "--alg", "EdDSA")
	if r.code != 0 || !strings.Contains(r.stdout, "(EdDSA) is published now and signs from") {
		t.Fatalf("key rotate: %+v", r)
	}
	if r := cli(t, vars, "key", "rotate"); r.code != 1 || !strings.Contains(r.stderr, "already scheduled") {
		t.Fatalf("second rotate: %+v", r)
	}
	r = cli(t, vars, "key", "list", "--json")
	if r.code != 0 || strings.Count(r.stdout, `"kid"`) != 2 || !strings.Contains(r.stdout, `"state": "next"`) {
		t.Fatalf("key list --json: %+v", r)
	}
	kid := r.stdout[strings.Index(r.stdout, `"kid": "`)+8:]
	kid = kid[:strings.Index(kid, `"`)]
	if r := cli(t, vars, "key", "revoke", kid); r.code != 1 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("revoke without --yes: %+v", r)
	}
	if r := cli(t, vars, "key", "revoke", kid, "--yes"); r.code != 0 || !strings.Contains(r.stdout, "revoked "+kid) {
		t.Fatalf("revoke: %+v", r)
	}
	if r := cli(t, vars, "key", "rewrap", "--data-dir", t.TempDir()); r.code != 1 || !strings.Contains(r.stderr, "no current master key") {
		t.Fatalf("rewrap without a key: %+v", r)
	}
}
