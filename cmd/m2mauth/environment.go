package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	envpkg "github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/store"
)

// defaultEnv is the default environment's name: it serves the
// deployment's own URLs, and is neither created nor deleted.
const defaultEnv = store.DefaultEnv

// checkEnvName refuses what cannot be an environment's name.
func checkEnvName(name string) error {
	if !envpkg.ValidName(name) {
		return fmt.Errorf("%q is not an environment name (a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')", name)
	}
	return nil
}

// environmentResource is an environment as the admin API describes it.
type environmentResource struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	SigningAlg  string `json:"signing_alg,omitempty"`
	// KeyRotationPeriod is in seconds (0: the server's default).
	KeyRotationPeriod int64      `json:"key_rotation_period,omitempty"`
	Issuer            string     `json:"issuer"`
	AdminAudience     string     `json:"admin_audience"`
	Version           int64      `json:"version,omitempty"`
	CreatedAt         *time.Time `json:"created_at,omitempty"`
	UpdatedAt         *time.Time `json:"updated_at,omitempty"`
}

// environmentInput is the body that creates or changes an environment.
type environmentInput struct {
	Name              string `json:"name,omitempty"`
	DisplayName       string `json:"display_name,omitempty"`
	SigningAlg        string `json:"signing_alg,omitempty"`
	KeyRotationPeriod int64  `json:"key_rotation_period,omitempty"`
}

// deletionResponse is the first step of an environment's deletion: what
// it will delete, and the confirmation the second step needs.
type deletionResponse struct {
	Confirmation string           `json:"confirmation"`
	ExpiresAt    time.Time        `json:"expires_at"`
	Environment  json.RawMessage  `json:"environment,omitempty"`
	WillDelete   map[string]int64 `json:"will_delete"`
}

const environmentsPath = "/admin/v1/environments"

// environment reads one environment, with its ETag, from the deployment's
// admin API (raw: its JSON as the server wrote it).
func (a *adminClient) environment(ctx context.Context, name string) (environmentResource, string, error) {
	var raw json.RawMessage
	etag, err := a.deploymentClient().send(ctx, http.MethodGet, environmentsPath+"/"+url.PathEscape(name), "", nil, &raw)
	if err != nil {
		return environmentResource{}, "", err
	}
	var res environmentResource
	if err := json.Unmarshal(raw, &res); err != nil {
		return res, "", err
	}
	if etag == "" && res.Version != 0 {
		etag = fmt.Sprint(res.Version)
	}
	return res, etag, nil
}

// requestDeletion is the first step of deleting an environment.
func (a *adminClient) requestDeletion(ctx context.Context, name string) (deletionResponse, error) {
	var d deletionResponse
	err := a.deploymentClient().do(ctx, http.MethodPost, environmentsPath+"/"+url.PathEscape(name)+"/deletion", nil, &d)
	if err == nil && d.Confirmation == "" {
		err = errors.New("the server answered the deletion request without a confirmation")
	}
	return d, err
}

// deleteEnvironment is the second step, with the first one's confirmation.
func (a *adminClient) deleteEnvironment(ctx context.Context, name, confirmation string) error {
	return a.deploymentClient().do(ctx, http.MethodDelete, environmentsPath+"/"+url.PathEscape(name)+"?confirmation="+url.QueryEscape(confirmation), nil, nil)
}

// willDelete describes a deletion's counts: "3 apis, 2 clients, …".
func (d deletionResponse) willDelete() string {
	keys := make([]string, 0, len(d.WillDelete))
	for k := range d.WillDelete {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", d.WillDelete[k], strings.ReplaceAll(k, "_", " ")))
	}
	if len(parts) == 0 {
		return "nothing but the environment itself"
	}
	return strings.Join(parts, ", ")
}

func environmentCommands() []command {
	return []command{
		{"list", "list the deployment's environments", environmentList},
		{"create", "create an environment (an isolated authorization server with its own issuer and keys)", environmentCreate},
		{"show", "show one environment", environmentShow},
		{"rename", "change an environment's display name", environmentRename},
		{"delete", "delete an environment and everything in it (asks for confirmation)", environmentDelete},
	}
}

// deploymentConn registers the connection flags of a command of the
// deployment itself: no --env, a deployment admin's credentials.
func deploymentConn(f *flags) *connFlags {
	c := &connFlags{deployment: true}
	c.register(f)
	return c
}

func environmentList(ctx context.Context, e *env, args []string) error {
	var out output
	var q string
	f := newFlags(e, "environment list", "", "Lists the deployment's environments. Needs a deployment admin's credentials.")
	f.StringVar(&q, "q", "", "only environments whose name or display name contains this")
	conn := deploymentConn(f)
	out.register(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	ac, err := conn.connectDeployment(ctx)
	if err != nil {
		return err
	}
	items, err := listAll[json.RawMessage](ctx, ac, environmentsPath, url.Values{"q": {q}})
	if err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, items)
	}
	envs := make([]environmentResource, len(items))
	for i, raw := range items {
		if err := json.Unmarshal(raw, &envs[i]); err != nil {
			return err
		}
	}
	printEnvironments(e.stdout, envs...)
	return nil
}

