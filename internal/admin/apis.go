package admin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/scope"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
)

// APIInput creates an API, or replaces its mutable fields (PUT).
type APIInput struct {
	Identifier string   `json:"identifier"`
	Name       string   `json:"name"`
	Scopes     []string `json:"scopes"`
	// ScopeDescriptions describes some of the scopes for people (scope →
	// text); a PUT without it removes them all.
	ScopeDescriptions    map[string]string `json:"scope_descriptions"`
	TokenLifetimeSeconds int64             `json:"token_lifetime_seconds"`
	// Discoverable lists the API's scopes in the discovery documents.
	Discoverable bool `json:"discoverable"`
}

// APIPatch changes the fields it sets (RFC 7396 merge patch semantics).
type APIPatch struct {
	Name   *string   `json:"name,omitempty"`
	Scopes *[]string `json:"scopes,omitempty"`
	// ScopeDescriptions, when set, replaces every description. A scope
	// removed from the API loses its description in any case.
	ScopeDescriptions    *map[string]string `json:"scope_descriptions,omitempty"`
	TokenLifetimeSeconds *int64             `json:"token_lifetime_seconds,omitempty"`
	Discoverable         *bool              `json:"discoverable,omitempty"`
}

// validateAPI checks an API's final state; its scope descriptions only
// when descriptions were given (the store drops those of removed scopes).
func validateAPI(v *ValidationError, a *store.API, descriptions bool) {
	checkText(v, "name", a.Name, true, maxNameLen)
	if len(a.Scopes) > maxScopes {
		v.add("scopes", "at most %d scopes", maxScopes)
		return
	}
	a.Scopes = dedupe(a.Scopes)
	for _, sc := range a.Scopes {
		if !scope.ValidToken(sc) {
			v.add("scopes", "%q is not a valid scope: use printable ASCII without spaces, quotes or backslashes", sc)
		}
	}
	if a.ScopeDescriptions == nil {
		a.ScopeDescriptions = map[string]string{}
	}
	if descriptions {
		validateScopeDescriptions(v, a.Scopes, a.ScopeDescriptions)
	}
}

// validateScopeDescriptions checks descriptions of an API's (deduplicated)
// scopes: at most one per scope, each for one of them, each non-empty text.
func validateScopeDescriptions(v *ValidationError, scopes []string, descs map[string]string) {
	if len(descs) > len(scopes) {
		v.add("scope_descriptions", "at most one description per scope: %d descriptions for %d scopes", len(descs), len(scopes))
		return
	}
	for _, sc := range slices.Sorted(maps.Keys(descs)) {
		if !slices.Contains(scopes, sc) {
			if scope.ValidToken(sc) {
				v.add("scope_descriptions."+sc, "is not one of the API's scopes")
			} else {
				v.add("scope_descriptions", "%q is not one of the API's scopes", sc)
			}
			continue
		}
		field := "scope_descriptions." + sc
		if strings.TrimSpace(descs[sc]) == "" {
			v.add(field, "must not be empty: leave the scope out to give it no description")
			continue
		}
		checkText(v, field, descs[sc], false, maxScopeDescLen)
	}
}

// CreateAPI validates and stores a new API.
func (s *Service) CreateAPI(ctx context.Context, in APIInput) (store.API, error) {
	var v ValidationError
	if !validIdentifier(in.Identifier) {
		v.add("identifier", "is required: up to %d printable ASCII characters without spaces, e.g. https://api.example.com", maxIdentifierLen)
	}
	now := s.now().UTC()
	a := store.API{
		ID: secret.NewID("api_"), Identifier: in.Identifier, Name: in.Name, Scopes: in.Scopes, ScopeDescriptions: in.ScopeDescriptions,
		TokenLifetime: time.Duration(in.TokenLifetimeSeconds) * time.Second, Discoverable: in.Discoverable,
		Version: 1, CreatedAt: now, UpdatedAt: now,
	}
	validateAPI(&v, &a, true)
	checkLifetime(&v, "token_lifetime_seconds", in.TokenLifetimeSeconds)
	if err := v.err(); err != nil {
		return store.API{}, err
	}
	if err := s.st(ctx).CreateAPI(ctx, a); err != nil {
		return store.API{}, mapConflict(err, fmt.Sprintf("an API with identifier %q already exists", in.Identifier))
	}
	s.record(ctx, "api.create", targetAPI, a.Identifier, audit.Diff(nil, apiFields(a)))
	return a, nil
}

