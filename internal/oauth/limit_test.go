package oauth

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
)

type testClock struct{ t time.Time }

func (c *testClock) now() time.Time      { return c.t }
func (c *testClock) add(d time.Duration) { c.t = c.t.Add(d) }
func fromAddr(ip string) *http.Request {
	r := httptest.NewRequest("POST", "/oauth/token", nil)
	r.RemoteAddr = ip + ":1234"
	return r
}

func TestFailureLimiterAddress(t *testing.T) {
	clk := &testClock{t: time.Unix(1e9, 0)}
	l := NewFailureLimiter(1, 3, 100, clk.now)
	r := fromAddr("10.0.0.1")
	for i := range 3 {
		if l.Failed(r, "", false) {
			t.Fatalf("failure %d limited within the burst", i+1)
		}
	}
	if !l.Failed(r, "", false) {
		t.Fatal("the fourth failure is not limited")
	}
	if l.Failed(fromAddr("10.0.0.2"), "", false) {
		t.Fatal("another address is limited")
	}
	clk.add(time.Second)
	if l.Failed(r, "", false) {
		t.Fatal("not refilled after a second")
	}
	// The address limit never stops a request from being checked.
	if !l.Admit(r, "c1") {
		t.Fatal("an address over its limit may not have its credentials checked")
	}
}

// One client's bucket empties whichever addresses its failures come from;
// then only addresses where it authenticated recently may try it.
func TestFailureLimiterClient(t *testing.T) {
	clk := &testClock{t: time.Unix(1e9, 0)}
	l := NewFailureLimiter(1, 3, 100, clk.now)
	home := fromAddr("10.0.0.1")
	l.Succeeded(home, "c1")
	for i := range 4 {
		l.Failed(fromAddr("192.0.2."+strconv.Itoa(i)), "c1", true)
	}
	if l.Admit(fromAddr("192.0.2.200"), "c1") {
		t.Error("a new address may try a client whose failure budget is spent")
	}
	if !l.Admit(fromAddr("192.0.2.200"), "c2") {
		t.Error("another client is limited")
	}
	if !l.Admit(home, "c1") {
		t.Error("the client's own address is locked out")
	}
	clk.add(knownGoodFor)
	for i := range 4 {
		l.Failed(fromAddr("192.0.2."+strconv.Itoa(i)), "c1", true)
	}
	if l.Admit(home, "c1") {
		t.Error("a success an hour old still exempts the address")
	}
	clk.add(time.Second)
	if !l.Admit(fromAddr("192.0.2.200"), "c1") {
		t.Error("the client's budget does not refill")
	}
}

func TestFailureLimiterBoundedMemory(t *testing.T) {
	clk := &testClock{t: time.Unix(1e9, 0)}
	l := NewFailureLimiter(1, 3, 50, clk.now)
	for i := range 1000 {
		r := fromAddr("10.1." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250))
		l.Failed(r, "c"+strconv.Itoa(i), true)
		l.Succeeded(r, "c"+strconv.Itoa(i))
	}
	if len(l.addrs) > 50 || len(l.clients) > 50 || len(l.knownGood) > 50 {
		t.Errorf("tracking %d addresses, %d clients, %d pairs; want at most 50 each", len(l.addrs), len(l.clients), len(l.knownGood))
	}
}

func TestNilFailureLimiter(t *testing.T) {
	var l *FailureLimiter
	r := fromAddr("10.0.0.1")
	if l.Failed(r, "c", true) || !l.Admit(r, "c") {
		t.Error("a nil limiter limits")
	}
	l.Succeeded(r, "c")
}

// Ids that name no client get buckets too, so a refusal never tells an
// existing id from another; they cannot flush the real clients' buckets.
func TestFailureLimiterUnknownIDs(t *testing.T) {
	clk := &testClock{t: time.Unix(1e9, 0)}
	l := NewFailureLimiter(1, 3, 100, clk.now)
	for i := range 4 {
		l.Failed(fromAddr("192.0.2."+strconv.Itoa(i)), "real", true)
		l.Failed(fromAddr("192.0.2."+strconv.Itoa(i)), "nobody", false)
	}
	probe := fromAddr("198.51.100.1")
	if l.Admit(probe, "real") != l.Admit(probe, "nobody") {
		t.Error("an existing id and an unknown one are limited differently")
	}
	for i := range maxUnknown + 10 {
		l.Failed(fromAddr("203.0.113.1"), "spray"+strconv.Itoa(i), false)
	}
	if l.Admit(probe, "real") {
		t.Error("spraying unknown ids flushed a real client's bucket")
	}
}

// A client id's bucket and known-good addresses belong to its environment:
// another environment's client of that id is not limited by them, and an
// environment deleted (or created again) leaves none behind.
func TestFailureLimiterPerEnvironment(t *testing.T) {
	clk := &testClock{t: time.Unix(1e9, 0)}
	l := NewFailureLimiter(1, 3, 100, clk.now)
	in := func(name, ip string) *http.Request {
		r := fromAddr(ip)
		return r.WithContext(env.NewContext(r.Context(), &env.Env{Name: name}))
	}
	l.Succeeded(in("a", "10.0.0.1"), "c1")
	for i := range 4 {
		l.Failed(in("a", "192.0.2."+strconv.Itoa(i)), "c1", true)
	}
	if l.Admit(in("a", "192.0.2.200"), "c1") {
		t.Fatal("a's c1 is not limited")
	}
	if !l.Admit(in("b", "192.0.2.200"), "c1") {
		t.Error("b's c1 is limited by a's failures")
	}
	if l.Admit(in("b", "192.0.2.200"), "c1") && !l.Admit(in("a", "10.0.0.1"), "c1") {
		t.Error("a's known-good address is not known-good in a")
	}
	l.ForgetEnv("a")
	if !l.Admit(in("a", "192.0.2.200"), "c1") {
		t.Error("a's c1 is still limited after its environment was forgotten")
	}
	for i := range 4 {
		l.Failed(in("a", "192.0.2."+strconv.Itoa(i)), "c1", true)
	}
	if l.Admit(in("a", "10.0.0.1"), "c1") {
		t.Error("a forgotten environment's known-good address still exempts it")
	}
}
