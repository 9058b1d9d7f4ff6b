package dpop

import (
	"testing"
	"time"
)

func TestNoncesRotate(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := t0.Truncate(5 * time.Minute)
	clock := func() time.Time { return now }
	n := NewNonces(secret, 5*time.Minute, clock)
	replica := NewNonces(secret, 5*time.Minute, clock)
	other := NewNonces([]byte("another secret, also 32 bytes..."), 5*time.Minute, clock)

	first := n.Current()
	if len(first) != 22 || replica.Current() != first {
		t.Fatalf("nonce %q, replica %q: want the same 22 characters", first, replica.Current())
	}
	if other.Current() == first || other.Valid(first) {
		t.Fatal("a replica with another secret accepts the nonce")
	}
	for _, step := range []struct {
		at          time.Duration
		firstValid  bool
		sameCurrent bool
	}{
		{0, true, true},
		{4*time.Minute + 59*time.Second, true, true},
		{5 * time.Minute, true, false},                     // the previous period's nonce
		{9*time.Minute + 59*time.Second, true, false},      // still the previous one
		{10 * time.Minute, false, false},                   // two periods on: stale
		{-5 * time.Minute, false, false},                   // a nonce from the future
		{-1 * time.Second, false, false},                   // (the period before first)
		{24 * time.Hour, false, false},                     // long gone
		{5*time.Minute + 30*time.Second, true, false},      // back: valid again
		{4*time.Minute + 59*time.Second + 999, true, true}, // nanoseconds inside the period
		{10*time.Minute - time.Nanosecond, true, false},    // last instant of validity
		{10*time.Minute + 24*time.Hour*365, false, false},  // a year on
		{5*time.Minute - time.Nanosecond + time.Second, true, false},
	} {
		now = t0.Truncate(5 * time.Minute).Add(step.at)
		if got := n.Valid(first); got != step.firstValid {
			t.Errorf("at +%v: Valid(first) = %v, want %v", step.at, got, step.firstValid)
		}
		if got := replica.Valid(first); got != step.firstValid {
			t.Errorf("at +%v: replica Valid(first) = %v, want %v", step.at, got, step.firstValid)
		}
		if got := n.Current() == first; got != step.sameCurrent {
			t.Errorf("at +%v: Current unchanged = %v, want %v", step.at, got, step.sameCurrent)
		}
		if !n.Valid(n.Current()) || !replica.Valid(n.Current()) {
			t.Errorf("at +%v: the current nonce is refused", step.at)
		}
	}
}

func TestNoncesRefuseGarbage(t *testing.T) {
	n := NewNonces([]byte("0123456789abcdef"), 0, func() time.Time { return t0 })
	cur := n.Current()
	flipped := []byte(cur)
	flipped[3] ^= 1
	for _, bad := range []string{"", "x", cur + "A", cur[:21], string(flipped), cur[:21] + "=", "!!!!!!!!!!!!!!!!!!!!!!"} {
		if n.Valid(bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
	if !n.Valid(cur) {
		t.Error("current nonce refused")
	}
}

func TestNoncesDefaults(t *testing.T) {
	now := t0.Truncate(DefaultNoncePeriod)
	n := NewNonces([]byte("0123456789abcdef"), 0, func() time.Time { return now })
	first := n.Current()
	now = now.Add(DefaultNoncePeriod - time.Nanosecond)
	if n.Current() != first {
		t.Error("the default period is shorter than DefaultNoncePeriod")
	}
	now = now.Add(time.Nanosecond)
	if n.Current() == first {
		t.Error("the default period is longer than DefaultNoncePeriod")
	}
	if NewNonces([]byte("0123456789abcdef"), 0, nil).Current() == "" {
		t.Error("no nonce on the system clock")
	}
}

func TestNoncesShortSecretPanics(t *testing.T) {
	for _, secret := range [][]byte{nil, []byte("short")} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewNonces(%q) did not panic", secret)
				}
			}()
			NewNonces(secret, time.Minute, nil)
		}()
	}
}

func TestNoncesKeepSecretCopy(t *testing.T) {
	secret := []byte("0123456789abcdef")
	n := NewNonces(secret, 0, func() time.Time { return t0 })
	cur := n.Current()
	secret[0] = 'X'
	if n.Current() != cur {
		t.Error("changing the caller's secret slice changed the nonces")
	}
}
