// Package declarative is m2mauth's configuration as code: a YAML file that
// names APIs and clients, the plan that makes a server match it, and the
// export of a server's state in the same format. Secrets are never in the
// file: a new client's generated secret is written where the file says (or
// printed once), and an imported secret is read from an environment
// variable or a file the file names.
//
// An entry of the file is the admin API's input for a trust policy, an API
// or a client (admin.TrustPolicyInput, admin.APIInput, admin.ClientInput)
// under the same names, lifetimes in seconds written as durations and JWK
// Sets as YAML: a field the admin API gains is in the file, the export and
// the plan with no change here.
//
// An entry is the whole of what it describes: a field it leaves out means
// that field's empty value, and apply makes it so (an API without
// scope_descriptions ends up with none), showing the change in the plan
// like any other.
//
// Clients are matched by client_id, APIs by identifier. The built-in admin
// API, grants for it, and clients holding such grants (admin clients) are
// outside the file's reach: export leaves them out, apply keeps them as
// they are, and --prune never deletes them.
//
// A file describes one environment (an authorization server of the
// deployment) or all of them: with environment: NAME (and that
// environment's display_name, signing_alg and key_rotation_period) it is
// for NAME, which apply creates if missing; with environments: it lists
// every environment, each with its name, settings and content, and apply
// plans each in turn (PlanEnvironments). Environments are deleted only when
// asked to on top of prune, and the default environment never.
package declarative

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// File is the configuration file, in one of three shapes: the content of
// one environment (trust policies, APIs, clients), applied to the
// environment the command targets; the same with environment: NAME (and
// that environment's settings), applied to NAME; or environments: with
// every environment of a deployment.
type File struct {
	// Environment names the environment the file is for ("": whichever
	// the command targets); Settings are its settings.
	Environment string   `yaml:"environment,omitempty"`
	Settings    Settings `yaml:",inline"`
	// Environments is a whole deployment: every environment in it.
	Environments []Environment `yaml:"environments,omitempty"`

	TrustPolicies []TrustPolicy `yaml:"trust_policies,omitempty"`
	APIs          []API         `yaml:"apis,omitempty"`
	Clients       []Client      `yaml:"clients,omitempty"`
}

// Environment is one environment of a file with environments: its name,
// its settings and its content.
type Environment struct {
	Name          string        `yaml:"name"`
	Settings      Settings      `yaml:",inline"`
	TrustPolicies []TrustPolicy `yaml:"trust_policies,omitempty"`
	APIs          []API         `yaml:"apis,omitempty"`
	Clients       []Client      `yaml:"clients,omitempty"`
}

// Content is the file of the environment's content alone, as Plan takes it.
func (e Environment) Content() File {
	return File{TrustPolicies: e.TrustPolicies, APIs: e.APIs, Clients: e.Clients}
}

// Content is the file's content alone (no environment, no settings).
func (f File) Content() File {
	return File{TrustPolicies: f.TrustPolicies, APIs: f.APIs, Clients: f.Clients}
}

// Settings are an environment's own settings. One the file leaves out keeps
// its value (a new environment gets the server's default, and its name as
// display name): unlike an entry's fields, they have no empty value.
type Settings struct {
	DisplayName string `yaml:"display_name,omitempty"`
	SigningAlg  string `yaml:"signing_alg,omitempty"`
	// KeyRotationPeriod is in seconds, written as a duration (720h).
	KeyRotationPeriod Seconds `yaml:"key_rotation_period,omitempty"`
}

func (s Settings) isZero() bool { return s == Settings{} }

