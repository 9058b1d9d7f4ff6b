package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
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
	var dryRun, prune, pruneEnvs bool
	f := newFlags(e, "apply", "", `Makes the server match a configuration file (YAML): creates and updates the trust
policies, APIs and clients it names. Applying the same file twice changes nothing the second
time. --dry-run prints the changes and makes none; --prune also deletes the trust policies,
APIs and clients the file does not name (never the admin API or admin clients).
A file with environment: NAME applies to environment NAME, creating it if it does not exist;
a file with environments: applies to each environment it lists (a deployment admin's
credentials); any other file applies to --env or the server's environment. Environments are
deleted only with --prune-environments (never the default one).`)
	f.StringVar(&file, "f", "m2mauth.yaml", "the configuration file")
	f.BoolVar(&dryRun, "dry-run", false, "print the changes without making them")
	f.BoolVar(&prune, "prune", false, "delete trust policies, APIs and clients the file does not name")
	f.BoolVar(&pruneEnvs, "prune-environments", false, "with --prune and a file with environments:, also delete the environments it does not list\n      (and everything in them)")
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
	envFlag := conn.env
	if envFlag == defaultEnv && cfg.Environment == "" && cfg.Environments == nil {
		envFlag = "" // today's file for the default environment: as before environments
	}
	targets, err := cfg.Targets(envFlag)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	switch {
	case pruneEnvs && !prune:
		return errors.New("--prune-environments needs --prune")
	case pruneEnvs && cfg.Environments == nil:
		return fmt.Errorf("--prune-environments applies to a file with environments: (%s has none)", file)
	}
	dep, err := connectDeploymentState(ctx, &conn, cfg, targets)
	if err != nil {
		return err
	}
	if dep.Environments == nil && cfg.Environment != "" && cfg.Settings != (declarative.Settings{}) {
		fmt.Fprintf(e.stderr, "note: the settings of environment %s are left as they are: its own admin's credentials cannot read or change them (a deployment admin's can)\n", cfg.Environment)
	}
	plans, err := declarative.PlanEnvironments(targets, dep.Deployment, prune, pruneEnvs)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	// Every secret to import is read and checked before anything
	// changes: a missing one must not leave half the file applied.
	baseDir := filepath.Dir(file)
	imported := map[string]map[string]string{}
	var errs []error
	for _, p := range plans {
		sec, err := resolveImportSecrets(e, baseDir, p.Changes)
		if err != nil && p.Name != "" {
			err = fmt.Errorf("environment %s: %w", p.Name, err)
		}
		imported[p.Name], errs = sec, append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	// The first step of each environment's deletion tells what it takes
	// with it (and gives the confirmation the second step needs).
	confirmations := map[string]string{}
	for i, p := range plans {
		for j, c := range p.Changes {
			if c.Kind == "environment" && c.Op == "delete" {
				d, err := dep.root.requestDeletion(ctx, c.Key)
				if err != nil {
					return fmt.Errorf("environment %s: %w", c.Key, err)
				}
				confirmations[c.Key] = d.Confirmation
				plans[i].Changes[j].Diffs = append(plans[i].Changes[j].Diffs, "deletes "+d.willDelete())
			}
		}
	}
	sections := cfg.Environment != "" || cfg.Environments != nil || envFlag != ""
	counts := map[string]int{}
	printed := false
	for _, p := range plans {
		for _, c := range p.Changes {
			counts[c.Op]++
		}
		if !sections {
			for _, c := range p.Changes {
				fmt.Fprintln(e.stdout, c.String())
			}
			continue
		}
		if printed {
			fmt.Fprintln(e.stdout)
		}
		printed = true
		head := "environment " + p.Name
		if p.New {
			head += " (new: apply creates it)"
		}
		if len(p.Changes) == 0 {
			fmt.Fprintln(e.stdout, head+": no changes")
			continue
		}
		fmt.Fprintln(e.stdout, head+":")
		for _, c := range p.Changes {
			fmt.Fprintln(e.stdout, c.String())
		}
	}
	if counts["create"]+counts["update"]+counts["delete"] == 0 {
		if sections {
			fmt.Fprintln(e.stdout)
		}
		fmt.Fprintln(e.stdout, "no changes: the server matches", file)
		return nil
	}
	summary := fmt.Sprintf("%d to create, %d to update, %d to delete", counts["create"], counts["update"], counts["delete"])
	if dryRun {
		fmt.Fprintf(e.stdout, "\ndry run: %s; nothing was changed\n", summary)
		return nil
	}
	for i, p := range plans {
		if err := applyEnvironment(ctx, e, dep, baseDir, p, targets, i, prune, imported[p.Name], confirmations); err != nil {
			if p.Name != "" {
				return fmt.Errorf("environment %s: %w", p.Name, err)
			}
			return err
		}
	}
	fmt.Fprintf(e.stdout, "\napplied: %s\n", summary)
	return nil
}

