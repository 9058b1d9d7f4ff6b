package oauth

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/issuer"
	"github.com/m2mauth/m2mauth/internal/scope"
)

// Grant types.
const (
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

// Client authentication methods: token_endpoint_auth_method values
// (RFC 7591 §2).
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	// RFC 8705 §2: mutual-TLS client authentication, by a certificate of
	// a trusted CA naming the client's registered subject, or by a
	// self-signed certificate whose key the client registered.
	AuthTLSClient           = "tls_client_auth"
	AuthSelfSignedTLSClient = "self_signed_tls_client_auth"
)

// MaxBodyBytes caps a token request body.
const MaxBodyBytes = 64 << 10

// maxCredentialLen caps client ids and secrets; longer values cannot be ours.
const maxCredentialLen = 512

// Credentials are what a request presents to prove its client
// (RFC 6749 §2.3). A codec fills them; the authenticator registered for
// Method checks them.
type Credentials struct {
	// Method is how the credentials came: AuthSecretBasic, AuthSecretPost,
	// or "" when the request carried none.
	Method   string
	ClientID string
	Secret   string
	// RawID and RawSecret are the Basic header's id and secret as sent,
	// when RFC 6749 §2.3.1 form-decoding changed them or could not decode
	// them: curl -u, Python requests and axios send them raw, so an id or
	// secret with '+' or '%' would otherwise fail. The authenticator tries
	// them when the decoded pair fails.
	RawID, RawSecret string
	// AssertionType and Assertion are client_assertion_type and
	// client_assertion (RFC 7521 §4.2); Method is then AuthPrivateKeyJWT,
	// the one authenticator for assertions.
	AssertionType, Assertion string
	// Cert is the client's TLS certificate (from the connection or a
	// trusted proxy's header, see package peer) and Chain the
	// intermediates sent with it. A request naming its client by
	// client_id alone that presents one has Method AuthTLSClient, the one
	// authenticator for both certificate methods; any request that
	// presents one may have its tokens bound to it (RFC 8705 §3).
	Cert  *x509.Certificate
	Chain []*x509.Certificate
}

// unguessable reports whether the credentials are a signature (an
// assertion, a certificate's handshake or a trusted proxy's word) rather
// than a secret: a failure then costs the sending address only, never the
// named client's bucket, which guards secrets against guessing (anyone
// who knows a client's id could otherwise lock it out).
func (c *Credentials) unguessable() bool {
	return c.Assertion != "" || c.Method == AuthTLSClient
}

// useCertificate records the request's client certificate; a request
// naming its client by client_id alone (no secret, no assertion) then
// authenticates with it.
func (c *Credentials) useCertificate(cert *x509.Certificate, chain []*x509.Certificate) {
	c.Cert, c.Chain = cert, chain
	if c.Method == AuthSecretPost && c.ClientID != "" && c.Secret == "" && c.RawSecret == "" {
		c.Method = AuthTLSClient
	}
}

