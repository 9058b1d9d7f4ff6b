package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// AddTokenUsage implements store.Store. The rows are written in one
// order (client, hour), in multi-row upserts: concurrent flushes (other
// replicas) lock the rows they share in the same order, so they cannot
// deadlock, and a flush costs a round trip per usageChunk rows.
func (s *Store) AddTokenUsage(ctx context.Context, counts []store.UsageCount) error {
	if len(counts) == 0 {
		return nil
	}
	counts = slices.Clone(counts)
	for i := range counts {
		counts[i].Env = s.env
	}
	return s.mapErr("add token usage", s.inTx(ctx, func(tx *sql.Tx) error { return addTokenUsage(ctx, tx, &s.f, counts) }))
}

// addTokenUsage adds token counts, each to its environment's row: to the
// hourly totals, and, for counts with a Minute, to the per-minute ones.
func addTokenUsage(ctx context.Context, tx *sql.Tx, f *Flavor, counts []store.UsageCount) error {
	type key struct {
		env, client string
		t           int64
	}
	hours, minutes := map[key]int64{}, map[key]int64{}
	for _, c := range counts {
		hours[key{c.Env, c.ClientID, micros(c.Hour)}] += c.Tokens
		if !c.Minute.IsZero() {
			minutes[key{c.Env, c.ClientID, micros(c.Minute)}] += c.Tokens
		}
	}
	for _, t := range []struct {
		table, column string
		rows          map[key]int64
	}{{"token_usage", "hour", hours}, {"token_usage_minutes", "minute", minutes}} {
		keys := slices.SortedFunc(maps.Keys(t.rows), func(a, b key) int {
			return cmp.Or(strings.Compare(a.env, b.env), strings.Compare(a.client, b.client), cmp.Compare(a.t, b.t))
		})
		a := make(args, 0, min(len(keys), usageChunk)*4)
		for chunk := range slices.Chunk(keys, usageChunk) {
			var q strings.Builder
			a = a[:0]
			q.WriteString(`INSERT INTO ` + t.table + ` (env, client_id, ` + t.column + `, tokens) VALUES `)
			for i, k := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(" + a.param(f, k.env) + ", " + a.param(f, k.client) + ", " + a.param(f, k.t) + ", " + a.param(f, t.rows[k]) + ")")
			}
			q.WriteString(` ON CONFLICT (env, client_id, ` + t.column + `) DO UPDATE SET tokens = ` + t.table + `.tokens + excluded.tokens`)
			if _, err := tx.ExecContext(ctx, q.String(), a...); err != nil {
				return err
			}
		}
	}
	return nil
}

// usageChunk is how many rows one upsert writes (4 parameters each; SQLite
// allows 32,766 parameters, and binds them positionally: see
// Flavor.Positional).
const usageChunk = 500

// TokenUsageByHour implements store.Store.
func (s *Store) TokenUsageByHour(ctx context.Context, since time.Time) ([]store.UsageCount, error) {
	return s.usageRows(ctx, "token usage by hour", `SELECT '', hour, CAST(SUM(tokens) AS BIGINT) FROM token_usage WHERE env = $1 AND hour >= $2 GROUP BY hour ORDER BY hour`, s.env, micros(since))
}

// TopTokenClients implements store.Store.
func (s *Store) TopTokenClients(ctx context.Context, since time.Time, limit int) ([]store.UsageCount, error) {
	return s.usageRows(ctx, "top token clients", `SELECT client_id, 0, CAST(SUM(tokens) AS BIGINT) AS n FROM token_usage WHERE env = $1 AND hour >= $2
		GROUP BY client_id ORDER BY n DESC, client_id LIMIT $3`, s.env, micros(since), limit)
}

// TokenUsage implements store.Store.
func (s *Store) TokenUsage(ctx context.Context, since time.Time, clientIDs []string) ([]store.UsageCount, error) {
	if len(clientIDs) == 0 {
		return nil, nil
	}
	a := args{}
	env := a.add(s.env)
	in := make([]string, len(clientIDs))
	since0 := a.add(micros(since))
	for i, id := range clientIDs {
		in[i] = a.add(id)
	}
	return s.usageRows(ctx, "token usage", `SELECT client_id, hour, tokens FROM token_usage WHERE env = `+env+` AND hour >= `+since0+
		` AND client_id IN (`+strings.Join(in, ", ")+`) ORDER BY client_id, hour`, a...)
}

