package jws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// maxMembers bounds the members of a header or claim set.
const maxMembers = 64

var (
	errNotObject = errors.New("not a JSON object")
	errRepeated  = errors.New("a member name is repeated")
)

// objectMembers splits a JSON object into its top-level members in one
// pass without decoding the values. It rejects invalid UTF-8, invalid JSON,
// anything but an object, more than maxMembers members, and repeated member
// names in any letter case (some parsers match names case-insensitively, so
// {"alg":…,"ALG":…} must not pass).
func objectMembers(b []byte) ([]Member, error) {
	if !utf8.Valid(b) || !json.Valid(b) {
		return nil, errNotObject
	}
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errNotObject
	}
	i = skipWS(b, i+1)
	members := make([]Member, 0, 12)
	if b[i] == '}' {
		return members, nil
	}
	for {
		// b is valid JSON, so a key string, ':' and a value follow.
		kEnd := endOfString(b, i)
		name := b[i+1 : kEnd-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			var s string
			if err := json.Unmarshal(b[i:kEnd], &s); err != nil {
				return nil, errNotObject
			}
			name = []byte(s)
		}
		i = skipWS(b, skipWS(b, kEnd)+1) // past ':'
		vEnd := endOfValue(b, i)
		for _, m := range members {
			if bytes.EqualFold(m.Name, name) {
				return nil, errRepeated
			}
		}
		if len(members) == maxMembers {
			return nil, errors.New("too many members")
		}
		members = append(members, Member{name, b[i:vEnd]})
		i = skipWS(b, vEnd)
		if b[i] == '}' {
			return members, nil
		}
		i = skipWS(b, i+1) // past ','
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// endOfString returns the index after the string starting at b[i] == '"'.
func endOfString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// endOfValue returns the index after the value starting at b[i].
func endOfValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return endOfString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = endOfString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}

// PlainString reports whether raw is a JSON string without escapes or
// control characters, in valid UTF-8: its value is the bytes between the
// quotes.
func PlainString(raw string) bool {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return false
	}
	inner := raw[1 : len(raw)-1]
	for i := 0; i < len(inner); i++ {
		if c := inner[i]; c == '\\' || c == '"' || c < 0x20 {
			return false
		}
	}
	return utf8.ValidString(inner)
}

// String decodes a raw JSON string value, as a Member's Value holds it
// (no surrounding whitespace); ok is false for any other JSON value, and
// for anything that is not valid JSON.
func String(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	plain, ascii := true, true
	for _, c := range inner {
		if c == '\\' || c == '"' || c < 0x20 {
			plain = false
			break
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if plain && (ascii || utf8.Valid(inner)) {
		return string(inner), true
	}
	// Escapes (or garbage): the JSON decoder checks and unescapes, but it
	// would replace invalid UTF-8 rather than refuse it.
	var s string
	if !utf8.Valid(raw) || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// Seconds decodes a NumericDate (RFC 7519 §2): a JSON number of seconds
// since the epoch. Fractions and exponents are accepted, as RFC 7519
// allows, and truncated toward zero to whole seconds (1700000000.9 is
// 1700000000). raw is as a Member's Value holds it (no surrounding
// whitespace). ok is false for any other JSON value, for anything that is
// not valid JSON, and for numbers outside int64 (integers of 19 digits or
// more may be refused too: no date needs them).
func Seconds(raw []byte) (int64, bool) {
	i := 0
	neg := len(raw) > 0 && raw[0] == '-'
	if neg {
		i = 1
	}
	start := i
	var n int64
	for ; i < len(raw) && raw[i] >= '0' && raw[i] <= '9'; i++ {
		if n > (math.MaxInt64-9)/10 {
			return 0, false
		}
		n = n*10 + int64(raw[i]-'0')
	}
	if i == start || raw[len(raw)-1] < '0' || raw[len(raw)-1] > '9' {
		return 0, false // not a number, or whitespace around it
	}
	if i == len(raw) && (i-start == 1 || raw[start] != '0') {
		if neg {
			n = -n
		}
		return n, true
	}
	// A fraction or exponent (rare), or not JSON (a leading zero, a stray
	// byte): the JSON decoder tells.
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f >= 0x1p63 || f < -0x1p63 {
		return 0, false
	}
	return int64(f), true
}

// StringOrStrings decodes a value that is a string or an array of strings,
// as aud is (RFC 7519 §4.1.3). isArray tells which it was; an empty array
// gives an empty, non-nil slice. Anything else (null, a number, an array
// holding a non-string) is an error wrapping ErrMalformed.
func StringOrStrings(raw []byte) (values []string, isArray bool, err error) {
	if s, ok := String(raw); ok {
		return []string{s}, false, nil
	}
	var items []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, false, fmt.Errorf("%w: neither a string nor an array of strings", ErrMalformed)
	}
	values = make([]string, len(items))
	for i, item := range items {
		s, ok := String(item)
		if !ok {
			return nil, true, fmt.Errorf("%w: an array of strings holds a non-string", ErrMalformed)
		}
		values[i] = s
	}
	return values, true, nil
}