// Seconds is a number of seconds written as a duration (15m, 720h).
type Seconds int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Seconds) UnmarshalYAML(n *yaml.Node) error {
	var v reflect.Value = reflect.New(reflect.TypeOf(int64(0))).Elem()
	if errs := decodeValue(n, v, true); len(errs) > 0 {
		return typeError(errs)
	}
	*s = Seconds(v.Int())
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (s Seconds) MarshalYAML() (any, error) {
	return encodeValue(reflect.ValueOf(int64(s)), true)
}

// TrustPolicy describes one trust policy: the admin API's input for it.
type TrustPolicy struct {
	admin.TrustPolicyInput
}

// API describes one API: the admin API's input for it, in YAML.
type API struct {
	admin.APIInput
}

// SecretRef names where an existing secret is read from.
type SecretRef struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

// Client describes one client: the admin API's input for it, in YAML,
// except its secret, which the file never holds.
type Client struct {
	admin.ClientInput
	// SecretFile is where the generated secret of a new client is written
	// (mode 0600); without it the secret is printed once.
	SecretFile string `json:"secret_file,omitempty"`
	// ImportSecret creates a new client with an existing secret.
	ImportSecret *SecretRef `json:"import_secret,omitempty"`
}

// notInFile are the client input's fields the file refuses.
var notInFile = map[string]string{
	"client_secret": "secrets never appear in the file: import_secret reads an existing one from an environment variable or a file",
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *TrustPolicy) UnmarshalYAML(n *yaml.Node) error {
	return typeError(decodeStruct(n, reflect.ValueOf(p).Elem(), nil))
}

// MarshalYAML implements yaml.Marshaler.
func (p TrustPolicy) MarshalYAML() (any, error) { return encodeStruct(reflect.ValueOf(p), nil) }

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *API) UnmarshalYAML(n *yaml.Node) error {
	return typeError(decodeStruct(n, reflect.ValueOf(a).Elem(), nil))
}

// MarshalYAML implements yaml.Marshaler.
func (a API) MarshalYAML() (any, error) { return encodeStruct(reflect.ValueOf(a), nil) }

// UnmarshalYAML implements yaml.Unmarshaler.
func (c *Client) UnmarshalYAML(n *yaml.Node) error {
	return typeError(decodeStruct(n, reflect.ValueOf(c).Elem(), notInFile))
}

// MarshalYAML implements yaml.Marshaler.
func (c Client) MarshalYAML() (any, error) { return encodeStruct(reflect.ValueOf(c), notInFile) }

// Parse reads a configuration file strictly: unknown fields, duplicate
// keys and repeated identifiers are errors, and so are a file mixing
// environments: with anything but them, settings without environment:, and
// environment names that cannot be one.
func Parse(b []byte) (File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return File{}, err
	}
	var errs []error
	switch {
	case f.Environments != nil && (f.Environment != "" || !f.Settings.isZero() || len(f.TrustPolicies)+len(f.APIs)+len(f.Clients) > 0):
		errs = append(errs, errors.New("a file with environments: holds everything under them: move environment, display_name, signing_alg, key_rotation_period, trust_policies, apis and clients into its entries"))
	case f.Environment == "" && !f.Settings.isZero():
		errs = append(errs, errors.New("display_name, signing_alg and key_rotation_period are an environment's settings: name the environment with environment: NAME"))
	case f.Environment != "":
		if err := CheckEnvironmentName(f.Environment); err != nil {
			errs = append(errs, fmt.Errorf("environment: %w", err))
		}
	}
	errs = append(errs, checkContent(f.Content(), "")...)
	seen := map[string]int{}
	for i, e := range f.Environments {
		where := fmt.Sprintf("environments[%d]", i)
		switch {
		case e.Name == "":
			errs = append(errs, fmt.Errorf("%s: name is required", where))
		case CheckEnvironmentName(e.Name) != nil:
			errs = append(errs, fmt.Errorf("%s: %w", where, CheckEnvironmentName(e.Name)))
		default:
			if j, dup := seen[e.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: environment %s is named twice (also environments[%d])", where, e.Name, j))
			}
			seen[e.Name] = i
			where += " (" + e.Name + ")"
		}
		errs = append(errs, checkContent(e.Content(), where+": ")...)
	}
	return f, errors.Join(errs...)
}

// DefaultEnvironment is the name of the default environment: the
// deployment's own URLs. It is never created or deleted.
const DefaultEnvironment = "default"

var envName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// CheckEnvironmentName refuses what cannot be an environment's name (a DNS
// label).
func CheckEnvironmentName(name string) error {
	if !envName.MatchString(name) {
		return fmt.Errorf("%q is not an environment name (a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')", name)
	}
	return nil
}

