package telemetry

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestTracingFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    TracingConfig // Sampler is checked by description
		sampler string
		err     string // a substring of the error; "" for none
	}{
		{name: "off by default", env: nil},
		{name: "exporter none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{
			name: "otlp with the default endpoint",
			env:  map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			want: TracingConfig{Protocol: ProtocolHTTP, Endpoint: "http://localhost:4318/v1/traces", Resource: map[string]string{"service.name": "m2mauth"}},
		},
		{
			name: "an endpoint turns it on; the signal path is appended",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/"},
			want: TracingConfig{Protocol: ProtocolHTTP, Endpoint: "https://collector:4318/v1/traces", Resource: map[string]string{"service.name": "m2mauth"}},
		},
		{
			name: "the traces endpoint is used as it is",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9999/custom"},
			want: TracingConfig{Protocol: ProtocolHTTP, Endpoint: "http://b:9999/custom", Resource: map[string]string{"service.name": "m2mauth"}},
		},
		{
			name: "grpc",
			env:  map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: TracingConfig{Protocol: ProtocolGRPC, Endpoint: "http://localhost:4317", Resource: map[string]string{"service.name": "m2mauth"}},
		},
		{
			name: "grpc endpoint without a path",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
			want: TracingConfig{Protocol: ProtocolGRPC, Endpoint: "http://c:4317", Resource: map[string]string{"service.name": "m2mauth"}},
		},
		{
			name: "headers, resource and service name",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b,x-tenant = t1",
				"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=from-attrs", "OTEL_SERVICE_NAME": "auth",
			},
			want: TracingConfig{
				Protocol: ProtocolHTTP, Endpoint: "http://c:4318/v1/traces", Headers: map[string]string{"api-key": "a b", "x-tenant": "t1"},
				Resource: map[string]string{"deployment.environment": "prod", "service.name": "auth"},
			},
		},
		{
			name: "service name from the resource attributes",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"},
			want: TracingConfig{Protocol: ProtocolHTTP, Endpoint: "http://c:4318/v1/traces", Resource: map[string]string{"service.name": "from-attrs"}},
		},
		{
			name:    "ratio sampler",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
			want:    TracingConfig{Protocol: ProtocolHTTP, Endpoint: "http://localhost:4318/v1/traces", Resource: map[string]string{"service.name": "m2mauth"}},
			sampler: "ParentBased{root:TraceIDRatioBased{0.25}",
		},
		{
			name:    "always off",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "always_off"},
			want:    TracingConfig{Protocol: ProtocolHTTP, Endpoint: "http://localhost:4318/v1/traces", Resource: map[string]string{"service.name": "m2mauth"}},
			sampler: "AlwaysOffSampler",
		},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "unknown protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "bad endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, err: "endpoint"},
		{name: "bad sampler", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "jaeger_remote"}, err: "OTEL_TRACES_SAMPLER"},
		{name: "bad ratio", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, err: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "bad headers", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_HEADERS": "Authorization%zzsecret-token"}, err: "OTEL_EXPORTER_OTLP_HEADERS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TracingFromEnv(func(k string) string { return tt.env[k] })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one about %s", err, tt.err)
				}
				// The error never echoes a header's value.
				if strings.Contains(err.Error(), "secret-token") {
					t.Errorf("error echoes a header: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.On() && got.Sampler == nil {
				t.Fatal("no sampler")
			}
			want := "ParentBased{root:AlwaysOnSampler"
			if tt.sampler != "" {
				want = tt.sampler
			}
			if got.On() && !strings.HasPrefix(got.Sampler.Description(), want) {
				t.Errorf("sampler %s, want %s…", got.Sampler.Description(), want)
			}
			got.Sampler = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewTracerProviderOff(t *testing.T) {
	tp, err := NewTracerProvider(context.Background(), TracingConfig{})
	if tp != nil || err != nil {
		t.Fatalf("off: %v, %v; want nil, nil", tp, err)
	}
}

func TestNewTracerProviderExportsNothingUntilUsed(t *testing.T) {
	for _, p := range []string{ProtocolHTTP, ProtocolGRPC} {
		// Nothing listens there: creating the provider must not fail.
		tp, err := NewTracerProvider(context.Background(), TracingConfig{Protocol: p, Endpoint: "http://127.0.0.1:1/v1/traces", Resource: map[string]string{"service.name": "x"}})
		if err != nil || tp == nil {
			t.Fatalf("%s: %v, %v", p, tp, err)
		}
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Errorf("%s: shutdown with nothing to flush: %v", p, err)
		}
	}
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		tp   trace.TracerProvider
		want bool
	}{
		{nil, false},
		{noop.NewTracerProvider(), false},
		{sdktrace.NewTracerProvider(), true},
	} {
		if got := Enabled(tc.tp); got != tc.want {
			t.Errorf("Enabled(%T) = %v, want %v", tc.tp, got, tc.want)
		}
	}
}

// Start makes a child only of a recording span, and costs no allocation
// without one.
func TestStart(t *testing.T) {
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(100, func() {
		c, span := Start(ctx, "step")
		span.End()
		_ = c
	}); allocs != 0 {
		t.Errorf("Start without a span: %v allocations, want 0", allocs)
	}
	if c, span := Start(ctx, "step"); c != ctx || span.IsRecording() {
		t.Error("Start without a span made one")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, root := tp.Tracer("test").Start(ctx, "root")
	_, child := Start(ctx, "step")
	child.End()
	root.End()
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != "step" || spans[0].Parent().SpanID() != root.SpanContext().SpanID() {
		t.Fatalf("spans %v; want step under root", spans)
	}
	// A sampled-out trace has no children.
	tp2 := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(rec))
	ctx2, root2 := tp2.Tracer("test").Start(context.Background(), "root")
	if _, s := Start(ctx2, "step"); s.IsRecording() {
		t.Error("a child of a span that is not recorded")
	}
	root2.End()
}

// BenchmarkStartUntraced is what each instrumented step costs with tracing
// off: a context lookup through a request's context (a few values deep).
func BenchmarkStartUntraced(b *testing.B) {
	type key int
	ctx := context.Background()
	for i := range 4 {
		ctx = context.WithValue(ctx, key(i), i)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, span := Start(ctx, "step")
		span.End()
	}
}