// deploymentState is what apply works on: the server's environments and
// their states, and a client of each environment's admin API.
type deploymentState struct {
	declarative.Deployment
	// root is a client of the deployment's admin API with a deployment
	// admin's token (nil when the credentials are an environment's admin).
	root *adminClient
	// clients are the admin API clients of the existing environments the
	// targets name, by name ("" for an unnamed target); versions are the
	// versions read of each environment.
	clients  map[string]*adminClient
	versions map[string]int64
}

// connectDeploymentState logs in as the targets need and reads what the
// plan compares the file with: a file with environments: needs a
// deployment admin; a file for one named environment, a deployment admin
// or that environment's own admin (who cannot see its settings); any other
// file, the admin of the environment the command targets.
func connectDeploymentState(ctx context.Context, conn *connFlags, cfg declarative.File, targets []declarative.Target) (*deploymentState, error) {
	d := &deploymentState{clients: map[string]*adminClient{}, versions: map[string]int64{}}
	d.States = map[string]declarative.State{}
	var envs []environmentResource
	switch {
	case cfg.Environments != nil:
		root, err := conn.connectDeployment(ctx)
		if err != nil {
			return nil, err
		}
		d.root = root
		envs, err = listEnvironments(ctx, root)
		if err != nil {
			return nil, err
		}
	case targets[0].Name == "":
		ac, err := conn.loginFor(ctx, "")
		if err != nil {
			return nil, err
		}
		d.clients[""] = ac
	default:
		name := targets[0].Name
		var ac *adminClient
		var err error
		if name == defaultEnv {
			// A deployment admin sees the default environment's settings;
			// the default environment's own admin manages its content.
			if ac, err = conn.connectDeployment(ctx); errors.Is(err, errNotDeployment) {
				ac, err = conn.loginFor(ctx, "")
			}
		} else {
			ac, err = conn.loginFor(ctx, name)
		}
		if err != nil {
			return nil, err
		}
		if ac.root == "" {
			d.clients[name] = ac // the environment's own admin
			break
		}
		d.root = ac
		res, _, err := ac.environment(ctx, name)
		switch {
		case isStatus(err, http.StatusNotFound):
		case err != nil:
			return nil, fmt.Errorf("environment %s: %w", name, err)
		default:
			envs = append(envs, res)
		}
	}
	if d.root != nil {
		d.Environments = map[string]declarative.Settings{}
		for _, res := range envs {
			d.Environments[res.Name] = settingsOf(res)
			d.versions[res.Name] = res.Version
			d.clients[res.Name] = d.root.inEnvironment(res)
		}
	}
	for _, t := range targets {
		ac, ok := d.clients[t.Name]
		if !ok {
			continue // created by the apply
		}
		state, err := fetchState(ctx, ac)
		if err != nil {
			if t.Name != "" {
				err = fmt.Errorf("environment %s: %w", t.Name, err)
			}
			return nil, err
		}
		d.States[t.Name] = state
	}
	return d, nil
}

// inEnvironment is a client of the environment's admin API: the
// deployment's own for the default one.
func (a *adminClient) inEnvironment(res environmentResource) *adminClient {
	if res.Name == defaultEnv {
		return a.deploymentClient()
	}
	return a.in(res)
}

// listEnvironments reads every environment of the deployment.
func listEnvironments(ctx context.Context, root *adminClient) ([]environmentResource, error) {
	return listAll[environmentResource](ctx, root.deploymentClient(), environmentsPath, url.Values{})
}

func settingsOf(res environmentResource) declarative.Settings {
	return declarative.Settings{DisplayName: res.DisplayName, SigningAlg: res.SigningAlg, KeyRotationPeriod: declarative.Seconds(res.KeyRotationPeriod)}
}