// checkContent checks one environment's entries: identifiers present and
// not repeated, secrets referenced one way. where prefixes the messages.
func checkContent(f File, where string) []error {
	var errs []error
	seen := map[string]bool{}
	for i, a := range f.APIs {
		if a.Identifier == "" {
			errs = append(errs, fmt.Errorf("%sapis[%d]: identifier is required", where, i))
		} else if seen["api "+a.Identifier] {
			errs = append(errs, fmt.Errorf("%sapis[%d]: API %s is named twice", where, i, a.Identifier))
		}
		seen["api "+a.Identifier] = true
	}
	for i, c := range f.Clients {
		if c.ClientID == "" {
			errs = append(errs, fmt.Errorf("%sclients[%d]: client_id is required (it is how apply recognises the client)", where, i))
		} else if seen["client "+c.ClientID] {
			errs = append(errs, fmt.Errorf("%sclients[%d]: client %s is named twice", where, i, c.ClientID))
		}
		seen["client "+c.ClientID] = true
		if c.ImportSecret != nil && (c.ImportSecret.Env == "") == (c.ImportSecret.File == "") {
			errs = append(errs, fmt.Errorf("%sclients[%d]: import_secret needs exactly one of env and file", where, i))
		}
		if c.ImportSecret != nil && c.SecretFile != "" {
			errs = append(errs, fmt.Errorf("%sclients[%d]: secret_file is for generated secrets; an imported secret is already known", where, i))
		}
	}
	return errs
}

// Marshal writes the file as YAML.
func Marshal(f File) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// State is a server's current trust policies, APIs and clients, and its
// issuer (which defaults depend on).
type State struct {
	Issuer        string
	TrustPolicies []admin.TrustPolicyResource
	APIs          []admin.APIResource
	Clients       []admin.ClientResource
}

func (s State) builtinAPIs() map[string]bool {
	out := map[string]bool{}
	for _, a := range s.APIs {
		if a.Builtin {
			out[a.Identifier] = true
		}
	}
	return out
}

// isAdminClient reports whether a client holds a grant for a built-in API.
func isAdminClient(c admin.ClientResource, builtin map[string]bool) bool {
	return slices.ContainsFunc(c.Grants, func(g admin.GrantInput) bool { return builtin[g.Audience] })
}

// Export returns the state as a file (without secrets, admin clients and
// built-in APIs).
func Export(s State) (File, error) {
	builtin := s.builtinAPIs()
	var f File
	for _, p := range s.TrustPolicies {
		in, err := inputOf[admin.TrustPolicyInput](p)
		if err != nil {
			return File{}, fmt.Errorf("trust policy %s: %w", p.Name, err)
		}
		if in.Audience == s.Issuer {
			in.Audience = "" // the default: the issuer of whichever server applies the file
		}
		f.TrustPolicies = append(f.TrustPolicies, TrustPolicy{in})
	}
	for _, a := range s.APIs {
		if a.Builtin {
			continue
		}
		in, err := inputOf[admin.APIInput](a)
		if err != nil {
			return File{}, fmt.Errorf("API %s: %w", a.Identifier, err)
		}
		f.APIs = append(f.APIs, API{in})
	}
	for _, c := range s.Clients {
		if isAdminClient(c, builtin) {
			continue
		}
		in, err := inputOf[admin.ClientInput](c)
		if err != nil {
			return File{}, fmt.Errorf("client %s: %w", c.ClientID, err)
		}
		in.ClientSecret = ""
		f.Clients = append(f.Clients, Client{ClientInput: in})
	}
	return f, nil
}

// Change is one step of a plan.
type Change struct {
	Op    string // "create", "update" or "delete"
	Kind  string // "environment", "trust policy", "api" or "client"
	Key   string // name, identifier or client id
	Diffs []string
	// For trust policy creates and updates: its full desired state.
	TrustPolicy *admin.TrustPolicyInput
	// For API creates and updates: the API's full desired state.
	API *admin.APIInput
	// For client creates: the client to create (without its secret); for
	// client updates: the merge patch.
	Client      *admin.ClientInput
	ClientPatch map[string]any
	Spec        *Client
	// For environment creates: its settings; for updates: the settings
	// that change.
	Settings *Settings
}

// String renders the change as a diff line with its field changes.
func (c Change) String() string {
	sign := map[string]string{"create": "+", "update": "~", "delete": "-"}[c.Op]
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", sign, c.Kind, c.Key)
	for _, d := range c.Diffs {
		b.WriteString("\n    " + d)
	}
	return b.String()
}

