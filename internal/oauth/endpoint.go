package oauth

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/trace"

	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/peer"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/telemetry"
)

// Codec is a surface's envelope: it parses a request into the one Request
// value and renders tokens and errors. It holds no logic of its own; the
// Endpoint runs the pipeline around it.
type Codec interface {
	// Parse reads the request's envelope.
	Parse(r *http.Request) (*Request, *Error)
	// WriteToken renders an issued token.
	WriteToken(w http.ResponseWriter, t *TokenResponse)
	// WriteError renders a refusal; it is the one place the surface's
	// errors are written.
	WriteError(w http.ResponseWriter, e *Error)
}

// Result is what an endpoint's action produced: a token (rendered by the
// codec), a JSON body (introspection), or an empty 200 (revocation).
type Result struct {
	Token   *TokenResponse
	Body    any
	Revoked bool
}

// action is the step of the pipeline that differs between endpoints:
// check runs before authentication (may be nil), run after it.
type action struct {
	name  string
	check func(ctx context.Context, req *Request) *Error
	run   func(ctx context.Context, caller Caller, req *Request) (Result, *Error)
}

// Endpoint is one token-endpoint-like route. It runs every step once, in
// this order, for every surface: method check, failure limiter, parse
// (codec), pre-authentication check, client authentication (registry),
// action (policy and issue, introspect, revoke), render (codec), log. A
// cross-cutting concern (a metric, an audit event, a quota, a header) is
// added here, and only here.
type Endpoint struct {
	surface string
	codec   Codec
	act     action
	svc     *Service
	limiter *FailureLimiter
	usage   *UsageRecorder
	observe Observer
	gate    Gate
	log     *slog.Logger
	// constrain: the endpoint issues sender-constrained tokens (the
	// standard token endpoint); see bind. dpop checks its DPoP proofs
	// (nil: a DPoP header is ignored).
	constrain bool
	dpop      *dpopChecker
}

// Endpoints builds the endpoints of one server.
type Endpoints struct {
	Service *Service
	Limiter *FailureLimiter // may be nil
	// Usage counts the tokens each client is issued (may be nil).
	Usage *UsageRecorder
	// Observer is told of every request's outcome (may be nil).
	Observer Observer
	// Gate admits authenticated token requests (quotas; may be nil).
	Gate Gate
	// DPoP configures DPoP proofs at the standard token endpoint.
	DPoP DPoPConfig
	Log  *slog.Logger
}

func (b Endpoints) endpoint(surface string, c Codec, act action) *Endpoint {
	return &Endpoint{surface: surface, codec: c, act: act, svc: b.Service, limiter: b.Limiter, usage: b.Usage,
		observe: b.Observer, gate: b.Gate, log: b.Log}
}

// Token returns the token endpoint of a compatibility surface: it issues
// Bearer tokens only.
func (b Endpoints) Token(surface string, c Codec) *Endpoint {
	return b.endpoint(surface, c, action{name: "token", check: func(_ context.Context, req *Request) *Error { return checkGrant(req) }, run: b.Service.issueFor})
}

// StandardToken returns the RFC 6749 token endpoint of a surface: it binds
// tokens to the DPoP key the request proves (RFC 9449) and to the client's
// certificate (RFC 8705 §3).
func (b Endpoints) StandardToken(surface string) *Endpoint {
	ep := b.Token(surface, StandardCodec{})
	ep.constrain = true
	ep.dpop = newDPoPChecker(b.DPoP)
	return ep
}

// TokenFor returns the standard token endpoint restricted to one audience,
// the request environment's audience(ctx): a request for another is
// invalid_target, and one naming none gets this one. It serves the admin
// login, which must work whichever surfaces are on.
func (b Endpoints) TokenFor(surface string, audienceOf func(context.Context) string) *Endpoint {
	check := func(ctx context.Context, req *Request) *Error {
		if e := checkGrant(req); e != nil {
			return e
		}
		audience := audienceOf(ctx)
		if len(req.Resources) == 0 {
			req.Resources = []string{audience}
		}
		for _, a := range req.Resources {
			if a != audience {
				return newError(http.StatusBadRequest, CodeInvalidTarget, "this endpoint issues tokens for the admin API only")
			}
		}
		return nil
	}
	return b.endpoint(surface, StandardCodec{}, action{name: "token", check: check, run: b.Service.issueFor})
}

// Introspect returns the RFC 7662 introspection endpoint.
func (b Endpoints) Introspect(in *Introspection) *Endpoint {
	return b.endpoint("introspection", introspectionCodec{}, action{name: "introspect", run: in.introspect})
}

