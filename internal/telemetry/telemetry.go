// Package telemetry is m2mauth's OpenTelemetry tracing: a TracerProvider
// configured by the standard OTEL_* environment variables (off unless an
// exporter is configured), a child-span helper for the packages that
// instrument their steps, and a database/sql driver wrapper that traces and
// times every database call.
//
// Instrumented code never reaches for the global provider: the server is
// given a provider, starts a span per request with it, and everything below
// starts child spans of the span its context carries (Start). With tracing
// off there is no span in any context, and Start costs one context lookup
// and no allocation.
package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of every span m2mauth makes.
const ScopeName = "github.com/m2mauth/m2mauth"

// Start starts a child span named name of the span ctx carries, when that
// span is recording (tracing is on and its trace is sampled). Otherwise it
// returns ctx and the span ctx carries, on which End and every setter do
// nothing: callers end the span they get either way. Attributes are best set
// after a check of span.IsRecording(), so that building them costs nothing
// when tracing is off.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, parent
	}
	return parent.TracerProvider().Tracer(ScopeName).Start(ctx, name, opts...)
}

// Enabled reports whether tp makes spans: not nil and not a no-op provider.
func Enabled(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return false
	}
	return true
}