// Plan returns the changes that make the server match f, in the order they
// must be applied: trust policies and APIs created or updated, clients
// created or updated, then (with prune) clients, APIs and trust policies
// the file does not name deleted.
func Plan(f File, s State, prune bool) ([]Change, error) {
	builtin := s.builtinAPIs()
	var errs []error
	for _, a := range f.APIs {
		if builtin[a.Identifier] {
			errs = append(errs, fmt.Errorf("API %s is built in: leave it out of the file", a.Identifier))
		}
	}
	apis := map[string]admin.APIResource{}
	for _, a := range s.APIs {
		apis[a.Identifier] = a
	}
	clients := map[string]admin.ClientResource{}
	for _, c := range s.Clients {
		clients[c.ClientID] = c
	}
	var plan []Change
	policies := map[string]admin.TrustPolicyResource{}
	for _, p := range s.TrustPolicies {
		policies[p.Name] = p
	}
	for i := range f.TrustPolicies {
		want := f.TrustPolicies[i].TrustPolicyInput.WithDefaults(s.Issuer)
		cur, ok := policies[want.Name]
		if !ok {
			plan = append(plan, Change{Op: "create", Kind: "trust policy", Key: want.Name, TrustPolicy: &want})
			continue
		}
		have, err := inputOf[admin.TrustPolicyInput](cur)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust policy %s: %w", want.Name, err))
			continue
		}
		// An update replaces the whole policy (PUT).
		if diffs, _ := compare(have.WithDefaults(s.Issuer), want, "name"); len(diffs) > 0 {
			plan = append(plan, Change{Op: "update", Kind: "trust policy", Key: want.Name, Diffs: diffs, TrustPolicy: &want})
		}
	}
	for i := range f.APIs {
		want := f.APIs[i].APIInput
		want.Scopes = nonNil(want.Scopes)
		cur, ok := apis[want.Identifier]
		if !ok {
			plan = append(plan, Change{Op: "create", Kind: "api", Key: want.Identifier, API: &want})
			continue
		}
		have, err := inputOf[admin.APIInput](cur)
		if err != nil {
			errs = append(errs, fmt.Errorf("API %s: %w", want.Identifier, err))
			continue
		}
		// An update replaces the whole API (PUT): the patch is not needed.
		if diffs, _ := compare(have, want, "identifier"); len(diffs) > 0 {
			plan = append(plan, Change{Op: "update", Kind: "api", Key: want.Identifier, Diffs: diffs, API: &want})
		}
	}
	for i := range f.Clients {
		spec := &f.Clients[i]
		for _, g := range spec.Grants {
			if builtin[g.Audience] {
				errs = append(errs, fmt.Errorf("client %s: grants for the built-in API %s are managed with the CLI, not the file", spec.ClientID, g.Audience))
			}
		}
		want := spec.ClientInput
		want.ClientSecret = ""
		if want.Grants == nil {
			want.Grants = []admin.GrantInput{}
		}
		cur, ok := clients[spec.ClientID]
		if !ok {
			plan = append(plan, Change{Op: "create", Kind: "client", Key: spec.ClientID, Client: &want, Spec: spec})
			continue
		}
		// A secret's lifetime applies when the secret is made (on
		// creation); an existing client's secrets are rotated instead.
		want.SecretLifetimeSeconds = 0
		if isAdminClient(cur, builtin) {
			errs = append(errs, fmt.Errorf("client %s holds a grant for the built-in admin API: manage it with the CLI, not the file", spec.ClientID))
			continue
		}
		have, err := inputOf[admin.ClientInput](cur)
		if err != nil {
			errs = append(errs, fmt.Errorf("client %s: %w", spec.ClientID, err))
			continue
		}
		for _, in := range []*admin.ClientInput{&have, &want} {
			if in.TokenEndpointAuthMethod == "" {
				in.TokenEndpointAuthMethod = admin.AuthSecretBasic // the default, named or not
			}
		}
		if diffs, patch := compare(have, want, "client_id", "client_secret"); len(diffs) > 0 {
			plan = append(plan, Change{Op: "update", Kind: "client", Key: spec.ClientID, Diffs: diffs, ClientPatch: patch, Spec: spec})
		}
	}
	errs = append(errs, checkBindings(f, s, builtin, prune)...)
	if prune {
		inFile := map[string]bool{}
		for _, p := range f.TrustPolicies {
			inFile["trust policy "+p.Name] = true
		}
		for _, c := range f.Clients {
			inFile["client "+c.ClientID] = true
		}
		for _, a := range f.APIs {
			inFile["api "+a.Identifier] = true
		}
		for _, c := range s.Clients {
			if !inFile["client "+c.ClientID] && !isAdminClient(c, builtin) {
				plan = append(plan, Change{Op: "delete", Kind: "client", Key: c.ClientID})
			}
		}
		for _, a := range s.APIs {
			if !inFile["api "+a.Identifier] && !a.Builtin {
				plan = append(plan, Change{Op: "delete", Kind: "api", Key: a.Identifier})
			}
		}
		for _, p := range s.TrustPolicies {
			if !inFile["trust policy "+p.Name] {
				plan = append(plan, Change{Op: "delete", Kind: "trust policy", Key: p.Name})
			}
		}
	}
	return plan, errors.Join(errs...)
}

