// Package sqlstore implements store.Store over database/sql for every SQL
// backend. The SQL text is shared (SQLite accepts PostgreSQL's $N
// placeholders); what differs between databases is captured in a Flavor.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// Flavor is what differs between SQL databases.
type Flavor struct {
	Name string
	// MigrationLock is run first inside every migration transaction to
	// serialise concurrent migrators ("" when the transaction itself locks).
	MigrationLock string
	// ForeignKeysOff and ForeignKeysOn, when set, switch foreign key
	// enforcement off and on again around every migration (run on its
	// connection outside the transaction), and ForeignKeyCheck lists the
	// rows whose references are broken, checked before the migration
	// commits: how SQLite rebuilds a table that others reference.
	ForeignKeysOff, ForeignKeysOn, ForeignKeyCheck string
	// ForUpdate is appended to a SELECT to lock the rows it reads until the
	// transaction ends ("" when every transaction holds the write lock).
	ForUpdate string
	// KeysLock is run first, with the environment's name as $1, in a
	// transaction that changes an environment's signing keys, to serialise
	// such transactions in one environment ("" when every transaction
	// holds the write lock).
	KeysLock string
	// Notify, when set, is run with one argument (the change) inside every
	// transaction that changes a client or an API, so that other replicas
	// learn of the change when it commits.
	Notify string
	// GrantsJSON is a scalar subquery of the grants of the client row "c"
	// (env, id) with their APIs' token lifetimes, as a JSON array of
	// {"a": API identifier, "s": scopes, "l": lifetime in ms} ordered by
	// API identifier ("[]" for none): it lets GetClient read a client, its
	// secrets and its grants in one round trip. Required.
	GrantsJSON string
	// TouchSecrets returns the statement that moves the last-use times of
	// secrets forward (never back) and its arguments, for parallel lists of
	// environments, secret ids and times (unix microseconds): one statement
	// of fixed text for any number of rows. Nil: one UPDATE a row, in one
	// transaction (cheap where the database is in the process).
	TouchSecrets func(envs, ids []string, at []int64) (query string, args []any)
	// IsDeadlock (may be nil) tells a statement the database aborted to
	// break a deadlock: safe to retry when the statement is idempotent.
	IsDeadlock func(error) bool
	// Contains returns a condition: the text column contains the text
	// parameter, case-insensitively.
	Contains func(column, param string) string
	// IsUniqueViolation and IsForeignKeyViolation classify driver errors.
	IsUniqueViolation     func(error) bool
	IsForeignKeyViolation func(error) bool
	// Positional says the driver binds ? placeholders in order, and $N
	// ones by looking each name up among all of a statement's parameters
	// (SQLite: parsing and binding a statement with $N cost the square of
	// its parameter count). Large generated statements then use ?.
	Positional bool
	// IsInvalidText (may be nil) tells a parameter the database cannot
	// hold as text (PostgreSQL refuses invalid UTF-8 and NUL): nothing
	// stored can equal it, so a lookup by it finds nothing.
	IsInvalidText func(error) bool
}

// Change payloads sent through Flavor.Notify, each after the name of the
// environment it happened in and ChangeEnvSep.
const (
	ChangeEnvSep = "|"
	// ChangeEnvPrefix + the environment's name (after ChangeEnvSep, with the
	// default environment before it): an environment changed or was deleted.
	ChangeEnvPrefix    = "env:"
	ChangeClientPrefix = "client:" // + client id
	ChangeAPIPrefix    = "api:"    // + API identifier
	ChangeKeys         = "keys"
	// ChangeRevokedPrefix + the token's expiry (Unix microseconds) + ":" +
	// its jti: an access token was revoked.
	ChangeRevokedPrefix = "revoked:"
)

// Store is a store.Store backed by a SQL database.
type Store struct {
	db  *sql.DB
	f   Flavor
	env string // the environment every per-environment query is scoped to
}

var _ store.Store = (*Store)(nil)

// New returns a Store using db, which must already be migrated.
// It is scoped to the default environment; InEnv scopes it to another.
func New(db *sql.DB, f Flavor) *Store { return &Store{db: db, f: f, env: store.DefaultEnv} }

// Env implements store.Store.
func (s *Store) Env() string { return s.env }

// InEnv implements store.Store.
func (s *Store) InEnv(name string) store.Store { return s.Scoped(name) }

// Scoped is InEnv returning the concrete type.
func (s *Store) Scoped(name string) *Store { return &Store{db: s.db, f: s.f, env: name} }

// DB returns the underlying database handle.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// mapErr turns constraint violations into store sentinels.
func (s *Store) mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%s: %w", op, err)
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	case s.f.IsUniqueViolation(err), s.f.IsForeignKeyViolation(err):
		return fmt.Errorf("%s: %w: %v", op, store.ErrConflict, err)
	case s.invalidText(err):
		return fmt.Errorf("%s: %w (a value is not valid text)", op, store.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// invalidText reports whether err is the database refusing a parameter as
// text (see Flavor.IsInvalidText).
func (s *Store) invalidText(err error) bool {
	return s.f.IsInvalidText != nil && s.f.IsInvalidText(err)
}

// micros converts a time to the stored form; the zero time is 0.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros is the inverse of micros, in UTC.
func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func joinScopes(s []string) string { return strings.Join(s, " ") }

func splitScopes(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, " ")
}

// querier is what reads need: the database or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// notify announces a change in this store's environment: the payload is
// the environment's name, ChangeEnvSep, and the change.
func (s *Store) notify(ctx context.Context, q querier, change string) error {
	if s.f.Notify == "" {
		return nil
	}
	_, err := q.ExecContext(ctx, s.f.Notify, s.env+ChangeEnvSep+change)
	return err
}

// SplitChange splits a change payload into its environment and the change.
func SplitChange(payload string) (env, change string) {
	env, change, ok := strings.Cut(payload, ChangeEnvSep)
	if !ok {
		// A replica of the release before environments (a rolling
		// upgrade): its changes are the default environment's.
		return store.DefaultEnv, payload
	}
	return env, change
}

// collect reads every row of rows with scan, then closes rows; an empty
// result is an empty slice, never nil.
func collect[T any](rows *sql.Rows, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// scanString scans a one-column row of text.
func scanString(row interface{ Scan(...any) error }) (string, error) {
	var v string
	err := row.Scan(&v)
	return v, err
}

// args builds a positional argument list for dynamic SQL.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// param is add for large generated statements: it returns ? where the
// flavor binds positionally (see Flavor.Positional). A statement uses one
// form throughout.
func (a *args) param(f *Flavor, v any) string {
	if !f.Positional {
		return a.add(v)
	}
	*a = append(*a, v)
	return "?"
}

// page appends the filter, order and limit common to listings.
func (s *Store) page(q *strings.Builder, a *args, key, name string, opts store.ListOptions, extra []string) {
	conds := extra
	if opts.After != "" {
		conds = append(conds, key+" > "+a.add(opts.After))
	}
	if opts.NameContains != "" {
		conds = append(conds, s.f.Contains(name, a.add(opts.NameContains)))
	}
	if len(conds) > 0 {
		q.WriteString(" WHERE " + strings.Join(conds, " AND "))
	}
	q.WriteString(" ORDER BY " + key)
	if opts.Limit > 0 {
		q.WriteString(" LIMIT " + a.add(opts.Limit))
	}
}