func (s *Store) usageRows(ctx context.Context, op, query string, params ...any) ([]store.UsageCount, error) {
	rows, err := s.db.QueryContext(ctx, query, params...)
	if err != nil {
		return nil, s.mapErr(op, err)
	}
	defer rows.Close()
	var out []store.UsageCount
	for rows.Next() {
		var c store.UsageCount
		var hour int64
		if err := rows.Scan(&c.ClientID, &hour, &c.Tokens); err != nil {
			return nil, s.mapErr(op, err)
		}
		c.Hour = fromMicros(hour)
		out = append(out, c)
	}
	return out, s.mapErr(op, rows.Err())
}

// DeleteTokenUsage implements store.Store. It is deployment maintenance:
// it deletes the old usage of every environment.
func (s *Store) DeleteTokenUsage(ctx context.Context, before time.Time) (int, error) {
	return s.deleteWhere(ctx, "delete token usage", `DELETE FROM token_usage WHERE hour < $1`, micros(before))
}

// RecentTokenUsage implements store.Store.
func (s *Store) RecentTokenUsage(ctx context.Context, since time.Time, min int64) ([]store.UsageCount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT client_id, MIN(minute), CAST(SUM(tokens) AS BIGINT) FROM token_usage_minutes
		WHERE env = $1 AND minute >= $2 GROUP BY client_id HAVING SUM(tokens) >= $3 ORDER BY client_id`, s.env, micros(since), min)
	if err != nil {
		return nil, s.mapErr("recent token usage", err)
	}
	defer rows.Close()
	var out []store.UsageCount
	for rows.Next() {
		var c store.UsageCount
		var first int64
		if err := rows.Scan(&c.ClientID, &first, &c.Tokens); err != nil {
			return nil, s.mapErr("recent token usage", err)
		}
		c.Minute = fromMicros(first)
		out = append(out, c)
	}
	return out, s.mapErr("recent token usage", rows.Err())
}

// DeleteTokenMinutes implements store.Store (deployment maintenance, like
// DeleteTokenUsage).
func (s *Store) DeleteTokenMinutes(ctx context.Context, before time.Time) (int, error) {
	return s.deleteWhere(ctx, "delete token minutes", `DELETE FROM token_usage_minutes WHERE minute < $1`, micros(before))
}

// CreateConsoleSession implements store.Store.
func (s *Store) CreateConsoleSession(ctx context.Context, cs store.ConsoleSession) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO console_sessions (env, id_hash, client_id, created_at, last_seen_at, expires_at, viewing) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		s.env, cs.IDHash, cs.ClientID, micros(cs.CreatedAt), micros(cs.LastSeenAt), micros(cs.ExpiresAt), cs.Viewing)
	return s.mapErr("create console session", err)
}

// GetConsoleSession implements store.Store.
func (s *Store) GetConsoleSession(ctx context.Context, idHash string, now time.Time, idle time.Duration) (store.ConsoleSession, error) {
	var cs store.ConsoleSession
	var created, seen, expires int64
	err := s.db.QueryRowContext(ctx, `SELECT id_hash, client_id, created_at, last_seen_at, expires_at, viewing FROM console_sessions
		WHERE id_hash = $1 AND env = $2 AND expires_at > $3 AND last_seen_at > $4`, idHash, s.env, micros(now), micros(now.Add(-idle))).
		Scan(&cs.IDHash, &cs.ClientID, &created, &seen, &expires, &cs.Viewing)
	if err != nil {
		return store.ConsoleSession{}, s.mapErr("get console session", err)
	}
	cs.CreatedAt, cs.LastSeenAt, cs.ExpiresAt = fromMicros(created), fromMicros(seen), fromMicros(expires)
	return cs, nil
}

// TouchConsoleSession implements store.Store.
func (s *Store) TouchConsoleSession(ctx context.Context, idHash string, t time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2 AND env = $3 AND last_seen_at < $1`, micros(t), idHash, s.env)
	return s.mapErr("touch console session", err)
}

// SetConsoleSessionViewing implements store.Store.
func (s *Store) SetConsoleSessionViewing(ctx context.Context, idHash, viewing string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE console_sessions SET viewing = $1 WHERE id_hash = $2 AND env = $3`, viewing, idHash, s.env)
	if err != nil {
		return s.mapErr("set console session viewing", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return s.mapErr("set console session viewing", cmp.Or(err, store.ErrNotFound))
	}
	return nil
}

// DeleteConsoleSession implements store.Store.
func (s *Store) DeleteConsoleSession(ctx context.Context, idHash string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM console_sessions WHERE id_hash = $1 AND env = $2`, idHash, s.env)
	return s.mapErr("delete console session", err)
}

// DeleteExpiredConsoleSessions implements store.Store. It is deployment
// maintenance: it deletes the expired sessions of every environment.
func (s *Store) DeleteExpiredConsoleSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error) {
	return s.deleteWhere(ctx, "delete expired console sessions", `DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at <= $2`,
		micros(now), micros(now.Add(-idle)))
}

