package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/telemetry"
)

// otlpReceiver is an in-process OTLP/HTTP collector: it accepts
// protobuf-encoded ExportTraceServiceRequests on POST /v1/traces and keeps
// their spans.
type otlpReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	spans    []*tracepb.Span
	resource []*commonpb.KeyValue
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rcv := &otlpReceiver{}
	rcv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces with application/x-protobuf", http.StatusBadRequest)
			return
		}
		var body io.Reader = http.MaxBytesReader(w, r.Body, 16<<20)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rcv.mu.Lock()
		for _, rs := range req.ResourceSpans {
			rcv.resource = rs.GetResource().GetAttributes()
			for _, ss := range rs.ScopeSpans {
				rcv.spans = append(rcv.spans, ss.Spans...)
			}
		}
		rcv.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(rcv.Close)
	return rcv
}

// trace returns the spans received of one trace.
func (rcv *otlpReceiver) trace(traceID string) []*tracepb.Span {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range rcv.spans {
		if hex.EncodeToString(s.TraceId) == traceID {
			out = append(out, s)
		}
	}
	return out
}

func (rcv *otlpReceiver) all() []*tracepb.Span {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	return append([]*tracepb.Span(nil), rcv.spans...)
}

func spanAttr(s *tracepb.Span, key string) *commonpb.AnyValue {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

func named(spans []*tracepb.Span, name string) []*tracepb.Span {
	var out []*tracepb.Span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// tracedServer starts a server whose tracing is configured the way
// `m2mauth serve` configures it, from OTEL_* variables (here a map, so
// that nothing leaks between tests), exporting to rcv.
func tracedServer(t *testing.T, rcv *otlpReceiver, vars map[string]string) (*testServer, func()) {
	t.Helper()
	if vars == nil {
		vars = map[string]string{}
	}
	vars["OTEL_TRACES_EXPORTER"] = "otlp"
	vars["OTEL_EXPORTER_OTLP_ENDPOINT"] = rcv.URL
	vars["OTEL_SERVICE_NAME"] = "m2mauth-test"
	tc, err := telemetry.TracingFromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	tp, err := telemetry.NewTracerProvider(context.Background(), tc)
	if err != nil || tp == nil {
		t.Fatalf("tracer provider: %v, %v", tp, err)
	}
	cfg := testConfig(t)
	cfg.AccessLog = config.AccessLogAll // the request records name the trace
	ts := startServerOptions(t, cfg, nil, Timeouts{}, Options{TracerProvider: tp})
	flush := func() {
		t.Helper()
		if err := tp.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return ts, flush
}

// Acceptance (issue 14, traces): one token request, configured by OTEL_*
// variables, reaches an OTLP collector as one trace: the request's span, a
// child of the caller's traceparent, and under it the pipeline's steps
// (parse, authenticate, policy, sign) and its database calls, with the
// outcome on the request's span and no secret or token anywhere.
func TestTraceOfTokenRequest(t *testing.T) {
	rcv := newOTLPReceiver(t)
	ts, flush := tracedServer(t, rcv, nil)
	ts.createAPI(ordersAPI, 0, "orders:read")
	// Refresh tokens on: the grant writes one, so the request surely
	// reaches the database.
	id, secret := ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, RefreshTokens: true})

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Traceparent", "00-"+traceID+"-"+parentID+"-01")
	req.SetBasicAuth(id, secret)
	resp, body := ts.do(req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	var tr struct{ AccessToken, RefreshToken string }
	tr.AccessToken = jsonField(t, body, "access_token")
	tr.RefreshToken = jsonField(t, body, "refresh_token")
	flush()

	spans := rcv.trace(traceID)
	roots := named(spans, "POST /oauth/token")
	if len(roots) != 1 {
		t.Fatalf("spans of trace %s: %v; want one POST /oauth/token", traceID, spanNames(spans))
	}
	root := roots[0]
	if got := hex.EncodeToString(root.ParentSpanId); got != parentID {
		t.Errorf("request span's parent = %s, want the traceparent's %s", got, parentID)
	}
	if root.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("request span kind = %v, want server", root.Kind)
	}
	for key, want := range map[string]string{
		"http.request.method": "POST", "http.route": "/oauth/token", "m2mauth.surface": "standard",
		"m2mauth.endpoint": "token", "m2mauth.outcome": "ok", "oauth.grant_type": "client_credentials",
		"oauth.client_auth_method": "client_secret_basic", "oauth.client_id": id,
	} {
		if v := spanAttr(root, key); v.GetStringValue() != want {
			t.Errorf("request span %s = %v, want %q", key, v, want)
		}
	}
	if v := spanAttr(root, "http.response.status_code"); v.GetIntValue() != http.StatusOK {
		t.Errorf("request span http.response.status_code = %v, want 200", v)
	}
	for _, step := range []string{"oauth.parse", "oauth.authenticate", "oauth.policy", "oauth.sign"} {
		s := named(spans, step)
		if len(s) != 1 {
			t.Errorf("%d %s spans, want 1 (trace: %v)", len(s), step, spanNames(spans))
			continue
		}
		if !bytes.Equal(s[0].ParentSpanId, root.SpanId) {
			t.Errorf("%s is not a child of the request span", step)
		}
	}
	// The client's lookup and the refresh token's write, under the
	// request span.
	var db []*tracepb.Span
	for _, s := range spans {
		if strings.HasPrefix(s.Name, "db ") {
			db = append(db, s)
			if spanAttr(s, "db.system.name").GetStringValue() != "sqlite" || spanAttr(s, "db.operation.name") == nil {
				t.Errorf("database span %s lacks db.system.name or db.operation.name: %v", s.Name, s.Attributes)
			}
			if !isDescendant(spans, s, root) {
				t.Errorf("database span %s is not under the request span", s.Name)
			}
		}
	}
	if len(named(db, "db query")) == 0 || len(named(db, "db exec")) == 0 {
		t.Errorf("database spans %v; want a query and an exec", spanNames(db))
	}
	// The resource names the service, as OTEL_SERVICE_NAME says.
	rcv.mu.Lock()
	var service string
	for _, kv := range rcv.resource {
		if kv.Key == "service.name" {
			service = kv.Value.GetStringValue()
		}
	}
	rcv.mu.Unlock()
	if service != "m2mauth-test" {
		t.Errorf("service.name = %q, want m2mauth-test", service)
	}
	// Nothing secret in any span of any trace.
	for _, s := range rcv.all() {
		b, _ := proto.Marshal(s)
		for _, bad := range []string{secret, tr.AccessToken, tr.RefreshToken, ts.token, ts.admin.ClientSecret} {
			if bad != "" && bytes.Contains(b, []byte(bad)) {
				t.Errorf("span %s holds a secret or token", s.Name)
			}
		}
	}
}

// The admin API's operations are spans of their own, under the request's,
// with their database calls below them; a refused one is an error.
func TestTraceOfAdminOperation(t *testing.T) {
	rcv := newOTLPReceiver(t)
	ts, flush := tracedServer(t, rcv, nil)
	ts.createAPI(ordersAPI, 0, "orders:read")
	ts.createClient(admin.ClientInput{Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}})
	resp, _ := ts.adminDo(http.MethodGet, "/admin/v1/clients/no-such-client", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("get missing client: %d", resp.StatusCode)
	}
	flush()
	all := rcv.all()
	ops := named(all, "admin POST /admin/v1/clients")
	if len(ops) != 1 {
		t.Fatalf("spans %v; want one admin POST /admin/v1/clients", spanNames(all))
	}
	op := ops[0]
	spans := rcv.trace(hex.EncodeToString(op.TraceId))
	parent := spanByID(spans, op.ParentSpanId)
	if parent == nil || parent.Name != "POST /admin/v1/clients" {
		t.Fatalf("admin span's parent = %v, want the request span POST /admin/v1/clients", parent)
	}
	if spanAttr(op, "m2mauth.admin.caller").GetStringValue() != ts.admin.ClientID {
		t.Errorf("admin span's caller = %v, want %s", spanAttr(op, "m2mauth.admin.caller"), ts.admin.ClientID)
	}
	// Creating a client is a transaction.
	var underOp []*tracepb.Span
	for _, s := range spans {
		if strings.HasPrefix(s.Name, "db ") && isDescendant(spans, s, op) {
			underOp = append(underOp, s)
		}
	}
	if len(named(underOp, "db begin")) == 0 || len(named(underOp, "db exec")) == 0 || len(named(underOp, "db commit")) == 0 {
		t.Errorf("database spans under the admin operation %v; want a begin, an exec and a commit", spanNames(underOp))
	}
	missing := named(all, "admin GET /admin/v1/clients/{id}")
	if len(missing) != 1 || missing[0].Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || spanAttr(missing[0], "http.response.status_code").GetIntValue() != http.StatusNotFound {
		t.Errorf("refused admin operation: %v; want one error span with status 404", missing)
	}
}