// applyEnvironment makes one environment's changes: its creation (then its
// content is planned again against what the server made: the plan shown
// knew nothing of it), settings update or deletion, then its content's.
func applyEnvironment(ctx context.Context, e *env, d *deploymentState, baseDir string, p declarative.EnvironmentPlan, targets []declarative.Target, i int, prune bool,
	imported map[string]string, confirmations map[string]string) error {
	changes := p.Changes
	for len(changes) > 0 && changes[0].Kind == "environment" {
		c := changes[0]
		changes = changes[1:]
		path := environmentsPath + "/" + url.PathEscape(c.Key)
		switch c.Op {
		case "create":
			in := environmentInput{Name: c.Key, DisplayName: c.Settings.DisplayName, SigningAlg: c.Settings.SigningAlg, KeyRotationPeriod: int64(c.Settings.KeyRotationPeriod)}
			var res environmentResource
			if err := d.root.deploymentClient().do(ctx, http.MethodPost, environmentsPath, in, &res); err != nil {
				return fmt.Errorf("create environment %s: %w", c.Key, err)
			}
			ac := d.root.inEnvironment(res)
			state, err := fetchState(ctx, ac)
			if err != nil {
				return err
			}
			content, err := declarative.Plan(targets[i].Content, state, prune)
			if err != nil {
				return err
			}
			d.clients[c.Key], changes = ac, content
		case "update":
			in := environmentInput{DisplayName: c.Settings.DisplayName, SigningAlg: c.Settings.SigningAlg, KeyRotationPeriod: int64(c.Settings.KeyRotationPeriod)}
			ifMatch := ""
			if v := d.versions[c.Key]; v != 0 {
				ifMatch = fmt.Sprint(v) // the version the plan was made from
			} else if _, etag, err := d.root.environment(ctx, c.Key); err != nil {
				return fmt.Errorf("update environment %s: %w", c.Key, err)
			} else {
				ifMatch = etag
			}
			if err := d.root.deploymentClient().doIfMatch(ctx, http.MethodPatch, path, ifMatch, in, nil); err != nil {
				return fmt.Errorf("update environment %s: %w", c.Key, err)
			}
		case "delete":
			if err := d.root.deleteEnvironment(ctx, c.Key, confirmations[c.Key]); err != nil {
				return fmt.Errorf("delete environment %s: %w", c.Key, err)
			}
		}
	}
	ac := d.clients[p.Name]
	for _, c := range changes {
		if err := applyChange(ctx, e, ac, baseDir, c, imported[c.Key]); err != nil {
			return fmt.Errorf("%s %s %s: %w", c.Op, c.Kind, c.Key, err)
		}
	}
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
	var out, dir string
	var all bool
	f := newFlags(e, "export", "", `Writes the server's trust policies, APIs and clients as a configuration file for 'apply' (no secrets;
the admin API and admin clients are left out). With --env NAME the file is for environment NAME
(environment: NAME, with its display name and key settings); --all-environments writes every
environment of the deployment, in one file (environments:) or with --dir one file each
(DIR/NAME.yaml).`)
	f.StringVar(&out, "o", "", "write to this file instead of standard output")
	f.BoolVar(&all, "all-environments", false, "export every environment (a deployment admin's credentials)")
	f.StringVar(&dir, "dir", "", "with --all-environments: write one file per environment into this directory")
	conn.register(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	switch {
	case dir != "" && !all:
		return errors.New("--dir needs --all-environments")
	case dir != "" && out != "":
		return errors.New("give -o or --dir, not both")
	case all && conn.env != "":
		return errors.New("--all-environments exports every environment: leave out --env")
	}
	if all {
		return exportAll(ctx, e, &conn, out, dir)
	}
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	exported, err := exportState(ctx, ac)
	if err != nil {
		return err
	}
	if conn.env != "" {
		exported.Environment = conn.env
		if ac.root != "" { // a deployment admin sees the settings
			res, _, err := ac.environment(ctx, conn.env)
			if err != nil {
				return fmt.Errorf("environment %s: %w", conn.env, err)
			}
			exported.Settings = settingsOf(res)
		}
	}
	return writeExport(e, exported, ac.base, out)
}

// exportState exports one environment's content.
func exportState(ctx context.Context, ac *adminClient) (declarative.File, error) {
	state, err := fetchState(ctx, ac)
	if err != nil {
		return declarative.File{}, err
	}
	return declarative.Export(state)
}

// exportAll exports every environment of the deployment, the default one
// first: into one file, or into dir one file each.
func exportAll(ctx context.Context, e *env, conn *connFlags, out, dir string) error {
	root, err := conn.connectDeployment(ctx)
	if err != nil {
		return err
	}
	envs, err := listEnvironments(ctx, root)
	if err != nil {
		return err
	}
	slices.SortStableFunc(envs, func(a, b environmentResource) int {
		return cmp.Compare(boolInt(a.Name != defaultEnv), boolInt(b.Name != defaultEnv))
	})
	var all declarative.File
	all.Environments = []declarative.Environment{}
	for _, res := range envs {
		content, err := exportState(ctx, root.inEnvironment(res))
		if err != nil {
			return fmt.Errorf("environment %s: %w", res.Name, err)
		}
		if dir != "" {
			content.Environment, content.Settings = res.Name, settingsOf(res)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := writeExport(e, content, root.inEnvironment(res).base, filepath.Join(dir, res.Name+".yaml")); err != nil {
				return err
			}
			continue
		}
		all.Environments = append(all.Environments, declarative.Environment{Name: res.Name, Settings: settingsOf(res),
			TrustPolicies: content.TrustPolicies, APIs: content.APIs, Clients: content.Clients})
	}
	if dir != "" {
		return nil
	}
	return writeExport(e, all, root.base, out)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// writeExport writes an exported file, with a comment naming where it
// came from, to out (standard output when "").
func writeExport(e *env, f declarative.File, from, out string) error {
	b, err := declarative.Marshal(f)
	if err != nil {
		return err
	}
	b = append([]byte("# m2mauth configuration, exported from "+from+". Apply with: m2mauth apply -f FILE\n"), b...)
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
