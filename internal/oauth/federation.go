package oauth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/singleflight"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/jws"
	"github.com/m2mauth/m2mauth/internal/store"
)

// federated authenticates a client by a token of a trusted external issuer
// (workload identity federation): the token's issuer (or, for a SPIFFE
// JWT-SVID, its subject's trust domain) names a trust policy; the token
// must be signed by one of the policy's keys with an allowed algorithm,
// carry the policy's audience (which names this server), be no older than
// its maximum age and live no longer than its maximum lifetime, and, if
// the policy says so, carry a jti never seen before. Its subject and
// claims must then match the federation of exactly one client (of the
// named client, when client_id was sent): zero or several matches are
// refused.
func (a *AssertionAuth) federated(ctx context.Context, en *env.Env, creds Credentials, as *assertion) (Caller, *Error) {
	known := ""
	fail := func(reason string) *Error { return refusedAssertion(known, "federated: "+reason) }
	idx, err := a.fed.get(ctx, en)
	if err != nil {
		return Caller{}, ErrUnavailable(err)
	}
	var p *store.TrustPolicy
	if creds.AssertionType == AssertionJWTSPIFFE || (as.iss == "" && strings.HasPrefix(as.sub, "spiffe://")) {
		p = idx.spiffe[trustDomain(as.sub)]
	} else {
		p = idx.byIssuer[as.iss]
	}
	if p == nil {
		return Caller{}, fail("no trust policy for the token's issuer")
	}
	if !slices.Contains(p.Algorithms, as.tok.Header.Alg) {
		return Caller{}, fail("the policy does not allow the token's alg")
	}
	if !slices.Contains(as.aud, p.Audience) {
		return Caller{}, fail("aud does not hold the policy's audience")
	}
	now := a.cfg.Now()
	if !a.timely(now, as, p.MaxTokenLifetime) {
		return Caller{}, fail("expired, not yet valid, or living longer than the policy's maximum")
	}
	switch {
	case !as.iat.IsZero() && now.Sub(as.iat) > p.MaxTokenAge:
		return Caller{}, fail("older than the policy's maximum age") // however long it lives
	case as.iat.IsZero() && p.Kind != store.TrustSPIFFE:
		return Caller{}, fail("no iat: the age cannot be judged")
	case p.RequireJTI && as.jti == "":
		return Caller{}, fail("no jti, which the policy requires")
	}
	key, ok, e := a.policyKey(ctx, p, as.tok.Header)
	if e != nil {
		return Caller{}, e
	}
	if !ok {
		return Caller{}, fail("no key of the issuer fits the header's kid and alg")
	}
	as.checked = true
	if as.tok.VerifyWith(key) != nil {
		return Caller{}, fail("bad signature")
	}
	matched := ""
	for _, b := range idx.bindings[p.Name] {
		if creds.ClientID != "" && b.client != creds.ClientID {
			continue
		}
		if !globMatch(b.subject, as.sub) || !claimsMatch(as.tok, b.claims) {
			continue
		}
		if matched != "" && matched != b.client {
			return Caller{}, fail("the subject and claims match two clients") // refuse rather than guess
		}
		matched = b.client
	}
	if matched == "" {
		return Caller{}, fail("the subject and claims match no client's binding")
	}
	c, err := en.Clients.GetClient(ctx, matched)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Caller{}, fail("the bound client is gone")
		}
		return Caller{}, ErrUnavailable(err)
	}
	known = c.ID
	if c.AuthMethod != AuthFederated {
		return Caller{}, fail("the bound client authenticates another way")
	}
	if c.Disabled {
		return Caller{}, fail("the client is disabled")
	}
	if p.SingleUse && as.jti != "" {
		fresh, err := a.once(ctx, en, "issuer "+p.Issuer, as.jti, as.exp)
		if err != nil {
			return Caller{}, ErrUnavailable(err)
		}
		if !fresh {
			return Caller{}, fail("jti already used (a replay)")
		}
	}
	return Caller{Client: c, Method: AuthFederated}, nil
}

// policyKey finds the key named by h in a trust policy's keys: its static
// set if it has one, else its jwks_uri's, else its discovery document's.
func (a *AssertionAuth) policyKey(ctx context.Context, p *store.TrustPolicy, h jws.Header) (crypto.PublicKey, bool, *Error) {
	if len(p.JWKS) > 0 {
		keys, err := a.static.get(p.JWKS)
		if err != nil {
			return nil, false, nil
		}
		k, ok := pickKey(keys, h)
		return k, ok, nil
	}
	if h.Kid == "" {
		return nil, false, nil
	}
	if p.JWKSURI == "" && p.Discovery {
		return a.remote.key(ctx, "", p.Issuer, h)
	}
	return a.remote.key(ctx, p.JWKSURI, "", h)
}

// trustDomain returns the trust domain of a SPIFFE ID
// (spiffe://example.org/ns/x → spiffe://example.org).
func trustDomain(id string) string {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return ""
	}
	td, _, _ := strings.Cut(rest, "/")
	return "spiffe://" + td
}

