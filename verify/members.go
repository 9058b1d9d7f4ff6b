package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"unicode/utf8"
)

// member is one top-level member of a JSON object: its name (unescaped)
// and its raw value, a slice of the input.
type member struct {
	name  []byte
	value []byte
}

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
func objectMembers(b []byte) ([]member, error) {
	if !utf8.Valid(b) || !json.Valid(b) {
		return nil, errNotObject
	}
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errNotObject
	}
	i = skipWS(b, i+1)
	members := make([]member, 0, 12)
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
			if bytes.EqualFold(m.name, name) {
				return nil, errRepeated
			}
		}
		if len(members) == maxMembers {
			return nil, errors.New("too many members")
		}
		members = append(members, member{name, b[i:vEnd]})
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

// jsonString decodes a raw JSON string value.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

// jsonSeconds decodes a NumericDate (RFC 7519 §2): a JSON number of
// seconds, possibly fractional, truncated to whole seconds.
func jsonSeconds(raw []byte) (int64, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	var n int64
	i := 0
	neg := raw[0] == '-'
	if neg {
		i = 1
	}
	for ; i < len(raw) && raw[i] >= '0' && raw[i] <= '9'; i++ {
		if n > (math.MaxInt64-9)/10 {
			return 0, false
		}
		n = n*10 + int64(raw[i]-'0')
	}
	if i < len(raw) {
		// A fraction or exponent: rare; let the JSON decoder handle it.
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || f > math.MaxInt64 || f < math.MinInt64 {
			return 0, false
		}
		return int64(f), true
	}
	if neg {
		n = -n
	}
	return n, true
}
