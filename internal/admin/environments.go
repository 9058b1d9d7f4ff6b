package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
)

// Environments: each is a complete authorization server of the deployment
// (its own issuer, keys, APIs and clients). Deployment admins create,
// change and delete them; deleting one takes two steps, a confirmation
// first.

// Limits of environments.
const (
	maxEnvDisplayName = 100
	// MinKeyRotationPeriod is the shortest key rotation period an
	// environment may set; MaxKeyRotationPeriod the longest.
	MinKeyRotationPeriod = time.Hour
	MaxKeyRotationPeriod = 10 * 366 * 24 * time.Hour
	// DeletionConfirmationLifetime is how long the confirmation of an
	// environment's deletion is valid.
	DeletionConfirmationLifetime = 10 * time.Minute
)

// ErrEnvironmentsOff: this server was not set up to manage environments.
var ErrEnvironmentsOff = errors.New("environments cannot be managed on this server")

// EnvironmentInput creates an environment.
type EnvironmentInput struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	// SigningAlg is the algorithm of its signing keys ("": the
	// deployment's).
	SigningAlg string `json:"signing_alg,omitempty"`
	// KeyRotationPeriodSeconds is how long a signing key signs before the
	// next takes over (0: the deployment's period).
	KeyRotationPeriodSeconds int64 `json:"key_rotation_period,omitempty"`
}

// EnvironmentPatch changes the fields it sets (RFC 7396 merge patch).
type EnvironmentPatch struct {
	DisplayName              *string `json:"display_name,omitempty"`
	SigningAlg               *string `json:"signing_alg,omitempty"`
	KeyRotationPeriodSeconds *int64  `json:"key_rotation_period,omitempty"`
}

// ValidEnvName reports whether name may name an environment: a DNS label
// (lowercase letters, digits and inner hyphens, at most 63 characters).
func ValidEnvName(name string) bool { return env.ValidName(name) }

func checkEnvName(v *ValidationError, name string) {
	switch {
	case name == store.DefaultEnv:
		v.add("name", "%q is the default environment's name, which always exists", store.DefaultEnv)
	case !ValidEnvName(name):
		v.add("name", "must be a DNS label: 1 to 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit")
	}
}

func checkEnvDisplayName(v *ValidationError, s string) {
	switch {
	case strings.TrimSpace(s) == "":
		v.add("display_name", "is required")
	case !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }):
		v.add("display_name", "must be printable text (no control characters)")
	case utf8.RuneCountInString(s) > maxEnvDisplayName:
		v.add("display_name", "must be at most %d characters", maxEnvDisplayName)
	}
}

func checkSigningAlg(v *ValidationError, alg string) {
	if alg != "" && !keys.ValidAlg(alg) {
		v.add("signing_alg", "must be one of %s (or empty for the deployment's)", strings.Join(keys.Algorithms, ", "))
	}
}

func checkKeyRotation(v *ValidationError, seconds int64) {
	if seconds != 0 && (seconds < int64(MinKeyRotationPeriod/time.Second) || seconds > int64(MaxKeyRotationPeriod/time.Second)) {
		v.add("key_rotation_period", "must be 0 (the deployment's period) or between %d (1 hour) and %d (10 years) seconds",
			int64(MinKeyRotationPeriod/time.Second), int64(MaxKeyRotationPeriod/time.Second))
	}
}

// EnvIssuer returns the issuer URL of the environment named ("" when
// environments cannot be managed).
func (s *Service) EnvIssuer(name string) string {
	if s.envIssuer == nil {
		return ""
	}
	return s.envIssuer(name)
}

