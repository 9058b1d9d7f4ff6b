//go:build goexperiment.boringcrypto

package buildinfo

import "crypto/boring"

// boringBuild: built with GOEXPERIMENT=boringcrypto.
const boringBuild = true

// boringBackend reports the BoringCrypto module when the binary was built
// with GOEXPERIMENT=boringcrypto and it is in use (it needs cgo on
// linux/amd64 or linux/arm64; elsewhere the toolchain falls back to Go's
// own code, which the caller then reports).
func boringBackend() string {
	if boring.Enabled() {
		return "boringcrypto (BoringCrypto FIPS 140 module)"
	}
	return ""
}
