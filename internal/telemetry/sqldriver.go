package telemetry

import (
	"context"
	"database/sql/driver"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// QueryObserver is told of every database call: op is one of "query",
// "exec", "begin", "commit", "rollback" and "prepare"; d is how long the
// driver took (for a query, until its first result was ready: reading the
// rows is not timed); err is what it returned (nil on success;
// driver.ErrSkip, the driver's "use another way", is not reported). It is
// called on the caller's goroutine and must not block.
type QueryObserver interface {
	ObserveQuery(op string, d time.Duration, err error)
}

// The operations a QueryObserver is told of.
const (
	OpQuery    = "query"
	OpExec     = "exec"
	OpBegin    = "begin"
	OpCommit   = "commit"
	OpRollback = "rollback"
	OpPrepare  = "prepare"
)

// DB describes a database to WrapConnector.
type DB struct {
	// System is the db.system.name of its spans ("sqlite", "postgresql").
	System string
	// Observer, when set, is told of every call.
	Observer QueryObserver
}

// WrapConnector returns a connector whose connections trace and time every
// call: each query, exec, begin, commit, rollback and prepare is a child
// span of the span of its context when that span is recording (Start), with
// the statement's text as db.query.text (m2mauth's statements carry their
// values as arguments, never literals; arguments are never recorded), and
// is reported to db.Observer. The connections answer every optional
// interface of database/sql/driver the driver's connections do (a missing
// one answers as database/sql would do without it). Background work
// without a span in its context is timed but not traced.
func WrapConnector(c driver.Connector, db DB) driver.Connector {
	return &connector{Connector: c, db: db}
}

type connector struct {
	driver.Connector
	db DB
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: cn, db: &c.db}, nil
}

// Close closes the wrapped connector if it can be closed (database/sql
// calls it when the DB is closed).
func (c *connector) Close() error {
	if cl, ok := c.Connector.(interface{ Close() error }); ok {
		return cl.Close()
	}
	return nil
}

// spanNames are the names of the spans of each operation.
var spanNames = map[string]string{
	OpQuery: "db query", OpExec: "db exec", OpBegin: "db begin",
	OpCommit: "db commit", OpRollback: "db rollback", OpPrepare: "db prepare",
}

// call starts the span of one database call (when its context's span is
// recording); its end reports the call.
func (db *DB) call(ctx context.Context, op, query string) (context.Context, dbCall) {
	c := dbCall{db: db, op: op, start: time.Now(), span: trace.SpanFromContext(ctx)}
	if !c.span.IsRecording() {
		return ctx, c // c.span's End does nothing
	}
	attrs := []attribute.KeyValue{attribute.String("db.system.name", db.System), attribute.String("db.operation.name", op)}
	if query != "" {
		attrs = append(attrs, attribute.String("db.query.text", query))
	}
	ctx, c.span = c.span.TracerProvider().Tracer(ScopeName).Start(ctx, spanNames[op],
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, c
}

// dbCall is one database call under way (a value: timing a call costs no
// allocation).
type dbCall struct {
	db    *DB
	op    string
	start time.Time
	span  trace.Span
}

// end ends the call's span and reports the call to the observer.
func (c dbCall) end(err error) {
	if errors.Is(err, driver.ErrSkip) {
		c.span.End()
		return
	}
	if err != nil && c.span.IsRecording() {
		c.span.RecordError(err)
		c.span.SetStatus(codes.Error, "database call failed")
	}
	c.span.End()
	if c.db.Observer != nil {
		c.db.Observer.ObserveQuery(c.op, time.Since(c.start), err)
	}
}

type conn struct {
	driver.Conn
	db *DB
}

var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
)

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	ctx, call := c.db.call(ctx, OpPrepare, query)
	var st driver.Stmt
	var err error
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = c.Conn.Prepare(query)
	}
	call.end(err)
	if err != nil {
		return nil, err
	}
	return &stmt{Stmt: st, conn: c, query: query}, nil
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	spanCtx, call := c.db.call(ctx, OpBegin, "")
	var t driver.Tx
	var err error
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		t, err = b.BeginTx(spanCtx, opts)
	} else {
		//lint:ignore SA1019 the fallback database/sql itself uses for drivers without BeginTx
		t, err = c.Conn.Begin()
	}
	call.end(err)
	if err != nil {
		return nil, err
	}
	// Commit and rollback are children of the transaction's context (the
	// request's span), like its statements.
	return &tx{Tx: t, ctx: ctx, db: c.db}, nil
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	ctx, call := c.db.call(ctx, OpQuery, query)
	rows, err := q.QueryContext(ctx, query, args)
	call.end(err)
	return rows, err
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	x, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	ctx, call := c.db.call(ctx, OpExec, query)
	res, err := x.ExecContext(ctx, query, args)
	call.end(err)
	return res, err
}

func (c *conn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// CheckNamedValue defers to the driver's checker (pgx accepts its own
// types this way); without one, database/sql's default conversion applies.
func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type tx struct {
	driver.Tx
	ctx context.Context
	db  *DB
}

func (t *tx) Commit() error {
	_, call := t.db.call(t.ctx, OpCommit, "")
	err := t.Tx.Commit()
	call.end(err)
	return err
}

func (t *tx) Rollback() error {
	_, call := t.db.call(t.ctx, OpRollback, "")
	err := t.Tx.Rollback()
	call.end(err)
	return err
}

type stmt struct {
	driver.Stmt
	conn  *conn
	query string
}

var (
	_ driver.StmtExecContext   = (*stmt)(nil)
	_ driver.StmtQueryContext  = (*stmt)(nil)
	_ driver.NamedValueChecker = (*stmt)(nil)
)

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	ctx, call := s.conn.db.call(ctx, OpExec, s.query)
	var res driver.Result
	var err error
	if x, ok := s.Stmt.(driver.StmtExecContext); ok {
		res, err = x.ExecContext(ctx, args)
	} else {
		var vs []driver.Value
		if vs, err = values(args); err == nil {
			//lint:ignore SA1019 the fallback database/sql itself uses for statements without ExecContext
			res, err = s.Stmt.Exec(vs)
		}
	}
	call.end(err)
	return res, err
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	ctx, call := s.conn.db.call(ctx, OpQuery, s.query)
	var rows driver.Rows
	var err error
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		rows, err = q.QueryContext(ctx, args)
	} else {
		var vs []driver.Value
		if vs, err = values(args); err == nil {
			//lint:ignore SA1019 the fallback database/sql itself uses for statements without QueryContext
			rows, err = s.Stmt.Query(vs)
		}
	}
	call.end(err)
	return rows, err
}

// CheckNamedValue defers to the statement's checker, else to the
// connection's, as database/sql does when the statement has none.
func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return s.conn.CheckNamedValue(nv)
}

func values(args []driver.NamedValue) ([]driver.Value, error) {
	vs := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, errors.New("sql: the driver does not support named parameters")
		}
		vs[i] = a.Value
	}
	return vs, nil
}
