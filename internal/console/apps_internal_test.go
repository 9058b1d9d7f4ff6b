package console

import (
	"os/exec"
	"testing"
	"time"
)

// The form readers and writers shared by the API and application forms.

func TestLifetimeSeconds(t *testing.T) {
	const syntax = "Give the token lifetime as a duration such as 15m, 1h or 2h30m, or leave it empty for the default."
	cases := []struct {
		in      string
		want    int64
		problem string
	}{
		{"", 0, ""},
		{"   ", 0, ""},
		{"0", 0, ""},
		{"600", 600, ""},
		{" 90 ", 90, ""},
		{"15m", 900, ""},
		{"1h30m", 5400, ""},
		{"\t2h\n", 7200, ""},
		{"168h", 604800, ""},
		{"0s", 0, ""},
		{"-5", 0, "The token lifetime cannot be negative."},
		{"-5m", 0, syntax},
		{"soon", 0, syntax},
		{"ten minutes", 0, syntax},
		{"8d", 0, syntax},
		{"1e3", 0, syntax},
		{"9999999999999h", 0, syntax}, // past time.Duration's range
		{"1.5s", 0, "Give the token lifetime in whole seconds, such as 90s or 15m."},
		{"100ms", 0, "Give the token lifetime in whole seconds, such as 90s or 15m."},
	}
	for _, tc := range cases {
		got, problem := lifetimeSeconds(tc.in)
		if got != tc.want || problem != tc.problem {
			t.Errorf("lifetimeSeconds(%q) = %d, %q; want %d, %q", tc.in, got, problem, tc.want, tc.problem)
		}
	}
}

func TestShortDuration(t *testing.T) {
	cases := []struct {
		in   time.Duration
		want string
	}{
		{0, ""},
		{30 * time.Second, "30s"},
		{90 * time.Second, "1m30s"},
		{15 * time.Minute, "15m"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{24 * time.Hour, "24h"},
		{168 * time.Hour, "168h"},
	}
	for _, tc := range cases {
		got := shortDuration(tc.in)
		if got != tc.want {
			t.Errorf("shortDuration(%s) = %q, want %q", tc.in, got, tc.want)
		}
		// The form reads back what it wrote.
		if secs, problem := lifetimeSeconds(got); problem != "" || secs != int64(tc.in/time.Second) {
			t.Errorf("lifetimeSeconds(%q) = %d, %q; want %d", got, secs, problem, int64(tc.in/time.Second))
		}
	}
}

func TestShellQuote(t *testing.T) {
	cases := []struct{ in, want string }{
		{"m2m_abc-123", "m2m_abc-123"},
		{"https://auth.example.com/oauth/token", "https://auth.example.com/oauth/token"},
		{"id:secret+/=.,@%", "id:secret+/=.,@%"},
		{"", "''"},
		{"two words", "'two words'"},
		{"it's", `'it'\''s'`},
		{"''", `''\'''\'''`},
		{`say "hi"`, `'say "hi"'`},
		{"$HOME", "'$HOME'"},
		{"${PATH}", "'${PATH}'"},
		{"$(id)", "'$(id)'"},
		{"`id`", "'`id`'"},
		{"a\nb", "'a\nb'"},
		{"a;rm -rf x", "'a;rm -rf x'"},
		{`back\slash`, `'back\slash'`},
		{"*", "'*'"},
		{"~", "'~'"},
		{"é", "'é'"},
		{"#x", "'#x'"},
	}
	sh, err := exec.LookPath("sh")
	for _, tc := range cases {
		got := shellQuote(tc.in)
		if got != tc.want {
			t.Errorf("shellQuote(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// A POSIX shell reads the quoted word back as the value, nothing
		// expanded or run.
		if err != nil {
			continue
		}
		out, runErr := exec.Command(sh, "-c", "printf %s "+got).Output()
		if runErr != nil || string(out) != tc.in {
			t.Errorf("sh read %q back as %q (%v)", got, out, runErr)
		}
	}
	if err != nil {
		t.Log("no sh: the quoted words were not run through a shell")
	}
}
