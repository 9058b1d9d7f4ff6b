package telemetry_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
	"github.com/m2mauth/m2mauth/internal/store/sqlstore"
	"github.com/m2mauth/m2mauth/internal/store/storetest"
	"github.com/m2mauth/m2mauth/internal/telemetry"
)

// observer records the calls it is told of.
type observer struct {
	mu    sync.Mutex
	calls []call
}

type call struct {
	op  string
	d   time.Duration
	err error
}

func (o *observer) ObserveQuery(op string, d time.Duration, err error) {
	o.mu.Lock()
	o.calls = append(o.calls, call{op, d, err})
	o.mu.Unlock()
}

func (o *observer) ops() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, c := range o.calls {
		out = append(out, c.op)
	}
	return out
}

func (o *observer) reset() {
	o.mu.Lock()
	o.calls = nil
	o.mu.Unlock()
}

func instrumented(system string, o telemetry.QueryObserver) sqlstore.Option {
	return sqlstore.WithConnector(func(c driver.Connector) driver.Connector {
		return telemetry.WrapConnector(c, telemetry.DB{System: system, Observer: o})
	})
}

// databases opens each backend (PostgreSQL when its DSN is set) through
// the wrapper.
func databases(t *testing.T, o telemetry.QueryObserver) map[string]*sql.DB {
	dbs := map[string]*sql.DB{}
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"), instrumented("sqlite", o))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	dbs["sqlite"] = s.DB()
	if os.Getenv(pgtest.EnvVar) != "" {
		p, err := postgres.Open(context.Background(), pgtest.DSN(t), instrumented("postgresql", o))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		dbs["postgresql"] = p.DB()
	}
	return dbs
}

// Every call is a child span of the request's span, named by its
// operation, with the statement but never its arguments, and is reported
// to the observer; a failed call is an error.
func TestWrapConnectorTracesAndObserves(t *testing.T) {
	o := &observer{}
	for system, db := range databases(t, o) {
		t.Run(system, func(t *testing.T) {
			o.reset()
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			ctx, root := tp.Tracer("test").Start(context.Background(), "request")
			const arg = "argument-that-may-be-a-secret"
			var n int
			const q = `SELECT COUNT(*) FROM clients WHERE env = $1 AND id = $2`
			if err := db.QueryRowContext(ctx, q, store.DefaultEnv, arg).Scan(&n); err != nil {
				t.Fatal(err)
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE clients SET name = $1 WHERE env = $2 AND id = $3`, arg, store.DefaultEnv, arg); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			tx, err = db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			st, err := db.PrepareContext(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.QueryRowContext(ctx, store.DefaultEnv, arg).Scan(&n); err != nil {
				t.Fatal(err)
			}
			st.Close()
			if _, err := db.ExecContext(ctx, `INSERT INTO no_such_table (x) VALUES ($1)`, arg); err == nil {
				t.Fatal("insert into a missing table succeeded")
			}
			root.End()

			// (database/sql prepares a statement again on the connection it
			// runs on when the one it was prepared on is gone: PostgreSQL's
			// connections are not kept idle.)
			want := []string{"query", "begin", "exec", "commit", "begin", "rollback", "prepare", "query", "exec"}
			if got := slices.Compact(o.ops()); !slices.Equal(got, want) {
				t.Fatalf("observed %v, want %v", got, want)
			}
			o.mu.Lock()
			last := o.calls[len(o.calls)-1]
			for _, c := range o.calls[:len(o.calls)-1] {
				if c.err != nil || c.d <= 0 {
					t.Errorf("observed %s: %v, %v; want a duration and no error", c.op, c.d, c.err)
				}
			}
			o.mu.Unlock()
			if last.err == nil {
				t.Error("the failed exec was observed without its error")
			}

			var names []string
			for _, s := range rec.Ended() {
				if s.Name() == "request" {
					continue
				}
				names = append(names, s.Name())
				if s.Parent().SpanID() != root.SpanContext().SpanID() {
					t.Errorf("%s is not a child of the request's span", s.Name())
				}
				var text string
				for _, kv := range s.Attributes() {
					if strings.Contains(kv.Value.String(), arg) {
						t.Errorf("%s records an argument: %s", s.Name(), kv.Key)
					}
					switch kv.Key {
					case "db.query.text":
						text = kv.Value.AsString()
					case "db.system.name":
						if kv.Value.AsString() != system {
							t.Errorf("%s: db.system.name %s, want %s", s.Name(), kv.Value.AsString(), system)
						}
					}
				}
				if (s.Name() == "db query" || s.Name() == "db prepare") && text != q {
					t.Errorf("%s: db.query.text %q, want the statement", s.Name(), text)
				}
				if s.Name() == "db exec" && strings.Contains(text, "no_such_table") && s.Status().Code != codes.Error {
					t.Errorf("the failed exec's span status is %v, want an error", s.Status())
				}
			}
			wantSpans := []string{"db query", "db begin", "db exec", "db commit", "db begin", "db rollback", "db prepare", "db query", "db exec"}
			if names = slices.Compact(names); !slices.Equal(names, wantSpans) {
				t.Errorf("spans %v, want %v", names, wantSpans)
			}
		})
	}
}

// Without a span in the context (background work), calls are observed but
// not traced, and the wrapper allocates nothing of its own.
func TestWrapConnectorUntraced(t *testing.T) {
	o := &observer{}
	db := databases(t, o)["sqlite"]
	o.reset() // the migrations
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM clients`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if got := o.ops(); !slices.Equal(got, []string{"query"}) {
		t.Errorf("observed %v, want one query", got)
	}
}

// The storage conformance suite passes through the wrapper, on every
// backend, with tracing on.
func TestConformanceThroughWrapper(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	o := &observer{}
	// newOpen returns, for one test, the opener of its database.
	run := func(t *testing.T, newOpen func(t *testing.T) func(ctx context.Context) (store.Store, error)) {
		storetest.Run(t, func(t *testing.T) func() store.Store {
			open := newOpen(t)
			return func() store.Store {
				ctx, span := tp.Tracer("test").Start(context.Background(), "open")
				defer span.End()
				s, err := open(ctx)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
		})
	}
	t.Run("sqlite", func(t *testing.T) {
		run(t, func(t *testing.T) func(ctx context.Context) (store.Store, error) {
			path := filepath.Join(t.TempDir(), "db")
			return func(ctx context.Context) (store.Store, error) {
				return sqlite.Open(ctx, path, instrumented("sqlite", o))
			}
		})
	})
	t.Run("postgres", func(t *testing.T) {
		run(t, func(t *testing.T) func(ctx context.Context) (store.Store, error) {
			dsn := pgtest.DSN(t)
			return func(ctx context.Context) (store.Store, error) {
				return postgres.Open(ctx, dsn, instrumented("postgresql", o))
			}
		})
	})
	if len(o.ops()) == 0 || len(rec.Ended()) == 0 {
		t.Error("the suite ran without a database call observed or traced")
	}
}
