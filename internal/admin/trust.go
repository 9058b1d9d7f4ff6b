package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/jws"
	"github.com/m2mauth/m2mauth/internal/store"
)

// TrustPolicyInput creates a trust policy, or replaces its mutable fields
// (PUT): a trusted external issuer of workload identities whose tokens
// authenticate the clients bound to it.
type TrustPolicyInput struct {
	// Name identifies the policy (a-z, 0-9, '-', '_', '.'); it cannot
	// change.
	Name string `json:"name"`
	// Kind is "jwt" (an OpenID-style issuer: Kubernetes, GitHub Actions)
	// or "spiffe" (a SPIFFE trust domain's JWT-SVIDs).
	Kind string `json:"kind"`
	// Issuer is the tokens' iss; for spiffe, the trust domain
	// (spiffe://example.org).
	Issuer      string `json:"issuer"`
	Description string `json:"description"`
	// The issuer's keys: JWKS, a static JWK Set (a SPIFFE bundle is one);
	// else JWKSURI; else, with Discovery, the jwks_uri of the issuer's
	// /.well-known/openid-configuration (jwt only). At least one.
	JWKSURI   string          `json:"jwks_uri,omitempty"`
	Discovery bool            `json:"discovery"`
	JWKS      json.RawMessage `json:"jwks,omitempty"`
	// Algorithms accepted (default RS256, PS256, ES256, EdDSA).
	Algorithms []string `json:"algorithms,omitempty"`
	// Audience its tokens must carry: this server's issuer identifier (the
	// default), or a URL under it.
	Audience string `json:"audience,omitempty"`
	// MaxTokenAgeSeconds bounds how long ago a token may have been issued
	// (default 600); MaxTokenLifetimeSeconds bounds exp - iat (default
	// 3600).
	MaxTokenAgeSeconds      int64 `json:"max_token_age_seconds,omitempty"`
	MaxTokenLifetimeSeconds int64 `json:"max_token_lifetime_seconds,omitempty"`
	// SingleUse accepts a token with a jti once (default true: set false
	// for tokens a workload reuses, such as Kubernetes projected tokens);
	// RequireJTI refuses tokens without one.
	SingleUse  *bool `json:"single_use,omitempty"`
	RequireJTI bool  `json:"require_jti"`
}

// Defaults and bounds of trust policies.
const (
	defaultMaxTokenAge      = 10 * time.Minute
	defaultMaxTokenLifetime = time.Hour
	maxTrustTokenAge        = 24 * time.Hour
	maxPolicyNameLen        = 64
)

// TrustAlgorithms are the signature algorithms a trust policy may accept.
var TrustAlgorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}

// canonicalAlgs names each algorithm as the token parser does (Ed25519
// is EdDSA), without repeats.
func canonicalAlgs(in []string) []string {
	out := make([]string, len(in))
	for i, a := range in {
		out[i] = jws.CanonicalAlg(a)
	}
	return dedupe(out)
}

var policyName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// trustPolicy builds the policy in describes, filling defaults.
func trustPolicy(in TrustPolicyInput, issuer string) store.TrustPolicy {
	p := store.TrustPolicy{
		Name: in.Name, Kind: in.Kind, Issuer: in.Issuer, Description: in.Description,
		JWKSURI: in.JWKSURI, Discovery: in.Discovery, JWKS: rawJWKS(in.JWKS), Algorithms: canonicalAlgs(in.Algorithms),
		Audience: in.Audience, MaxTokenAge: trustSeconds(in.MaxTokenAgeSeconds),
		MaxTokenLifetime: trustSeconds(in.MaxTokenLifetimeSeconds), SingleUse: true, RequireJTI: in.RequireJTI,
	}
	if in.SingleUse != nil {
		p.SingleUse = *in.SingleUse
	}
	if len(in.Algorithms) == 0 {
		p.Algorithms = slices.Clone(TrustAlgorithms)
	}
	if p.Audience == "" {
		p.Audience = issuer
	}
	if p.MaxTokenAge == 0 {
		p.MaxTokenAge = defaultMaxTokenAge
	}
	if p.MaxTokenLifetime == 0 {
		p.MaxTokenLifetime = defaultMaxTokenLifetime
	}
	return p
}

