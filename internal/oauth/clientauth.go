package oauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/store"
)

// Caller is an authenticated client.
type Caller struct {
	Client store.Client
	// Method is the token_endpoint_auth_method that proved it.
	Method string
}

// Authenticator checks one kind of client credential (a shared secret, a
// signed assertion, a certificate…). Implementations return
// errInvalidClient for every failure, so that all failures look alike,
// and ErrUnavailable when they cannot decide.
type Authenticator interface {
	// Methods are the token_endpoint_auth_method values it serves.
	Methods() []string
	// Authenticate returns the client the credentials prove.
	Authenticate(ctx context.Context, creds Credentials) (Caller, *Error)
}

// ClientAuth is the client-authentication registry: one authenticator per
// token_endpoint_auth_method. Discovery lists its methods, and the
// algorithms of those that verify signatures.
type ClientAuth struct {
	byMethod map[string]Authenticator
	methods  []string
	algs     []string
}

// signer is an authenticator that verifies signed assertions.
type signer interface{ SigningAlgs() []string }

// NewClientAuth returns a registry of the given authenticators.
func NewClientAuth(auths ...Authenticator) *ClientAuth {
	a := &ClientAuth{byMethod: map[string]Authenticator{}}
	for _, au := range auths {
		for _, m := range au.Methods() {
			a.byMethod[m] = au
			a.methods = append(a.methods, m)
		}
		if s, ok := au.(signer); ok {
			for _, alg := range s.SigningAlgs() {
				if !slices.Contains(a.algs, alg) {
					a.algs = append(a.algs, alg)
				}
			}
		}
	}
	return a
}

// SigningAlgs are the algorithms client assertions may be signed with
// (token_endpoint_auth_signing_alg_values_supported).
func (a *ClientAuth) SigningAlgs() []string { return slices.Clone(a.algs) }

// Methods are the supported token_endpoint_auth_method values, in
// registration order.
func (a *ClientAuth) Methods() []string { return slices.Clone(a.methods) }

// Authenticate proves the client of a request by the authenticator for
// the method its credentials came by. A request without credentials, or
// by a method nobody serves, fails like a wrong secret.
func (a *ClientAuth) Authenticate(ctx context.Context, creds Credentials) (Caller, *Error) {
	au, ok := a.byMethod[creds.Method]
	if !ok {
		return Caller{}, errInvalidClient("")
	}
	return au.Authenticate(ctx, creds)
}

// SecretAuth authenticates clients by shared secret (RFC 6749 §2.3.1):
// client_secret_basic and client_secret_post.
type SecretAuth struct {
	now   func() time.Time
	usage *UsageRecorder
}

// NewSecretAuth returns a SecretAuth. usage (may be nil) learns which
// secret each successful authentication used.
func NewSecretAuth(now func() time.Time, usage *UsageRecorder) *SecretAuth {
	return &SecretAuth{now: now, usage: usage}
}

// Methods implements Authenticator.
func (a *SecretAuth) Methods() []string { return []string{AuthSecretBasic, AuthSecretPost} }

// Authenticate checks a client's id and secret: as form-decoded, then, if
// that fails and the Basic header read raw differs, as sent. Every failure
// is the same invalid_client answer after the same work: a client lookup
// and one keyed hash per live secret (per reading). A database failure is
// ErrUnavailable, never invalid_client. A disabled client is refused even
// with the right secret.
func (a *SecretAuth) Authenticate(ctx context.Context, creds Credentials) (Caller, *Error) {
	caller, e := a.check(ctx, creds.Method, creds.ClientID, creds.Secret)
	if e != nil && e.Code == CodeInvalidClient && (creds.RawID != "" || creds.RawSecret != "") {
		rawCaller, rawErr := a.check(ctx, creds.Method, creds.RawID, creds.RawSecret)
		if rawErr == nil || e.client == "" {
			return rawCaller, rawErr
		}
	}
	return caller, e
}

func (a *SecretAuth) check(ctx context.Context, method, id, sec string) (Caller, *Error) {
	en := env.FromContext(ctx)
	if len(sec) > maxCredentialLen {
		sec = sec[:maxCredentialLen]
	}
	if id == "" || sec == "" || len(id) > maxCredentialLen {
		en.Hasher.VerifyNothing(sec)
		return Caller{}, errInvalidClient("")
	}
	c, err := en.Clients.GetClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		en.Hasher.VerifyNothing(sec)
		return Caller{}, errInvalidClient("")
	}
	if err != nil {
		return Caller{}, ErrUnavailable(err)
	}
	now := a.now()
	matched, tried := "", false
	// A client authenticates only by its own method: a key or federated
	// client's secrets count only while it migrates (AcceptSecrets).
	secrets := c.Secrets
	if !usesSecrets(c) {
		secrets = nil
	}
	for _, cs := range secrets {
		if !cs.Live(now) {
			continue
		}
		tried = true
		if en.Hasher.Verify(sec, cs.Hash) {
			matched = cs.ID
		}
	}
	if !tried {
		en.Hasher.VerifyNothing(sec)
	}
	if matched == "" {
		return Caller{}, errInvalidClient(c.ID)
	}
	if c.Disabled {
		e := newError(http.StatusUnauthorized, CodeInvalidClient, "the client is disabled")
		e.client = c.ID
		return Caller{}, e
	}
	if a.usage != nil {
		a.usage.Record(en.Name, matched, now)
	}
	return Caller{Client: c, Method: method}, nil
}

// usesSecrets reports whether a client's secrets authenticate it: its
// method is a secret method, or it accepts secrets while it migrates.
func usesSecrets(c store.Client) bool {
	switch c.AuthMethod {
	case "", AuthSecretBasic, AuthSecretPost:
		return true
	}
	return c.AcceptSecrets
}
