package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/server"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

func adminCommands() []command {
	return []command{
		{"recover", "create a new admin client when admin access is lost (works on the database)", adminRecover},
		{"console-link", "print a one-time sign-in link of the admin console (same as 'm2mauth console')", runConsole},
	}
}

// adminRecover regains admin access: it creates a new client with the
// built-in admin grant directly in the database and writes its credentials
// to admin.json. It needs the master key, so only whoever runs the server
// can do it.
func adminRecover(ctx context.Context, e *env, args []string) error {
	cfg := config.Default()
	var masterKey, serverURL string
	f := newFlags(e, "admin recover", "", "Regains admin access when admin.json is lost or every admin client was deleted or\ndisabled: creates a new client with the admin grant, directly in the database (it needs\nthe master key), and writes its credentials to <data-dir>/admin.json (mode 0600).\nWith SQLite, stop the server first; with PostgreSQL, replicas may keep running.\nA first start interrupted before it wrote admin.json needs no recovery: the next start\nwrites it from the credentials it saved first; serve warns when admin.json is missing.")
	storageFlags(f, &cfg)
	f.StringVar(&masterKey, "master-key", "", "the master key (default: <data-dir>/master.key)")
	f.StringVar(&serverURL, "server", "", "the server's URL to record in admin.json (default: the issuer of the admin API)")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	// Replicas on PostgreSQL learn of the new client through the change
	// feed.
	st, mk, done, err := openOffline(ctx, cfg, masterKey, "admin recover")
	if err != nil {
		return err
	}
	defer done()
	apis, err := st.ListAPIs(ctx, store.ListOptions{})
	if err != nil {
		return err
	}
	var adminAPI string
	for _, a := range apis {
		if a.Builtin != "" {
			adminAPI = a.Identifier
		}
	}
	if adminAPI == "" {
		return errors.New("this database has no admin API: start the server once to create it")
	}
	hashKey, err := keys.SecretHashKey(ctx, st, mk)
	if err != nil {
		return err
	}
	svc := admin.NewService(st, secret.NewHasher(hashKey), time.Now, nil)
	c, plain, err := svc.CreateClient(ctx, admin.ClientInput{
		Name: "recovered admin", Description: "created by m2mauth admin recover at " + time.Now().UTC().Format(time.RFC3339),
		DefaultAudience: adminAPI, Grants: []admin.GrantInput{{Audience: adminAPI, Scopes: admin.DeploymentAdminScopes()}},
	})
	if err != nil {
		return err
	}
	if serverURL == "" {
		serverURL = adminAPI[:len(adminAPI)-len("/admin")]
	}
	creds := server.AdminCredentials{Server: serverURL, TokenEndpoint: serverURL + "/oauth/token", ClientID: c.ID,
		ClientSecret: plain, Audience: adminAPI, Scope: strings.Join(admin.DeploymentAdminScopes(), " ")}
	path, err := server.WriteAdminFile(cfg.DataDir, creds)
	if err != nil {
		return fmt.Errorf("the admin client %s was created, but its credentials could not be written: %w", c.ID, err)
	}
	fmt.Fprintf(e.stdout, "created admin client %s; its credentials are in %s\n", c.ID, path)
	return nil
}

// openOffline opens the database for a command that works on it directly
// rather than through a server (admin recover, bench seed), with the master
// key given by flag or environment (text) or the data dir's, checked
// against the database. A server on SQLite caches its clients and knows of
// no writer but itself, so it must be stopped: the database's lock is held
// until done is called. done also closes the store.
func openOffline(ctx context.Context, cfg config.Config, masterKey, op string) (st store.Store, mk *keys.MasterKey, done func(), err error) {
	mk, fromFile, err := currentMasterKey(masterKey, cfg)
	if err != nil && fromFile {
		return nil, nil, nil, fmt.Errorf("no master key: set M2MAUTH_MASTER_KEY or run where the data dir is (start the server once first): %w", err)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	unlock := func() {}
	if !cfg.IsPostgres() {
		lock, err := sqlite.Lock(cfg.SQLitePath(), op)
		if err != nil {
			return nil, nil, nil, err
		}
		unlock = func() { lock.Unlock() }
	}
	st, err = server.OpenStore(ctx, cfg)
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	done = func() { st.Close(); unlock() }
	if err := keys.CheckMasterKey(ctx, st, mk); err != nil {
		done()
		return nil, nil, nil, err
	}
	return st, mk, done, nil
}

// currentMasterKey is the master key given by flag or environment (text),
// else the one in the data dir's master.key; fromFile tells which.
func currentMasterKey(text string, cfg config.Config) (mk *keys.MasterKey, fromFile bool, err error) {
	if text != "" {
		mk, err = keys.ParseMasterKey(text)
		return mk, false, err
	}
	mk, err = keys.LoadMasterKeyFile(cfg.MasterKeyPath())
	return mk, true, err
}
