package secret

import (
	"strings"
	"testing"
)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s := Generate()
		if !strings.HasPrefix(s, SecretPrefix) || len(s) != len(SecretPrefix)+43 {
			t.Fatalf("Generate() = %q: want %s + 43 base64url characters", s, SecretPrefix)
		}
		if seen[s] {
			t.Fatalf("Generate returned %q twice", s)
		}
		seen[s] = true
	}
	id := NewID(ClientIDPrefix)
	if !strings.HasPrefix(id, ClientIDPrefix) || len(id) != len(ClientIDPrefix)+26 {
		t.Errorf("NewID = %q", id)
	}
}

func TestHashVerify(t *testing.T) {
	h := NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	other := NewHasher([]byte("fedcba9876543210fedcba9876543210"))
	s := Generate()
	stored := h.Hash(s)
	if strings.Contains(stored, s[len(SecretPrefix):]) {
		t.Fatal("stored form contains the secret")
	}
	tests := []struct {
		name   string
		h      *Hasher
		secret string
		stored string
		want   bool
	}{
		{"match", h, s, stored, true},
		{"wrong secret", h, Generate(), stored, false},
		{"secret with a changed last char", h, s[:len(s)-1] + changed(s[len(s)-1]), stored, false},
		{"other key", other, s, stored, false},
		{"empty secret", h, "", stored, false},
		{"unknown algorithm", h, s, "bcrypt$" + stored[len("hmac-sha256$"):], false},
		{"truncated hash", h, s, stored[:len(stored)-2], false},
		{"garbage hash", h, s, "hmac-sha256$!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", false},
		{"empty hash", h, s, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.Verify(tc.secret, tc.stored); got != tc.want {
				t.Errorf("Verify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHint(t *testing.T) {
	s := Generate()
	if got := Hint(s); got != s[:9] {
		t.Errorf("Hint = %q, want %q", got, s[:9])
	}
	if Hint("short") != "" {
		t.Error("Hint of a short string must be empty")
	}
	// An imported secret shows 4 characters, never its first 9.
	if got := Hint("ImportedPasswordThatIsLongEnough0123"); got != "Impo" {
		t.Errorf("Hint of an imported secret = %q, want Impo", got)
	}
}

func BenchmarkVerify(b *testing.B) {
	h := NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	s := Generate()
	stored := h.Hash(s)
	b.ReportAllocs()
	for b.Loop() {
		if !h.Verify(s, stored) {
			b.Fatal("no match")
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	h := NewHasher([]byte("0123456789abcdef0123456789abcdef"))
	s := Generate()
	stored := h.Hash(s)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Verify(s, stored)
		}
	})
}

// changed returns a character other than c.
func changed(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
