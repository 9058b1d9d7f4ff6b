// Package admin is the management of APIs and clients: a Service that
// validates and applies changes (shared by every management front end) and
// the authenticated JSON admin API over it (/admin/v1/…), whose errors are
// RFC 9457 problem details.
package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
)

// FieldError names an invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of an input.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

func (e *ValidationError) add(field, format string, args ...any) {
	e.Fields = append(e.Fields, FieldError{field, fmt.Sprintf(format, args...)})
}

func (e *ValidationError) err() error {
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}

// ConflictError is a change refused because of the current state; Detail
// says why in terms the user can act on.
type ConflictError struct{ Detail string }

func (e *ConflictError) Error() string { return e.Detail }

// Limits on management input.
const (
	maxNameLen       = 200
	maxDescLen       = 2000
	maxIdentifierLen = 255
	maxScopes        = 200
	maxGrants        = 100
	maxLifetime      = 7 * 24 * time.Hour
)

// Service applies management operations to the store.
type Service struct {
	store  store.Store
	hasher *secret.Hasher
	now    func() time.Time
}

// NewService returns a Service.
func NewService(st store.Store, hasher *secret.Hasher, now func() time.Time) *Service {
	return &Service{store: st, hasher: hasher, now: now}
}

// APIInput creates an API.
type APIInput struct {
	Identifier           string   `json:"identifier"`
	Name                 string   `json:"name"`
	Scopes               []string `json:"scopes"`
	TokenLifetimeSeconds int64    `json:"token_lifetime_seconds"`
}

func checkText(v *ValidationError, field, s string, required bool, max int) {
	switch {
	case required && strings.TrimSpace(s) == "":
		v.add(field, "is required")
	case !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' }):
		v.add(field, "must be valid UTF-8 text without control characters")
	case utf8.RuneCountInString(s) > max:
		v.add(field, "must be at most %d characters", max)
	}
}

func checkLifetime(v *ValidationError, field string, seconds int64) {
	if seconds < 0 || (seconds > 0 && seconds < 60) || time.Duration(seconds)*time.Second > maxLifetime {
		v.add(field, "must be 0 (default) or between 60 and %d seconds", int64(maxLifetime/time.Second))
	}
}

// validIdentifier: an API identifier is the aud value, compared exactly:
// printable ASCII without spaces (usually an https URL).
func validIdentifier(s string) bool {
	if s == "" || len(s) > maxIdentifierLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// CreateAPI validates and stores a new API.
func (s *Service) CreateAPI(ctx context.Context, in APIInput) (store.API, error) {
	var v ValidationError
	if !validIdentifier(in.Identifier) {
		v.add("identifier", "is required: up to %d printable ASCII characters without spaces, e.g. https://api.example.com", maxIdentifierLen)
	}
	checkText(&v, "name", in.Name, true, maxNameLen)
	in.Scopes = dedupe(in.Scopes)
	if len(in.Scopes) > maxScopes {
		v.add("scopes", "at most %d scopes", maxScopes)
	}
	for _, sc := range in.Scopes {
		if !oauth.ValidScopeToken(sc) {
			v.add("scopes", "%q is not a valid scope: use printable ASCII without spaces, quotes or backslashes", sc)
		}
	}
	checkLifetime(&v, "token_lifetime_seconds", in.TokenLifetimeSeconds)
	if err := v.err(); err != nil {
		return store.API{}, err
	}
	now := s.now().UTC()
	a := store.API{
		ID: secret.NewID("api_"), Identifier: in.Identifier, Name: in.Name, Scopes: in.Scopes,
		TokenLifetime: time.Duration(in.TokenLifetimeSeconds) * time.Second, CreatedAt: now, UpdatedAt: now,
	}
	if err := s.store.CreateAPI(ctx, a); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.API{}, &ConflictError{fmt.Sprintf("an API with identifier %q already exists", in.Identifier)}
		}
		return store.API{}, err
	}
	return a, nil
}

// GetAPI returns one API.
func (s *Service) GetAPI(ctx context.Context, identifier string) (store.API, error) {
	return s.store.GetAPI(ctx, identifier)
}

// ListAPIs returns every API.
func (s *Service) ListAPIs(ctx context.Context) ([]store.API, error) { return s.store.ListAPIs(ctx) }

// DeleteAPI deletes an API no client holds a grant for.
func (s *Service) DeleteAPI(ctx context.Context, identifier string) error {
	api, err := s.store.GetAPI(ctx, identifier)
	if err != nil {
		return err
	}
	if api.Builtin != "" {
		return &ConflictError{"the " + api.Builtin + " API is built in and cannot be deleted"}
	}
	if err := s.store.DeleteAPI(ctx, identifier); errors.Is(err, store.ErrConflict) {
		return &ConflictError{"clients hold grants for this API: delete those clients or their grants first"}
	} else if err != nil {
		return err
	}
	return nil
}

// GrantInput grants a client an API's scopes.
type GrantInput struct {
	Audience string   `json:"audience"`
	Scopes   []string `json:"scopes"`
}