// Request is one request to a token-endpoint-like route, parsed from any
// surface's envelope.
type Request struct {
	GrantType   string
	Credentials Credentials
	// Scopes is nil when no scope was requested (use the defaults).
	Scopes []string
	// Resources are the requested audiences (audience and resource values).
	Resources    []string
	RefreshToken string
	// PublicRefresh lets a refresh request name the client without its
	// secret (the ATM surface's documented refresh request).
	PublicRefresh bool
	// Token is the token an introspection or revocation request is about.
	Token string
	// Cnf is what the access token is bound to (nil: a bearer token),
	// decided by the endpoint from the request's certificate and DPoP
	// proof once the client is known.
	Cnf *issuer.Confirmation
	// DPoP is the request's DPoP proof, once its stateless checks passed
	// (nil: none; only the standard token endpoint reads it).
	DPoP *dpop.Proof
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

// onlyOnce refuses a parameter given more than once, except those named.
func (p params) onlyOnce(except string) *Error {
	for name, vs := range p {
		if len(vs) > 1 && name != except {
			return ErrInvalidRequest("parameter %s is given more than once", name)
		}
	}
	return nil
}

// parseTokenRequest reads a standard token request (RFC 6749 §4.4.2): a
// form or JSON body, client authentication by Basic header or body
// parameters. The query string is never read: credentials there are
// ignored.
func parseTokenRequest(r *http.Request) (*Request, *Error) {
	p, e := readBody(r)
	if e != nil {
		return nil, e
	}
	if e := p.onlyOnce("resource"); e != nil {
		return nil, e
	}
	req := &Request{}
	req.GrantType, _ = p.single("grant_type")
	if req.GrantType == "" {
		return nil, ErrInvalidRequest("grant_type is required")
	}
	if e := req.Credentials.read(r, p); e != nil {
		return nil, e
	}
	if s, given := p["scope"]; given {
		if req.Scopes, e = parseScope(s[0]); e != nil {
			return nil, e
		}
	}
	if aud, _ := p.single("audience"); aud != "" {
		req.Resources = append(req.Resources, aud)
	}
	for _, res := range p["resource"] {
		if res != "" {
			req.Resources = append(req.Resources, res)
		}
	}
	if e := checkResources(req.Resources); e != nil {
		return nil, e
	}
	req.RefreshToken, _ = p.single("refresh_token")
	return req, nil
}

// parseScope parses a scope parameter in linear time, with at most
// scope.MaxPerAPI values.
func parseScope(s string) ([]string, *Error) {
	toks, err := scope.Parse(s)
	switch {
	case errors.Is(err, scope.ErrTooMany):
		return nil, newError(http.StatusBadRequest, CodeInvalidScope, "a request may carry at most %d scope values", scope.MaxPerAPI)
	case err != nil:
		return nil, newError(http.StatusBadRequest, CodeInvalidScope, "scope contains characters RFC 6749 §3.3 does not allow")
	}
	return toks, nil
}

// checkResources caps the audience and resource values of one request.
func checkResources(res []string) *Error {
	if len(res) > scope.MaxResources {
		return newError(http.StatusBadRequest, CodeInvalidTarget, "a request may carry at most %d audience and resource values", scope.MaxResources)
	}
	return nil
}

// read records the credentials of a form or JSON request: a Basic header,
// client_id and client_secret, or client_assertion_type and
// client_assertion. RFC 6749 §2.3 allows one method per request: an
// assertion with a secret (in the body or the header) is refused.
func (c *Credentials) read(r *http.Request, p params) *Error {
	postID, _ := p.single("client_id")
	postSecret, _ := p.single("client_secret")
	aType, _ := p.single("client_assertion_type")
	aValue, _ := p.single("client_assertion")
	if aType == "" && aValue == "" {
		return c.set(r.Header.Get("Authorization"), postID, postSecret)
	}
	switch {
	case aType == "" || aValue == "":
		return ErrInvalidRequest("client_assertion_type and client_assertion go together")
	case aType != AssertionJWTBearer && aType != AssertionJWTSPIFFE:
		return ErrInvalidRequest("client_assertion_type must be %s or %s", AssertionJWTBearer, AssertionJWTSPIFFE)
	case postSecret != "" || hasBasic(r.Header.Get("Authorization")):
		return ErrInvalidRequest("a request authenticates its client one way: a client assertion or a secret, not both")
	case len(aValue) > MaxAssertionBytes:
		// Refused like any bad assertion, without being read.
		aValue = "oversize"
	}
	c.Method, c.ClientID, c.AssertionType, c.Assertion = AuthPrivateKeyJWT, postID, aType, aValue
	return nil
}

func hasBasic(authz string) bool {
	scheme, _, found := strings.Cut(authz, " ")
	return found && strings.EqualFold(scheme, "Basic")
}

// set records the client's credentials from an Authorization header and
// body parameters. Both may be present only if they agree (the banking
// platform's documented client sends both).
func (c *Credentials) set(authz, postID, postSecret string) *Error {
	b, hasBasic, e := parseBasic(authz)
	if e != nil {
		return e
	}
	switch {
	case hasBasic && (postID != "" || postSecret != ""):
		// The body must agree with the header, read either way, and then
		// decides which reading of the header is meant.
		decoded := (postID == "" || postID == b.id) && (postSecret == "" || postSecret == b.secret)
		raw := (postID == "" || postID == b.rawID) && (postSecret == "" || postSecret == b.rawSecret)
		switch {
		case decoded && raw:
		case decoded:
			b.rawID, b.rawSecret = b.id, b.secret
		case raw:
			b.id, b.secret = b.rawID, b.rawSecret
		default:
			return ErrInvalidRequest("the client credentials in the Authorization header and the body differ")
		}
		c.setBasic(b)
	case hasBasic:
		c.setBasic(b)
	default:
		c.ClientID, c.Secret = postID, postSecret
		if postID != "" || postSecret != "" {
			c.Method = AuthSecretPost
		}
	}
	return nil
}

// basicCreds are the two readings of a Basic header.
type basicCreds struct {
	id, secret       string // form-decoded (RFC 6749 §2.3.1)
	rawID, rawSecret string // as sent
}

func (c *Credentials) setBasic(b basicCreds) {
	c.Method, c.ClientID, c.Secret = AuthSecretBasic, b.id, b.secret
	if b.rawID != b.id || b.rawSecret != b.secret {
		c.RawID, c.RawSecret = b.rawID, b.rawSecret
	}
}

// parseBasic reads "Basic base64(urlencode(id):urlencode(secret))"
// (RFC 6749 §2.3.1), and the values as sent (RFC 7617, what most clients
// send). When form-decoding fails, both readings are the raw values.
// Other schemes are not client authentication and are ignored.
func parseBasic(authz string) (b basicCreds, ok bool, e *Error) {
	scheme, rest, found := strings.Cut(authz, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return b, false, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return b, false, ErrInvalidRequest("the Basic credentials are not valid base64")
	}
	rawID, rawSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return b, false, ErrInvalidRequest("the Basic credentials have no ':' separator")
	}
	b = basicCreds{id: rawID, secret: rawSecret, rawID: rawID, rawSecret: rawSecret}
	if id, err := url.QueryUnescape(rawID); err == nil {
		b.id = id
	}
	if secret, err := url.QueryUnescape(rawSecret); err == nil {
		b.secret = secret
	}
	return b, true, nil
}