func printEnvironments(w io.Writer, envs ...environmentResource) {
	rows := make([][]string, 0, len(envs))
	for _, en := range envs {
		alg := en.SigningAlg
		if alg == "" {
			alg = "-"
		}
		rows = append(rows, []string{en.Name, strings.ReplaceAll(en.DisplayName, "\t", " "), en.Issuer, alg, lifetime(en.KeyRotationPeriod)})
	}
	table(w, "NAME\tDISPLAY NAME\tISSUER\tSIGNING ALG\tKEY ROTATION", rows)
}

// printEnvironment prints one environment: its JSON as the server wrote it
// with --json, else a table row.
func printEnvironment(e *env, out output, raw json.RawMessage) error {
	if out.json {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		return printJSON(e.stdout, v)
	}
	var en environmentResource
	if err := json.Unmarshal(raw, &en); err != nil {
		return err
	}
	printEnvironments(e.stdout, en)
	return nil
}

func environmentCreate(ctx context.Context, e *env, args []string) error {
	var out output
	var in environmentInput
	var rotation time.Duration
	f := newFlags(e, "environment create", "", `Creates an environment: an authorization server of its own (issuer, signing keys, APIs,
clients, trust policies), served under the deployment's URL at /e/NAME (or at NAME.<host>).
Manage what is in it with the other commands' --env NAME. Needs a deployment admin's credentials.`)
	f.StringVar(&in.Name, "name", "", "the environment's name, part of its URLs: a DNS label (a-z, 0-9, '-')")
	f.StringVar(&in.DisplayName, "display-name", "", "a name for people (default: --name)")
	f.StringVar(&in.SigningAlg, "signing-alg", "", "the algorithm of its signing keys (default: the server's)")
	f.DurationVar(&rotation, "key-rotation-period", 0, "how often its signing key is rotated, e.g. 720h (default: the server's)")
	conn := deploymentConn(f)
	out.register(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if in.Name == "" {
		return errors.New("--name is required")
	}
	if err := checkEnvName(in.Name); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	if in.DisplayName == "" {
		in.DisplayName = in.Name
	}
	if rotation < 0 || rotation%time.Second != 0 {
		return errors.New("--key-rotation-period: want a positive duration of whole seconds, e.g. 720h")
	}
	in.KeyRotationPeriod = int64(rotation / time.Second)
	ac, err := conn.connectDeployment(ctx)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := ac.do(ctx, http.MethodPost, environmentsPath, in, &raw); err != nil {
		return err
	}
	return printEnvironment(e, out, raw)
}

func environmentShow(ctx context.Context, e *env, args []string) error {
	var out output
	f := newFlags(e, "environment show", "NAME", "Shows one environment: its display name, issuer and key settings.")
	conn := deploymentConn(f)
	out.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	ac, err := conn.connectDeployment(ctx)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := ac.do(ctx, http.MethodGet, environmentsPath+"/"+url.PathEscape(pos[0]), nil, &raw); err != nil {
		return err
	}
	return printEnvironment(e, out, raw)
}

func environmentRename(ctx context.Context, e *env, args []string) error {
	var out output
	var display string
	f := newFlags(e, "environment rename", "NAME", "Changes an environment's display name (its name, part of its URLs, stays). The change is\nmade only if nobody changed the environment since this command read it.")
	f.StringVar(&display, "display-name", "", "the new display name")
	conn := deploymentConn(f)
	out.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if display == "" {
		return errors.New("--display-name is required")
	}
	ac, err := conn.connectDeployment(ctx)
	if err != nil {
		return err
	}
	_, etag, err := ac.environment(ctx, pos[0])
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := ac.doIfMatch(ctx, http.MethodPatch, environmentsPath+"/"+url.PathEscape(pos[0]), etag, environmentInput{DisplayName: display}, &raw); err != nil {
		return err
	}
	return printEnvironment(e, out, raw)
}

func environmentDelete(ctx context.Context, e *env, args []string) error {
	var yes bool
	f := newFlags(e, "environment delete", "NAME", `Deletes an environment and everything in it: its APIs, clients, secrets, signing keys,
trust policies, revocations and console sessions. Its tokens stop being accepted. It first
shows what would be deleted, then asks you to type the environment's name (on a terminal)
unless --yes. The default environment cannot be deleted.`)
	f.BoolVar(&yes, "yes", false, "delete without asking")
	conn := deploymentConn(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if name == defaultEnv {
		return errors.New("the default environment cannot be deleted")
	}
	ac, err := conn.connectDeployment(ctx)
	if err != nil {
		return err
	}
	d, err := ac.requestDeletion(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Deleting environment %s deletes %s.\n", name, d.willDelete())
	if !yes {
		if e.stdin == nil || !e.interactive {
			return fmt.Errorf("environment %s was not deleted: pass --yes to delete it (standard input is not a terminal to confirm on)", name)
		}
		fmt.Fprintf(e.stderr, "Type the environment's name (%s) to delete it: ", name)
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if strings.TrimSpace(line) != name {
			return fmt.Errorf("environment %s was not deleted: the name typed does not match", name)
		}
	}
	if err := ac.deleteEnvironment(ctx, name, d.Confirmation); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted environment %s\n", name)
	return nil
}