// globMatch reports whether s matches pattern, where '*' matches any run
// of characters (including none) and everything else matches itself. It
// runs in O(len(pattern) × len(s)) at worst, both bounded (subjects by the
// assertion size, patterns at 512 bytes).
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p, mark = star+1, mark+1
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// claimsMatch reports whether every condition holds: the claim at the
// dotted path has the value (a string claim's value, or the JSON text of
// a number or boolean).
func claimsMatch(t *jws.Token, conds map[string]string) bool {
	for path, want := range conds {
		got, ok := claimAt(t, path)
		if !ok || got != want {
			return false
		}
	}
	return true
}

// claimAt resolves a dotted path: the longest top-level claim name that is
// a prefix of it (names may hold dots: kubernetes.io), then the rest
// inside that claim's object, the same way.
func claimAt(t *jws.Token, path string) (string, bool) {
	for i := len(path); i > 0; i = strings.LastIndexByte(path[:i], '.') {
		raw, ok := t.Claim(path[:i])
		if !ok {
			continue
		}
		if i == len(path) {
			return scalar(raw)
		}
		return nestedAt(raw, path[i+1:], 0)
	}
	return "", false
}

func nestedAt(raw json.RawMessage, path string, depth int) (string, bool) {
	if depth > 8 {
		return "", false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return "", false
	}
	for i := len(path); i > 0; i = strings.LastIndexByte(path[:i], '.') {
		v, ok := obj[path[:i]]
		if !ok {
			continue
		}
		if i == len(path) {
			return scalar(v)
		}
		return nestedAt(v, path[i+1:], depth+1)
	}
	return "", false
}

// scalar returns a claim value for comparison: a string's value, or the
// text of a number or boolean.
func scalar(raw []byte) (string, bool) {
	if s, ok := jws.String(raw); ok {
		return s, true
	}
	switch v := strings.TrimSpace(string(raw)); {
	case v == "true", v == "false":
		return v, true
	case len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9'):
		return v, true
	}
	return "", false
}

// binding is one federated identity of a client.
type binding struct {
	client, subject string
	claims          map[string]string
}

// federationState is what the federation index holds for one
// environment: trust policies by issuer and by SPIFFE trust domain, and
// the bindings of each policy.
type federationState struct {
	byIssuer map[string]*store.TrustPolicy
	spiffe   map[string]*store.TrustPolicy
	bindings map[string][]binding
}

// federationIndex keeps the trust policies and every client's federation
// in memory, per environment, loaded on first use and again after any
// change to either (announced locally or by the change feed). It is keyed
// by the environment's name, and an entry built for another load of the
// environment (unloaded and loaded again) is not used: memory stays bounded
// by the environments, and a request still holding an unloaded one cannot
// leave an entry behind that nothing drops.
type federationIndex struct {
	mu      sync.RWMutex
	states  map[string]fedEntry
	loading singleflight.Group
	// gens counts invalidations: a load that began before one is served
	// to its waiters but not kept.
	gens uint64
}

type fedEntry struct {
	en *env.Env
	st *federationState
}

func (f *federationIndex) invalidate(en *env.Env) {
	f.mu.Lock()
	if en == nil {
		f.states = nil
	} else {
		delete(f.states, en.Name)
		// Later requests start a load of their own.
		f.loading.Forget(en.Name)
	}
	f.gens++
	f.mu.Unlock()
}

func (f *federationIndex) get(ctx context.Context, en *env.Env) (*federationState, error) {
	f.mu.RLock()
	e, ok := f.states[en.Name]
	f.mu.RUnlock()
	if ok && e.en == en {
		return e.st, nil
	}
	// One load per environment at a time, outside the lock: loading one
	// environment's index never stalls another's.
	v, err, _ := f.loading.Do(en.Name, func() (any, error) {
		f.mu.RLock()
		gen := f.gens
		f.mu.RUnlock()
		st, err := loadFederation(ctx, en)
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		if f.gens == gen { // else invalidated meanwhile: serve it, keep nothing
			if f.states == nil {
				f.states = map[string]fedEntry{}
			}
			f.states[en.Name] = fedEntry{en: en, st: st}
		}
		f.mu.Unlock()
		return st, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*federationState), nil
}

// loadFederation reads an environment's trust policies and federations.
func loadFederation(ctx context.Context, en *env.Env) (*federationState, error) {
	policies, err := en.Store.ListTrustPolicies(ctx)
	if err != nil {
		return nil, err
	}
	fed, err := en.Store.FederatedIdentities(ctx)
	if err != nil {
		return nil, err
	}
	st := &federationState{byIssuer: map[string]*store.TrustPolicy{}, spiffe: map[string]*store.TrustPolicy{}, bindings: map[string][]binding{}}
	for i := range policies {
		p := &policies[i]
		if p.Kind == store.TrustSPIFFE {
			st.spiffe[p.Issuer] = p
		} else {
			st.byIssuer[p.Issuer] = p
		}
	}
	for client, ids := range fed {
		for _, id := range ids {
			st.bindings[id.Policy] = append(st.bindings[id.Policy], binding{client: client, subject: id.Subject, claims: id.Claims})
		}
	}
	return st, nil
}
