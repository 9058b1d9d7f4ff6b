package jsonappend

import (
	"encoding/json"
	"testing"
)

var samples = []string{
	"", "plain", "orders:read", "https://api.example.com/v1?x=1&y=<2>",
	"quote\" backslash\\ slash/", "\b\f\n\r\t\x00\x01\x1f\x7f",
	"é ü 日本 🙂", "\u2028\u2029", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate",
}

func TestStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range samples {
		want, _ := json.Marshal(s)
		if got := String(nil, s); string(got) != string(want) {
			t.Errorf("String(%q) = %s; want %s", s, got, want)
		}
	}
}

func TestStringsMatchesEncodingJSON(t *testing.T) {
	for _, ss := range [][]string{nil, {}, {"a"}, samples} {
		want, _ := json.Marshal(ss)
		if got := Strings([]byte("x"), ss); string(got) != "x"+string(want) {
			t.Errorf("Strings(%q) = %s; want x%s", ss, got, want)
		}
	}
}

func FuzzString(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := String(nil, s); string(got) != string(want) {
			t.Errorf("String(%q) = %s; want %s", s, got, want)
		}
	})
}
