//go:build !goexperiment.boringcrypto

package buildinfo

// boringBackend is "": the binary was built without GOEXPERIMENT=boringcrypto.
func boringBackend() string { return "" }

// boringBuild: built with GOEXPERIMENT=boringcrypto.
const boringBuild = false
