// Package scope handles the short string lists OAuth 2.0 requests carry:
// scope values (RFC 6749 §3.3) and resource indicators (RFC 8707). Every
// function here takes time linear in its input, because it runs on
// requests before their client is authenticated: a parser that is correct
// but quadratic lets one request burn a second of CPU.
package scope

import (
	"errors"
	"fmt"
)

// Limits on what one request may name. They are generous for real clients
// (an API defines at most MaxPerAPI scopes, a client holds at most MaxGrants
// grants) and bound the work a request can cause.
const (
	// MaxTokenLen is the longest scope token accepted.
	MaxTokenLen = 256
	// MaxPerAPI is the most scopes an API may define, and the most scope
	// values one token request may carry.
	MaxPerAPI = 200
	// MaxResources is the most resource or audience values one token
	// request may carry (and the most grants a client may hold).
	MaxResources = 100
)

// Errors of Parse.
var (
	ErrInvalid = errors.New("scope contains characters RFC 6749 §3.3 does not allow")
	ErrTooMany = fmt.Errorf("a request may carry at most %d scope values", MaxPerAPI)
)

// ValidToken reports whether s is a non-empty RFC 6749 §3.3 scope-token
// (%x21 / %x23-5B / %x5D-7E) of at most MaxTokenLen bytes.
func ValidToken(s string) bool {
	if s == "" || len(s) > MaxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Parse splits a space-delimited scope parameter into its distinct tokens,
// in order of first appearance. It stops at the first invalid token and
// after MaxPerAPI tokens (repeats included), so its work is bounded by
// min(len(s), the cap) whatever the input.
func Parse(s string) ([]string, error) { return parse(s, nil) }

func parse(s string, m *meter) ([]string, error) {
	var toks []string
	start := -1
	for i := 0; i <= len(s); i++ {
		m.tick(1)
		if i < len(s) && s[i] != ' ' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start < 0 {
			continue
		}
		tok := s[start:i]
		start = -1
		if len(toks) == MaxPerAPI {
			return nil, ErrTooMany
		}
		if !ValidToken(tok) {
			return nil, ErrInvalid
		}
		m.tick(len(tok))
		toks = append(toks, tok)
	}
	if toks == nil {
		return []string{}, nil
	}
	return dedupe(toks, m), nil
}

// smallSet is the size up to which a linear scan beats a map.
const smallSet = 8

// Dedupe returns the distinct values of in, in order of first appearance,
// in time linear in len(in). It returns a new slice when it removes
// anything and in itself otherwise.
func Dedupe(in []string) []string { return dedupe(in, nil) }

func dedupe(in []string, m *meter) []string {
	if len(in) <= smallSet {
		for i := 1; i < len(in); i++ {
			for j := 0; j < i; j++ {
				m.tick(1)
				if in[i] == in[j] {
					return dedupeSlow(in, m)
				}
			}
		}
		return in
	}
	return dedupeSlow(in, m)
}

func dedupeSlow(in []string, m *meter) []string {
	seen := make(map[string]struct{}, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		m.tick(1)
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		out = append(out, s)
	}
	return out
}

// meter counts the elementary steps of the functions above (one per byte
// scanned, per comparison and per set probe), so tests can assert that
// their work is linear by counting, not by timing. A nil meter counts
// nothing.
type meter struct{ n int }

func (m *meter) tick(k int) {
	if m != nil {
		m.n += k
	}
}
