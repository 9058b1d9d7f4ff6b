package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"iter"
	"strings"

	"github.com/m2mauth/m2mauth/internal/store"
)

var _ store.BulkClients = (*Store)(nil)

// Batch sizes of InsertClients: rows per multi-row INSERT and clients per
// transaction. The clients table takes 29 parameters a row; the SQLite
// driver binds each $N parameter by looking its name up among all of the
// statement's, so a statement's cost grows with the square of its
// parameters: 500 rows a statement seeded 215 clients/s, 20 rows 3,400.
const (
	bulkRowsPerStatement = 20
	bulkClientsPerTx     = 20_000
)

// InsertClients implements store.BulkClients with multi-row INSERTs.
func (s *Store) InsertClients(ctx context.Context, clients iter.Seq[store.Client]) (int, error) {
	return s.InsertClientsWith(ctx, clients, s.insertBatch)
}

// InsertClientsWith cuts clients into transaction-sized batches and writes
// each with insert (a backend may write them its own faster way).
func (s *Store) InsertClientsWith(ctx context.Context, clients iter.Seq[store.Client], insert func(ctx context.Context, batch []store.Client) error) (int, error) {
	n := 0
	batch := make([]store.Client, 0, bulkClientsPerTx)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := insert(ctx, batch); err != nil {
			return s.mapErr("insert clients", err)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	for c := range clients {
		batch = append(batch, c)
		if len(batch) == bulkClientsPerTx {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	return n, flush()
}

// checkTombstones fails with ErrConflict if an id of batch belonged to a
// deleted client of environment env: ids are never reused.
func checkTombstones(ctx context.Context, q querier, env string, batch []store.Client) error {
	for i := 0; i < len(batch); i += bulkRowsPerStatement {
		chunk := batch[i:min(i+bulkRowsPerStatement, len(batch))]
		ids := make([]string, len(chunk))
		for j, c := range chunk {
			ids[j] = c.ID
		}
		a := args{env}
		var id string
		err := q.QueryRowContext(ctx, `SELECT id FROM client_tombstones WHERE env = $1 AND id IN `+inList(&a, ids)+` LIMIT 1`, a...).Scan(&id)
		switch {
		case err == nil:
			return fmt.Errorf("%w: client id %s belonged to a deleted client", store.ErrConflict, id)
		case err != sql.ErrNoRows:
			return err
		}
	}
	return nil
}

// insertBatch writes one batch in one transaction.
func (s *Store) insertBatch(ctx context.Context, batch []store.Client) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := checkTombstones(ctx, tx, s.env, batch); err != nil {
			return err
		}
		var rows, grants, secrets [][]any
		for _, c := range batch {
			rows = append(rows, ClientRow(s.env, c))
			grants = append(grants, GrantRows(s.env, c)...)
			secrets = append(secrets, SecretRows(s.env, c)...)
		}
		for _, t := range []struct {
			table string
			cols  []string
			rows  [][]any
		}{
			{"clients", ClientTableColumns, rows},
			{"client_grants", GrantTableColumns, grants},
			{"client_secrets", SecretTableColumns, secrets},
		} {
			if err := insertRows(ctx, tx, t.table, t.cols, t.rows); err != nil {
				return err
			}
		}
		return nil
	})
}

// insertRows inserts rows into table with multi-row INSERTs.
func insertRows(ctx context.Context, tx *sql.Tx, table string, cols []string, rows [][]any) error {
	for i := 0; i < len(rows); i += bulkRowsPerStatement {
		chunk := rows[i:min(i+bulkRowsPerStatement, len(rows))]
		var q strings.Builder
		a := make(args, 0, len(chunk)*len(cols))
		q.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
		for j, r := range chunk {
			if j > 0 {
				q.WriteString(", ")
			}
			q.WriteByte('(')
			for k, v := range r {
				if k > 0 {
					q.WriteString(", ")
				}
				q.WriteString(a.add(v))
			}
			q.WriteByte(')')
		}
		if _, err := tx.ExecContext(ctx, q.String(), a...); err != nil {
			return err
		}
	}
	return nil
}

// The columns InsertClients writes, in the order of ClientRow, GrantRow
// and SecretRow.
var (
	ClientTableColumns = []string{"env", "id", "name", "description", "default_audience", "token_lifetime_ms", "disabled", "refresh_tokens", "custom_claims", "metadata", "introspect", "tokens_revoked_before",
		"auth_method", "jwks", "jwks_uri", "accept_secrets", "accept_token_endpoint_audience", "federation", "version", "created_at", "updated_at",
		"quota_per_minute", "quota_per_hour", "quota_per_day", "token_reuse", "tls_subject_kind", "tls_subject", "cert_bound_tokens", "dpop_bound_tokens"}
	GrantTableColumns  = []string{"env", "client_id", "api_identifier", "scopes"}
	SecretTableColumns = []string{"env", "id", "client_id", "hash", "hint", "created_at", "expires_at", "last_used_at"}
)

// ClientRow is c's row of the clients table in environment env (version 1),
// as insertClient writes it.
func ClientRow(env string, c store.Client) []any {
	return []any{env, c.ID, c.Name, c.Description, c.DefaultAudience, c.TokenLifetime.Milliseconds(), c.Disabled, c.RefreshTokens,
		marshalMap(c.CustomClaims), marshalMap(c.Metadata), joinScopes(c.Introspect), micros(c.TokensRevokedBefore),
		c.Method(), string(c.JWKS), c.JWKSURI, c.AcceptSecrets, c.AcceptTokenEndpointAudience, marshalFederation(c.Federation), int64(1),
		micros(c.CreatedAt), micros(c.UpdatedAt), c.Quota.PerMinute, c.Quota.PerHour, c.Quota.PerDay, c.TokenReuse,
		c.TLSSubject.Kind, c.TLSSubject.Value, c.CertBoundTokens, c.DPoPBoundTokens}
}

// GrantRows and SecretRows are c's rows of client_grants and
// client_secrets in environment env.
func GrantRows(env string, c store.Client) [][]any {
	out := make([][]any, len(c.Grants))
	for i, g := range c.Grants {
		out[i] = []any{env, c.ID, g.Audience, joinScopes(g.Scopes)}
	}
	return out
}

func SecretRows(env string, c store.Client) [][]any {
	out := make([][]any, len(c.Secrets))
	for i, sec := range c.Secrets {
		out[i] = []any{env, sec.ID, c.ID, sec.Hash, sec.Hint, micros(sec.CreatedAt), micros(sec.ExpiresAt), micros(sec.LastUsedAt)}
	}
	return out
}