// Revoke returns the RFC 7009 revocation endpoint.
func (b Endpoints) Revoke(in *Introspection) *Endpoint {
	return b.endpoint("revocation", introspectionCodec{}, action{name: "revoke", run: in.revokeOwn})
}

func (s *Service) issueFor(ctx context.Context, caller Caller, req *Request) (Result, *Error) {
	t, e := s.grant(ctx, caller, req)
	if e != nil {
		return Result{}, e
	}
	return Result{Token: t}, nil
}

// ServeHTTP runs the pipeline, then tells the observer what came of it
// and, in a traced request, records it on the request's span.
func (ep *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	span := trace.SpanFromContext(r.Context())
	traced := span.IsRecording()
	if ep.observe == nil && !traced {
		ep.serve(w, r)
		return
	}
	start := ep.svc.now()
	req, caller, tok, e := ep.serve(w, r)
	o := Outcome{Endpoint: ep.act.name, Surface: ep.surface, AuthMethod: caller.Method, ClientID: caller.Client.ID,
		Code: CodeOK, Status: http.StatusOK, Start: start, Duration: ep.svc.now().Sub(start), Token: tok, Remote: r.RemoteAddr}
	if en := env.FromContext(r.Context()); en != nil {
		o.Env = en.Name
	}
	if req != nil {
		o.GrantType, o.Audience, o.Scopes = req.GrantType, req.Resources, req.Scopes
	}
	if e != nil {
		o.Code, o.Status, o.Cause, o.QuotaExceeded = e.Code, e.Status, e.Err, e.quota
		if o.ClientID == "" {
			o.ClientID = e.client
		}
	}
	if traced {
		traceOutcome(span, &o, caller)
	}
	if ep.observe != nil {
		ep.observe.Observe(r.Context(), o)
	}
}

