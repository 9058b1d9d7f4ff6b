package jws

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string
		ok   bool
	}{
		{`"abc"`, "abc", true},
		{`""`, "", true},
		{`"a\"b"`, `a"b`, true},
		{`"\u00e9t\u00e9"`, "été", true},
		{`"été"`, "été", true},
		{`null`, "", false},
		{`1`, "", false},
		{`["a"]`, "", false},
		{``, "", false},
		// Not JSON strings: String is exported, so it checks what it is given.
		{`"abc`, "", false},
		{`"`, "", false},
		{`"a"b"`, "", false},
		{"\"a\x01\"", "", false},
		{"\"\xff\"", "", false},
		{"\"\\u00e9\xff\"", "", false},
		{`"a\q"`, "", false},
	} {
		got, ok := String([]byte(tc.raw))
		if got != tc.want || ok != tc.ok {
			t.Errorf("String(%s) = %q, %v; want %q, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSeconds(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want int64
		ok   bool
	}{
		{`1700000000`, 1700000000, true},
		{`0`, 0, true},
		{`-5`, -5, true},
		{`1700000000.9`, 1700000000, true}, // fractions truncate (RFC 7519 §2 allows them)
		{`1.7e9`, 1700000000, true},
		{`-0.5`, 0, true},
		{`9223372036854775800`, 0, false}, // near the int64 edge: refused
		{`1e300`, 0, false},
		{`"1700000000"`, 0, false},
		{`null`, 0, false},
		{`true`, 0, false},
		{``, 0, false},
		{`-1e3`, -1000, true},
		{`-9.223372036854775808e18`, math.MinInt64, true},
		{`9.223372036854775807e18`, 0, false}, // rounds to 2^63, outside int64
		{`9.223372036854775808e18`, 0, false},
		{`-9.223372036854777856e18`, 0, false}, // the float just below -2^63
		{`9223372036854775807.0`, 0, false},    // digits near the edge are refused early
		// Not JSON numbers.
		{`-`, 0, false},
		{`0123`, 0, false},
		{`-01`, 0, false},
		{`1.`, 0, false},
		{`12a`, 0, false},
		{` 1`, 0, false},
		{`1 `, 0, false},
	} {
		got, ok := Seconds([]byte(tc.raw))
		if got != tc.want || ok != tc.ok {
			t.Errorf("Seconds(%s) = %d, %v; want %d, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
	}
}

func TestStringOrStrings(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		want    []string
		isArray bool
		ok      bool
	}{
		{`"https://api.example"`, []string{"https://api.example"}, false, true},
		{`""`, []string{""}, false, true},
		{`["a","b"]`, []string{"a", "b"}, true, true},
		{`["a"]`, []string{"a"}, true, true},
		{`[]`, []string{}, true, true},
		{`[ "a" , "\u0062" ]`, []string{"a", "b"}, true, true},
		{`null`, nil, false, false},
		{`42`, nil, false, false},
		{`{"a":"b"}`, nil, false, false},
		{`["a",null]`, nil, true, false},
		{`["a",1]`, nil, true, false},
		{`[["a"]]`, nil, true, false},
		{``, nil, false, false},
	} {
		got, isArray, err := StringOrStrings([]byte(tc.raw))
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) || (tc.ok && isArray != tc.isArray) || (tc.want != nil && got == nil) {
			t.Errorf("StringOrStrings(%s) = %q, %v, %v; want %q, %v, ok %v", tc.raw, got, isArray, err, tc.want, tc.isArray, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("StringOrStrings(%s): %v does not wrap ErrMalformed", tc.raw, err)
		}
	}
}
