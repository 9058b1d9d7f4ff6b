package oauth

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/m2mauth/m2mauth/internal/env"
)

// FailureLimiter slows down credential guessing and floods of bad requests
// without locking legitimate clients out:
//
//   - Every request that fails before its client is authenticated (bad
//     input, unknown client, wrong secret) costs its address one token from
//     a bucket that refills at the configured rate up to the burst. Once the
//     bucket is empty, such failures are answered 429 instead of their own
//     error.
//   - A failed authentication of an existing client also costs that
//     client's own bucket. While it is empty, requests naming the client
//     are answered 429 before their credentials are checked, so one client
//     cannot be brute-forced from many addresses, unless they come from an
//     address where the client authenticated within knownGoodFor: the client
//     itself keeps working.
//   - Credentials are checked before the address's bucket is consulted (the
//     check costs under a microsecond), so a request whose credentials
//     verify is never limited: an attacker sharing an address with a client
//     (NAT, a proxy) cannot lock it out.
//
// Memory is bounded: at most max addresses, clients and known-good pairs
// are tracked. A nil *FailureLimiter limits nothing.
type FailureLimiter struct {
	rate  rate.Limit
	burst int
	max   int
	now   func() time.Time

	mu      sync.RWMutex
	addrs   map[string]*rate.Limiter
	clients map[envClient]*rate.Limiter
	// unknown are the buckets of client ids that name no client: kept
	// apart (an attacker spraying ids can only flush these), and kept at
	// all so that a refusal does not tell an existing id from another.
	unknown   map[envClient]*rate.Limiter
	knownGood map[pair]time.Time // (address, client) → last success
}

// maxUnknown bounds the buckets of ids that name no client.
const maxUnknown = 10_000

// knownGoodFor is how long a successful authentication from an address
// exempts that address from its client's failure limit.
const knownGoodFor = time.Hour

// NewFailureLimiter returns a limiter allowing perSecond failures per
// address and per client, with bursts of burst. It tracks at most max
// addresses, clients and known-good pairs.
func NewFailureLimiter(perSecond float64, burst, max int, now func() time.Time) *FailureLimiter {
	return &FailureLimiter{rate: rate.Limit(perSecond), burst: burst, max: max, now: now,
		addrs: map[string]*rate.Limiter{}, clients: map[envClient]*rate.Limiter{}, unknown: map[envClient]*rate.Limiter{}, knownGood: map[pair]time.Time{}}
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// envClient is a client id in an environment: the same id in two
// environments names two clients, with buckets of their own.
type envClient struct{ env, client string }

// clientOf is the client r names by clientID, in r's environment.
func clientOf(r *http.Request, clientID string) envClient {
	var name string
	if e := env.FromContext(r.Context()); e != nil {
		name = e.Name
	}
	return envClient{name, clientID}
}

// pair is an address and a client that authenticated from it.
type pair struct {
	ip     string
	client envClient
}

// Admit reports whether the credentials of a request from r naming
// clientID may be checked: false while the client's bucket is empty, unless
// r's address is known-good for it.
func (l *FailureLimiter) Admit(r *http.Request, clientID string) bool {
	if l == nil || clientID == "" {
		return true
	}
	now := l.now()
	l.mu.RLock()
	c := clientOf(r, clientID)
	b, limited := l.clients[c]
	if !limited {
		b, limited = l.unknown[c]
	}
	good, known := l.knownGood[pair{clientIP(r), c}]
	l.mu.RUnlock()
	if !limited || b.TokensAt(now) >= 1 {
		return true
	}
	return known && now.Sub(good) < knownGoodFor
}

// Failed records a request from r that failed before its client was
// authenticated; claimed is the client id it named ("" if none), exists
// whether that names a client. It reports whether the address or the id
// had no failures left, in which case the caller answers 429.
func (l *FailureLimiter) Failed(r *http.Request, claimed string, exists bool) (limited bool) {
	if l == nil {
		return false
	}
	now := l.now()
	l.mu.Lock()
	ab := bucket(l, l.addrs, clientIP(r), l.max)
	var cb *rate.Limiter
	switch {
	case claimed == "":
	case exists:
		cb = bucket(l, l.clients, clientOf(r, claimed), l.max)
	default:
		cb = bucket(l, l.unknown, clientOf(r, claimed), maxUnknown)
	}
	l.mu.Unlock()
	limited = !ab.AllowN(now, 1)
	if cb != nil && !cb.AllowN(now, 1) {
		limited = true
	}
	return limited
}

// bucket returns m[key], creating it in a map of at most max entries;
// l.mu must be held for writing.
func bucket[K comparable](l *FailureLimiter, m map[K]*rate.Limiter, key K, max int) *rate.Limiter {
	b, ok := m[key]
	if !ok {
		if len(m) >= max {
			// Bounded memory: forget every entry (an attacker spreading over
			// more addresses than that is for a network-level limit).
			clear(m)
		}
		b = rate.NewLimiter(l.rate, l.burst)
		m[key] = b
	}
	return b
}

// ForgetEnv drops what the limiter holds of the clients of environment env
// (deleted, or created again under its name: its clients are new).
func (l *FailureLimiter) ForgetEnv(env string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.clients {
		if c.env == env {
			delete(l.clients, c)
		}
	}
	for c := range l.unknown {
		if c.env == env {
			delete(l.unknown, c)
		}
	}
	for p := range l.knownGood {
		if p.client.env == env {
			delete(l.knownGood, p)
		}
	}
}

// Succeeded records that clientID authenticated from r's address. It
// writes only when the pair is new or its record is old, so the hot path
// mostly takes a read lock.
func (l *FailureLimiter) Succeeded(r *http.Request, clientID string) {
	if l == nil || clientID == "" {
		return
	}
	now := l.now()
	key := pair{clientIP(r), clientOf(r, clientID)}
	l.mu.RLock()
	last, ok := l.knownGood[key]
	l.mu.RUnlock()
	if ok && now.Sub(last) < knownGoodFor/4 {
		return
	}
	l.mu.Lock()
	if len(l.knownGood) >= l.max {
		for k, t := range l.knownGood {
			if now.Sub(t) >= knownGoodFor {
				delete(l.knownGood, k)
			}
		}
		if len(l.knownGood) >= l.max {
			clear(l.knownGood)
		}
	}
	l.knownGood[key] = now
	l.mu.Unlock()
}
