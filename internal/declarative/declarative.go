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
package declarative

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// File is the configuration file.
type File struct {
	TrustPolicies []TrustPolicy `yaml:"trust_policies,omitempty"`
	APIs          []API         `yaml:"apis,omitempty"`
	Clients       []Client      `yaml:"clients,omitempty"`
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
// keys and repeated identifiers are errors.
func Parse(b []byte) (File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return File{}, err
	}
	var errs []error
	seen := map[string]bool{}
	for i, a := range f.APIs {
		if a.Identifier == "" {
			errs = append(errs, fmt.Errorf("apis[%d]: identifier is required", i))
		} else if seen["api "+a.Identifier] {
			errs = append(errs, fmt.Errorf("apis[%d]: API %s is named twice", i, a.Identifier))
		}
		seen["api "+a.Identifier] = true
	}
	for i, c := range f.Clients {
		if c.ClientID == "" {
			errs = append(errs, fmt.Errorf("clients[%d]: client_id is required (it is how apply recognises the client)", i))
		} else if seen["client "+c.ClientID] {
			errs = append(errs, fmt.Errorf("clients[%d]: client %s is named twice", i, c.ClientID))
		}
		seen["client "+c.ClientID] = true
		if c.ImportSecret != nil && (c.ImportSecret.Env == "") == (c.ImportSecret.File == "") {
			errs = append(errs, fmt.Errorf("clients[%d]: import_secret needs exactly one of env and file", i))
		}
		if c.ImportSecret != nil && c.SecretFile != "" {
			errs = append(errs, fmt.Errorf("clients[%d]: secret_file is for generated secrets; an imported secret is already known", i))
		}
	}
	return f, errors.Join(errs...)
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
	Kind  string // "trust policy", "api" or "client"
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
