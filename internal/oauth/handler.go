package oauth

import (
	"net/http"
	"strings"
	"sync"

	"github.com/m2mauth/m2mauth/internal/jsonappend"
)

// StandardCodec is the RFC 6749 envelope of POST /oauth/token: a form or
// JSON body, and §5.1 / §5.2 JSON answers.
type StandardCodec struct{}

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	// Scope is always sent: RFC 6749 §5.1 requires it whenever it differs
	// from the request, which an empty scope can.
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// Parse implements Codec.
func (StandardCodec) Parse(r *http.Request) (*Request, *Error) { return parseTokenRequest(r) }

// WriteToken implements Codec.
func (StandardCodec) WriteToken(w http.ResponseWriter, t *TokenResponse) {
	scope := strings.Join(t.Scopes, " ")
	if len(t.Echo) > 0 {
		scope = strings.TrimSpace(strings.Join(t.Echo, " ") + " " + scope)
	}
	bp := bodyPool.Get().(*[]byte)
	b := tokenResponse{
		AccessToken: t.AccessToken, TokenType: t.TokenType,
		ExpiresIn: t.ExpiresIn, Scope: scope, RefreshToken: t.RefreshToken,
	}.appendJSON((*bp)[:0])
	writeJSONBody(w, http.StatusOK, append(b, '\n'))
	if cap(b) <= maxPooledBody {
		*bp = b
		bodyPool.Put(bp)
	}
}

// appendJSON appends the response as json.Marshal(r) writes it, without
// reflection: it is written for every token.
func (r tokenResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"access_token":`...)
	b = jsonappend.String(b, r.AccessToken)
	b = append(b, `,"token_type":`...)
	b = jsonappend.String(b, r.TokenType)
	b = append(b, `,"expires_in":`...)
	b = jsonappend.Int(b, r.ExpiresIn)
	b = append(b, `,"scope":`...)
	b = jsonappend.String(b, r.Scope)
	if r.RefreshToken != "" {
		b = append(b, `,"refresh_token":`...)
		b = jsonappend.String(b, r.RefreshToken)
	}
	return append(b, '}')
}

// bodyPool holds the buffers token responses are built in: a response is
// about a kilobyte (an RSA-signed token), and its buffer is free again as
// soon as the body is written.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledBody bounds the buffers kept in bodyPool (a token with many
// custom claims may make a larger one once).
const maxPooledBody = 16 << 10

// WriteError implements Codec: an RFC 6749 §5.2 error object.
func (StandardCodec) WriteError(w http.ResponseWriter, e *Error) { WriteError(w, e) }

// introspectionCodec is the envelope of RFC 7662 and RFC 7009 requests:
// a form, and standard errors.
type introspectionCodec struct{ StandardCodec }

func (introspectionCodec) Parse(r *http.Request) (*Request, *Error) { return parseTokenForm(r) }

// WriteError renders e as an RFC 6749 §5.2 error object. It is the one place
// the standard envelope is written.
func WriteError(w http.ResponseWriter, e *Error) {
	switch e.Status {
	case http.StatusUnauthorized:
		if e.challenge {
			w.Header().Set("WWW-Authenticate", `Basic realm="m2mauth", charset="UTF-8"`)
		}
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		SetRetryAfter(w.Header(), e)
	}
	WriteJSON(w, e.Status, struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
}
