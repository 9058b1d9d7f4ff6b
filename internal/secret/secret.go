// Package secret generates client secrets and identifiers and stores secrets
// as keyed hashes.
//
// A secret is "m2ms_" followed by 43 base64url characters encoding 256 bits
// from crypto/rand. It is stored as "hmac-sha256$" + base64url(HMAC-SHA-256
// (key, secret)) under a server-wide key. Secrets are high-entropy random
// values, so a fast keyed hash is the right tool: it resists offline
// guessing as well as a slow KDF would (2^256 candidates) while costing a
// microsecond on the token endpoint instead of tens of milliseconds. The
// algorithm tag lets the scheme change later without breaking stored rows.
package secret

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"hash"
	"strings"
	"sync"
)

// Prefixes make credentials recognisable (to people and secret scanners).
const (
	SecretPrefix       = "m2ms_"
	ClientIDPrefix     = "m2mc_"
	RefreshTokenPrefix = "m2mr_"
	algHMACSHA256      = "hmac-sha256$"
	// hintChars is how many characters of a secret, after its prefix, a
	// hint shows: 24 bits of a generated secret's 256.
	hintChars = 4
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Generate returns a new secret with 256 bits of entropy.
func Generate() string { return GenerateWithPrefix(SecretPrefix) }

// GenerateWithPrefix returns prefix followed by 256 random bits in base64url.
func GenerateWithPrefix(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error (Go ≥ 1.24)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// NewID returns prefix followed by 128 random bits in lower-case base32.
func NewID(prefix string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return prefix + idEncoding.EncodeToString(b)
}

// Hint returns the short prefix of a secret shown in listings, enough to
// tell two secrets apart: the m2ms_ prefix and 4 characters of a generated
// secret, the first 4 characters of an imported one (at least 32 long), so
// that a hint never gives away more than 4 characters of a secret.
func Hint(secret string) string {
	prefix := ""
	if strings.HasPrefix(secret, SecretPrefix) {
		prefix = SecretPrefix
	}
	if len(secret) <= len(prefix)+2*hintChars {
		return ""
	}
	return secret[:len(prefix)+hintChars]
}

// Hasher hashes and verifies secrets under one key. It is safe for
// concurrent use.
type Hasher struct {
	pool  sync.Pool
	dummy string
}

// NewHasher returns a Hasher keyed with key (at least 32 bytes).
func NewHasher(key []byte) *Hasher {
	k := append([]byte(nil), key...)
	h := &Hasher{}
	h.pool.New = func() any { return hmac.New(sha256.New, k) }
	h.dummy = h.Hash(Generate())
	return h
}

func (h *Hasher) mac(secret string, out *[sha256.Size]byte) {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(secret))
	m.Sum(out[:0])
	h.pool.Put(m)
}

// Hash returns the stored form of secret.
func (h *Hasher) Hash(secret string) string {
	var sum [sha256.Size]byte
	h.mac(secret, &sum)
	return algHMACSHA256 + base64.RawURLEncoding.EncodeToString(sum[:])
}

// Verify reports whether secret matches stored, in constant time with
// respect to the secret's and the hash's contents.
func (h *Hasher) Verify(secret, stored string) bool {
	var want, got [sha256.Size]byte
	h.mac(secret, &got)
	enc, ok := strings.CutPrefix(stored, algHMACSHA256)
	if !ok || base64.RawURLEncoding.DecodedLen(len(enc)) != sha256.Size {
		return false
	}
	if _, err := base64.RawURLEncoding.Decode(want[:], []byte(enc)); err != nil {
		return false
	}
	return hmac.Equal(want[:], got[:])
}

// VerifyNothing does the work of a failed Verify. Callers use it when the
// client is unknown, so that an unknown client id and a wrong secret take
// the same time.
func (h *Hasher) VerifyNothing(secret string) {
	_ = h.Verify(secret, h.dummy)
}
