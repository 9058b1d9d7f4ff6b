package oauth

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// The spans of the pipeline's steps, children of the request's span (see
// telemetry.Start: made only in a traced request).
const (
	spanParse        = "oauth.parse"        // the surface's codec reads the request
	spanAuthenticate = "oauth.authenticate" // the registry proves the client
	spanPolicy       = "oauth.policy"       // audience, scopes and lifetime are decided
	spanSign         = "oauth.sign"         // the issuer signs the token
)

// endSpan ends a step's span; a step that failed marks it an error with
// the error's code (never its description, which may echo input). The
// cause of a server-side failure is recorded as it is logged.
func endSpan(span trace.Span, e *Error) {
	if e != nil && span.IsRecording() {
		span.SetStatus(codes.Error, e.Code)
		span.SetAttributes(attribute.String("m2mauth.outcome", e.Code))
		if e.Status >= 500 && e.Err != nil {
			span.RecordError(e.Err)
		}
	}
	span.End()
}

// traceCaller records on the authenticate span how the client proved
// itself, and which client it is once proven: a client id that failed to
// authenticate may be anything the caller typed, a secret included (and a
// client named by its id alone, the ATM surface's refresh, is proven only
// by its grant: the request's span names it then).
func traceCaller(span trace.Span, req *Request, caller Caller, e *Error) {
	if m := req.Credentials.Method; m != "" {
		span.SetAttributes(attribute.String("oauth.client_auth_method", m))
	}
	if e == nil && caller.Method != "" && caller.Client.ID != "" {
		span.SetAttributes(attribute.String("oauth.client_id", caller.Client.ID))
	}
}

// traceOutcome records a request's outcome on its span: the endpoint,
// surface, grant type, authentication method, the client if it was
// authenticated, and the outcome code. Never a secret, a token, an
// audience or scope the caller asked for.
func traceOutcome(span trace.Span, o *Outcome, caller Caller) {
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, attribute.String("m2mauth.endpoint", o.Endpoint), attribute.String("m2mauth.surface", o.Surface),
		attribute.String("m2mauth.outcome", o.Code))
	if g := grantName(o.GrantType); g != "" {
		attrs = append(attrs, attribute.String("oauth.grant_type", g))
	}
	if o.AuthMethod != "" {
		attrs = append(attrs, attribute.String("oauth.client_auth_method", o.AuthMethod))
	}
	// A client named by its id alone (the ATM surface's refresh) is proven
	// once its grant succeeded.
	if caller.Client.ID != "" && (caller.Method != "" || o.Code == CodeOK) {
		attrs = append(attrs, attribute.String("oauth.client_id", caller.Client.ID))
	}
	span.SetAttributes(attrs...)
}

// grantName is a request's grant type as traces show it: one the server
// knows, "other" for any other text (which may be anything a caller typed),
// "" for none.
func grantName(g string) string {
	switch g {
	case "", GrantClientCredentials, GrantRefreshToken:
		return g
	}
	return "other"
}
