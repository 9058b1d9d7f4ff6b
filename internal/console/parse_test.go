package console

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
)

func TestParseScopes(t *testing.T) {
	cases := []struct {
		in     string
		scopes []string
		descs  map[string]string
	}{
		{"", []string{}, map[string]string{}},
		{"orders:read Read orders\n\n  orders:write\tCreate and change orders  \n", []string{"orders:read", "orders:write"},
			map[string]string{"orders:read": "Read orders", "orders:write": "Create and change orders"}},
		{"a\r\nb  \r\n", []string{"a", "b"}, map[string]string{}},
		{"a first\na second", []string{"a", "a"}, map[string]string{"a": "second"}},
	}
	for _, tc := range cases {
		scopes, descs := parseScopes(tc.in)
		if !reflect.DeepEqual(scopes, tc.scopes) || !reflect.DeepEqual(descs, tc.descs) {
			t.Errorf("parseScopes(%q) = %q %q, want %q %q", tc.in, scopes, descs, tc.scopes, tc.descs)
		}
	}
}

// Whatever is typed, the scopes the form hands the service hold no space
// and every description belongs to one of them.
func FuzzParseScopes(f *testing.F) {
	f.Add("orders:read Read orders\norders:write")
	f.Add(" \u00a0x\u2028y \t z\n")
	f.Fuzz(func(t *testing.T, text string) {
		scopes, descs := parseScopes(text)
		for _, sc := range scopes {
			if sc == "" || strings.IndexFunc(sc, unicode.IsSpace) >= 0 {
				t.Fatalf("scope %q from %q", sc, text)
			}
		}
		for sc := range descs {
			found := false
			for _, s := range scopes {
				found = found || s == sc
			}
			if !found {
				t.Fatalf("a description for %q, not a scope, from %q", sc, text)
			}
		}
	})
}

func TestClaimConditions(t *testing.T) {
	cases := []struct {
		in   string
		want map[string]string
		err  string
	}{
		{"", nil, ""},
		{"a=1\n b = two words \n\n", map[string]string{"a": "1", "b": "two words"}, ""},
		{"a=x=y", map[string]string{"a": "x=y"}, ""},
		{"a=1\nnovalue", nil, "Line 2"},
		{"=1", nil, "Line 1"},
		{"a=1\na=2", nil, "given twice"},
	}
	for _, tc := range cases {
		got, err := claimConditions(tc.in)
		if !reflect.DeepEqual(got, tc.want) || !strings.Contains(err, tc.err) || (tc.err == "") != (err == "") {
			t.Errorf("claimConditions(%q) = %v %q, want %v %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestCustomClaims(t *testing.T) {
	for in, ok := range map[string]bool{
		"": true,
		`{"tenant":"acme","n":12345678901234567890}`: true,
		`{"a":1} {"b":2}`: false,
		`[1]`:             false,
		`null`:            false,
		`{"a":`:           false,
	} {
		claims, err := customClaims(in)
		if (err == "") != ok {
			t.Errorf("customClaims(%q): %v %q", in, claims, err)
		}
	}
	// Large integers stay exact.
	claims, _ := customClaims(`{"n":12345678901234567890}`)
	if got := claims["n"]; got == nil || got.(interface{ String() string }).String() != "12345678901234567890" {
		t.Errorf("n = %v", got)
	}
}

func TestSafeNext(t *testing.T) {
	for next, ok := range map[string]bool{
		"/console/":             true,
		"/console/apps?q=a%20b": true,
		"/console/app/m2mc_x":   true,
		"":                      false,
		"/":                     false,
		"/console":              false,
		"//evil.com/console/":   false,
		"https://evil.com/":     false,
		"/console/../x":         false,
		"/console/%2e%2e/x":     false,
		"/console/%2F/x":        false,
		"/console/\\x":          false,
		"/console/sign-in":      false,
		"/console/sign-out":     false,
		"/console/link?t=1":     false,
		"/console/a\r\nb":       false,
	} {
		if got := safeNext(next); got != ok {
			t.Errorf("safeNext(%q) = %v, want %v", next, got, ok)
		}
	}
}

// Whatever return path sign-in accepts, a browser following the redirect
// stays on this host, inside the console.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/console/", "/console/..//x", "/console/%2e%2e/x", "/console/./x", "/\\evil"} {
		f.Add(s)
	}
	base, _ := url.Parse("http://auth.example.com/console/sign-in")
	f.Fuzz(func(t *testing.T, next string) {
		if !safeNext(next) {
			return
		}
		u, err := url.Parse(next)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse", next)
		}
		to := base.ResolveReference(u)
		if to.Host != base.Host || !strings.HasPrefix(to.Path, Prefix) || !strings.HasPrefix(to.EscapedPath(), Prefix) {
			t.Fatalf("accepted %q, which leads to %s", next, to)
		}
	})
}

func TestHumanDurationAndPlural(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Second:                   "30 seconds",
		time.Minute:                        "1 minute",
		24*time.Hour - time.Second:         "24 hours",
		23*time.Hour + 31*time.Minute:      "24 hours",
		47 * time.Hour:                     "47 hours",
		10*24*time.Hour - time.Millisecond: "10 days",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
	if plural(1, "key") != "1 key" || plural(0, "key") != "0 keys" || plural(int64(2), "token") != "2 tokens" || noun(1, "API") != "API" || noun(3, "API") != "APIs" {
		t.Error("plural or noun")
	}
}
