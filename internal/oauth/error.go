// Package oauth implements the OAuth 2.0 token endpoint for the
// client-credentials grant (RFC 6749 §4.4) as one pipeline shared by every
// surface: a surface's Codec parses its envelope into one Request, the
// client-authentication registry (ClientAuth) proves the caller, the
// Service decides audience (RFC 8707) and scopes (§3.3) and issues an
// RFC 9068 access token, and the codec renders the answer or the error in
// the surface's envelope. Introspection (RFC 7662) and revocation
// (RFC 7009) run through the same pipeline.
package oauth

import (
	"fmt"
	"net/http"
	"time"
)

// Error codes of RFC 6749 §5.2, RFC 8707 §2 and RFC 6749 §4.1.2.1.
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidClient          = "invalid_client"
	CodeInvalidGrant           = "invalid_grant"
	CodeUnauthorizedClient     = "unauthorized_client"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeInvalidScope           = "invalid_scope"
	CodeInvalidTarget          = "invalid_target"
	CodeServerError            = "server_error"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	CodeTooManyRequests        = "too_many_requests"
)

// Error is a protocol error. Code and Description are what the client sees;
// Err is the internal cause, logged and never sent.
type Error struct {
	Status      int
	Code        string
	Description string
	Err         error
	// RetryAfter is how long a 429 or 503 asks the caller to wait (0: one
	// second); SetRetryAfter renders it.
	RetryAfter time.Duration
	// reason is Description's template without the request's values: the
	// log records it, so that a secret pasted into a parameter never
	// reaches the log.
	reason string
	// client is the id of the existing client a failed request named
	// ("" when it named none, or one that does not exist).
	client string
	// challenge asks for a Basic challenge on a 401 (see basicChallenge).
	challenge bool
	// quota marks the refusal of a client over its issuance quota.
	quota bool
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Err)
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Err }

func newError(status int, code, format string, args ...any) *Error {
	desc := format
	if len(args) > 0 {
		desc = fmt.Sprintf(format, args...)
	}
	return &Error{Status: status, Code: code, Description: desc, reason: format}
}

// ErrInvalidRequest is a malformed request (400).
func ErrInvalidRequest(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, CodeInvalidRequest, format, args...)
}

// errInvalidClient is the one answer for every client authentication
// failure, so that an unknown client and a wrong secret look the same.
// known is the id of the client the credentials named when it exists.
func errInvalidClient(known string) *Error {
	e := newError(http.StatusUnauthorized, CodeInvalidClient, "client authentication failed")
	e.client = known
	return e
}

// ErrUnavailable is the answer when the server cannot decide, e.g. the
// database is unreachable (503, with Retry-After set by the renderer).
func ErrUnavailable(cause error) *Error {
	e := newError(http.StatusServiceUnavailable, CodeTemporarilyUnavailable, "the server cannot answer right now; retry shortly")
	e.Err = cause
	return e
}

// ErrServer is an unexpected internal failure (500); the cause is logged only.
func ErrServer(cause error) *Error {
	e := newError(http.StatusInternalServerError, CodeServerError, "internal server error")
	e.Err = cause
	return e
}

// ErrQuotaExceeded is the answer to a client over its issuance quota: 429,
// retry after wait.
func ErrQuotaExceeded(wait time.Duration) *Error {
	e := newError(http.StatusTooManyRequests, CodeTooManyRequests, "the client's token quota is used up; retry later")
	e.RetryAfter, e.quota = wait, true
	return e
}

// Client returns the id of the existing client a failed request named, or "".
func (e *Error) Client() string { return e.client }

// ErrTooManyRequests is the answer to a caller over its failure limit.
func ErrTooManyRequests() *Error {
	return newError(http.StatusTooManyRequests, CodeTooManyRequests, "too many failed requests; retry later")
}

// errMethod answers a method other than POST.
func errMethod() *Error {
	return newError(http.StatusMethodNotAllowed, CodeInvalidRequest, "the endpoint accepts only POST")
}