// A failed token request marks the failing step an error, and never names
// the client id the caller typed.
func TestTraceOfRefusedTokenRequest(t *testing.T) {
	rcv := newOTLPReceiver(t)
	ts, flush := tracedServer(t, rcv, nil)
	const typed = "not-a-client-but-maybe-a-secret"
	if status, code := ts.tokenStatus(typed, "wrong", url.Values{}); status != http.StatusUnauthorized || code != "invalid_client" {
		t.Fatalf("token with unknown client: %d %s", status, code)
	}
	flush()
	all := rcv.all()
	var auth []*tracepb.Span // the admin's login succeeded
	for _, s := range named(all, "oauth.authenticate") {
		if s.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			auth = append(auth, s)
		}
	}
	if len(auth) != 1 || auth[0].Status.GetMessage() != "invalid_client" {
		t.Fatalf("failed authenticate spans %v; want one, invalid_client", auth)
	}
	root := spanByID(all, auth[0].ParentSpanId)
	if root == nil || spanAttr(root, "m2mauth.outcome").GetStringValue() != "invalid_client" || spanAttr(root, "oauth.client_id") != nil {
		t.Errorf("request span %v; want outcome invalid_client and no client id", root)
	}
	if refused := rcv.trace(hex.EncodeToString(root.GetTraceId())); len(named(refused, "oauth.policy")) != 0 || len(named(refused, "oauth.sign")) != 0 {
		t.Errorf("policy or sign span for a refused request: %v", spanNames(refused))
	}
	for _, s := range all {
		b, _ := proto.Marshal(s)
		if bytes.Contains(b, []byte(typed)) {
			t.Errorf("span %s holds the client id the caller typed", s.Name)
		}
	}
}

