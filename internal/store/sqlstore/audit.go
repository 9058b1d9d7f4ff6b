package sqlstore

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/m2mauth/m2mauth/internal/store"
)

const auditColumns = `id, time, env, kind, actor, source_ip, action, target_type, target_id, diff, client_id, surface, grant_type, outcome`

// auditChunk is how many events one INSERT writes on PostgreSQL (14
// parameters each; it allows 65,535). SQLite looks a numbered parameter
// ($N) up by its name in a list, so a multi-row INSERT costs the square
// of their number there: it gets positional parameters (?) and
// auditChunkSQLite rows per prepared INSERT instead.
const (
	auditChunk       = 500
	auditChunkSQLite = 64
)

// AppendAuditEvents implements store.Store: every event in one
// transaction.
func (s *Store) AppendAuditEvents(ctx context.Context, events []store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	return s.mapErr("append audit events", s.inTx(ctx, func(tx *sql.Tx) error {
		if s.f.Positional {
			return s.appendAuditEach(ctx, tx, events)
		}
		a := make([]any, 0, min(len(events), auditChunk)*auditParams)
		var boxes auditBoxes
		for part := range slices.Chunk(events, auditChunk) {
			var q strings.Builder
			a = s.auditArgs(a[:0], part, &boxes)
			q.WriteString(`INSERT INTO audit_events (` + auditColumns + `) VALUES `)
			n := 0
			for i := range part {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(")
				for j := range auditParams {
					if j > 0 {
						q.WriteString(", ")
					}
					n++
					q.WriteString("$" + strconv.Itoa(n))
				}
				q.WriteString(")")
			}
			if _, err := tx.ExecContext(ctx, q.String(), a...); err != nil {
				return err
			}
		}
		return nil
	}))
}

const auditParams = 14

// auditBoxes are the column values of the last event auditArgs added,
// as strings and as the interface values passed to the driver.
type auditBoxes struct {
	text [auditParams]string
	box  [auditParams]any
}

// auditArgs appends the events' column values, in auditColumns' order, to
// a. A text value equal to the previous event's in its column reuses that
// event's interface value: the token events of a batch share most of
// theirs (environment, kind, action, surface, grant, outcome, often the
// source address), so an event allocates for what is its own (id, time,
// client), not for every column.
func (s *Store) auditArgs(a []any, events []store.AuditEvent, b *auditBoxes) []any {
	for _, e := range events {
		env := e.Env
		if env == "" {
			env = s.env
		}
		text := [auditParams]string{e.ID, "", env, e.Kind, e.Actor, e.SourceIP, e.Action, e.TargetType, e.TargetID, "",
			e.ClientID, e.Surface, e.Grant, e.Outcome}
		for j := range auditParams {
			switch j {
			case 1: // time
				b.box[j] = micros(e.Time)
			case 9: // diff: per event
				b.box[j] = string(e.Diff)
			case 10: // client: usually the actor too
				if text[j] == text[4] {
					b.box[j], b.text[j] = b.box[4], text[j]
					break
				}
				fallthrough
			default:
				if b.box[j] == nil || text[j] != b.text[j] {
					b.box[j], b.text[j] = text[j], text[j]
				}
			}
		}
		a = append(a, b.box[:]...)
	}
	return a
}

// appendAuditEach inserts the events in multi-row INSERTs with
// positional parameters (SQLite: see auditChunk). Without a cancellation
// to watch, the driver starts no goroutine per statement; the
// transaction still ends with ctx.
func (s *Store) appendAuditEach(ctx context.Context, tx *sql.Tx, events []store.AuditEvent) error {
	const rows = auditChunkSQLite
	row := "(?" + strings.Repeat(", ?", auditParams-1) + ")"
	a := make([]any, 0, rows*auditParams)
	exec := context.WithoutCancel(ctx)
	var full *sql.Stmt
	var boxes auditBoxes
	for part := range slices.Chunk(events, rows) {
		a = s.auditArgs(a[:0], part, &boxes)
		if len(part) == rows {
			if full == nil {
				var err error
				if full, err = tx.PrepareContext(ctx, `INSERT INTO audit_events (`+auditColumns+`) VALUES `+row+strings.Repeat(", "+row, rows-1)); err != nil {
					return err
				}
				defer full.Close()
			}
			if _, err := full.ExecContext(exec, a...); err != nil {
				return err
			}
			continue
		}
		if _, err := tx.ExecContext(exec, `INSERT INTO audit_events (`+auditColumns+`) VALUES `+row+strings.Repeat(", "+row, len(part)-1), a...); err != nil {
			return err
		}
	}
	return nil
}

func scanAuditEvent(row interface{ Scan(...any) error }) (store.AuditEvent, error) {
	var e store.AuditEvent
	var at int64
	var diff string
	if err := row.Scan(&e.ID, &at, &e.Env, &e.Kind, &e.Actor, &e.SourceIP, &e.Action, &e.TargetType, &e.TargetID, &diff,
		&e.ClientID, &e.Surface, &e.Grant, &e.Outcome); err != nil {
		return e, err
	}
	e.Time = fromMicros(at)
	if diff != "" {
		e.Diff = []byte(diff)
	}
	return e, nil
}

// ListAuditEvents implements store.Store.
func (s *Store) ListAuditEvents(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	var q strings.Builder
	a := args{}
	q.WriteString(`SELECT ` + auditColumns + ` FROM audit_events WHERE env = ` + a.add(s.env))
	eq := func(column, v string) {
		if v != "" {
			q.WriteString(` AND ` + column + ` = ` + a.add(v))
		}
	}
	eq("client_id", f.ClientID)
	eq("kind", f.Kind)
	eq("actor", f.Actor)
	eq("target_type", f.TargetType)
	eq("target_id", f.TargetID)
	if prefix, ok := strings.CutSuffix(f.Action, "*"); ok {
		// A prefix match without a LIKE pattern to escape.
		q.WriteString(` AND substr(action, 1, ` + a.add(utf8.RuneCountInString(prefix)) + `) = ` + a.add(prefix))
	} else {
		eq("action", f.Action)
	}
	if !f.Since.IsZero() {
		q.WriteString(` AND time >= ` + a.add(micros(f.Since)))
	}
	if !f.Until.IsZero() {
		q.WriteString(` AND time < ` + a.add(micros(f.Until)))
	}
	order := ` ORDER BY id DESC`
	switch {
	case f.After != "":
		q.WriteString(` AND id > ` + a.add(f.After))
		order = ` ORDER BY id`
	case f.Before != "":
		q.WriteString(` AND id < ` + a.add(f.Before))
	}
	q.WriteString(order)
	if f.Limit > 0 {
		q.WriteString(` LIMIT ` + a.add(f.Limit))
	}
	rows, err := s.db.QueryContext(ctx, q.String(), a...)
	if err != nil {
		if s.invalidText(err) {
			return []store.AuditEvent{}, nil
		}
		return nil, s.mapErr("list audit events", err)
	}
	out, err := collect(rows, scanAuditEvent)
	return out, s.mapErr("list audit events", err)
}

// DeleteAuditEvents implements store.Store. It is deployment maintenance:
// it deletes the old events of every environment.
//
// It deletes in batches of auditDeleteBatch, one statement each, so that a
// large backlog never holds the database (SQLite's one writer: token
// quotas and the audit writer wait for it) for longer than one batch.
func (s *Store) DeleteAuditEvents(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		n, err := s.deleteWhere(ctx, "delete audit events", `DELETE FROM audit_events WHERE (env, id) IN
			(SELECT env, id FROM audit_events WHERE time < $1 LIMIT $2)`, micros(before), auditDeleteBatch)
		total += n
		if err != nil || n < auditDeleteBatch {
			return total, err
		}
	}
}

// auditDeleteBatch is how many audit events one retention statement
// deletes.
const auditDeleteBatch = 1000