// CreateConsoleLink implements store.Store.
func (s *Store) CreateConsoleLink(ctx context.Context, hash, clientID, viewing string, expires time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO console_links (env, hash, client_id, expires_at, viewing) VALUES ($1, $2, $3, $4, $5)`, s.env, hash, clientID, micros(expires), viewing)
	return s.mapErr("create console link", err)
}

// UseConsoleLink implements store.Store. The delete is the claim: of
// concurrent callers, one deletes the row and the others find none.
func (s *Store) UseConsoleLink(ctx context.Context, hash string, now time.Time) (string, string, error) {
	var clientID, viewing string
	var expires int64
	err := s.db.QueryRowContext(ctx, `DELETE FROM console_links WHERE hash = $1 AND env = $2 RETURNING client_id, expires_at, viewing`, hash, s.env).Scan(&clientID, &expires, &viewing)
	if err != nil {
		return "", "", s.mapErr("use console link", err)
	}
	if expires <= micros(now) {
		return "", "", s.mapErr("use console link", store.ErrNotFound)
	}
	return clientID, viewing, nil
}

// DeleteExpiredConsoleLinks implements store.Store. It is deployment
// maintenance: it deletes the expired links of every environment.
func (s *Store) DeleteExpiredConsoleLinks(ctx context.Context, before time.Time) (int, error) {
	return s.deleteWhere(ctx, "delete expired console links", `DELETE FROM console_links WHERE expires_at < $1`, micros(before))
}

func (s *Store) deleteWhere(ctx context.Context, op, query string, args ...any) (int, error) {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, s.mapErr(op, err)
	}
	n, err := res.RowsAffected()
	return int(n), s.mapErr(op, err)
}

// Counts implements store.Store.
func (s *Store) Counts(ctx context.Context) (store.Counts, error) {
	var c store.Counts
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM apis WHERE env = $1),
		(SELECT COUNT(*) FROM clients WHERE env = $1),
		(SELECT COUNT(*) FROM clients WHERE env = $1 AND disabled)`, s.env).Scan(&c.APIs, &c.Clients, &c.DisabledClients)
	return c, s.mapErr("counts", err)
}

// ExpiringSecrets implements store.Store. The index on expires_at makes
// the cost that of the secrets in the window, not of every client.
func (s *Store) ExpiringSecrets(ctx context.Context, from, to time.Time, limit int) ([]store.SecretExpiry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT s.client_id, c.name, MAX(s.expires_at) FROM client_secrets s JOIN clients c ON c.env = s.env AND c.id = s.client_id
		WHERE s.env = $1 AND s.expires_at > $2 AND s.expires_at <= $3
		AND NOT EXISTS (SELECT 1 FROM client_secrets o WHERE o.env = s.env AND o.client_id = s.client_id AND (o.expires_at = 0 OR o.expires_at > $3))
		GROUP BY s.client_id, c.name ORDER BY 3, 1 LIMIT $4`, s.env, micros(from), micros(to), limit)
	if err != nil {
		return nil, s.mapErr("expiring secrets", err)
	}
	defer rows.Close()
	var out []store.SecretExpiry
	for rows.Next() {
		var e store.SecretExpiry
		var exp int64
		if err := rows.Scan(&e.ClientID, &e.ClientName, &exp); err != nil {
			return nil, s.mapErr("expiring secrets", err)
		}
		e.ExpiresAt = fromMicros(exp)
		out = append(out, e)
	}
	return out, s.mapErr("expiring secrets", rows.Err())
}

// OldestSecrets implements store.Store. It reads the environment's secrets
// once (a periodic report, not a request's query) and returns at most
// limit rows.
func (s *Store) OldestSecrets(ctx context.Context, now time.Time, limit int) ([]store.SecretAge, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT client_id, MIN(created_at) FROM client_secrets
		WHERE env = $1 AND (expires_at = 0 OR expires_at > $2)
		GROUP BY client_id ORDER BY 2, 1 LIMIT $3`, s.env, micros(now), limit)
	if err != nil {
		return nil, s.mapErr("oldest secrets", err)
	}
	defer rows.Close()
	var out []store.SecretAge
	for rows.Next() {
		var a store.SecretAge
		var created int64
		if err := rows.Scan(&a.ClientID, &created); err != nil {
			return nil, s.mapErr("oldest secrets", err)
		}
		a.CreatedAt = fromMicros(created)
		out = append(out, a)
	}
	return out, s.mapErr("oldest secrets", rows.Err())
}