// trustSeconds converts a policy's age or lifetime in seconds; a value
// beyond the bound becomes -1 s, which validation refuses, rather than a
// product that wraps around in int64 nanoseconds (to 0, the default, or to
// some value in range).
func trustSeconds(n int64) time.Duration {
	if n > int64(maxTrustTokenAge/time.Second) {
		return -time.Second
	}
	return time.Duration(n) * time.Second
}

// WithDefaults returns in with every default the server would fill in
// (for a server whose issuer is issuer), so that two inputs describing the
// same policy compare equal.
func (in TrustPolicyInput) WithDefaults(issuer string) TrustPolicyInput {
	p := trustPolicy(in, issuer)
	out := in
	out.Algorithms, out.Audience = p.Algorithms, p.Audience
	out.MaxTokenAgeSeconds, out.MaxTokenLifetimeSeconds = int64(p.MaxTokenAge/time.Second), int64(p.MaxTokenLifetime/time.Second)
	out.SingleUse = &p.SingleUse
	return out
}

// validateTrustPolicy checks a policy in its final state; issuer is this
// server's issuer identifier, which the audience must name.
func validateTrustPolicy(v *ValidationError, p *store.TrustPolicy, issuer string) {
	if !policyName.MatchString(p.Name) || len(p.Name) > maxPolicyNameLen {
		v.add("name", "must be 1 to %d characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", maxPolicyNameLen)
	}
	checkText(v, "description", p.Description, false, maxDescLen)
	switch p.Kind {
	case store.TrustJWT:
		checkKeyURL(v, "issuer", p.Issuer)
	case store.TrustSPIFFE:
		if td, ok := strings.CutPrefix(p.Issuer, "spiffe://"); !ok || td == "" || strings.ContainsAny(td, "/:@?#") || td != strings.ToLower(td) {
			v.add("issuer", "a SPIFFE trust domain: spiffe:// and a lower-case domain name, without path")
		}
		if p.Discovery {
			v.add("discovery", "a SPIFFE trust domain has no OpenID discovery: give its bundle as jwks or its bundle endpoint as jwks_uri")
		}
	default:
		v.add("kind", `must be "jwt" or "spiffe"`)
	}
	sources := 0
	if p.JWKSURI != "" {
		sources++
		checkKeyURL(v, "jwks_uri", p.JWKSURI)
	}
	if p.Discovery {
		sources++
	}
	if len(p.JWKS) > 0 {
		sources++
		if len(p.JWKS) > 64<<10 {
			v.add("jwks", "at most 64 KiB")
		} else if keys, err := jws.ParseKeySet(p.JWKS, 100); err != nil || len(keys) == 0 {
			v.add("jwks", "is not a usable JWK Set of public keys (%v)", err)
		}
	}
	switch {
	case sources == 0:
		v.add("jwks_uri", "give a source of the issuer's keys: jwks, jwks_uri or discovery")
	case sources > 1:
		v.add("jwks_uri", "give one source of the issuer's keys, not several: jwks, jwks_uri or discovery")
	}
	for _, a := range p.Algorithms {
		if !slices.Contains(TrustAlgorithms, a) {
			v.add("algorithms", "%q is not one of %s", a, strings.Join(TrustAlgorithms, ", "))
		}
	}
	switch {
	case issuer == "":
		if p.Audience == "" {
			v.add("audience", "is required")
		}
	case p.Audience != issuer && !strings.HasPrefix(p.Audience, issuer+"/"):
		v.add("audience", "must name this server: %s, or a URL under it", issuer)
	}
	if p.MaxTokenAge < time.Second || p.MaxTokenAge > maxTrustTokenAge {
		v.add("max_token_age_seconds", "must be between 1 and %d", int64(maxTrustTokenAge/time.Second))
	}
	if p.MaxTokenLifetime < time.Second || p.MaxTokenLifetime > maxTrustTokenAge {
		v.add("max_token_lifetime_seconds", "must be between 1 and %d", int64(maxTrustTokenAge/time.Second))
	}
	if p.RequireJTI && !p.SingleUse {
		v.add("require_jti", "requires single_use: a jti is required only to refuse its reuse")
	}
}