// ClientInput creates a client.
type ClientInput struct {
	Name                 string       `json:"name"`
	Description          string       `json:"description"`
	Grants               []GrantInput `json:"grants"`
	DefaultAudience      string       `json:"default_audience"`
	TokenLifetimeSeconds int64        `json:"token_lifetime_seconds"`
}

// CreateClient validates and stores a new client with a fresh secret, and
// returns the secret in clear: the only time it is ever available.
func (s *Service) CreateClient(ctx context.Context, in ClientInput) (store.Client, string, error) {
	var v ValidationError
	checkText(&v, "name", in.Name, true, maxNameLen)
	checkText(&v, "description", in.Description, false, maxDescLen)
	checkLifetime(&v, "token_lifetime_seconds", in.TokenLifetimeSeconds)
	if len(in.Grants) > maxGrants {
		v.add("grants", "at most %d grants", maxGrants)
	}
	grants := make([]store.Grant, 0, len(in.Grants))
	for i, g := range in.Grants {
		field := fmt.Sprintf("grants[%d]", i)
		if slices.ContainsFunc(in.Grants[:i], func(o GrantInput) bool { return o.Audience == g.Audience }) {
			v.add(field+".audience", "API %q is granted twice", g.Audience)
			continue
		}
		api, err := s.store.GetAPI(ctx, g.Audience)
		if errors.Is(err, store.ErrNotFound) {
			v.add(field+".audience", "no API has identifier %q", g.Audience)
			continue
		}
		if err != nil {
			return store.Client{}, "", err
		}
		scopes := dedupe(g.Scopes)
		for _, sc := range scopes {
			if !slices.Contains(api.Scopes, sc) {
				v.add(field+".scopes", "API %q does not define scope %q", g.Audience, sc)
			}
		}
		grants = append(grants, store.Grant{Audience: g.Audience, Scopes: scopes})
	}
	if in.DefaultAudience != "" && !slices.ContainsFunc(in.Grants, func(g GrantInput) bool { return g.Audience == in.DefaultAudience }) {
		v.add("default_audience", "must be one of the granted APIs")
	}
	if err := v.err(); err != nil {
		return store.Client{}, "", err
	}
	now := s.now().UTC()
	plain := secret.Generate()
	c := store.Client{
		ID: secret.NewID(secret.ClientIDPrefix), Name: in.Name, Description: in.Description,
		DefaultAudience: in.DefaultAudience, TokenLifetime: time.Duration(in.TokenLifetimeSeconds) * time.Second,
		Grants:    grants,
		Secrets:   []store.Secret{{ID: secret.NewID("sec_"), Hash: s.hasher.Hash(plain), Hint: secret.Hint(plain), CreatedAt: now}},
		CreatedAt: now, UpdatedAt: now,
	}
	if err := s.store.CreateClient(ctx, c); errors.Is(err, store.ErrConflict) {
		return store.Client{}, "", &ConflictError{"a granted API was deleted while the client was being created; retry"}
	} else if err != nil {
		return store.Client{}, "", err
	}
	return c, plain, nil
}

// GetClient returns one client.
func (s *Service) GetClient(ctx context.Context, id string) (store.Client, error) {
	return s.store.GetClient(ctx, id)
}

// ListClients returns every client.
func (s *Service) ListClients(ctx context.Context) ([]store.Client, error) {
	return s.store.ListClients(ctx)
}

// DeleteClient deletes a client and its secrets.
func (s *Service) DeleteClient(ctx context.Context, id string) error {
	return s.store.DeleteClient(ctx, id)
}

func dedupe(in []string) []string {
	out := []string{}
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Built-in admin API: its scope, and the Builtin tag of its row.
const (
	AdminScope   = "admin"
	adminBuiltin = "admin"
)

// Bootstrap creates the built-in admin API (identifier adminAudience) and
// the bootstrap admin client, once per database. It returns the client's
// credentials when this call created them; created is false when they
// already existed (made by an earlier start or another replica).
func (s *Service) Bootstrap(ctx context.Context, adminAudience string) (clientID, clientSecret string, created bool, err error) {
	now := s.now().UTC()
	plain := secret.Generate()
	api := store.API{
		ID: secret.NewID("api_"), Identifier: adminAudience, Name: "m2mauth admin API",
		Scopes: []string{AdminScope}, TokenLifetime: 15 * time.Minute, Builtin: adminBuiltin, CreatedAt: now, UpdatedAt: now,
	}
	c := store.Client{
		ID: secret.NewID(secret.ClientIDPrefix), Name: "bootstrap admin", Description: "created on first start; manages this server",
		DefaultAudience: adminAudience, Grants: []store.Grant{{Audience: adminAudience, Scopes: []string{AdminScope}}},
		Secrets:   []store.Secret{{ID: secret.NewID("sec_"), Hash: s.hasher.Hash(plain), Hint: secret.Hint(plain), CreatedAt: now}},
		CreatedAt: now, UpdatedAt: now,
	}
	created, err = s.store.InitBootstrap(ctx, store.Bootstrap{AdminAPI: api, AdminClient: c})
	if err != nil || !created {
		return "", "", false, err
	}
	return c.ID, plain, true, nil
}
