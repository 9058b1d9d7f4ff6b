// Package env is the environment a request is served in: one
// authorization server's issuer identifier, signing keys and data. Every
// request is resolved to exactly one environment, carried in its context,
// and nothing it does reaches past that environment's values: handlers
// never reach for a server-wide issuer, key set or store.
//
// A deployment has many environments (tenants), each resolved from the
// request's path (/e/{name}/…) or host ({name}.<host>); the default one is
// served at the deployment's own URLs.
package env

import (
	"context"

	"github.com/m2mauth/m2mauth/internal/clientcache"
	"github.com/m2mauth/m2mauth/internal/denylist"
	"github.com/m2mauth/m2mauth/internal/issuer"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/tokencache"
	"github.com/m2mauth/m2mauth/verify"
)

// Env is one authorization server.
type Env struct {
	// Name identifies the environment (store.DefaultEnv for the default
	// one).
	Name string
	// Issuer is the issuer identifier: the iss of its tokens, the base of
	// its advertised URLs, and the audience client assertions must name.
	Issuer string
	// Store holds its APIs, clients, tokens and keys.
	Store store.Store
	// Keys are its signing keys; Tokens signs its access tokens with them.
	Keys   *keys.Manager
	Tokens *issuer.Issuer
	// Clients caches its clients; Denied holds its revoked access tokens.
	Clients *clientcache.Cache
	Denied  *denylist.List
	// Hasher hashes its client secrets and refresh tokens.
	Hasher *secret.Hasher
	// Verifier checks its own access tokens, for any audience;
	// AdminVerifier only those for its admin API.
	Verifier      *verify.Verifier
	AdminVerifier *verify.Verifier
	// Verified keeps the access tokens Verifier accepted, for
	// introspection to skip their signature next time (nil: off).
	Verified *tokencache.Cache
	// Changed tells this replica's caches of the environment about a
	// change made through it (the change feed tells other replicas).
	Changed Invalidator
	// Flush writes its pending usage (secret last use, token counts), so
	// that reads show it.
	Flush func(context.Context) error
}

// Invalidator drops cached client data and trust policies.
type Invalidator interface {
	Invalidate(clientID string)
	InvalidateAll()
	InvalidateTrust(policy string)
}

// Resolver finds the environments of the deployment by name, loading them
// when needed (an error wrapping store.ErrNotFound when there is none).
type Resolver interface {
	Env(ctx context.Context, name string) (*Env, error)
}

// IsDefault reports whether e is the default environment.
func (e *Env) IsDefault() bool { return e.Name == store.DefaultEnv }

// AdminAudience is the identifier of its built-in admin API.
func (e *Env) AdminAudience() string { return e.Issuer + "/admin" }

type ctxKey struct{}

// ContextKey is the key an Env is found under in a context: NewContext
// stores it there, and a context type of its own (the server's request
// context) may answer it directly.
var ContextKey any = ctxKey{}

// NewContext returns ctx carrying e.
func NewContext(ctx context.Context, e *Env) context.Context {
	return context.WithValue(ctx, ContextKey, e)
}

// FromContext returns the environment ctx carries (nil if none).
func FromContext(ctx context.Context) *Env {
	e, _ := ctx.Value(ContextKey).(*Env)
	return e
}

// ValidName reports whether name may name an environment: a DNS label
// (1 to 63 lowercase letters, digits and inner hyphens), so that it can be a
// host name's first label as well as a path segment.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