// CreateEnvironment validates and creates an environment, with its built-in
// admin API (identifier its issuer + "/admin", scope admin). Its signing
// keys are made by the key maintenance, which finds it due at once.
func (s *Service) CreateEnvironment(ctx context.Context, in EnvironmentInput) (store.Environment, error) {
	if s.envIssuer == nil {
		return store.Environment{}, ErrEnvironmentsOff
	}
	var v ValidationError
	checkEnvName(&v, in.Name)
	checkEnvDisplayName(&v, in.DisplayName)
	checkSigningAlg(&v, in.SigningAlg)
	checkKeyRotation(&v, in.KeyRotationPeriodSeconds)
	if err := v.err(); err != nil {
		return store.Environment{}, err
	}
	now := s.now().UTC()
	e := store.Environment{
		Name: in.Name, DisplayName: in.DisplayName, SigningAlg: in.SigningAlg,
		KeyRotationPeriod: time.Duration(in.KeyRotationPeriodSeconds) * time.Second,
		Version:           1, CreatedAt: now, UpdatedAt: now,
	}
	if err := s.store.CreateEnvironment(ctx, e); err != nil {
		return store.Environment{}, mapConflict(err, fmt.Sprintf("an environment named %q already exists", in.Name))
	}
	api := BuiltinAdminAPI(s.envIssuer(e.Name)+"/admin", e.DisplayName, now)
	if err := s.store.InEnv(e.Name).CreateAPI(ctx, api); err != nil {
		// An environment without its admin API could not be managed:
		// take it back.
		if derr := s.store.DeleteEnvironment(context.WithoutCancel(ctx), e.Name, e.Version); derr != nil && !isNotFound(derr) {
			return store.Environment{}, fmt.Errorf("create environment %s: admin API: %w (and removing the environment again: %v)", e.Name, err, derr)
		}
		return store.Environment{}, fmt.Errorf("create environment %s: admin API: %w", e.Name, err)
	}
	s.record(ctx, "environment.create", targetEnvironment, e.Name, audit.Diff(nil, envFields(e)))
	return e, nil
}

// GetEnvironment returns one environment.
func (s *Service) GetEnvironment(ctx context.Context, name string) (store.Environment, error) {
	return s.store.GetEnvironment(ctx, name)
}

// ListEnvironments returns one page of environments, by name; NameContains
// matches the name or the display name.
func (s *Service) ListEnvironments(ctx context.Context, opts store.ListOptions) (Page[store.Environment], error) {
	limit := clampLimit(opts.Limit)
	opts.Limit = limit + 1
	envs, err := s.store.ListEnvironments(ctx, opts)
	if err != nil {
		return Page[store.Environment]{}, err
	}
	return pageOf(envs, limit, func(e store.Environment) string { return e.Name }), nil
}

// UpdateEnvironment applies a patch to an environment. The default
// environment's keys follow the deployment's settings: only its display
// name changes.
func (s *Service) UpdateEnvironment(ctx context.Context, name, ifMatch string, p EnvironmentPatch) (store.Environment, error) {
	var v ValidationError
	if p.DisplayName != nil {
		checkEnvDisplayName(&v, *p.DisplayName)
	}
	if p.SigningAlg != nil {
		checkSigningAlg(&v, *p.SigningAlg)
	}
	if p.KeyRotationPeriodSeconds != nil {
		checkKeyRotation(&v, *p.KeyRotationPeriodSeconds)
	}
	if name == store.DefaultEnv {
		if p.SigningAlg != nil {
			v.add("signing_alg", "the default environment's keys follow the deployment's settings (serve --signing-alg)")
		}
		if p.KeyRotationPeriodSeconds != nil {
			v.add("key_rotation_period", "the default environment's keys follow the deployment's settings (serve --key-rotation-period)")
		}
	}
	if err := v.err(); err != nil {
		return store.Environment{}, err
	}
	var renamed bool
	var prev store.Environment
	e, err := s.store.UpdateEnvironment(ctx, name, func(e *store.Environment) error {
		if err := checkMatch(ifMatch, e.Version); err != nil {
			return err
		}
		prev = *e
		renamed = p.DisplayName != nil && *p.DisplayName != e.DisplayName
		keysChanged := false
		if p.DisplayName != nil {
			e.DisplayName = *p.DisplayName
		}
		if p.SigningAlg != nil && *p.SigningAlg != e.SigningAlg {
			e.SigningAlg, keysChanged = *p.SigningAlg, true
		}
		if p.KeyRotationPeriodSeconds != nil {
			if d := time.Duration(*p.KeyRotationPeriodSeconds) * time.Second; d != e.KeyRotationPeriod {
				e.KeyRotationPeriod, keysChanged = d, true
			}
		}
		if keysChanged {
			// The key maintenance plans the keys again with the new
			// settings.
			e.KeyWorkAt = time.Time{}
		}
		e.UpdatedAt = s.now().UTC()
		return nil
	})
	if err != nil {
		return e, err
	}
	s.record(ctx, "environment.update", targetEnvironment, name, audit.Diff(envFields(prev), envFields(e)))
	if !renamed || name == store.DefaultEnv || s.envIssuer == nil {
		return e, nil
	}
	// Its built-in admin API is named after it.
	adminAPI := s.envIssuer(name) + "/admin"
	want := BuiltinAdminAPI(adminAPI, e.DisplayName, e.UpdatedAt).Name
	if _, err := s.store.InEnv(name).UpdateAPI(ctx, adminAPI, time.Time{}, func(a *store.API) error {
		a.Name, a.UpdatedAt = want, e.UpdatedAt
		return nil
	}); err != nil && !isNotFound(err) {
		return e, fmt.Errorf("environment %s renamed; renaming its admin API: %w", name, err)
	}
	return e, nil
}