// The request log names the trace (the caller's, from traceparent) and the
// request's span.
func TestTraceIDInRequestLog(t *testing.T) {
	rcv := newOTLPReceiver(t)
	ts, flush := tracedServer(t, rcv, nil)
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/.well-known/jwks.json", nil)
	req.Header.Set("Traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	if resp, body := ts.do(req); resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %d %s", resp.StatusCode, body)
	}
	flush()
	spans := named(rcv.trace(traceID), "GET /.well-known/jwks.json")
	if len(spans) != 1 {
		t.Fatalf("spans of the trace: %v", spanNames(rcv.trace(traceID)))
	}
	var found bool
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "request" || rec["route"] != "GET /.well-known/jwks.json" {
			continue
		}
		found = true
		if rec["trace_id"] != traceID || rec["span_id"] != hex.EncodeToString(spans[0].SpanId) {
			t.Errorf("request log trace_id, span_id = %v, %v; want %s, %x", rec["trace_id"], rec["span_id"], traceID, spans[0].SpanId)
		}
	}
	if !found {
		t.Fatal("no request log record of the JWKS request")
	}
}

// With tracing off (the default) a traceparent changes nothing: no span,
// no trace id in the log.
func TestNoTracingByDefault(t *testing.T) {
	ts := startServer(t, testConfig(t))
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/.well-known/jwks.json", nil)
	req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if resp, _ := ts.do(req); resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %d", resp.StatusCode)
	}
	if strings.Contains(ts.logs.String(), "trace_id") {
		t.Error("a trace id in the log with tracing off")
	}
}

func jsonField(t *testing.T, body []byte, key string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[key].(string)
	return s
}

func spanNames(spans []*tracepb.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func spanByID(spans []*tracepb.Span, id []byte) *tracepb.Span {
	for _, s := range spans {
		if bytes.Equal(s.SpanId, id) {
			return s
		}
	}
	return nil
}

// isDescendant reports whether s is below ancestor in spans.
func isDescendant(spans []*tracepb.Span, s, ancestor *tracepb.Span) bool {
	for p := spanByID(spans, s.ParentSpanId); p != nil; p = spanByID(spans, p.ParentSpanId) {
		if bytes.Equal(p.SpanId, ancestor.SpanId) {
			return true
		}
	}
	return false
}

// discardExporter takes spans and drops them: the cost of tracing itself,
// without a collector's.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkTokenTraced is BenchmarkTokenEndpoint with tracing on, every
// request sampled (its spans batched and dropped) and a caller's
// traceparent on every request.
func BenchmarkTokenTraced(b *testing.B) {
	for _, alg := range []string{"RS256", "EdDSA"} {
		b.Run("sqlite-"+alg, func(b *testing.B) {
			cfg := config.Default()
			cfg.SigningAlg = alg
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
			_, h, newReq := benchServerOptions(b, cfg, Options{TracerProvider: tp})
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				r := newReq()
				r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
				h.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