// issuerOf returns the issuer of the request's environment ("" outside
// one).
func issuerOf(ctx context.Context) string {
	if e := env.FromContext(ctx); e != nil {
		return e.Issuer
	}
	return ""
}

// CreateTrustPolicy validates and stores a new trust policy.
func (s *Service) CreateTrustPolicy(ctx context.Context, in TrustPolicyInput) (store.TrustPolicy, error) {
	iss := issuerOf(ctx)
	p := trustPolicy(in, iss)
	now := s.now().UTC()
	p.Version, p.CreatedAt, p.UpdatedAt = 1, now, now
	var v ValidationError
	validateTrustPolicy(&v, &p, iss)
	if err := v.err(); err != nil {
		return store.TrustPolicy{}, err
	}
	if err := s.st(ctx).CreateTrustPolicy(ctx, p); err != nil {
		return store.TrustPolicy{}, mapConflict(err, fmt.Sprintf("a trust policy named %q, or one for issuer %q, already exists, or a client is still bound to a deleted policy of that name", p.Name, p.Issuer))
	}
	s.inv(ctx).InvalidateTrust(p.Name)
	s.record(ctx, "trust.create", targetTrust, p.Name, audit.Diff(nil, trustFields(p)))
	return p, nil
}

// GetTrustPolicy returns one trust policy.
func (s *Service) GetTrustPolicy(ctx context.Context, name string) (store.TrustPolicy, error) {
	return s.st(ctx).GetTrustPolicy(ctx, name)
}

// ListTrustPolicies returns every trust policy.
func (s *Service) ListTrustPolicies(ctx context.Context) ([]store.TrustPolicy, error) {
	return s.st(ctx).ListTrustPolicies(ctx)
}

// UpdateTrustPolicy replaces a policy's mutable fields with in's (PUT);
// its name and kind cannot change.
func (s *Service) UpdateTrustPolicy(ctx context.Context, name, ifMatch string, in TrustPolicyInput) (store.TrustPolicy, error) {
	iss := issuerOf(ctx)
	var prev store.TrustPolicy
	p, err := s.st(ctx).UpdateTrustPolicy(ctx, name, func(p *store.TrustPolicy) error {
		if err := checkMatch(ifMatch, p.Version); err != nil {
			return err
		}
		prev = *p
		var v ValidationError
		if in.Name != "" && in.Name != p.Name {
			v.add("name", "cannot change")
		}
		if in.Kind != "" && in.Kind != p.Kind {
			v.add("kind", "cannot change")
		}
		in.Name, in.Kind = p.Name, p.Kind
		next := trustPolicy(in, iss)
		next.Version, next.CreatedAt, next.UpdatedAt = p.Version, p.CreatedAt, s.now().UTC()
		validateTrustPolicy(&v, &next, iss)
		if err := v.err(); err != nil {
			return err
		}
		*p = next
		return nil
	})
	if err != nil {
		return store.TrustPolicy{}, mapConflict(err, fmt.Sprintf("another trust policy has issuer %q", in.Issuer))
	}
	s.inv(ctx).InvalidateTrust(name)
	s.record(ctx, "trust.update", targetTrust, name, audit.Diff(trustFields(prev), trustFields(p)))
	return p, nil
}

// DeleteTrustPolicy deletes a trust policy no client is bound to.
func (s *Service) DeleteTrustPolicy(ctx context.Context, name, ifMatch string) error {
	p, err := s.st(ctx).GetTrustPolicy(ctx, name)
	if err != nil {
		return err
	}
	if err := checkMatch(ifMatch, p.Version); err != nil {
		return err
	}
	if err := s.st(ctx).DeleteTrustPolicy(ctx, name); err != nil {
		if errorsIsConflict(err) {
			detail := strings.TrimPrefix(err.Error(), "delete trust policy: ")
			detail = strings.TrimPrefix(detail, store.ErrConflict.Error()+": ")
			return &ConflictError{detail + ": unbind them first"}
		}
		return err
	}
	s.inv(ctx).InvalidateTrust(name)
	s.record(ctx, "trust.delete", targetTrust, name, audit.Diff(trustFields(p), nil))
	return nil
}
