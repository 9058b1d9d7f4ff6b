package oauth

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// Outcome is what one request to an endpoint came to: the single record
// every cross-cutting observer (metrics, the audit trail, the report of
// clients that never cache tokens) reads. It is built once, at the end of
// the pipeline, and passed by value: observing costs no allocation.
type Outcome struct {
	// Endpoint is the action: "token", "introspect" or "revoke".
	Endpoint string
	// Surface is the envelope the request came in ("standard", "machine",
	// "atm", "admin_login", "introspection", "revocation").
	Surface string
	// Env is the request's environment.
	Env string
	// GrantType is the grant asked for ("" when the request did not parse).
	GrantType string
	// AuthMethod is the method that proved the client ("" when none did).
	AuthMethod string
	// ClientID is the authenticated client, or the existing client a
	// failed request named; "" when it named none (what a caller typed is
	// never reported: it may be a secret).
	ClientID string
	// Code is "ok" or the error code the caller got.
	Code string
	// Status is the HTTP status of the answer.
	Status int
	// Start and Duration time the request (the server's clock).
	Start    time.Time
	Duration time.Duration
	// Token is the issued token (token endpoint, on success), else nil.
	Token *TokenResponse
	// Audience and Scopes are what the request asked for (nil when it
	// named none or did not parse).
	Audience []string
	Scopes   []string
	// Remote is the caller's address (r.RemoteAddr).
	Remote string
	// Cause is the internal cause of a server-side failure (5xx), or nil.
	Cause error
	// QuotaExceeded marks a 429 of the client's issuance quota (the
	// client was known; another 429 is the failed-request limit's).
	QuotaExceeded bool
}

// CodeOK is an Outcome's Code for a request that succeeded.
const CodeOK = "ok"

// Observer is told of every request an endpoint served. It runs on the
// request's goroutine after the answer is written, so it must be cheap and
// must not block: anything slow (a database write, a sink) is queued and
// batched by the observer.
type Observer interface {
	Observe(ctx context.Context, o Outcome)
}

// Observers fans an outcome out to several observers.
type Observers []Observer

// Observe tells each observer.
func (os Observers) Observe(ctx context.Context, o Outcome) {
	for _, ob := range os {
		ob.Observe(ctx, o)
	}
}

// Gate admits an authenticated caller's request before the action runs
// (per-client issuance quotas). It returns nil to let the request through,
// or the refusal (429 with RetryAfter) to answer instead. Before writing
// the answer, the endpoint calls the admission's Headers so that it can set
// response headers (RateLimit-*), on success and refusal alike.
type Gate interface {
	Admit(ctx context.Context, endpoint string, caller Caller, req *Request) (Admission, *Error)
}

// Admission is a gate's decision for one request.
type Admission interface {
	// Headers sets the response headers of the decision.
	Headers(h http.Header)
	// Done reports whether the request issued a token (a refusal of the
	// action after admission gives its quota back, where the gate can).
	Done(issued bool)
}

// SetRetryAfter sets the Retry-After header of a 429 or 503 answer: e's
// RetryAfter, or one second. Every surface's renderer calls it.
func SetRetryAfter(h http.Header, e *Error) {
	if e.Status != http.StatusTooManyRequests && e.Status != http.StatusServiceUnavailable {
		return
	}
	secs := 1
	if e.RetryAfter > time.Second {
		secs = int((e.RetryAfter + time.Second - 1) / time.Second)
	}
	h.Set("Retry-After", strconv.Itoa(secs))
}