// EnvironmentDeletion is the confirmation a deletion needs, and what the
// deletion would remove.
type EnvironmentDeletion struct {
	Environment  store.Environment
	Confirmation string
	ExpiresAt    time.Time
	WillDelete   EnvironmentContents
}

// EnvironmentContents counts what an environment holds.
type EnvironmentContents struct {
	APIs          int `json:"apis"`
	Clients       int `json:"clients"`
	SigningKeys   int `json:"signing_keys"`
	TrustPolicies int `json:"trust_policies"`
}

var errDefaultEnvDelete = &ConflictError{"the default environment cannot be deleted"}

// PrepareEnvironmentDeletion returns the confirmation that deleting the
// environment named needs: bound to its current version, valid for
// DeletionConfirmationLifetime. It is stateless: a MAC under the server's
// secret hash key.
func (s *Service) PrepareEnvironmentDeletion(ctx context.Context, name string) (EnvironmentDeletion, error) {
	if name == store.DefaultEnv {
		return EnvironmentDeletion{}, errDefaultEnvDelete
	}
	e, err := s.store.GetEnvironment(ctx, name)
	if err != nil {
		return EnvironmentDeletion{}, err
	}
	contents, err := s.contentsOf(ctx, name)
	if err != nil {
		return EnvironmentDeletion{}, err
	}
	exp := s.now().UTC().Add(DeletionConfirmationLifetime).Truncate(time.Second)
	return EnvironmentDeletion{
		Environment: e, ExpiresAt: exp, Confirmation: s.deletionConfirmation(name, e.Version, exp, stateOf(e, contents)),
		WillDelete: contents,
	}, nil
}

// contentsOf counts what the environment named holds (its built-in admin
// API is not counted: it comes and goes with the environment).
func (s *Service) contentsOf(ctx context.Context, name string) (EnvironmentContents, error) {
	st := s.store.InEnv(name)
	counts, err := st.Counts(ctx)
	if err != nil {
		return EnvironmentContents{}, err
	}
	ks, err := st.ListSigningKeys(ctx)
	if err != nil {
		return EnvironmentContents{}, err
	}
	tps, err := st.ListTrustPolicies(ctx)
	if err != nil {
		return EnvironmentContents{}, err
	}
	return EnvironmentContents{APIs: max(counts.APIs-1, 0), Clients: counts.Clients, SigningKeys: len(ks), TrustPolicies: len(tps)}, nil
}

// stateOf identifies what a deletion confirmation was issued for: this
// environment (not another of the same name created since) holding these
// APIs, clients and trust policies (signing keys rotate on their own). A
// confirmation for another state is stale.
func stateOf(e store.Environment, c EnvironmentContents) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%d|%d|%d|%d", e.CreatedAt.UnixMicro(), c.APIs, c.Clients, c.TrustPolicies))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// deletionMAC is the message of a deletion confirmation's MAC: a domain of
// its own, then what it binds.
func deletionMAC(name string, version int64, exp time.Time, state string) string {
	return "m2mauth environment deletion\x00" + name + "\x00" + strconv.FormatInt(version, 10) + "\x00" + strconv.FormatInt(exp.Unix(), 10) + "\x00" + state
}