// checkBindings refuses, while planning, a client federation binding that
// names a trust policy the apply would leave missing: one neither the file
// nor the server has, or (with prune) one the file does not declare, which
// prune would delete while a kept client is bound to it (the server would
// refuse that delete half-way through the apply).
func checkBindings(f File, s State, builtin map[string]bool, prune bool) []error {
	declared, onServer := map[string]bool{}, map[string]bool{}
	for _, p := range f.TrustPolicies {
		declared[p.Name] = true
	}
	for _, p := range s.TrustPolicies {
		onServer[p.Name] = true
	}
	var errs []error
	check := func(client string, bindings []admin.FederatedIdentityInput) {
		for _, b := range bindings {
			switch {
			case declared[b.Policy]:
			case !onServer[b.Policy]:
				errs = append(errs, fmt.Errorf("client %s: trust policy %s is neither in the file nor on the server", client, b.Policy))
			case prune:
				errs = append(errs, fmt.Errorf("client %s is bound to trust policy %s, which the file does not declare: --prune would delete it; declare the policy or drop the binding", client, b.Policy))
			}
		}
	}
	inFile := map[string]bool{}
	for _, c := range f.Clients {
		inFile[c.ClientID] = true
		check(c.ClientID, c.Federation)
	}
	if prune {
		// Admin clients stay whatever the file says.
		for _, c := range s.Clients {
			if !inFile[c.ClientID] && isAdminClient(c, builtin) {
				check(c.ClientID, c.Federation)
			}
		}
	}
	return errs
}

