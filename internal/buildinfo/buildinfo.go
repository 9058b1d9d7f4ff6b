// Package buildinfo reports what a binary is: its version and commit, the
// Go toolchain that built it and the cryptographic backend it signs with.
//
// The version and commit are stamped by the build (make build):
//
//	go build -ldflags "-X github.com/m2mauth/m2mauth/internal/buildinfo.version=v1.2.3 \
//	  -X github.com/m2mauth/m2mauth/internal/buildinfo.commit=abc1234"
//
// and otherwise read from the module and VCS information the Go toolchain
// records (go install …@v1.2.3, a build in a git checkout).
package buildinfo

import (
	"crypto/fips140"
	"runtime"
	"runtime/debug"
)

// Set at link time with -ldflags -X (see the package comment).
var (
	version = ""
	commit  = ""
)

// Info is everything `m2mauth version` prints.
type Info struct {
	Version       string `json:"version"`
	Commit        string `json:"commit"`
	GoVersion     string `json:"go_version"`
	OS            string `json:"os"`
	Arch          string `json:"arch"`
	CryptoBackend string `json:"crypto_backend"`
}

// Get returns the binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return Info{
		Version:       resolveVersion(version, bi),
		Commit:        resolveCommit(commit, bi),
		GoVersion:     runtime.Version(),
		OS:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		CryptoBackend: CryptoBackend(),
	}
}

// Version is the binary's version: the stamped one, else the module's
// (go install …@v1.2.3), else "devel".
func Version() string { return resolveVersion(version, readBuildInfo()) }

// Commit is the VCS revision the binary was built from, with "-dirty" when
// the tree had uncommitted changes; "" when unknown.
func Commit() string { return resolveCommit(commit, readBuildInfo()) }

// GoVersion is the version of the Go toolchain that built the binary.
func GoVersion() string { return runtime.Version() }

// CryptoBackend names the implementation of the cryptographic primitives
// (RSA, ECDSA, SHA-2, AES, TLS) the binary uses: "boringcrypto (BoringCrypto
// FIPS 140 module)" in the production build (GOEXPERIMENT=boringcrypto),
// "go FIPS 140-3 module" when Go's own module runs in FIPS 140-3 mode
// (GODEBUG=fips140=on), else "go (pure Go)".
func CryptoBackend() string {
	if b := boringBackend(); b != "" {
		return b
	}
	return goBackend(fips140.Enabled())
}

func goBackend(fipsMode bool) string {
	if fipsMode {
		return "go FIPS 140-3 module"
	}
	return "go (pure Go)"
}

func readBuildInfo() *debug.BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return bi
}

func resolveVersion(stamped string, bi *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func resolveCommit(stamped string, bi *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if bi == nil {
		return ""
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}