// deletionConfirmation is
// base64url("<version>.<expiry, Unix s>.<state>.<MAC>").
func (s *Service) deletionConfirmation(name string, version int64, exp time.Time, state string) string {
	mac := s.hasher.Hash(deletionMAC(name, version, exp, state))
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(version, 10) + "." + strconv.FormatInt(exp.Unix(), 10) + "." + state + "." + mac))
}

// Deletion confirmation failures.
func errNoConfirmation(name string) error {
	return &requestError{http.StatusPreconditionRequired, "deleting an environment takes two steps: POST /admin/v1/environments/" + name + "/deletion, " +
		"check what it would delete, then DELETE /admin/v1/environments/" + name + "?confirmation= with the confirmation it returned"}
}

func errBadConfirmation(name string) error {
	return &requestError{http.StatusPreconditionRequired, "the confirmation is not one this server issued for deleting environment " + name +
		": get a new one with POST /admin/v1/environments/" + name + "/deletion"}
}

func errExpiredConfirmation(name string) error {
	return &requestError{http.StatusPreconditionRequired, "the confirmation has expired (it is valid for 10 minutes): " +
		"get a new one with POST /admin/v1/environments/" + name + "/deletion"}
}

func errStaleConfirmation(name string) error {
	return &ConflictError{"environment " + name + " has changed since the confirmation was issued (its settings, or the APIs, clients or trust policies it holds; or it was deleted and created again): " +
		"check what its deletion would remove again with POST /admin/v1/environments/" + name + "/deletion"}
}

// checkConfirmation verifies a deletion confirmation for the environment
// named and returns the version and state it confirms.
func (s *Service) checkConfirmation(name, confirmation string) (int64, string, error) {
	if confirmation == "" {
		return 0, "", errNoConfirmation(name)
	}
	raw, err := base64.RawURLEncoding.DecodeString(confirmation)
	if err != nil {
		return 0, "", errBadConfirmation(name)
	}
	parts := strings.SplitN(string(raw), ".", 4)
	if len(parts) != 4 {
		return 0, "", errBadConfirmation(name)
	}
	version, err1 := strconv.ParseInt(parts[0], 10, 64)
	expUnix, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, "", errBadConfirmation(name)
	}
	exp, state := time.Unix(expUnix, 0), parts[2]
	// Hasher.Verify compares in constant time.
	if !s.hasher.Verify(deletionMAC(name, version, exp, state), parts[3]) {
		return 0, "", errBadConfirmation(name)
	}
	if !s.now().Before(exp) {
		return 0, "", errExpiredConfirmation(name)
	}
	return version, state, nil
}

// DeleteEnvironment deletes an environment and everything in it, given a
// confirmation from PrepareEnvironmentDeletion that is still valid and
// names its current version.
func (s *Service) DeleteEnvironment(ctx context.Context, name, confirmation string) error {
	if name == store.DefaultEnv {
		return errDefaultEnvDelete
	}
	e, err := s.store.GetEnvironment(ctx, name)
	if err != nil {
		return err
	}
	version, state, err := s.checkConfirmation(name, confirmation)
	if err != nil {
		return err
	}
	contents, err := s.contentsOf(ctx, name)
	if err != nil {
		return err
	}
	if version != e.Version || state != stateOf(e, contents) {
		return errStaleConfirmation(name)
	}
	err = s.store.DeleteEnvironment(ctx, name, version)
	if errors.Is(err, store.ErrConflict) {
		return errStaleConfirmation(name)
	}
	if err != nil {
		return err
	}
	diff := envFields(e)
	diff["deleted_apis"], diff["deleted_clients"] = contents.APIs, contents.Clients
	diff["deleted_signing_keys"], diff["deleted_trust_policies"] = contents.SigningKeys, contents.TrustPolicies
	s.record(ctx, "environment.delete", targetEnvironment, name, audit.Diff(diff, nil))
	return nil
}
