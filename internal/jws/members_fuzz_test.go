package jws

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"unicode/utf8"
)

// FuzzObjectMembers: no input panics the one-pass member scanner, and it
// agrees with encoding/json: it accepts exactly the JSON objects (valid
// UTF-8, at most maxMembers members, no name repeated in any letter case),
// with the same names and raw values.
func FuzzObjectMembers(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"alg":"RS256","kid":"k1","typ":"at+jwt"}`, `{"alg":"RS256","ALG":"none"}`, `{"a\u006cg":"x","alg":"y"}`,
		`{"exp":1700000000.5,"aud":["a","b"],"x":{"y":[1,{"z":"}"}]}}`, `{"a":"\"}"}`, `{"a":1}x`, `["a"]`, " {\"a\" : null }\n",
		"{\"\xff\":1}", `{"a":1,}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		members, err := objectMembers(b)
		want, names, isObject := stdMembers(b)
		if err != nil {
			if members != nil {
				t.Fatalf("error %v with members", err)
			}
			if isObject && len(names) <= maxMembers && !repeatedFold(names) {
				t.Fatalf("refused %q (%v), a valid object with %d distinct members", b, err, len(names))
			}
			return
		}
		if !isObject {
			t.Fatalf("accepted %q, which encoding/json does not decode as an object", b)
		}
		if len(members) != len(want) || len(members) > maxMembers {
			t.Fatalf("%q: %d members, encoding/json finds %d", b, len(members), len(want))
		}
		for _, m := range members {
			v, ok := want[string(m.Name)]
			if !ok || !bytes.Equal(m.Value, v) {
				t.Fatalf("%q: member %q = %q, encoding/json says %q", b, m.Name, m.Value, v)
			}
		}
	})
}

// stdMembers decodes b with encoding/json: its members, its member names
// in order (repeats included), and whether it is a valid UTF-8 object.
func stdMembers(b []byte) (map[string]json.RawMessage, []string, bool) {
	var m map[string]json.RawMessage
	if !utf8.Valid(b) || json.Unmarshal(b, &m) != nil || m == nil {
		return nil, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	_, _ = dec.Token() // '{'
	var names []string
	for dec.More() {
		tok, _ := dec.Token()
		names = append(names, tok.(string))
		var skip json.RawMessage
		_ = dec.Decode(&skip)
	}
	return m, names, true
}

func repeatedFold(names []string) bool {
	for i := range names {
		for j := range i {
			if bytes.EqualFold([]byte(names[i]), []byte(names[j])) {
				return true
			}
		}
	}
	return false
}

// FuzzString: String accepts exactly the valid UTF-8 JSON strings without
// surrounding whitespace, with encoding/json's value.
func FuzzString(f *testing.F) {
	for _, s := range []string{`"0" `, `"abc"`, `"a\"b"`, `"\u00e9"`, `"é"`, `"abc`, `"a"b"`, "\"\xff\"", "\"a\x01\"", `1`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, ok := String(raw)
		var want string
		valid := utf8.Valid(raw) && json.Unmarshal(raw, &want) == nil && len(raw) > 0 && raw[0] == '"' && raw[len(raw)-1] == '"'
		if !valid {
			want = ""
		}
		if ok != valid || got != want {
			t.Fatalf("String(%q) = %q, %v; encoding/json: %q, %v", raw, got, ok, want, valid)
		}
	})
}

// FuzzSeconds: what Seconds accepts is a JSON number, and its value is
// encoding/json's, truncated.
func FuzzSeconds(f *testing.F) {
	for _, s := range []string{`1700000000`, `-5`, `1700000000.9`, `1.7e9`, `-`, `0123`, `9.223372036854775808e18`, `"1"`, `100000000000000001 `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, ok := Seconds(raw)
		if !ok {
			return
		}
		var num json.Number
		if json.Unmarshal(raw, &num) != nil || len(raw) == 0 || raw[0] == '"' {
			t.Fatalf("Seconds(%q) = %d, accepted a non-number", raw, got)
		}
		if n, err := num.Int64(); err == nil && n != got {
			t.Fatalf("Seconds(%q) = %d, want %d", raw, got, n)
		}
		if f, err := num.Float64(); err != nil || float64(got) != math.Trunc(f) && math.Abs(f) < 1<<53 {
			t.Fatalf("Seconds(%q) = %d, encoding/json says %v", raw, got, f)
		}
	})
}
