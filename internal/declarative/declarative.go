// Package declarative is m2mauth's configuration as code: a YAML file that
// names APIs and clients, the plan that makes a server match it, and the
// export of a server's state in the same format. Secrets are never in the
// file: a new client's generated secret is written where the file says (or
// printed once), and an imported secret is read from an environment
// variable or a file the file names.
//
// Clients are matched by client_id, APIs by identifier. The built-in admin
// API, grants for it, and clients holding such grants (admin clients) are
// outside the file's reach: export leaves them out, apply keeps them as
// they are, and --prune never deletes them.
package declarative

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// File is the configuration file.
type File struct {
	APIs    []API    `yaml:"apis,omitempty"`
	Clients []Client `yaml:"clients,omitempty"`
}

// API describes one API.
type API struct {
	Identifier    string   `yaml:"identifier"`
	Name          string   `yaml:"name"`
	Scopes        []string `yaml:"scopes,flow"`
	TokenLifetime Duration `yaml:"token_lifetime,omitempty"`
}

// Grant gives a client scopes of an API.
type Grant struct {
	Audience string   `yaml:"audience"`
	Scopes   []string `yaml:"scopes,flow"`
}

// SecretRef names where an existing secret is read from.
type SecretRef struct {
	Env  string `yaml:"env,omitempty"`
	File string `yaml:"file,omitempty"`
}

// Client describes one client.
type Client struct {
	ClientID        string            `yaml:"client_id"`
	Name            string            `yaml:"name"`
	Description     string            `yaml:"description,omitempty"`
	Grants          []Grant           `yaml:"grants,omitempty"`
	DefaultAudience string            `yaml:"default_audience,omitempty"`
	TokenLifetime   Duration          `yaml:"token_lifetime,omitempty"`
	Disabled        bool              `yaml:"disabled,omitempty"`
	RefreshTokens   bool              `yaml:"refresh_tokens,omitempty"`
	CustomClaims    map[string]any    `yaml:"custom_claims,omitempty"`
	Metadata        map[string]string `yaml:"metadata,omitempty"`
	// SecretFile is where the generated secret of a new client is written
	// (mode 0600); without it the secret is printed once.
	SecretFile string `yaml:"secret_file,omitempty"`
	// ImportSecret creates a new client with an existing secret.
	ImportSecret *SecretRef `yaml:"import_secret,omitempty"`
}

// Duration is a time.Duration written as "15m" in YAML.
type Duration time.Duration

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return shortDuration(time.Duration(d)), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration like 15m or 1h", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

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