// serve runs the pipeline and writes the answer. It returns what the
// observer reads: the parsed request (nil if it did not parse), the
// authenticated caller, the issued token and the error answered (nil on
// success).
func (ep *Endpoint) serve(w http.ResponseWriter, r *http.Request) (*Request, Caller, *TokenResponse, *Error) {
	NoStore(w)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, Caller{}, nil, ep.refuse(w, r, nil, errMethod())
	}
	_, span := telemetry.Start(r.Context(), spanParse)
	req, e := ep.codec.Parse(r)
	endSpan(span, e)
	if e != nil {
		return nil, Caller{}, nil, ep.refuse(w, r, nil, e)
	}
	// The client certificate, read once: from the connection, or from a
	// trusted proxy's header (package peer). A header that holds no
	// certificate fails the request like any failed authentication, at the
	// cost of the address only (the proxy vouched for it; nobody guessed).
	cert, chain, err := peer.Certificate(r)
	if err != nil {
		req.Credentials.Method = AuthTLSClient
		return req, Caller{}, nil, ep.refuse(w, r, req, refusedCert("", "certificate: the certificate header does not parse"))
	}
	if cert != nil {
		req.Credentials.useCertificate(cert, chain)
	}
	if ep.act.check != nil {
		if e := ep.act.check(r.Context(), req); e != nil {
			return req, Caller{}, nil, ep.refuse(w, r, req, e)
		}
	}
	if ep.dpop == nil && ep.act.name == "token" && len(r.Header["Dpop"]) > 0 {
		// A surface that issues bearer tokens only: a client asking for a
		// DPoP-bound token is told so, rather than handed a bearer token
		// it would take for bound (found by the attack).
		return req, Caller{}, nil, ep.refuse(w, r, req, ErrInvalidRequest("this endpoint issues bearer tokens only: ask the standard token endpoint (/oauth/token) for DPoP-bound tokens"))
	}
	if ep.dpop != nil {
		// The proof's stateless checks, before the client is known: a
		// forged proof costs its address, never the client it names.
		p, e := ep.dpop.check(w, r)
		if e != nil {
			if e.Code != dpop.CodeUseNonce {
				// A nonce challenge is a step of the protocol, not a failure.
				e = ep.chargeAddress(r, e)
			}
			return req, Caller{}, nil, ep.fail(w, r, req, e, Caller{})
		}
		req.DPoP = p
	}
	// A client's failure bucket stops its secret being guessed from many
	// addresses. A signature (an assertion, a certificate) cannot be
	// guessed, and anyone may send assertions naming a client: letting
	// their failures refuse the client's own assertions from a new address
	// would hand its lockout to whoever knows its id.
	if !req.Credentials.unguessable() && !ep.limiter.Admit(r, req.Credentials.ClientID) {
		return req, Caller{}, nil, ep.fail(w, r, req, ErrTooManyRequests(), Caller{})
	}
	actx, span := telemetry.Start(r.Context(), spanAuthenticate)
	caller, e := ep.svc.authenticate(actx, req)
	if span.IsRecording() {
		traceCaller(span, req, caller, e)
	}
	endSpan(span, e)
	if e != nil {
		return req, Caller{}, nil, ep.refuse(w, r, req, e)
	}
	// A proven client's address is spared its failure bucket from now on.
	// A caller named by id alone (the ATM surface's refresh request) is
	// proven only by its refresh token, once the grant has succeeded.
	if caller.Method != "" {
		ep.limiter.Succeeded(r, caller.Client.ID)
	}
	if req.DPoP != nil {
		// The jti is remembered only for a proven client, so that junk
		// from nobody cannot fill the replay table. A replay costs the
		// address like a forged proof.
		if e := ep.dpop.use(r.Context(), req.DPoP); e != nil {
			return req, caller, nil, ep.fail(w, r, req, ep.chargeAddress(r, e), caller)
		}
	}
	if ep.act.name == "token" {
		if e := ep.bind(caller, req); e != nil {
			return req, caller, nil, ep.fail(w, r, req, e, caller)
		}
	}
	var adm Admission
	if ep.gate != nil {
		a, e := ep.gate.Admit(r.Context(), ep.act.name, caller, req)
		if e != nil {
			if a != nil {
				a.Headers(w.Header())
			}
			return req, caller, nil, ep.fail(w, r, req, e, caller)
		}
		adm = a
	}
	res, e := ep.act.run(r.Context(), caller, req)
	if adm != nil {
		// Done first: a request refused after admission gives its token
		// back, and the headers count it as left.
		adm.Done(e == nil && res.Token != nil)
		adm.Headers(w.Header())
	}
	if e != nil {
		if caller.Method == "" && e.Status < 500 && ep.limiter.Failed(r, "", false) {
			// A caller named by id alone is proven by its refresh token
			// only: a refused grant is a failed authentication of the
			// address (never of the client: anyone may name it), so that
			// junk refresh tokens are limited like wrong secrets (each
			// would otherwise cost a quota reservation and a write).
			limited := ErrTooManyRequests()
			limited.client = e.client
			e = limited
		}
		return req, caller, nil, ep.fail(w, r, req, e, caller)
	}
	if caller.Method == "" {
		ep.limiter.Succeeded(r, caller.Client.ID)
	}
	switch {
	case res.Token != nil:
		if ep.usage != nil {
			ep.usage.Issued(env.FromContext(r.Context()).Name, res.Token.ClientID, ep.svc.now())
		}
		ep.codec.WriteToken(w, res.Token)
	case res.Body != nil:
		WriteJSON(w, http.StatusOK, res.Body)
	default:
		w.WriteHeader(http.StatusOK)
	}
	if ep.log.Enabled(r.Context(), slog.LevelDebug) {
		ep.log.DebugContext(r.Context(), "request served", "endpoint", ep.act.name, "surface", ep.surface,
			"client_id", caller.Client.ID, "grant_type", req.GrantType, "auth_method", caller.Method)
	}
	return req, caller, res.Token, nil
}

// refuse answers a request that failed before its client was
// authenticated. Client errors count against the failure limiter and
// become 429 once the caller is over its limit; a failure to decide (5xx)
// counts for nothing.
func (ep *Endpoint) refuse(w http.ResponseWriter, r *http.Request, req *Request, e *Error) *Error {
	return ep.fail(w, r, req, ep.charge(r, req, e), Caller{})
}

// charge counts a failure before authentication against the limiter; it
// returns e, or 429 once the caller is over its limit.
func (ep *Endpoint) charge(r *http.Request, req *Request, e *Error) *Error {
	claimed, known := e.client, e.client != ""
	if claimed == "" && req != nil {
		claimed = req.Credentials.ClientID
	}
	if req != nil && req.Credentials.unguessable() {
		// A forged assertion or a refused certificate naming a client
		// costs the address only: the client's bucket guards its secrets,
		// and anyone who knows its id could otherwise drain it (such
		// requests skip it in Admit).
		claimed, known = "", false
	}
	if e.Status < 500 && ep.limiter.Failed(r, claimed, known) {
		limited := ErrTooManyRequests()
		limited.client = e.client
		return limited
	}
	return e
}

