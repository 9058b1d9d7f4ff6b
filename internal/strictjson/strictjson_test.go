package strictjson

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{`{}`, nil},
		{`{"a":1,"b":[1,2,{"a":1}],"c":{"a":{"a":null}}}`, nil},
		{`[{"a":1},{"a":2}]`, nil},
		{`"x"`, nil},
		{` 5 `, nil},
		{`{"a":"a","b":"a"}`, nil},
		{`{"a":{"b":1},"b":2}`, nil},
		{`{"a":1,"a":2}`, ErrDuplicate},
		{`{"name":1,"NAME":2}`, ErrDuplicate},
		{`{"refresh_tokens":false,"refre\u017fh_tokens":true}`, ErrDuplicate},
		{"{\"description\":\"a\",\"de\u017fcription\":\"b\"}", ErrDuplicate},
		{`{"kid":1,"\u212aid":2}`, ErrDuplicate},
		{`{"x":[{"a":1,"b":{"c":1,"c":2}}]}`, ErrDuplicate},
		{`{"a":{"b":1},"a":{}}`, ErrDuplicate},
		{`{"a":1} {}`, ErrTrailing},
		{`1 2`, ErrTrailing},
		{`{"a":`, ErrSyntax},
		{``, ErrSyntax},
		{`{"a" 1}`, ErrSyntax},
	}
	for _, tc := range tests {
		if got := Check([]byte(tc.in)); !errors.Is(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.in, got, tc.want)
		}
	}
}

// A 1 MiB document of distinct names, and one of deep nesting, are checked
// without error and without quadratic work (each name is one set probe).
func TestCheckLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; b.Len() < 1<<20; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strconv.Itoa(i) + `":1`)
	}
	b.WriteString("}")
	if err := Check([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	if err := Check([]byte(deep)); err != nil {
		t.Fatal(err)
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[{"c":2}]}`, `{"a":1,"A":2}`, `[1,{"x":{}}]`, `{"a":`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Check([]byte(s)) == nil && !json.Valid([]byte(s)) {
			t.Fatalf("accepted invalid JSON %q", s)
		}
	})
}
