// Package keys manages m2mauth's keys: the master key that encrypts
// everything secret at rest, and the token signing keys with their public
// JWK Set (RFC 7517).
package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// MasterKeySize is the master key's length in bytes.
const MasterKeySize = 32

// sealVersion is the first byte of every sealed value: AES-256-GCM under a
// key derived from the master key, 12-byte random nonce.
const sealVersion = 1

// MasterKey encrypts private keys and other secrets at rest with AES-256-GCM.
// The raw key is only ever used as HKDF input.
type MasterKey struct {
	id   string
	aead cipher.AEAD
	// derive is the HKDF key of Derive.
	derive []byte
}

// ErrWrongMasterKey is returned when a value was sealed under another master
// key or has been tampered with.
var ErrWrongMasterKey = errors.New("value was not sealed by this master key (wrong M2MAUTH_MASTER_KEY?) or is corrupt")

// NewMasterKey builds a MasterKey from 32 raw bytes.
func NewMasterKey(raw []byte) (*MasterKey, error) {
	if len(raw) != MasterKeySize {
		return nil, fmt.Errorf("master key: want %d bytes, got %d", MasterKeySize, len(raw))
	}
	encKey, err := hkdf.Key(sha256.New, raw, nil, "m2mauth aes-256-gcm seal v1", 32)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	idKey, err := hkdf.Key(sha256.New, raw, nil, "m2mauth master key id v1", 8)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	derive, err := hkdf.Key(sha256.New, raw, nil, "m2mauth derived secrets v1", 32)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return &MasterKey{id: hex.EncodeToString(idKey), aead: aead, derive: derive}, nil
}

// Derive returns a secret of size bytes for the use label names (HKDF-SHA256
// expansion: distinct labels give independent secrets), the same on every
// replica given the same master key: for a secret the replicas must share
// without a setting of its own (DPoP nonces).
func (m *MasterKey) Derive(label string, size int) []byte {
	out, err := hkdf.Expand(sha256.New, m.derive, label, size)
	if err != nil {
		// Only a size beyond 255 hash lengths fails: a programming error.
		panic("keys: derive: " + err.Error())
	}
	return out
}

// ParseMasterKey decodes a master key given as 64 hex digits or as standard
// or URL-safe base64 (padded or not) of 32 bytes.
func ParseMasterKey(s string) (*MasterKey, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*MasterKeySize {
		if raw, err := hex.DecodeString(s); err == nil {
			return NewMasterKey(raw)
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil && len(raw) == MasterKeySize {
			return NewMasterKey(raw)
		}
	}
	// Never echo the value: it is the key.
	return nil, errors.New("master key: want 32 bytes as 64 hex digits or base64")
}

// GenerateMasterKeyText returns a new random master key in the text form
// ParseMasterKey reads.
func GenerateMasterKeyText() string {
	raw := make([]byte, MasterKeySize)
	_, _ = rand.Read(raw)
	return base64.StdEncoding.EncodeToString(raw)
}

// LoadOrCreateMasterKeyFile reads the master key from path, creating the file
// (mode 0600, in a directory of mode 0700) with a new random key if it does
// not exist. created reports whether it did.
func LoadOrCreateMasterKeyFile(path string) (mk *MasterKey, created bool, err error) {
	mk, err = LoadMasterKeyFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return mk, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("create master key: %w", err)
	}
	// The key is written whole to a temporary file, then linked into
	// place: a crash leaves either no master.key or a complete one, never
	// an empty file that every later start would refuse. Link fails if the
	// file exists, so of processes racing here exactly one key wins.
	text := GenerateMasterKeyText()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".master.key-")
	if err != nil {
		return nil, false, fmt.Errorf("create master key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, text+"\n"); err != nil {
		return nil, false, fmt.Errorf("write master key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
		// Another process created it first: use theirs.
		return LoadOrCreateMasterKeyFile(path)
	} else if err != nil {
		return nil, false, fmt.Errorf("create master key: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, false, fmt.Errorf("create master key: %w", err)
	}
	mk, err = ParseMasterKey(text)
	return mk, true, err
}

// writeSynced writes text to f (mode 0600), syncs and closes it.
func writeSynced(f *os.File, text string) error {
	err := f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(text)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a directory's entries (a new or renamed file) durable. On
// Windows directories cannot be synced this way; NTFS journals the entry.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// LoadMasterKeyFile reads the master key from path; a missing file is an
// error wrapping os.ErrNotExist.
func LoadMasterKeyFile(path string) (*MasterKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	mk, err := ParseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mk, nil
}

// ReplaceMasterKeyFile writes text as the master key file at path,
// atomically (a crash leaves the old key or the new one) and mode 0600.
func ReplaceMasterKeyFile(path, text string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".master.key-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, text+"\n"); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// ID identifies the master key without revealing it; it is stored beside
// every sealed value so a mismatch gives a clear error.
func (m *MasterKey) ID() string { return m.id }

// Seal encrypts plaintext. aad binds the ciphertext to its purpose and row
// (a sealed value copied to another row does not open).
func (m *MasterKey) Seal(plaintext []byte, aad string) []byte {
	out := make([]byte, 1+m.aead.NonceSize(), 1+m.aead.NonceSize()+len(plaintext)+m.aead.Overhead())
	out[0] = sealVersion
	_, _ = rand.Read(out[1:])
	return m.aead.Seal(out, out[1:], plaintext, []byte(aad))
}

// Open decrypts a value made by Seal with the same aad.
func (m *MasterKey) Open(sealed []byte, aad string) ([]byte, error) {
	ns := m.aead.NonceSize()
	if len(sealed) < 1+ns+m.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrWrongMasterKey
	}
	pt, err := m.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(aad))
	if err != nil {
		return nil, ErrWrongMasterKey
	}
	return pt, nil
}
