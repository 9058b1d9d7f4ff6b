package server

import (
	"context"
	"crypto/x509"
	"database/sql/driver"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/store/sqlstore"
	"github.com/m2mauth/m2mauth/internal/telemetry"
)

// Options are what a server is given besides its configuration: its
// instrumentation. The zero value is a server without tracing and without a
// database observer.
type Options struct {
	// TracerProvider makes the server's spans (telemetry.NewTracerProvider
	// from the OTEL_* variables); nil or a no-op provider: no tracing, at
	// no cost. Once New succeeds the server owns it: Close shuts it down
	// (flushing the spans not yet exported) when it has a Shutdown method.
	TracerProvider trace.TracerProvider
	// QueryObserver is told of every database call (metrics); nil: none.
	QueryObserver telemetry.QueryObserver
	// ClientCAs, when set, turns mutual TLS on with these CAs for
	// tls_client_auth (RFC 8705 §2.1), whether the certificate comes from
	// the listener's TLS or a trusted proxy's header; it returns the pool
	// as now loaded (nil: none, and tls_client_auth fails).
	ClientCAs func() *x509.CertPool
}

// traceContext reads W3C trace context (traceparent, tracestate) from
// incoming requests.
var traceContext = propagation.TraceContext{}

// storeOptions open the database through the instrumented connector: every
// call is timed for the query observer and, within a traced request, a
// span.
func (o Options) storeOptions(cfg config.Config) []sqlstore.Option {
	db := telemetry.DB{System: "sqlite", Observer: o.QueryObserver}
	if cfg.IsPostgres() {
		db.System = "postgresql"
	}
	return []sqlstore.Option{sqlstore.WithConnector(func(c driver.Connector) driver.Connector {
		return telemetry.WrapConnector(c, db)
	})}
}

// setTracing makes the server trace its requests with tp (when it makes
// spans at all).
func (s *Server) setTracing(tp trace.TracerProvider) {
	s.tracerProvider = tp
	if telemetry.Enabled(tp) {
		s.tracer = tp.Tracer(telemetry.ScopeName)
	}
}

// shutdownTracing flushes and stops a tracer provider (if it can be
// stopped), within 5 seconds.
func shutdownTracing(tp trace.TracerProvider, log *slog.Logger) {
	sd, ok := tp.(interface{ Shutdown(context.Context) error })
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sd.Shutdown(ctx); err != nil {
		log.Warn("flush traces", "error", err)
	}
}

// startSpan starts the server span of a request, a child of the trace
// context the request carries (W3C traceparent) if any. Its name and route
// are set when the request has been routed (endSpan). Only the method, the
// scheme, the protocol version, the client's address and the request id
// are recorded: never the path, the query, a header or the body.
func (s *Server) startSpan(ctx context.Context, r *http.Request, id string) (context.Context, trace.Span) {
	ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(r.Header))
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", spanMethod(r.Method)),
		attribute.String("url.scheme", scheme),
		attribute.String("network.protocol.version", protocolVersion(r)),
		attribute.String("m2mauth.request_id", id),
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, attribute.String("client.address", host))
	}
	return s.tracer.Start(ctx, spanMethod(r.Method), trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}

// endSpan names the request's span by the route it matched ("POST
// /oauth/token", "GET /admin/v1/clients/{id}") and ends it with the
// response's status; a 5xx answer is an error.
func endSpan(span trace.Span, r *http.Request, env string, status int) {
	name := spanMethod(r.Method)
	if route := routeOf(r); route != unmatched {
		_, path, hasMethod := strings.Cut(route, " ")
		if hasMethod {
			name = route
		} else {
			path = route
			name += " " + route
		}
		span.SetAttributes(attribute.String("http.route", path))
	}
	span.SetName(name)
	if env != "" {
		span.SetAttributes(attribute.String("m2mauth.env", env))
	}
	if status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// spanMethod is the request's method as traces name it: a method a caller
// made up is "_OTHER" (OpenTelemetry's HTTP conventions).
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodHead, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

func protocolVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 1 && r.ProtoMinor == 1:
		return "1.1"
	case r.ProtoMajor == 2:
		return "2"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "1.0"
	}
	return r.Proto
}
