package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
)

// Defaults of bench seed.
const (
	benchSeedClients  = 10_000
	benchSeedAudience = "https://bench.m2mauth.invalid"
	benchSeedPrefix   = "bench-"
	benchSeedScope    = "bench"
)

// runBenchSeed bulk-inserts clients, each with one secret and a grant on
// one API, straight into the database, and writes their credentials file
// (the format is in bench.go).
func runBenchSeed(ctx context.Context, e *env, args []string) error {
	cfg := config.Default()
	var masterKey, audience, envName, prefix, out string
	var n int
	f := newFlags(e, "bench seed", "", "Bulk-inserts --clients clients straight into the database serve uses (not through the\nadmin API: a million take about two minutes on PostgreSQL), each with one generated secret and a grant on the\n--audience API (created if missing), and writes their credentials to --out (mode 0600),\none \"<client_id>\\t<client_secret>\" line each, for 'm2mauth bench run'. Client ids are\n--prefix and a number; a prefix some client id starts with is refused. It needs the master key, as serve.\nWith SQLite, stop the server first; with PostgreSQL, restart running servers afterwards\n(their client id filters learn of no bulk-inserted id).")
	storageFlags(f, &cfg)
	f.StringVar(&masterKey, "master-key", "", "the master key (default: <data-dir>/master.key)")
	f.IntVar(&n, "clients", benchSeedClients, "how many clients to insert")
	f.StringVar(&audience, "audience", benchSeedAudience, "identifier of the API every client gets a grant on (created with scope "+benchSeedScope+" if missing)")
	f.StringVar(&envName, "env", store.DefaultEnv, "environment the clients belong to")
	f.StringVar(&prefix, "prefix", benchSeedPrefix, "client ids are this followed by a number (refused if a client id starts with it)")
	f.StringVar(&out, "out", "bench-credentials.txt", "credentials file to create (refused if it exists)")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	switch {
	case n < 1:
		return errors.New("--clients must be at least 1")
	case prefix == "" || len(prefix) > 100 || strings.ContainsFunc(prefix, func(r rune) bool { return r <= 0x20 || r >= 0x7f || r == ':' }) || strings.HasPrefix(prefix, secret.SecretPrefix):
		return errors.New("--prefix must be 1 to 100 printable ASCII characters without spaces or ':'")
	case audience == "" || strings.ContainsAny(audience, "\n\r"):
		return errors.New("--audience must be one line")
	}
	root, mk, done, err := openOffline(ctx, cfg, masterKey, "bench seed")
	if err != nil {
		return err
	}
	defer done()
	if _, err := root.GetMeta(ctx, store.MetaIssuer); errors.Is(err, store.ErrNotFound) {
		return errors.New("this database was never served: start the server once first")
	} else if err != nil {
		return err
	}
	hashKey, err := keys.SecretHashKey(ctx, root, mk)
	if err != nil {
		return err
	}
	st := root
	if envName != store.DefaultEnv {
		if _, err := root.GetEnvironment(ctx, envName); err != nil {
			return fmt.Errorf("environment %s: %w", envName, err)
		}
		st = root.InEnv(envName)
	}
	bulk, ok := st.(store.BulkClients)
	if !ok {
		return errors.New("this database backend has no bulk insert")
	}
	scopes, err := benchAPI(ctx, st, audience)
	if err != nil {
		return err
	}
	width := len(fmt.Sprint(n - 1))
	// Any client id starting with the prefix (the prefix itself, or the
	// first id after it): a seed ran with it already.
	if _, err := st.GetClient(ctx, prefix); err == nil {
		return fmt.Errorf("client %s exists: seed with another --prefix", prefix)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if next, err := st.ListClients(ctx, store.ListOptions{After: prefix, Limit: 1}); err != nil {
		return err
	} else if len(next) == 1 && strings.HasPrefix(next[0].ID, prefix) {
		return fmt.Errorf("client %s exists: seed with another --prefix", next[0].ID)
	}
	file, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	defer file.Close()
	w := bufio.NewWriterSize(file, 1<<16)
	fmt.Fprintf(w, "# m2mauth bench credentials: audience=%s\n", audience)
	hasher := secret.NewHasher(hashKey)
	now := time.Now().UTC()
	start := time.Now()
	clients := func(yield func(store.Client) bool) {
		for i := range n {
			id := fmt.Sprintf("%s%0*d", prefix, width, i)
			plain := secret.Generate()
			fmt.Fprintf(w, "%s\t%s\n", id, plain)
			c := store.Client{ID: id, Name: id, Description: "created by m2mauth bench seed", DefaultAudience: audience,
				AuthMethod: store.DefaultAuthMethod, Version: 1, CreatedAt: now, UpdatedAt: now,
				Grants:  []store.Grant{{Audience: audience, Scopes: scopes}},
				Secrets: []store.Secret{{ID: secret.NewID("sec_"), Hash: hasher.Hash(plain), Hint: secret.Hint(plain), CreatedAt: now}}}
			if !yield(c) {
				return
			}
		}
	}
	inserted, err := bulk.InsertClients(ctx, iter.Seq[store.Client](clients))
	took := time.Since(start)
	if ferr := errors.Join(w.Flush(), file.Close()); ferr != nil && err == nil {
		err = fmt.Errorf("the clients were inserted, but their credentials could not be written: %w", ferr)
	}
	if err != nil {
		return fmt.Errorf("inserted %d of %d clients (their credentials are the first %d lines of %s): %w", inserted, n, inserted, out, err)
	}
	// The trail records who put credentialed clients into the database
	// (one event for the batch, not one per client).
	rec := audit.New(audit.Config{Store: st, Log: slog.New(slog.DiscardHandler), Now: time.Now})
	diff, _ := json.Marshal(map[string]map[string]any{"clients": {"after": inserted}, "audience": {"after": audience}, "prefix": {"after": prefix}})
	rec.Record(ctx, store.AuditEvent{Kind: store.AuditAdmin, Env: envName, Actor: "system", Action: "client.bench_seed",
		TargetType: "client", TargetID: prefix, Diff: diff})
	if err := rec.Close(ctx); err != nil {
		return fmt.Errorf("the clients were inserted, but the audit event was not written: %w", err)
	}
	fmt.Fprintf(e.stdout, "inserted %d clients (%s%0*d … %s%0*d) with a grant on %s into environment %s in %s (%.0f clients/s); credentials in %s\n",
		inserted, prefix, width, 0, prefix, width, n-1, audience, envName, took.Round(time.Millisecond), float64(inserted)/took.Seconds(), out)
	if cfg.IsPostgres() {
		fmt.Fprintln(e.stdout, "restart running servers: their client id filters do not learn of bulk-inserted clients")
	}
	return nil
}

// benchAPI returns the scopes of the API audience, creating it if missing.
func benchAPI(ctx context.Context, st store.Store, audience string) ([]string, error) {
	a, err := st.GetAPI(ctx, audience)
	if err == nil {
		return a.Scopes, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	now := time.Now().UTC()
	a = store.API{ID: secret.NewID("api_"), Identifier: audience, Name: "bench", Scopes: []string{benchSeedScope},
		ScopeDescriptions: map[string]string{}, Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateAPI(ctx, a); err != nil {
		return nil, err
	}
	return a.Scopes, nil
}
