package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// DefaultServiceName is the service.name of the spans unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names another.
const DefaultServiceName = "m2mauth"

// Protocols of the OTLP exporter (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// TracingConfig is the tracing configuration the OTEL_* environment
// variables give (TracingFromEnv). Tracing is on when Endpoint is set.
type TracingConfig struct {
	// Protocol is ProtocolHTTP or ProtocolGRPC.
	Protocol string
	// Endpoint is the full URL spans are sent to: for http/protobuf the
	// URL of the traces path (…/v1/traces), for grpc the collector's
	// address as a URL (http:// for a connection without TLS). "": off.
	Endpoint string
	// Headers are sent with every export (they may hold credentials:
	// never logged).
	Headers map[string]string
	// Resource are the resource attributes, service.name among them.
	Resource map[string]string
	// Sampler decides which traces are recorded.
	Sampler sdktrace.Sampler
}

// On reports whether the configuration exports spans.
func (c TracingConfig) On() bool { return c.Endpoint != "" }

// TracingFromEnv reads the tracing configuration from the standard
// OpenTelemetry environment variables (getenv is os.Getenv, or a map's
// lookup in tests):
//
//   - OTEL_SDK_DISABLED=true: off, whatever else is set.
//   - OTEL_TRACES_EXPORTER: "otlp" or "none". Unlike the SDK's default,
//     tracing is off unless it is "otlp" or an OTLP endpoint is set.
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it is), or
//     OTEL_EXPORTER_OTLP_ENDPOINT (a base URL: /v1/traces is appended for
//     http/protobuf); default http://localhost:4318 (4317 for grpc).
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL:
//     "http/protobuf" (default) or "grpc".
//   - OTEL_EXPORTER_OTLP_TRACES_HEADERS or OTEL_EXPORTER_OTLP_HEADERS:
//     key=value pairs, comma-separated, values percent-encoded.
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (key=value pairs).
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG: always_on,
//     always_off, traceidratio, parentbased_always_on (default),
//     parentbased_always_off, parentbased_traceidratio.
//
// The exporter and the batch span processor also read the variables the
// SDK reads itself (OTEL_EXPORTER_OTLP_TIMEOUT, _COMPRESSION, _CERTIFICATE,
// OTEL_BSP_*) from the process environment.
func TracingFromEnv(getenv func(string) string) (TracingConfig, error) {
	var c TracingConfig
	if b, _ := strconv.ParseBool(strings.TrimSpace(getenv("OTEL_SDK_DISABLED"))); b {
		return c, nil
	}
	env := func(specific, general string) string {
		if v := strings.TrimSpace(getenv(specific)); v != "" {
			return v
		}
		return strings.TrimSpace(getenv(general))
	}
	traces, base := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")), strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	on := traces != "" || base != ""
	for _, e := range strings.Split(getenv("OTEL_TRACES_EXPORTER"), ",") {
		switch e = strings.TrimSpace(e); e {
		case "":
		case "none":
			return TracingConfig{}, nil
		case "otlp":
			on = true
		default:
			return c, fmt.Errorf("OTEL_TRACES_EXPORTER %q: supported: otlp, none", e)
		}
	}
	if !on {
		return c, nil
	}
	c.Protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	switch c.Protocol {
	case "":
		c.Protocol = ProtocolHTTP
	case ProtocolHTTP, ProtocolGRPC:
	default:
		return c, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: supported: http/protobuf, grpc", c.Protocol)
	}
	switch {
	case traces != "":
		c.Endpoint = traces
	case base != "":
		c.Endpoint = base
		if c.Protocol == ProtocolHTTP {
			c.Endpoint = strings.TrimRight(base, "/") + "/v1/traces"
		}
	case c.Protocol == ProtocolGRPC:
		c.Endpoint = "http://localhost:4317"
	default:
		c.Endpoint = "http://localhost:4318/v1/traces"
	}
	if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL is not echoed: it may carry credentials.
		return c, errors.New("OTLP traces endpoint: want an http:// or https:// URL")
	}
	var err error
	if c.Headers, err = keyValues(env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")); err != nil {
		// Nor are the headers: they usually hold an API key.
		return c, errors.New("OTEL_EXPORTER_OTLP_HEADERS: want key=value pairs separated by commas")
	}
	if c.Resource, err = keyValues(getenv("OTEL_RESOURCE_ATTRIBUTES")); err != nil {
		return c, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	if c.Resource == nil {
		c.Resource = map[string]string{}
	}
	if name := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); name != "" {
		c.Resource["service.name"] = name
	} else if c.Resource["service.name"] == "" {
		c.Resource["service.name"] = DefaultServiceName
	}
	if c.Sampler, err = sampler(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")), strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))); err != nil {
		return c, err
	}
	return c, nil
}

// keyValues parses the W3C-baggage-like list the OTEL_* variables use:
// key=value pairs separated by commas, values percent-encoded.
func keyValues(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, errors.New("want key=value pairs separated by commas")
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("the value of %s is not percent-encoded", k)
		}
		m[k] = dv
	}
	return m, nil
}

func sampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q: want a ratio between 0 and 1", arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER %q: supported: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio", name)
}

// NewTracerProvider returns a provider exporting spans in batches as c
// says, or nil when c is off. Its Shutdown flushes the spans not yet sent.
// Creating it does not connect: an unreachable collector costs dropped
// spans (the SDK logs the export errors), never a failed start.
func NewTracerProvider(ctx context.Context, c TracingConfig) (*sdktrace.TracerProvider, error) {
	if !c.On() {
		return nil, nil
	}
	var exp sdktrace.SpanExporter
	var err error
	switch c.Protocol {
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(c.Endpoint)}
		if c.Headers != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(c.Headers))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(c.Endpoint)}
		if c.Headers != nil {
			opts = append(opts, otlptracehttp.WithHeaders(c.Headers))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	attrs := make([]attribute.KeyValue, 0, len(c.Resource))
	for k, v := range c.Resource {
		attrs = append(attrs, attribute.String(k, v))
	}
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	s := c.Sampler
	if s == nil {
		s = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithSampler(s)), nil
}