const formType = "application/x-www-form-urlencoded"

// readBody reads and decodes the body by its content type.
func readBody(r *http.Request) (params, *Error) {
	mt := r.Header.Get("Content-Type")
	if mt != formType { // what nearly every client sends, as it is
		var err error
		if mt, _, err = mime.ParseMediaType(mt); err != nil {
			return nil, ErrInvalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
		}
	}
	body, e := ReadBody(r)
	if e != nil {
		return nil, e
	}
	switch mt {
	case formType:
		return formParams(body)
	case "application/json":
		return parseJSONParams(body)
	}
	return nil, ErrInvalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
}

// maxParams caps the parameters (form) or members (JSON) of a request: a
// token request has a handful, and each costs parsing work before the
// client is known.
const maxParams = 64

var errTooManyParams = ErrInvalidRequest("a request may carry at most %d parameters", maxParams)

func errInvalidForm() *Error {
	return ErrInvalidRequest("the form body is not valid application/x-www-form-urlencoded")
}

// formParams decodes an application/x-www-form-urlencoded body as
// url.ParseQuery does (a ';' or a bad escape makes it invalid), straight
// into params: one string for the body, one map and one array for the
// values, and a string only for each escaped name or value.
func formParams(body []byte) (params, *Error) {
	n := bytes.Count(body, []byte("&"))
	if n >= maxParams {
		return nil, errTooManyParams
	}
	if bytes.IndexByte(body, ';') >= 0 {
		return nil, errInvalidForm()
	}
	s := string(body)
	p := make(params, n+1)
	// The first value of each name, in one array; a repeated name's
	// append copies its slice (capacity one) out of it.
	vals := make([]string, 0, n+1)
	for s != "" {
		var kv string
		kv, s, _ = strings.Cut(s, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return nil, errInvalidForm()
		}
		if v, err = url.QueryUnescape(v); err != nil {
			return nil, errInvalidForm()
		}
		if v == "" { // RFC 6749 §3.1: empty parameters are omitted
			continue
		}
		if vs, ok := p[k]; ok {
			p[k] = append(vs, v)
			continue
		}
		vals = append(vals, v)
		p[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return p, nil
}

// ReadBody reads the whole body, which the server has capped with
// http.MaxBytesReader.
func ReadBody(r *http.Request) ([]byte, *Error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return nil, newError(http.StatusRequestEntityTooLarge, CodeInvalidRequest, "the request body is too large")
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, newError(http.StatusRequestTimeout, CodeInvalidRequest, "the request body did not arrive in time")
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
		if name == "resource" && len(raw) > 0 && raw[0] == '[' {
			list, e := stringArray(raw, scope.MaxResources)
			if e != nil {
				return nil, e
			}
			p[name] = list
			continue
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
	"client_assertion_type": true, "client_assertion": true,
}

// stringArray decodes a JSON array of strings, stopping at the first
// element past max: its work is bounded by the cap, not by the body.
func stringArray(raw []byte, max int) ([]string, *Error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, ErrInvalidRequest("parameter resource must be a string or an array of strings")
	}
	var out []string
	for dec.More() {
		if len(out) == max {
			return nil, newError(http.StatusBadRequest, CodeInvalidTarget, "a request may carry at most %d audience and resource values", max)
		}
		var s string
		if err := dec.Decode(&s); err != nil {
			return nil, ErrInvalidRequest("parameter resource must be a string or an array of strings")
		}
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// JSONObjectMembers decodes a JSON object into its members, rejecting
// repeated member names, more than maxParams members and anything after
// the object.
func JSONObjectMembers(body []byte) (map[string]json.RawMessage, *Error) {
	bad := ErrInvalidRequest("the body is not a valid JSON object")
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, bad
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		if len(members) == maxParams {
			return nil, errTooManyParams
		}
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
