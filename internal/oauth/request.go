package oauth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Grant types.
const (
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

// MaxBodyBytes caps a token request body.
const MaxBodyBytes = 64 << 10

// maxCredentialLen caps client ids and secrets; longer values cannot be ours.
const maxCredentialLen = 512

// TokenRequest is a token request parsed from any surface.
type TokenRequest struct {
	GrantType    string
	ClientID     string
	ClientSecret string
	// BasicAuth reports that credentials came in the Authorization header.
	BasicAuth bool
	// Scopes is nil when no scope was requested (use the defaults).
	Scopes []string
	// Resources are the requested audiences (audience and resource values).
	Resources    []string
	RefreshToken string
	// PublicRefresh lets a refresh request name the client without its
	// secret (the ATM surface's documented refresh request).
	PublicRefresh bool
}

// params is a flat view of the body: each name with its values.
type params map[string][]string

// single returns the one value of name, or an error if it was given twice.
func (p params) single(name string) (string, *Error) {
	v := p[name]
	switch len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	}
	return "", ErrInvalidRequest("parameter %s is given more than once", name)
}

// ParseTokenRequest reads a standard token request (RFC 6749 §4.4.2) from r:
// a form or JSON body, client authentication by Basic header or body
// parameters. The query string is never read: credentials there are ignored.
func ParseTokenRequest(r *http.Request) (*TokenRequest, *Error) {
	p, e := readBody(r)
	if e != nil {
		return nil, e
	}
	for name, vs := range p {
		if len(vs) > 1 && name != "resource" {
			return nil, ErrInvalidRequest("parameter %s is given more than once", name)
		}
	}
	req := &TokenRequest{}
	req.GrantType, _ = p.single("grant_type")
	if req.GrantType == "" {
		return nil, ErrInvalidRequest("grant_type is required")
	}
	postID, _ := p.single("client_id")
	postSecret, _ := p.single("client_secret")
	if e := req.setCredentials(r.Header.Get("Authorization"), postID, postSecret); e != nil {
		return nil, e
	}
	if scope, given := p["scope"]; given {
		s, e := ParseScope(scope[0])
		if e != nil {
			return nil, e
		}
		req.Scopes = s
	}
	if aud, _ := p.single("audience"); aud != "" {
		req.Resources = append(req.Resources, aud)
	}
	for _, res := range p["resource"] {
		if res != "" {
			req.Resources = append(req.Resources, res)
		}
	}
	req.RefreshToken, _ = p.single("refresh_token")
	return req, nil
}

// setCredentials records the client's credentials from an Authorization
// header and body parameters. Both may be present only if they agree (the
// banking platform's documented client sends both).
func (req *TokenRequest) setCredentials(authz, postID, postSecret string) *Error {
	basicID, basicSecret, hasBasic, e := parseBasic(authz)
	if e != nil {
		return e
	}
	switch {
	case hasBasic && (postID != "" || postSecret != ""):
		if (postID != "" && postID != basicID) || (postSecret != "" && postSecret != basicSecret) {
			return ErrInvalidRequest("the client credentials in the Authorization header and the body differ")
		}
		req.ClientID, req.ClientSecret, req.BasicAuth = basicID, basicSecret, true
	case hasBasic:
		req.ClientID, req.ClientSecret, req.BasicAuth = basicID, basicSecret, true
	default:
		req.ClientID, req.ClientSecret = postID, postSecret
	}
	return nil
}

// parseBasic decodes "Basic base64(urlencode(id):urlencode(secret))"
// (RFC 6749 §2.3.1). Other schemes are not client authentication and are
// ignored.
func parseBasic(authz string) (id, secret string, ok bool, e *Error) {
	scheme, rest, found := strings.Cut(authz, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false, ErrInvalidRequest("the Basic credentials are not valid base64")
	}
	encID, encSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false, ErrInvalidRequest("the Basic credentials have no ':' separator")
	}
	id, err1 := url.QueryUnescape(encID)
	secret, err2 := url.QueryUnescape(encSecret)
	if err1 != nil || err2 != nil {
		return "", "", false, ErrInvalidRequest("the Basic credentials are not form-url-encoded")
	}
	return id, secret, true, nil
}

// ParseScope splits a space-delimited scope parameter (RFC 6749 §3.3),
// dropping repeats; every token must be scope-token characters.
func ParseScope(s string) ([]string, *Error) {
	out := []string{}
	for _, tok := range strings.Split(s, " ") {
		if tok == "" {
			continue
		}
		if !ValidScopeToken(tok) {
			return nil, newError(http.StatusBadRequest, CodeInvalidScope, "scope contains characters RFC 6749 §3.3 does not allow")
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out, nil
}

// ValidScopeToken reports whether s is a non-empty RFC 6749 §3.3 scope-token:
// %x21 / %x23-5B / %x5D-7E.
func ValidScopeToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// readBody reads and decodes the body by its content type.
func readBody(r *http.Request) (params, *Error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, ErrInvalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
	}
	body, e := ReadBody(r)
	if e != nil {
		return nil, e
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		return formParams(body)
	case "application/json":
		return parseJSONParams(body)
	}
	return nil, ErrInvalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
}

// formParams decodes an application/x-www-form-urlencoded body.
func formParams(body []byte) (params, *Error) {
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, ErrInvalidRequest("the form body is not valid application/x-www-form-urlencoded")
	}
	p := params{}
	for k, vs := range v {
		for _, s := range vs {
			if s != "" { // RFC 6749 §3.1: empty parameters are omitted
				p[k] = append(p[k], s)
			}
		}
	}
	return p, nil
}

// ReadBody reads the whole body, which the server has capped with
// http.MaxBytesReader.
func ReadBody(r *http.Request) ([]byte, *Error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeInvalidRequest, Description: "the request body is too large"}
		}
		return nil, ErrInvalidRequest("the request body could not be read")
	}
	return body, nil
}

// parseJSONParams reads a JSON object whose members are strings (or, for
// resource, a string or an array of strings). Repeated members are an error,
// as in the form encoding; members of other types are an error unless the
// name is not one we read.
func parseJSONParams(body []byte) (params, *Error) {
	members, e := JSONObjectMembers(body)
	if e != nil {
		return nil, e
	}
	p := params{}
	for name, raw := range members {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			if s != "" {
				p[name] = []string{s}
			}
			continue
		}
		if name == "resource" {
			var list []string
			if err := json.Unmarshal(raw, &list); err == nil {
				p[name] = list
				continue
			}
		}
		if knownParams[name] {
			return nil, ErrInvalidRequest("parameter %s must be a string", name)
		}
	}
	return p, nil
}

var knownParams = map[string]bool{
	"grant_type": true, "client_id": true, "client_secret": true, "scope": true,
	"audience": true, "resource": true, "refresh_token": true,
}

// JSONObjectMembers decodes a JSON object into its members, rejecting
// repeated member names and anything after the object.
func JSONObjectMembers(body []byte) (map[string]json.RawMessage, *Error) {
	bad := ErrInvalidRequest("the body is not a valid JSON object")
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, bad
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad
		}
		name, ok := tok.(string)
		if !ok {
			return nil, bad
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, bad
		}
		if _, dup := members[name]; dup {
			// The name is not echoed: error_description allows only a
			// restricted character set (RFC 6749 §5.2).
			return nil, ErrInvalidRequest("a JSON member is given more than once")
		}
		members[name] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, bad
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad
	}
	return members, nil
}
