package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

func TestParseMasterKey(t *testing.T) {
	text := GenerateMasterKeyText()
	a, err := ParseMasterKey(text)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"base64", text, false},
		{"base64 with newline", text + "\n", false},
		{"hex", strings.Repeat("ab", 32), false},
		{"too short", "AAAA", true},
		{"31 bytes hex", strings.Repeat("ab", 31), true},
		{"not an encoding", strings.Repeat("!", 44), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMasterKey(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tc.in) {
				t.Errorf("error echoes the key material: %v", err)
			}
		})
	}
	b, _ := ParseMasterKey(text)
	if a.ID() != b.ID() {
		t.Error("same key, different IDs")
	}
}

func TestSealOpen(t *testing.T) {
	mk, _ := ParseMasterKey(GenerateMasterKeyText())
	other, _ := ParseMasterKey(GenerateMasterKeyText())
	pt := []byte("private key bytes")
	sealed := mk.Seal(pt, "row-1")
	if bytes.Contains(sealed, pt) {
		t.Fatal("sealed value contains the plaintext")
	}
	if got, err := mk.Open(sealed, "row-1"); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, fn := range map[string]func() ([]byte, error){
		"other master key": func() ([]byte, error) { return other.Open(sealed, "row-1") },
		"other row":        func() ([]byte, error) { return mk.Open(sealed, "row-2") },
		"tampered":         func() ([]byte, error) { return mk.Open(tampered, "row-1") },
		"truncated":        func() ([]byte, error) { return mk.Open(sealed[:10], "row-1") },
	} {
		if _, err := fn(); err != ErrWrongMasterKey {
			t.Errorf("%s: err = %v, want ErrWrongMasterKey", name, err)
		}
	}
}

func TestMasterKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "master.key")
	a, created, err := LoadOrCreateMasterKeyFile(path)
	if err != nil || !created {
		t.Fatalf("create: %v, created=%v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master.key mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	b, created, err := LoadOrCreateMasterKeyFile(path)
	if err != nil || created || a.ID() != b.ID() {
		t.Fatalf("reload: %v created=%v sameID=%v", err, created, a.ID() == b.ID())
	}
}

func openStore(t *testing.T, path string) store.Store {
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestManagerInitIsStableAndSealed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	mk, _ := ParseMasterKey(GenerateMasterKeyText())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := func() time.Time { return time.Unix(1_800_000_000, 0) }

	m1 := NewManager(openStore(t, path), mk, Policy{Alg: RS256}, now, log)
	if err := m1.Init(ctx); err != nil {
		t.Fatal(err)
	}
	m2 := NewManager(openStore(t, path), mk, Policy{Alg: RS256}, now, log)
	if err := m2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if m1.Signer().KID() != m2.Signer().KID() {
		t.Fatalf("second Init made a new key: %s vs %s", m1.Signer().KID(), m2.Signer().KID())
	}

	// The stored private key is ciphertext: not a parseable PKCS#8 key.
	rows, _ := openStore(t, path).ListSigningKeys(ctx)
	if len(rows) != 1 || bytes.Contains(rows[0].Private, []byte("PRIVATE")) || rows[0].Private[0] != sealVersion {
		t.Fatalf("stored key is not sealed")
	}

	// A token signed by the manager verifies against its JWKS with go-jose.
	s := m1.Signer()
	header := `{"alg":"RS256","kid":"` + s.KID() + `"}`
	input := b64(header) + "." + b64(`{"x":1}`)
	sig, err := s.Sign([]byte(input))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(input+"."+b64Bytes(sig), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	body, etag := m1.JWKS()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	ks := set.Key(s.KID())
	if len(ks) != 1 || ks[0].Use != "sig" || ks[0].Algorithm != "RS256" || etag == "" {
		t.Fatalf("JWKS entry = %+v, etag %q", ks, etag)
	}
	if _, err := jws.Verify(ks[0].Key); err != nil {
		t.Fatalf("verify against JWKS: %v", err)
	}

	// Another master key cannot start on this database, and says why.
	other, _ := ParseMasterKey(GenerateMasterKeyText())
	err = NewManager(openStore(t, path), other, Policy{Alg: RS256}, now, log).Init(ctx)
	if err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("Init with the wrong master key: %v", err)
	}
}

// BenchmarkSign and BenchmarkVerify measure each algorithm's raw cost: our
// signer, and go-jose's verification of the result.
func BenchmarkSign(b *testing.B) {
	for _, alg := range Algorithms {
		b.Run(alg, func(b *testing.B) {
			priv, err := generate(alg)
			if err != nil {
				b.Fatal(err)
			}
			s := &Signer{kid: "k", alg: alg, key: priv}
			input := []byte(b64(`{"alg":"x","typ":"at+jwt","kid":"k"}`) + "." + b64(`{"iss":"https://issuer","sub":"m2mc_x","aud":"https://api"}`))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sign(input); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range Algorithms {
		b.Run(alg, func(b *testing.B) {
			priv, _ := generate(alg)
			s := &Signer{kid: "k", alg: alg, key: priv}
			input := b64(`{"alg":"`+alg+`","typ":"at+jwt","kid":"k"}`) + "." + b64(`{"iss":"https://issuer"}`)
			sig, _ := s.Sign([]byte(input))
			raw := input + "." + b64Bytes(sig)
			b.ReportAllocs()
			for b.Loop() {
				jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := jws.Verify(priv.Public()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Processes starting at once on a fresh data dir agree on one master key,
// and the file is never seen incomplete: it appears whole (written to a
// temporary file first, then linked into place).
func TestMasterKeyFileCreatedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "master.key")
	const n = 16
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mk, _, err := LoadOrCreateMasterKeyFile(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = mk.ID()
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("different master keys: %v", ids)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("%d files in the data dir, want only master.key", len(entries))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("master.key: %v %v", fi.Mode(), err)
	}
}

func TestDerive(t *testing.T) {
	text := GenerateMasterKeyText()
	a, _ := ParseMasterKey(text)
	b, _ := ParseMasterKey(text) // another replica, same key
	other, _ := ParseMasterKey(GenerateMasterKeyText())
	x := a.Derive("m2mauth dpop nonce\x00https://a", 32)
	if len(x) != 32 || !bytes.Equal(x, b.Derive("m2mauth dpop nonce\x00https://a", 32)) {
		t.Fatal("the same master key and label give different secrets")
	}
	if bytes.Equal(x, a.Derive("m2mauth dpop nonce\x00https://b", 32)) || bytes.Equal(x, other.Derive("m2mauth dpop nonce\x00https://a", 32)) {
		t.Fatal("another label or master key gives the same secret")
	}
}
