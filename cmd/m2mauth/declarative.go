package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/declarative"
)

// fetchState reads every trust policy, API and client, page by page.
func fetchState(ctx context.Context, ac *adminClient) (declarative.State, error) {
	var s declarative.State
	var policies admin.ListResponse[admin.TrustPolicyResource]
	if err := ac.do(ctx, http.MethodGet, "/admin/v1/trust-policies", nil, &policies); err != nil {
		return s, err
	}
	s.TrustPolicies = policies.Items
	for cursor := ""; ; {
		var page admin.ListResponse[admin.APIResource]
		if err := ac.do(ctx, http.MethodGet, "/admin/v1/apis?limit=1000&cursor="+url.QueryEscape(cursor), nil, &page); err != nil {
			return s, err
		}
		s.APIs = append(s.APIs, page.Items...)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	for _, a := range s.APIs {
		if a.Builtin {
			s.Issuer = strings.TrimSuffix(a.Identifier, "/admin")
		}
	}
	for cursor := ""; ; {
		var page admin.ListResponse[admin.ClientResource]
		if err := ac.do(ctx, http.MethodGet, "/admin/v1/clients?limit=1000&cursor="+url.QueryEscape(cursor), nil, &page); err != nil {
			return s, err
		}
		s.Clients = append(s.Clients, page.Items...)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	return s, nil
}

func runApply(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var file string
	var dryRun, prune bool
	f := newFlags(e, "apply", "", "Makes the server match a configuration file (YAML): creates and updates the trust\npolicies, APIs and clients it names. Applying the same file twice changes nothing the second\ntime. --dry-run prints the changes and makes none; --prune also deletes the trust policies,\nAPIs and clients the file does not name (never the admin API or admin clients).")
	f.StringVar(&file, "f", "m2mauth.yaml", "the configuration file")
	f.BoolVar(&dryRun, "dry-run", false, "print the changes without making them")
	f.BoolVar(&prune, "prune", false, "delete trust policies, APIs and clients the file does not name")
	conn.register(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	cfg, err := declarative.Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	state, err := fetchState(ctx, ac)
	if err != nil {
		return err
	}
	plan, err := declarative.Plan(cfg, state, prune)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	// Every secret to import is read and checked before anything
	// changes: a missing one must not leave half the file applied.
	baseDir := filepath.Dir(file)
	imported, err := resolveImportSecrets(e, baseDir, plan)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if len(plan) == 0 {
		fmt.Fprintln(e.stdout, "no changes: the server matches", file)
		return nil
	}
	counts := map[string]int{}
	for _, c := range plan {
		fmt.Fprintln(e.stdout, c.String())
		counts[c.Op]++
	}
	summary := fmt.Sprintf("%d to create, %d to update, %d to delete", counts["create"], counts["update"], counts["delete"])
	if dryRun {
		fmt.Fprintf(e.stdout, "\ndry run: %s; nothing was changed\n", summary)
		return nil
	}
	for _, c := range plan {
		if err := applyChange(ctx, e, ac, baseDir, c, imported[c.Key]); err != nil {
			return fmt.Errorf("%s %s %s: %w", c.Op, c.Kind, c.Key, err)
		}
	}
	fmt.Fprintf(e.stdout, "\napplied: %s\n", summary)
	return nil
}

// resolveImportSecrets reads the import_secret of every client the plan
// creates and checks it as the server would, naming each one that is
// missing or unfit (never its value). It returns the secrets by client id.
func resolveImportSecrets(e *env, baseDir string, plan []declarative.Change) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for _, c := range plan {
		if c.Op != "create" || c.Kind != "client" || c.Spec == nil || c.Spec.ImportSecret == nil {
			continue
		}
		sec, err := readSecretRef(e, baseDir, c.Spec.ImportSecret)
		if err != nil {
			errs = append(errs, fmt.Errorf("client %s: %w", c.Key, err))
			continue
		}
		out[c.Key] = sec
	}
	return out, errors.Join(errs...)
}

func applyChange(ctx context.Context, e *env, ac *adminClient, baseDir string, c declarative.Change, importSecret string) error {
	switch {
	case c.Kind == "trust policy" && c.Op == "create":
		return ac.do(ctx, http.MethodPost, "/admin/v1/trust-policies", c.TrustPolicy, nil)
	case c.Kind == "trust policy" && c.Op == "update":
		return ac.do(ctx, http.MethodPut, "/admin/v1/trust-policies/"+url.PathEscape(c.Key), c.TrustPolicy, nil)
	case c.Kind == "trust policy" && c.Op == "delete":
		return ac.do(ctx, http.MethodDelete, "/admin/v1/trust-policies/"+url.PathEscape(c.Key), nil, nil)
	case c.Kind == "api" && c.Op == "create":
		return ac.do(ctx, http.MethodPost, "/admin/v1/apis", c.API, nil)
	case c.Kind == "api" && c.Op == "update":
		return ac.do(ctx, http.MethodPut, "/admin/v1/apis/"+url.PathEscape(c.Key), c.API, nil)
	case c.Kind == "api" && c.Op == "delete":
		return ac.do(ctx, http.MethodDelete, "/admin/v1/apis/"+url.PathEscape(c.Key)+"?force=true", nil, nil)
	case c.Kind == "client" && c.Op == "update":
		return ac.do(ctx, http.MethodPatch, "/admin/v1/clients/"+url.PathEscape(c.Key), c.ClientPatch, nil)
	case c.Kind == "client" && c.Op == "delete":
		return ac.do(ctx, http.MethodDelete, "/admin/v1/clients/"+url.PathEscape(c.Key), nil, nil)
	case c.Kind == "client" && c.Op == "create":
		in := *c.Client
		in.ClientSecret = importSecret // read and checked with the plan
		var created admin.ClientResource
		if err := ac.do(ctx, http.MethodPost, "/admin/v1/clients", in, &created); err != nil {
			return err
		}
		if created.ClientSecret == "" {
			return nil // imported: the caller has it
		}
		if c.Spec.SecretFile == "" {
			fmt.Fprintf(e.stdout, "  client %s: client_secret: %s (shown only now)\n", created.ClientID, created.ClientSecret)
			return nil
		}
		path := c.Spec.SecretFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(baseDir, path)
		}
		if err := writeSecretFile(path, created.ClientID, created.ClientSecret, ac.base); err != nil {
			return fmt.Errorf("the client was created, but its secret could not be written (rotate it to get a new one): %w", err)
		}
		fmt.Fprintf(e.stdout, "  client %s: secret written to %s\n", created.ClientID, path)
		return nil
	}
	return fmt.Errorf("unknown change %s %s", c.Op, c.Kind)
}

// readSecretRef reads an existing secret from the environment variable or
// the file ref names and checks it as the admin API would: 32 to 512
// printable characters without spaces. Errors never quote the secret.
func readSecretRef(e *env, baseDir string, ref *declarative.SecretRef) (string, error) {
	var sec, from string
	if ref.Env != "" {
		sec, from = e.getenv(ref.Env), "$"+ref.Env
		if sec == "" {
			return "", fmt.Errorf("import_secret: environment variable %s is not set (or empty): set it to the client's existing secret", ref.Env)
		}
	} else {
		path := ref.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(baseDir, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("import_secret: %w", err)
		}
		sec, from = strings.TrimSpace(string(b)), path
	}
	switch {
	case len(sec) < admin.MinImportedSecretLen:
		return "", fmt.Errorf("import_secret: %s is shorter than %d characters", from, admin.MinImportedSecretLen)
	case len(sec) > 512:
		return "", fmt.Errorf("import_secret: %s is longer than 512 characters", from)
	case strings.ContainsFunc(sec, func(r rune) bool { return r <= 0x20 || r == 0x7f }):
		return "", fmt.Errorf("import_secret: %s holds spaces or control characters", from)
	}
	return sec, nil
}

// writeSecretFile writes a client's credentials, owner-only, never
// overwriting an existing file.
func writeSecretFile(path, id, secret, server string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(map[string]string{"client_id": id, "client_secret": secret, "token_endpoint": server + "/oauth/token"}, "", "  ")
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runExport(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out string
	f := newFlags(e, "export", "", "Writes the server's trust policies, APIs and clients as a configuration file for 'apply' (no secrets;\nthe admin API and admin clients are left out).")
	f.StringVar(&out, "o", "", "write to this file instead of standard output")
	conn.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	state, err := fetchState(ctx, ac)
	if err != nil {
		return err
	}
	exported, err := declarative.Export(state)
	if err != nil {
		return err
	}
	b, err := declarative.Marshal(exported)
	if err != nil {
		return err
	}
	b = append([]byte("# m2mauth configuration, exported from "+ac.base+". Apply with: m2mauth apply -f FILE\n"), b...)
	if out == "" {
		_, err = e.stdout.Write(b)
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return errors.Join(errors.New("export"), err)
	}
	fmt.Fprintf(e.stderr, "wrote %s\n", out)
	return nil
}
