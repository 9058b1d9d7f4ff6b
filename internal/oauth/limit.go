package oauth

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// FailureLimiter slows down credential guessing: each failed client
// authentication costs the caller's IP address one token from a bucket that
// refills at Rate per second up to Burst. While the bucket is empty, every
// token request from that address is answered 429 (in the surface's own
// envelope) without being looked at. Successful requests cost nothing, so
// legitimate traffic is never limited. A nil *FailureLimiter limits nothing.
type FailureLimiter struct {
	rate  rate.Limit
	burst int
	max   int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// NewFailureLimiter returns a limiter allowing perSecond failures per
// address, with bursts of burst. It tracks at most maxAddrs addresses.
func NewFailureLimiter(perSecond float64, burst, maxAddrs int, now func() time.Time) *FailureLimiter {
	return &FailureLimiter{rate: rate.Limit(perSecond), burst: burst, max: maxAddrs, now: now, buckets: map[string]*rate.Limiter{}}
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Blocked reports whether r's address has no failures left.
func (l *FailureLimiter) Blocked(r *http.Request) bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	b, ok := l.buckets[clientIP(r)]
	l.mu.Unlock()
	return ok && b.TokensAt(l.now()) < 1
}

// Record counts e against r's address if it is a failed authentication.
func (l *FailureLimiter) Record(r *http.Request, e *Error) {
	if l == nil || e == nil || e.Code != CodeInvalidClient {
		return
	}
	ip := clientIP(r)
	l.mu.Lock()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= l.max {
			// Bounded memory: forget every address (an attacker spreading
			// over many addresses is for a network-level limit).
			l.buckets = map[string]*rate.Limiter{}
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[ip] = b
	}
	l.mu.Unlock()
	b.AllowN(l.now(), 1)
}