// GetAPI returns one API.
func (s *Service) GetAPI(ctx context.Context, identifier string) (store.API, error) {
	return s.st(ctx).GetAPI(ctx, identifier)
}

// ListAPIs returns one page of APIs.
func (s *Service) ListAPIs(ctx context.Context, opts store.ListOptions) (Page[store.API], error) {
	limit := clampLimit(opts.Limit)
	opts.Limit = limit + 1
	apis, err := s.st(ctx).ListAPIs(ctx, opts)
	if err != nil {
		return Page[store.API]{}, err
	}
	return pageOf(apis, limit, func(a store.API) string { return a.Identifier }), nil
}

// UpdateAPI applies a patch to an API. Removing a scope removes it from
// every client's grant and revokes the tokens of those clients, and removes
// its description.
func (s *Service) UpdateAPI(ctx context.Context, identifier, ifMatch string, p APIPatch) (store.API, error) {
	var prev store.API
	a, err := s.st(ctx).UpdateAPI(ctx, identifier, cutoff(s.now().UTC()), func(a *store.API) error {
		if err := checkMatch(ifMatch, a.Version); err != nil {
			return err
		}
		prev = *a
		if a.Builtin != "" {
			return &ConflictError{"the " + a.Builtin + " API is built in and cannot be changed"}
		}
		if p.Name != nil {
			a.Name = *p.Name
		}
		if p.Scopes != nil {
			a.Scopes = *p.Scopes
		}
		if p.ScopeDescriptions != nil {
			a.ScopeDescriptions = *p.ScopeDescriptions
		}
		var v ValidationError
		if p.TokenLifetimeSeconds != nil {
			checkLifetime(&v, "token_lifetime_seconds", *p.TokenLifetimeSeconds)
			a.TokenLifetime = time.Duration(*p.TokenLifetimeSeconds) * time.Second
		}
		if p.Discoverable != nil {
			a.Discoverable = *p.Discoverable
		}
		validateAPI(&v, a, p.ScopeDescriptions != nil)
		if err := v.err(); err != nil {
			return err
		}
		a.UpdatedAt = s.now().UTC()
		return nil
	})
	if err != nil {
		return store.API{}, err
	}
	// Grants and lifetimes of any number of clients may have changed.
	s.inv(ctx).InvalidateAll()
	s.record(ctx, "api.update", targetAPI, identifier, audit.Diff(apiFields(prev), apiFields(a)))
	return a, nil
}

// DeleteAPI deletes an API. Without force it is refused while a client holds
// a grant for it; with force those grants are removed too, and the tokens of
// their clients revoked.
func (s *Service) DeleteAPI(ctx context.Context, identifier, ifMatch string, force bool) error {
	api, err := s.st(ctx).GetAPI(ctx, identifier)
	if err != nil {
		return err
	}
	if err := checkMatch(ifMatch, api.Version); err != nil {
		return err
	}
	if api.Builtin != "" {
		return &ConflictError{"the " + api.Builtin + " API is built in and cannot be deleted"}
	}
	err = s.st(ctx).DeleteAPI(ctx, identifier, force, cutoff(s.now().UTC()))
	if errors.Is(err, store.ErrConflict) {
		return &ConflictError{"clients hold grants for this API: remove their grants first, or delete with force"}
	}
	if err != nil {
		return err
	}
	s.inv(ctx).InvalidateAll()
	diff := apiFields(api)
	if force {
		diff["force"] = true
	}
	s.record(ctx, "api.delete", targetAPI, identifier, audit.Diff(diff, nil))
	return nil
}
