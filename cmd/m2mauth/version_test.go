package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/buildinfo"
)

// version and --version print the same: the version, commit, Go version,
// platform and crypto backend, as text or (--json) a JSON object.
func TestCLIVersion(t *testing.T) {
	want := buildinfo.Get()
	textLines := []string{
		"m2mauth " + want.Version + "\n",
		"go:             " + runtime.Version() + "\n",
		"platform:       " + runtime.GOOS + "/" + runtime.GOARCH + "\n",
		"crypto backend: " + buildinfo.CryptoBackend() + "\n",
		"commit:         ",
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		json     bool
	}{
		{"version", []string{"version"}, 0, false},
		{"--version", []string{"--version"}, 0, false},
		{"version --json", []string{"version", "--json"}, 0, true},
		{"--version --json", []string{"--version", "--json"}, 0, true},
		{"extra argument", []string{"version", "now"}, 2, false},
		{"unknown flag", []string{"--version", "--yaml"}, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, nil, tc.args...)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %+v", r.code, tc.wantCode, r)
			}
			switch {
			case tc.wantCode != 0:
				if r.stdout != "" {
					t.Errorf("stdout on a usage error: %q", r.stdout)
				}
			case tc.json:
				var got buildinfo.Info
				if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, r.stdout)
				}
				if got != want {
					t.Errorf("version --json = %+v, want %+v", got, want)
				}
				for _, key := range []string{`"version"`, `"commit"`, `"go_version"`, `"os"`, `"arch"`, `"crypto_backend"`} {
					if !strings.Contains(r.stdout, key) {
						t.Errorf("version --json lacks %s:\n%s", key, r.stdout)
					}
				}
			default:
				for _, l := range textLines {
					if !strings.Contains(r.stdout, l) {
						t.Errorf("version output lacks %q:\n%s", l, r.stdout)
					}
				}
				if !strings.HasPrefix(r.stdout, "m2mauth ") {
					t.Errorf("version output does not start with \"m2mauth \":\n%s", r.stdout)
				}
			}
		})
	}
}