// compare returns the differences of two values of an admin input type,
// field by field except the fields skip names, as diff lines and as a merge
// patch (RFC 7396) that makes have into want.
func compare[T any](have, want T, skip ...string) (diffs []string, patch map[string]any) {
	hv, wv := reflect.ValueOf(have), reflect.ValueOf(want)
	patch = map[string]any{}
	for _, f := range fieldsOf(hv.Type()) {
		if slices.Contains(skip, f.json) {
			continue
		}
		h, w := hv.FieldByIndex(f.index), wv.FieldByIndex(f.index)
		if canonical(h) == canonical(w) {
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s: %s → %s", f.key, display(h, f.duration), display(w, f.duration)))
		patch[f.json] = patchValue(w)
	}
	return diffs, patch
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Target is one environment a file applies to: its name ("" for the
// environment the command targets without naming it), the settings the
// file gives it and its content.
type Target struct {
	Name     string
	Settings Settings
	Content  File
}

// Targets returns the environments the file applies to, in the file's
// order. env is the environment the command names ("": none): a file for
// one environment applies to it; a file naming its environment must name
// the same one; a file with environments: applies to each and takes none.
func (f File) Targets(env string) ([]Target, error) {
	switch {
	case f.Environments != nil:
		if env != "" {
			return nil, fmt.Errorf("the file holds environments: it applies to each of them, not to --env %s", env)
		}
		out := make([]Target, 0, len(f.Environments))
		for _, e := range f.Environments {
			out = append(out, Target{Name: e.Name, Settings: e.Settings, Content: e.Content()})
		}
		return out, nil
	case f.Environment != "":
		if env != "" && env != f.Environment {
			return nil, fmt.Errorf("the file is for environment %s, not --env %s", f.Environment, env)
		}
		return []Target{{Name: f.Environment, Settings: f.Settings, Content: f.Content()}}, nil
	}
	return []Target{{Name: env, Content: f.Content()}}, nil
}

// Deployment is what the server has of the environments a plan touches.
type Deployment struct {
	// Environments holds every environment's settings by name; nil when
	// unknown (an environment's own admin cannot read them): settings are
	// then left as they are and no environment is created or deleted.
	Environments map[string]Settings
	// States holds the state of each existing environment a target names
	// (under "" the one of a target without a name).
	States map[string]State
}

// EnvironmentPlan is the plan of one environment.
type EnvironmentPlan struct {
	Name string // "" for the environment the command targets without naming it
	// New is set when the environment does not exist: the plan creates it.
	New bool
	// Changes are its creation or settings update first, then its
	// content's changes (Plan's order); or its deletion alone.
	Changes []Change
}

// PlanEnvironments returns the plan of each target in turn: a missing
// environment is created (with its name as display name unless the file
// gives one), an existing one's settings the file gives are updated, and
// its content is planned as Plan does. With pruneEnvironments (which needs
// prune), every environment of the server that no target names is deleted
// at the end, except the default one.
func PlanEnvironments(targets []Target, d Deployment, prune, pruneEnvironments bool) ([]EnvironmentPlan, error) {
	var errs []error
	if pruneEnvironments && !prune {
		errs = append(errs, errors.New("deleting environments (prune environments) needs prune too"))
	}
	if pruneEnvironments && d.Environments == nil {
		errs = append(errs, errors.New("the server's environments are unknown: environments cannot be pruned"))
	}
	var out []EnvironmentPlan
	named := map[string]bool{}
	for _, t := range targets {
		named[t.Name] = true
		ep := EnvironmentPlan{Name: t.Name}
		if t.Name != "" && d.Environments != nil {
			have, ok := d.Environments[t.Name]
			switch {
			case !ok && t.Name == DefaultEnvironment:
				errs = append(errs, errors.New("the server lists no default environment"))
			case !ok:
				want := t.Settings
				if want.DisplayName == "" {
					want.DisplayName = t.Name
				}
				ep.New = true
				ep.Changes = append(ep.Changes, Change{Op: "create", Kind: "environment", Key: t.Name, Diffs: settingsLines(want), Settings: &want})
			default:
				if diffs, patch := compareSettings(have, t.Settings); len(diffs) > 0 {
					ep.Changes = append(ep.Changes, Change{Op: "update", Kind: "environment", Key: t.Name, Diffs: diffs, Settings: &patch})
				}
			}
		}
		content, err := Plan(t.Content, d.States[t.Name], prune)
		if err != nil {
			where := "environment " + t.Name
			if t.Name == "" {
				where = "the environment"
			}
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		ep.Changes = append(ep.Changes, content...)
		out = append(out, ep)
	}
	if pruneEnvironments && d.Environments != nil {
		var gone []string
		for name := range d.Environments {
			if !named[name] && name != DefaultEnvironment {
				gone = append(gone, name)
			}
		}
		slices.Sort(gone)
		for _, name := range gone {
			out = append(out, EnvironmentPlan{Name: name, Changes: []Change{{Op: "delete", Kind: "environment", Key: name}}})
		}
	}
	return out, errors.Join(errs...)
}

// settingsLines lists the settings given, as a creation's plan shows them.
func settingsLines(s Settings) []string {
	var out []string
	if s.DisplayName != "" {
		out = append(out, "display_name: "+strconv.Quote(s.DisplayName))
	}
	if s.SigningAlg != "" {
		out = append(out, "signing_alg: "+s.SigningAlg)
	}
	if s.KeyRotationPeriod != 0 {
		out = append(out, "key_rotation_period: "+shortDuration(time.Duration(s.KeyRotationPeriod)*time.Second))
	}
	return out
}

// compareSettings returns the differences of the settings want gives from
// have, as diff lines and as the settings that change.
func compareSettings(have, want Settings) (diffs []string, patch Settings) {
	if want.DisplayName != "" && want.DisplayName != have.DisplayName {
		diffs = append(diffs, fmt.Sprintf("display_name: %q → %q", have.DisplayName, want.DisplayName))
		patch.DisplayName = want.DisplayName
	}
	if want.SigningAlg != "" && want.SigningAlg != have.SigningAlg {
		diffs = append(diffs, fmt.Sprintf("signing_alg: %s → %s", orDefault(have.SigningAlg), want.SigningAlg))
		patch.SigningAlg = want.SigningAlg
	}
	if want.KeyRotationPeriod != 0 && want.KeyRotationPeriod != have.KeyRotationPeriod {
		d := func(s Seconds) string {
			if s == 0 {
				return "default"
			}
			return shortDuration(time.Duration(s) * time.Second)
		}
		diffs = append(diffs, fmt.Sprintf("key_rotation_period: %s → %s", d(have.KeyRotationPeriod), d(want.KeyRotationPeriod)))
		patch.KeyRotationPeriod = want.KeyRotationPeriod
	}
	return diffs, patch
}

func orDefault(s string) string {
	if s == "" {
		return "default"
	}
	return s
}
