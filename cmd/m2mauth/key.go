package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/server"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

func keyCommands() []command {
	return []command{
		{"list", "list the signing keys: state, algorithm, lifecycle times", keyList},
		{"rotate", "schedule a pre-published rotation (optionally to another --alg)", keyRotate},
		{"revoke", "EMERGENCY: unpublish a key at once (breaks the tokens it signed)", keyRevoke},
		{"rewrap", "re-encrypt every private key under a new master key (servers stopped)", keyRewrap},
	}
}

func timeCell(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func keyList(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "key list", "", "Lists the signing keys, newest first: next keys are published and not signing yet,\nthe active key signs, retired keys stay published until their last token has expired.")
	conn.register(f)
	out.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	var l admin.ListResponse[admin.KeyResource]
	if err := ac.do(ctx, http.MethodGet, "/admin/v1/keys", nil, &l); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, l.Items)
	}
	rows := [][]string{}
	for _, k := range l.Items {
		when := timeCell(k.ActivatedAt)
		if k.State == "next" {
			when = "at " + timeCell(k.ActivateAt)
		}
		rows = append(rows, []string{k.KID, k.Alg, k.State, k.CreatedAt.Format(time.RFC3339), when, timeCell(k.RetiredAt), timeCell(k.RemoveAt), timeCell(k.TokensLiveUntil)})
	}
	table(e.stdout, "KID\tALG\tSTATE\tCREATED\tSIGNS FROM\tRETIRED\tUNPUBLISHED AT\tTOKENS LIVE UNTIL", rows)
	return nil
}

func keyRotate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var alg string
	f := newFlags(e, "key rotate", "", "Schedules a normal rotation: a new key is published now and starts signing once it has\nbeen published for the pre-publication lead (--key-prepublish of serve), so verifiers\nthat cache the JWKS see it first. The current key then stays published until its last\ntoken has expired. --alg changes the algorithm (RS256, PS256, ES256, EdDSA).")
	f.StringVar(&alg, "alg", "", "algorithm of the new key (default: the server's --signing-alg)")
	conn.register(f)
	out.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	var k admin.KeyResource
	if err := ac.do(ctx, http.MethodPost, "/admin/v1/keys/rotate", admin.RotateKeyRequest{Alg: alg}, &k); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, k)
	}
	fmt.Fprintf(e.stdout, "scheduled: key %s (%s) is published now and signs from %s\n", k.KID, k.Alg, timeCell(k.ActivateAt))
	return nil
}

func keyRevoke(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var yes bool
	f := newFlags(e, "key revoke", "KID", "EMERGENCY ONLY, for a compromised key. The key is unpublished and stops signing at once;\nif it was the active key, a replacement signs at once without pre-publication. Every\ntoken it signed stops verifying, and verifiers holding a cached JWKS reject the new\nkey's tokens until they refetch. For a routine change, use 'key rotate'.\nA key id may start with '-': put '--' before it (key revoke --yes -- -AbC…).")
	f.BoolVar(&yes, "yes", false, "confirm that breaking the key's tokens is intended")
	conn.register(f)
	out.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if !yes {
		return errors.New("revoking breaks every token the key signed: run again with --yes to confirm (or use 'key rotate')")
	}
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	var res admin.RevokeKeyResponse
	if err := ac.do(ctx, http.MethodPost, "/admin/v1/keys/"+url.PathEscape(pos[0])+"/revoke", nil, &res); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "revoked %s", res.Revoked)
	if res.Replacement != "" {
		fmt.Fprintf(e.stdout, "; %s signs from now on", res.Replacement)
	}
	fmt.Fprintln(e.stdout)
	return nil
}

func keyRewrap(ctx context.Context, e *env, args []string) error {
	cfg := config.Default()
	var current, next string
	f := newFlags(e, "key rewrap", "", "Re-encrypts the private signing keys of every environment and the secret hashing key under\n"+
		"a new master key, one environment per transaction once every environment has been checked,\n"+
		"working on the database directly. Stop the servers first: with SQLite\n"+
		"it refuses while one runs; with PostgreSQL it cannot tell, so stop every replica. Then start\n"+
		"them with the new key only. The current key comes from --master-key (or its variable) or\n"+
		"<data-dir>/master.key; the new one from --new-master-key, or is generated. When the\n"+
		"current key is in master.key, the file is replaced with the new key. Running it again\n"+
		"after an interruption finishes the job. Next keys sealed under a third master key (left by\n"+
		"a server of an earlier version started with a wrong key) never signed and are deleted.")
	storageFlags(f, &cfg)
	f.StringVar(&current, "master-key", "", "the current master key (default: <data-dir>/master.key)")
	f.StringVar(&next, "new-master-key", "", "the new master key, 32 bytes as base64 or hex (default: generate one)")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	old, fromFile, err := currentMasterKey(current, cfg)
	if err != nil && fromFile {
		return fmt.Errorf("no current master key: set M2MAUTH_MASTER_KEY or run where %s is: %w", cfg.MasterKeyPath(), err)
	}
	if err != nil {
		return fmt.Errorf("current master key: %w", err)
	}
	generated := next == ""
	if generated {
		next = keys.GenerateMasterKeyText()
	}
	nk, err := keys.ParseMasterKey(next)
	if err != nil {
		return fmt.Errorf("new master key: %w", err)
	}
	// Refuse while a server holds an SQLite database: it would go on with
	// the old key, and fail every key change afterwards. Replicas on
	// PostgreSQL cannot be seen from here: stopping them is the operator's.
	if !cfg.IsPostgres() {
		lock, err := sqlite.Lock(cfg.SQLitePath(), "key rewrap")
		if err != nil {
			return err
		}
		defer lock.Unlock()
	}
	// With master.key, the new key is on disk before anything is sealed
	// under it.
	staged := cfg.MasterKeyPath() + ".new"
	if fromFile {
		if err := keys.ReplaceMasterKeyFile(staged, next); err != nil {
			return fmt.Errorf("stage the new master key: %w", err)
		}
	}
	st, err := server.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := keys.Rewrap(ctx, st, old, nk)
	if err != nil {
		return err
	}
	for _, kid := range res.Dropped {
		fmt.Fprintf(e.stdout, "deleted next signing key %s: it was sealed under a third master key and never signed\n", kid)
	}
	fmt.Fprintf(e.stdout, "re-sealed %d value(s) under master key %s (was %s)\n", res.Resealed, nk.ID(), old.ID())
	switch {
	case fromFile:
		keyFile := cfg.MasterKeyPath()
		if err := os.Rename(staged, keyFile); err != nil {
			return fmt.Errorf("the database is re-sealed under the key in %s; move it to %s before starting: %w", staged, keyFile, err)
		}
		fmt.Fprintf(e.stdout, "%s now holds the new key; start the server as before\n", keyFile)
	case generated:
		fmt.Fprintf(e.stdout, "new master key (shown only now; set M2MAUTH_MASTER_KEY to it on every replica):\n%s\n", next)
	default:
		fmt.Fprintln(e.stdout, "start every replica with the new M2MAUTH_MASTER_KEY")
	}
	return nil
}
