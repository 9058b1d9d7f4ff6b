// Package oauth implements the OAuth 2.0 token endpoint core for the
// client-credentials grant (RFC 6749 §4.4): parse a request into one
// TokenRequest, authenticate the client (§2.3.1), decide audience (RFC 8707)
// and scopes (§3.3), issue an RFC 9068 access token, and render the answer
// or an RFC 6749 §5.2 error.
package oauth

import (
	"fmt"
	"net/http"
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
)

// Error is a protocol error. Code and Description are what the client sees;
// Err is the internal cause, logged and never sent.
type Error struct {
	Status      int
	Code        string
	Description string
	Err         error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Err)
	}
	return e.Code + ": " + e.Description
}

func (e *Error) Unwrap() error { return e.Err }

func newError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Description: fmt.Sprintf(format, args...)}
}

// ErrInvalidRequest is a malformed request (400).
func ErrInvalidRequest(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, CodeInvalidRequest, format, args...)
}

// errInvalidClient is the one answer for every client authentication
// failure, so that an unknown client and a wrong secret look the same.
func errInvalidClient() *Error {
	return newError(http.StatusUnauthorized, CodeInvalidClient, "client authentication failed")
}

// ErrUnavailable is the answer when the server cannot decide, e.g. the
// database is unreachable (503, with Retry-After set by the renderer).
func ErrUnavailable(cause error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable,
		Description: "the server cannot answer right now; retry shortly", Err: cause}
}

// ErrServer is an unexpected internal failure (500); the cause is logged only.
func ErrServer(cause error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: CodeServerError,
		Description: "internal server error", Err: cause}
}
