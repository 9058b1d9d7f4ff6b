package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolveVersion(t *testing.T) {
	for _, tc := range []struct {
		name, stamped string
		bi            *debug.BuildInfo
		want          string
	}{
		{"stamped wins", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v0.9.0"}}, "v1.2.3"},
		{"module version", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.9.0"}}, "v0.9.0"},
		{"devel module", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
		{"empty module", "", &debug.BuildInfo{}, "devel"},
		{"no build info", "", nil, "devel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolveVersion(tc.stamped, tc.bi); got != tc.want {
				t.Errorf("resolveVersion = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestResolveCommit(t *testing.T) {
	vcs := func(kv ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{}
		for i := 0; i < len(kv); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return bi
	}
	for _, tc := range []struct {
		name, stamped string
		bi            *debug.BuildInfo
		want          string
	}{
		{"stamped wins", "abc1234", vcs("vcs.revision", "ffff", "vcs.modified", "true"), "abc1234"},
		{"clean revision", "", vcs("vcs.revision", "0f52cb1", "vcs.modified", "false"), "0f52cb1"},
		{"dirty revision", "", vcs("vcs.modified", "true", "vcs.revision", "0f52cb1"), "0f52cb1-dirty"},
		{"modified without revision", "", vcs("vcs.modified", "true"), ""},
		{"no vcs", "", vcs(), ""},
		{"no build info", "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolveCommit(tc.stamped, tc.bi); got != tc.want {
				t.Errorf("resolveCommit = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGoBackend(t *testing.T) {
	for _, tc := range []struct {
		fips bool
		want string
	}{
		{false, "go (pure Go)"},
		{true, "go FIPS 140-3 module"},
	} {
		if got := goBackend(tc.fips); got != tc.want {
			t.Errorf("goBackend(%v) = %q, want %q", tc.fips, got, tc.want)
		}
	}
}

// TestCryptoBackend checks the backend reported is the one this test binary
// was built with: BoringCrypto under GOEXPERIMENT=boringcrypto with cgo on
// linux/amd64 or arm64 (make test-boring), Go's own code otherwise.
func TestCryptoBackend(t *testing.T) {
	cgo := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "CGO_ENABLED" {
				cgo = s.Value == "1"
			}
		}
	}
	boringPlatform := runtime.GOOS == "linux" && (runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64")
	got := CryptoBackend()
	switch {
	case boringBuild && cgo && boringPlatform:
		if got != "boringcrypto (BoringCrypto FIPS 140 module)" {
			t.Errorf("CryptoBackend() = %q in a boringcrypto build", got)
		}
	default:
		if !strings.HasPrefix(got, "go ") {
			t.Errorf("CryptoBackend() = %q without boringcrypto", got)
		}
	}
}

func TestGet(t *testing.T) {
	i := Get()
	if i.Version == "" || i.GoVersion != runtime.Version() || i.OS != runtime.GOOS || i.Arch != runtime.GOARCH || i.CryptoBackend != CryptoBackend() {
		t.Errorf("Get() = %+v", i)
	}
	if i.Version != Version() || i.Commit != Commit() {
		t.Errorf("Get() = %+v, Version() = %q, Commit() = %q", i, Version(), Commit())
	}
}
