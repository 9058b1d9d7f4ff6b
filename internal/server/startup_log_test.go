package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/buildinfo"
	"github.com/m2mauth/m2mauth/internal/config"
)

// The startup line says which build serves: its version and crypto backend
// (boringcrypto in the production build).
func TestStartupLogNamesVersionAndCryptoBackend(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := config.Default()
			cfg.Addr, cfg.DataDir = ln.Addr().String(), t.TempDir()
			var logs syncBuffer
			s, err := New(t.Context(), cfg, NewLogger(&logs, format, "info"), nil)
			if err != nil {
				t.Fatal(err)
			}
			// Stopped before it starts: Serve logs its startup line, then
			// shuts down at once.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := s.Serve(ctx, ln); err != nil {
				t.Fatal(err)
			}
			var line string
			sc := bufio.NewScanner(strings.NewReader(logs.String()))
			for sc.Scan() {
				if strings.Contains(sc.Text(), "m2mauth serving") {
					line = sc.Text()
				}
			}
			if line == "" {
				t.Fatalf("no startup line in:\n%s", logs.String())
			}
			if format == "text" {
				if !strings.Contains(line, "version="+buildinfo.Version()) || !strings.Contains(line, "crypto_backend=") {
					t.Errorf("startup line lacks version or crypto_backend: %s", line)
				}
				return
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
			if rec["version"] != buildinfo.Version() || rec["crypto_backend"] != buildinfo.CryptoBackend() {
				t.Errorf("startup line version %v, crypto_backend %v; want %q, %q", rec["version"], rec["crypto_backend"], buildinfo.Version(), buildinfo.CryptoBackend())
			}
		})
	}
}
