package postgres

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlstore"
)

var (
	_ store.BulkClients = (*Store)(nil)
	_ store.BulkClients = envStore{}
)

// InsertClients implements store.BulkClients with COPY, a transaction per
// batch.
func (s *Store) InsertClients(ctx context.Context, clients iter.Seq[store.Client]) (int, error) {
	return s.Store.InsertClientsWith(ctx, clients, copyBatch(s.pool, s.Env()))
}

// InEnv scopes the store to another environment, keeping the pool that
// COPY needs.
func (s *Store) InEnv(name string) store.Store {
	return envStore{Store: s.Scoped(name), pool: s.pool}
}

// envStore is a Store scoped to an environment; closing it closes the
// database handle, as a scoped sqlstore.Store does, not the pool.
type envStore struct {
	*sqlstore.Store
	pool *pgxpool.Pool
}

// InsertClients implements store.BulkClients with COPY.
func (s envStore) InsertClients(ctx context.Context, clients iter.Seq[store.Client]) (int, error) {
	return s.Store.InsertClientsWith(ctx, clients, copyBatch(s.pool, s.Env()))
}

// copyBatch writes a batch of clients of environment env in one transaction.
func copyBatch(pool *pgxpool.Pool, env string) func(ctx context.Context, batch []store.Client) error {
	return func(ctx context.Context, batch []store.Client) error { return copyClients(ctx, pool, env, batch) }
}

func copyClients(ctx context.Context, pool *pgxpool.Pool, env string, batch []store.Client) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		ids := make([]string, len(batch))
		var rows, grants, secrets [][]any
		for i, c := range batch {
			ids[i] = c.ID
			rows = append(rows, sqlstore.ClientRow(env, c))
			grants = append(grants, sqlstore.GrantRows(env, c)...)
			secrets = append(secrets, sqlstore.SecretRows(env, c)...)
		}
		var gone string
		err := tx.QueryRow(ctx, `SELECT id FROM client_tombstones WHERE env = $1 AND id = ANY($2) LIMIT 1`, env, ids).Scan(&gone)
		switch {
		case err == nil:
			return fmt.Errorf("%w: client id %s belonged to a deleted client", store.ErrConflict, gone)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		for _, t := range []struct {
			table string
			cols  []string
			rows  [][]any
		}{
			{"clients", sqlstore.ClientTableColumns, rows},
			{"client_grants", sqlstore.GrantTableColumns, grants},
			{"client_secrets", sqlstore.SecretTableColumns, secrets},
		} {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.table}, t.cols, pgx.CopyFromRows(t.rows)); err != nil {
				return err
			}
		}
		return nil
	})
}
