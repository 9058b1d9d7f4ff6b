// Package admin is the management of APIs and clients: a Service that
// validates and applies changes (shared by every management front end) and
// the authenticated JSON admin API over it (/admin/v1/…), whose errors are
// RFC 9457 problem details.
package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/report"
	"github.com/m2mauth/m2mauth/internal/scope"
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

// ErrPreconditionFailed: the resource changed since the version the caller
// named in If-Match.
var ErrPreconditionFailed = errors.New("the resource has changed since you read it (If-Match does not match its ETag)")

// Limits on management input.
const (
	maxNameLen       = 200
	maxDescLen       = 2000
	maxIdentifierLen = 255
	maxScopes        = scope.MaxPerAPI
	maxGrants        = scope.MaxResources
	maxLifetime      = 7 * 24 * time.Hour
	maxClaimsJSON    = 4 << 10
	maxMetadata      = 50
	maxMetadataLen   = 500
	maxScopeDescLen  = 500
	// MaxLiveSecrets is how many secrets a client may hold at once that
	// still authenticate: the current one and one in its grace period.
	MaxLiveSecrets = 2
	// MinImportedSecretLen is the shortest secret that may be imported.
	MinImportedSecretLen = 32
	// DefaultGrace is how long a rotated-out secret keeps working.
	DefaultGrace = 24 * time.Hour
)

// Service applies management operations to the store. After each change it
// tells the invalidator, so that this replica's caches see it at once.
//
// It acts in the environment its context carries (env.FromContext): that
// environment's store, invalidator and secret hasher. Without one (the
// command-line tools) it acts with those it was made with.
type Service struct {
	store  store.Store
	hasher *secret.Hasher
	now    func() time.Time
	inval  invalidator
	// envIssuer gives an environment's issuer URL (nil: environments
	// cannot be managed).
	envIssuer func(name string) string
	report    *report.Reporter // nil: no token caching report
	// audit records every change (nil: none).
	audit auditor
}

// ServiceOption configures a Service.
type ServiceOption func(*Service)

// WithEnvIssuer lets the Service manage environments: issuer gives the
// issuer URL of the environment named (the identifier of its admin API is
// that URL + "/admin").
func WithEnvIssuer(issuer func(name string) string) ServiceOption {
	return func(s *Service) { s.envIssuer = issuer }
}

// st is the store of the environment ctx carries, else the Service's.
func (s *Service) st(ctx context.Context) store.Store {
	if e := env.FromContext(ctx); e != nil && e.Store != nil {
		return e.Store
	}
	return s.store
}

// inv is the invalidator of the environment ctx carries, else the
// Service's.
func (s *Service) inv(ctx context.Context) invalidator {
	if e := env.FromContext(ctx); e != nil && e.Changed != nil {
		return e.Changed
	}
	return s.inval
}

// hasherFor is the secret hasher of the environment ctx carries, else the
// Service's.
func (s *Service) hasherFor(ctx context.Context) *secret.Hasher {
	if e := env.FromContext(ctx); e != nil && e.Hasher != nil {
		return e.Hasher
	}
	return s.hasher
}

// invalidator drops cached client data and trust policies.
type invalidator interface {
	Invalidate(clientID string)
	InvalidateAll()
	InvalidateTrust(policy string)
}

type noInvalidator struct{}

func (noInvalidator) Invalidate(string)      {}
func (noInvalidator) InvalidateAll()         {}
func (noInvalidator) InvalidateTrust(string) {}

// NewService returns a Service. inval may be nil.
func NewService(st store.Store, hasher *secret.Hasher, now func() time.Time, inval invalidator, opts ...ServiceOption) *Service {
	if inval == nil {
		inval = noInvalidator{}
	}
	s := &Service{store: st, hasher: hasher, now: now, inval: inval}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ETag is the entity tag of a resource version.
func ETag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// checkMatch compares an If-Match value with a resource's version: "" (no
// precondition) and "*" match any version.
func checkMatch(ifMatch string, version int64) error {
	if ifMatch == "" || ifMatch == "*" {
		return nil
	}
	for _, tag := range strings.Split(ifMatch, ",") {
		if strings.TrimSpace(tag) == ETag(version) {
			return nil
		}
	}
	return ErrPreconditionFailed
}

// Page is one page of a listing.
type Page[T any] struct {
	Items      []T
	NextCursor string // "" on the last page
}

// listOptions clamps the page size; a page is fetched one longer than asked
// to learn whether another follows.
func pageOf[T any](items []T, limit int, key func(T) string) Page[T] {
	if len(items) > limit {
		return Page[T]{Items: items[:limit], NextCursor: key(items[limit-1])}
	}
	return Page[T]{Items: items}
}

// DefaultPageSize and MaxPageSize bound listings.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

func clampLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultPageSize
	case limit > MaxPageSize:
		return MaxPageSize
	}
	return limit
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
	if seconds < 0 || (seconds > 0 && seconds < 60) || seconds > int64(maxLifetime/time.Second) {
		v.add(field, "must be 0 (default) or between 60 and %d seconds", int64(maxLifetime/time.Second))
	}
}

// validIdentifier: an API identifier or a client id is compared exactly:
// printable ASCII without spaces.
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

// dedupe removes repeats in linear time (inputs can be as long as the
// body limit allows) and never returns nil.
func dedupe(in []string) []string {
	if len(in) == 0 {
		return []string{}
	}
	return scope.Dedupe(in)
}

// mapConflict turns a store conflict into an explanation.
func mapConflict(err error, detail string) error {
	if errors.Is(err, store.ErrConflict) {
		return &ConflictError{detail}
	}
	return err
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

func errorsIsConflict(err error) bool { return errors.Is(err, store.ErrConflict) }