// chargeAddress counts a failure against the sending address alone (a
// bad DPoP proof: like a forged assertion, it proves nothing about the
// client it names); it returns e, or 429 once the address is over its
// limit.
func (ep *Endpoint) chargeAddress(r *http.Request, e *Error) *Error {
	if e.Status < 500 && ep.limiter.Failed(r, "", false) {
		limited := ErrTooManyRequests()
		limited.client = e.client
		return limited
	}
	return e
}

// fail renders e in the surface's envelope and logs it; it returns e.
func (ep *Endpoint) fail(w http.ResponseWriter, r *http.Request, req *Request, e *Error, caller Caller) *Error {
	e.challenge = e.Status == http.StatusUnauthorized && basicChallenge(r, req)
	ep.logRefusal(r, req, e, caller)
	ep.codec.WriteError(w, e)
	return e
}

// basicChallenge reports whether a 401 names the Basic scheme: RFC 6749
// §5.2 requires it when the client authenticated with Basic, and it tells a
// request without credentials how to send them. A client that
// authenticated in the body (client_secret_post or an assertion) gets the
// error object alone: libraries such as openid-client 6 read a challenge
// as the error and would hide invalid_client behind it.
func basicChallenge(r *http.Request, req *Request) bool {
	return hasBasic(r.Header.Get("Authorization")) || req == nil || req.Credentials.Method == ""
}

// unknownClient stands in the log for a client id that names no client:
// such a value may be anything the caller typed, a secret included.
const unknownClient = "(unknown)"

// logRefusal records a refused request. Client errors are logged at info,
// server-side failures at error with their cause. What the caller sent
// never reaches the log: a client id is logged only when it names an
// existing client, and the reason is the error's template, without the
// values the caller put in the description.
func (ep *Endpoint) logRefusal(r *http.Request, req *Request, e *Error, caller Caller) {
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("endpoint", ep.act.name), slog.String("surface", ep.surface),
		slog.String("error", e.Code), slog.Int("status", e.Status))
	switch {
	case caller.Client.ID != "":
		attrs = append(attrs, slog.String("client_id", caller.Client.ID))
	case e.client != "":
		attrs = append(attrs, slog.String("client_id", e.client))
	case req != nil && req.Credentials.ClientID != "":
		attrs = append(attrs, slog.String("client_id", unknownClient))
	}
	if e.Status >= 500 {
		ep.log.LogAttrs(r.Context(), slog.LevelError, "request failed", append(attrs, slog.Any("cause", e.Err))...)
		return
	}
	ep.log.LogAttrs(r.Context(), slog.LevelInfo, "request refused", append(attrs, slog.String("reason", e.reason))...)
}

// Constant header values, shared by every response: assigning one costs
// no allocation, where Header.Set allocates a slice per call. Nothing
// writes into a header value's slice in place (Header.Add appends, which
// copies a full slice), so sharing is safe.
var (
	noStoreValue  = []string{"no-store"}
	noCacheValue  = []string{"no-cache"}
	jsonTypeValue = []string{"application/json"}
)

// NoStore sets the RFC 6749 §5.1 cache headers every token response carries.
func NoStore(w http.ResponseWriter) {
	h := w.Header()
	h["Cache-Control"] = noStoreValue
	h["Pragma"] = noCacheValue
}

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"server_error"}`)
	}
	writeJSONBody(w, status, append(b, '\n'))
}

// writeJSONBody writes b, a JSON document, as the response: its headers
// and status, then the body in one Write.
func writeJSONBody(w http.ResponseWriter, status int, b []byte) {
	w.Header()["Content-Type"] = jsonTypeValue
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// SignIn proves a client by its id and secret the way the token endpoint
// does, for a sign-in form: through the failure limiter (a form is no
// cheaper a way to guess a secret than the token endpoint) and the
// registry's secret authenticator, and it logs a refusal the same way. A
// refusal is invalid_client, or 429 once the caller is over its limit.
func (ep *Endpoint) SignIn(r *http.Request, clientID, secret string) (store.Client, *Error) {
	req := &Request{GrantType: GrantClientCredentials, Credentials: Credentials{Method: AuthSecretPost, ClientID: clientID, Secret: secret}}
	if !ep.limiter.Admit(r, clientID) {
		e := ErrTooManyRequests()
		ep.logRefusal(r, req, e, Caller{})
		return store.Client{}, e
	}
	caller, e := ep.svc.authenticate(r.Context(), req)
	if e != nil {
		e = ep.charge(r, req, e)
		ep.logRefusal(r, req, e, Caller{})
		return store.Client{}, e
	}
	ep.limiter.Succeeded(r, caller.Client.ID)
	return caller.Client, nil
}