// State is a server's current APIs and clients.
type State struct {
	APIs    []admin.APIResource
	Clients []admin.ClientResource
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
func Export(s State) File {
	builtin := s.builtinAPIs()
	var f File
	for _, a := range s.APIs {
		if a.Builtin {
			continue
		}
		f.APIs = append(f.APIs, API{Identifier: a.Identifier, Name: a.Name, Scopes: a.Scopes,
			TokenLifetime: Duration(time.Duration(a.TokenLifetimeSeconds) * time.Second)})
	}
	for _, c := range s.Clients {
		if isAdminClient(c, builtin) {
			continue
		}
		spec := Client{ClientID: c.ClientID, Name: c.Name, Description: c.Description, DefaultAudience: c.DefaultAudience,
			TokenLifetime: Duration(time.Duration(c.TokenLifetimeSeconds) * time.Second), Disabled: c.Disabled, RefreshTokens: c.RefreshTokens}
		for _, g := range c.Grants {
			spec.Grants = append(spec.Grants, Grant{Audience: g.Audience, Scopes: g.Scopes})
		}
		if len(c.CustomClaims) > 0 {
			spec.CustomClaims = c.CustomClaims
		}
		if len(c.Metadata) > 0 {
			spec.Metadata = c.Metadata
		}
		f.Clients = append(f.Clients, spec)
	}
	return f
}

// Change is one step of a plan.
type Change struct {
	Op    string // "create", "update" or "delete"
	Kind  string // "api" or "client"
	Key   string // identifier or client id
	Diffs []string
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
// must be applied: APIs created or updated, clients created or updated,
// then (with prune) clients and APIs the file does not name deleted.
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
	for _, a := range f.APIs {
		want := admin.APIInput{Identifier: a.Identifier, Name: a.Name, Scopes: nonNil(a.Scopes), TokenLifetimeSeconds: seconds(a.TokenLifetime)}
		cur, ok := apis[a.Identifier]
		if !ok {
			plan = append(plan, Change{Op: "create", Kind: "api", Key: a.Identifier, API: &want})
			continue
		}
		var diffs []string
		diffs = diff(diffs, "name", cur.Name, want.Name)
		diffs = diff(diffs, "scopes", sortedCopy(cur.Scopes), sortedCopy(want.Scopes))
		diffs = diff(diffs, "token_lifetime", shortDuration(time.Duration(cur.TokenLifetimeSeconds)*time.Second), shortDuration(time.Duration(want.TokenLifetimeSeconds)*time.Second))
		if len(diffs) > 0 {
			plan = append(plan, Change{Op: "update", Kind: "api", Key: a.Identifier, Diffs: diffs, API: &want})
		}
	}
	for i := range f.Clients {
		spec := &f.Clients[i]
		for _, g := range spec.Grants {
			if builtin[g.Audience] {
				errs = append(errs, fmt.Errorf("client %s: grants for the built-in API %s are managed with the CLI, not the file", spec.ClientID, g.Audience))
			}
		}
		want := admin.ClientInput{ClientID: spec.ClientID, Name: spec.Name, Description: spec.Description,
			DefaultAudience: spec.DefaultAudience, TokenLifetimeSeconds: seconds(spec.TokenLifetime), Disabled: spec.Disabled, RefreshTokens: spec.RefreshTokens,
			CustomClaims: normalize(spec.CustomClaims), Metadata: spec.Metadata, Grants: []admin.GrantInput{}}
		for _, g := range spec.Grants {
			want.Grants = append(want.Grants, admin.GrantInput{Audience: g.Audience, Scopes: nonNil(g.Scopes)})
		}
		cur, ok := clients[spec.ClientID]
		if !ok {
			plan = append(plan, Change{Op: "create", Kind: "client", Key: spec.ClientID, Client: &want, Spec: spec})
			continue
		}
		if isAdminClient(cur, builtin) {
			errs = append(errs, fmt.Errorf("client %s holds a grant for the built-in admin API: manage it with the CLI, not the file", spec.ClientID))
			continue
		}
		patch := map[string]any{}
		var diffs []string
		field := func(name string, cur, want any, value any) {
			if d := diff(nil, name, cur, want); len(d) > 0 {
				diffs = append(diffs, d...)
				patch[name] = value
			}
		}
		field("name", cur.Name, want.Name, want.Name)
		field("description", cur.Description, want.Description, want.Description)
		field("grants", grantText(cur.Grants), grantText(want.Grants), want.Grants)
		field("default_audience", cur.DefaultAudience, want.DefaultAudience, want.DefaultAudience)
		field("token_lifetime", shortDuration(time.Duration(cur.TokenLifetimeSeconds)*time.Second), shortDuration(time.Duration(want.TokenLifetimeSeconds)*time.Second), want.TokenLifetimeSeconds)
		field("disabled", cur.Disabled, want.Disabled, want.Disabled)
		field("refresh_tokens", cur.RefreshTokens, want.RefreshTokens, want.RefreshTokens)
		field("custom_claims", jsonText(normalize(cur.CustomClaims)), jsonText(want.CustomClaims), nonNilMap(want.CustomClaims))
		field("metadata", jsonText(cur.Metadata), jsonText(want.Metadata), nonNilStrMap(want.Metadata))
		if len(diffs) > 0 {
			plan = append(plan, Change{Op: "update", Kind: "client", Key: spec.ClientID, Diffs: diffs, ClientPatch: patch, Spec: spec})
		}
	}
	if prune {
		inFile := map[string]bool{}
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
	}
	return plan, errors.Join(errs...)
}

func seconds(d Duration) int64 { return int64(time.Duration(d) / time.Second) }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func nonNilStrMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func sortedCopy(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

// grantText is a canonical rendering of grants for comparison and display.
func grantText(gs []admin.GrantInput) string {
	parts := make([]string, 0, len(gs))
	for _, g := range gs {
		parts = append(parts, g.Audience+"="+strings.Join(sortedCopy(g.Scopes), " "))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// normalize round-trips claims through JSON so that YAML's and JSON's
// numbers and maps compare equal.
func normalize(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return m
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	if s := string(b); s != "null" && s != "{}" {
		return s
	}
	return "{}"
}

func diff(diffs []string, name string, cur, want any) []string {
	c, w := fmt.Sprintf("%v", cur), fmt.Sprintf("%v", want)
	if c == w {
		return diffs
	}
	return append(diffs, fmt.Sprintf("%s: %s → %s", name, quote(c), quote(w)))
}

func quote(s string) string {
	if s == "" || s == "[]" {
		return `""`
	}
	return s
}
