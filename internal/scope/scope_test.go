package scope

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  error
	}{
		{"", []string{}, nil},
		{"   ", []string{}, nil},
		{"a", []string{"a"}, nil},
		{" a  b ", []string{"a", "b"}, nil},
		{"a b a c b", []string{"a", "b", "c"}, nil},
		{"banking/read orders:write a.b", []string{"banking/read", "orders:write", "a.b"}, nil},
		{`a"b`, nil, ErrInvalid},
		{`a\b`, nil, ErrInvalid},
		{"a\tb", nil, ErrInvalid},
		{strings.Repeat("x", MaxTokenLen), []string{strings.Repeat("x", MaxTokenLen)}, nil},
		{strings.Repeat("x", MaxTokenLen+1), nil, ErrInvalid},
		{strings.Repeat("a ", MaxPerAPI), []string{"a"}, nil},
		{strings.Repeat("a ", MaxPerAPI+1), nil, ErrTooMany},
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.in[:min(len(tc.in), 20)]), func(t *testing.T) {
			got, err := Parse(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); tc.err == nil && diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestDedupe(t *testing.T) {
	for _, n := range []int{0, 1, 2, smallSet, smallSet + 1, 50} {
		in := make([]string, 0, 2*n)
		want := []string{}
		for i := range n {
			in = append(in, strconv.Itoa(i))
			want = append(want, strconv.Itoa(i))
		}
		for i := range n {
			in = append(in, strconv.Itoa(n-1-i))
		}
		if diff := cmp.Diff(want, Dedupe(in)); diff != "" {
			t.Errorf("n=%d: %s", n, diff)
		}
	}
}

// distinctTokens is the worst case for de-duplication: a body of
// MaxPerAPI-sized distinct tokens, then everything else the 64 KiB body
// limit allows.
func distinctTokens(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("s" + strconv.Itoa(i) + " ")
	}
	return b.String()
}

// The work of Parse is bounded by a constant times the input length, for
// the worst inputs of every size up to the 64 KiB body limit: distinct
// tokens (de-duplication), one long run of separators, and the largest
// number of tokens the cap allows. The quadratic parser this replaced
// counted 171 million steps for ~18,500 distinct tokens.
func TestParseWorkIsLinear(t *testing.T) {
	inputs := map[string]string{
		"distinct, under the cap": distinctTokens(MaxPerAPI),
		"distinct, over the cap":  distinctTokens(18_500)[:64<<10],
		"repeats":                 strings.Repeat("abc ", 16<<10),
		"separators":              strings.Repeat(" ", 64<<10),
		"one long token":          strings.Repeat("x", 64<<10),
	}
	for name, in := range inputs {
		var m meter
		_, _ = parse(in, &m)
		if limit := 3*len(in) + 16; m.n > limit {
			t.Errorf("%s: %d steps for %d bytes, want at most %d", name, m.n, len(in), limit)
		}
	}
}

func TestDedupeWorkIsLinear(t *testing.T) {
	for _, n := range []int{smallSet, 1_000, 100_000} {
		in := strings.Fields(distinctTokens(n))
		var m meter
		dedupe(in, &m)
		if limit := smallSet * n; m.n > limit {
			t.Errorf("%d values: %d steps, want at most %d", n, m.n, limit)
		}
	}
}

// FuzzParse checks the parser's invariants and its work on any input: the
// tokens are valid, distinct and at most MaxPerAPI, and the steps counted
// stay linear in the input.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "a b a", "banking/read orders:write", `a"b`, distinctTokens(300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var m meter
		toks, err := parse(s, &m)
		if m.n > 3*len(s)+16 {
			t.Fatalf("%d steps for %d bytes", m.n, len(s))
		}
		if err != nil {
			return
		}
		if len(toks) > MaxPerAPI {
			t.Fatalf("%d tokens", len(toks))
		}
		seen := map[string]bool{}
		for _, tok := range toks {
			if !ValidToken(tok) || seen[tok] {
				t.Fatalf("token %q invalid or repeated", tok)
			}
			seen[tok] = true
		}
	})
}
