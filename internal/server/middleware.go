package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/store"
)

type requestIDKey struct{}

// RequestID returns the request id carried by ctx ("" if none).
func RequestID(ctx context.Context) string {
	if c, ok := ctx.Value(requestIDKey{}).(*requestCtx); ok {
		return c.id
	}
	return ""
}

// NewLogger returns the server's logger: JSON or text to w at level, with
// the request id added to every record logged with a request's context.
func NewLogger(w io.Writer, format, level string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(requestIDHandler{h})
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	// A traced request's records name its trace and span, so that a log
	// line leads to the trace and back.
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	// Whatever an admin client does, through the admin API or the
	// console, the log names it: one place, for every record.
	if caller := admin.CallerFromContext(ctx); caller != "" {
		r.AddAttrs(slog.String("caller", caller))
		if admin.DeploymentCallerFromContext(ctx) {
			r.AddAttrs(slog.Bool("deployment_admin", true))
		}
	}
	// Every record of a request to another environment than the default
	// one names it.
	if e := env.FromContext(ctx); e != nil && e.Name != store.DefaultEnv {
		r.AddAttrs(slog.String("env", e.Name))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// requestIDLen is the length of the request ids the server makes: 16
// lowercase hex digits.
const requestIDLen = 16

// validRequestID accepts a caller's X-Request-Id only if the server could
// have made it (an id from an earlier answer, passed along by a proxy or a
// retrying client). Anything else is replaced: a caller's header may hold
// any text, a secret included, and the id is logged and echoed. No secret
// fits: generated secrets carry a prefix, imported ones are at least 32
// characters.
func validRequestID(s string) bool {
	if len(s) != requestIDLen {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'f' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [requestIDLen / 2]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

// middleware assigns a request id, resolves the request's environment,
// recovers panics as a 500, and writes an access log record of the
// requests --access-log asks for (accessLogged). Only the method, the route (the pattern of
// the routes table that matched, never the path itself: a path may carry
// anything a caller typed, and never the query), the status, the size and
// the time are logged: no header and no body.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		// Every request's work is bounded, so a database that stops
		// answering (frozen, not refused) gets a 503 in time instead of a
		// request that hangs.
		rc := newRequestCtx(r.Context(), id, s.env, time.Now().Add(s.timeouts.withDefaults().Request))
		defer rc.release()
		ctx := context.Context(rc)
		// With tracing on, the request's span (a child of the caller's
		// traceparent, if any) rides on the request context; with it off
		// (s.tracer nil) the context stays the one allocation above.
		var span trace.Span
		if s.tracer != nil {
			ctx, span = s.startSpan(ctx, r, id)
		}
		r = r.WithContext(ctx)
		// The environment next: loading one (its first request) is bounded
		// by the request's deadline like any other work.
		en, envErr := s.resolveEnv(r)
		if en != nil {
			rc.env = en
		}
		w.Header().Set("X-Request-Id", id)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					if span != nil {
						span.End()
					}
					panic(p)
				}
				s.log.ErrorContext(ctx, "panic serving request", "panic", p, "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeJSON(rec, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "internal server error"})
				}
			}
			d := s.now().Sub(start)
			route := routeOf(r)
			if s.accessLogged(rec.status, d) {
				s.log.LogAttrs(ctx, slog.LevelInfo, "request",
					slog.String("method", r.Method), slog.String("route", route),
					slog.Int("status", rec.status), slog.Int("bytes", rec.bytes),
					slog.Duration("duration", d))
			}
			if s.metrics != nil && !s.tokenRoutes[r.Pattern] {
				// The endpoints' observer counts the token routes.
				status := rec.status
				if status == 0 {
					status = http.StatusOK
				}
				s.metrics.ObserveHTTP(route, status, d)
			}
			if span != nil {
				envName := ""
				if en != nil && en.Name != store.DefaultEnv {
					envName = en.Name
				}
				endSpan(span, r, envName, rec.status)
			}
		}()
		switch {
		case errors.Is(envErr, errNoSuchEnv):
			notFound(rec, r)
			return
		case envErr != nil:
			s.log.ErrorContext(ctx, "load environment", "error", envErr)
			unavailable(rec, r)
			return
		}
		if !cleanPath(r.URL.EscapedPath()) {
			// ServeMux would redirect to the clean path with an HTML body;
			// an API answers 404 in its own format instead.
			notFound(rec, r)
			return
		}
		next.ServeHTTP(rec, r)
	})
}

// accessLogged reports whether a request answered with status (0: nothing
// written, an empty 200) after d gets an access log record, as
// --access-log says: with "errors" (the default) a successful request is
// not logged unless it was slow. A successful token request is the
// server's bulk traffic, and its record cost more than a twentieth of the
// server's CPU under load (the audit trail and the metrics count it).
func (s *Server) accessLogged(status int, d time.Duration) bool {
	switch s.cfg.AccessLog {
	case config.AccessLogAll:
		return true
	case config.AccessLogOff:
		return false
	}
	return status >= http.StatusBadRequest || (s.cfg.AccessLogSlow > 0 && d >= s.cfg.AccessLogSlow)
}

// cleanPath reports whether p, an escaped path (an API identifier's "//"
// arrives as %2F%2F), is in the form the routes are written in: no empty,
// "." or ".." segment (a trailing slash is kept as it is).
func cleanPath(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// unmatched is the route of a request no route matched.
const unmatched = "(unmatched)"

// routeOf names what r matched for the access log: its pattern in the routes
// table ("GET /admin/v1/clients/{id}"), or "(unmatched)".
func routeOf(r *http.Request) string {
	if r.Pattern == "" || r.Pattern == "/" {
		return unmatched
	}
	return r.Pattern
}
