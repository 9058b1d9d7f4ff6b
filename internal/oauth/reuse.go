package oauth

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
)

// Token reuse (store.Client.TokenReuse, off by default): while the last
// access token issued to a client for the same audience, scopes and
// lifetime has more than the client's fraction of its lifetime left, the
// token endpoint returns it again (same jti, same exp, expires_in the
// seconds left) instead of signing a new one. The tokens live in this
// replica's memory only, at most reuseMax of them.
//
// A token is never returned again once anything it was issued under may
// have changed: the client (any change bumps its version: grants, scopes,
// lifetime, disabled, tokens revoked), the signing key (rotated or
// revoked: the environment signs with another), or its jti was revoked
// (the in-memory deny-list says so; while that list is not trusted, no
// token is reused).
//
// A sender-constrained token (bound to a DPoP key or a certificate, cnf)
// is never reused nor kept for reuse: each request may prove another key
// or certificate, and a token bound to an earlier one would be useless to
// it. Reuse is simply off for a request whose token is bound.

// reuseMax bounds the tokens kept for reuse.
const reuseMax = 10_000

// reuseCache holds the last token per (environment, client, audience,
// scopes, lifetime), by a hash of those; the entry holds them too, so a
// collision is a miss.
type reuseCache struct {
	seed    maphash.Seed
	mu      sync.Mutex
	entries map[uint64]*reuseEntry
	// reused and signed count tokens returned again and tokens signed
	// for clients with reuse on.
	reused, signed atomic.Uint64
}

type reuseEntry struct {
	env, clientID string
	version       int64
	aud, scopes   []string
	lifetime      time.Duration
	signer        *keys.Signer
	jti           string
	resp          TokenResponse
	issuedAt      time.Time
}

func newReuseCache() *reuseCache {
	return &reuseCache{seed: maphash.MakeSeed(), entries: map[uint64]*reuseEntry{}}
}

func (rc *reuseCache) key(envName string, c *store.Client, d *decision) uint64 {
	var h maphash.Hash
	h.SetSeed(rc.seed)
	h.WriteString(envName)
	h.WriteByte(0)
	h.WriteString(c.ID)
	h.WriteByte(0)
	for _, a := range d.aud {
		h.WriteString(a)
		h.WriteByte(0)
	}
	h.WriteByte(1)
	for _, s := range d.scopes {
		h.WriteString(s)
		h.WriteByte(0)
	}
	var b [8]byte
	for i := range b {
		b[i] = byte(d.lifetime >> (8 * i))
	}
	h.Write(b[:])
	return h.Sum64()
}

// get returns the token to hand out again, if there is one that may be.
func (rc *reuseCache) get(en *env.Env, c *store.Client, d *decision, now time.Time) (*TokenResponse, bool) {
	k := rc.key(en.Name, c, d)
	rc.mu.Lock()
	e := rc.entries[k]
	rc.mu.Unlock()
	if e == nil || e.env != en.Name || e.clientID != c.ID || e.lifetime != d.lifetime ||
		!slices.Equal(e.aud, d.aud) || !slices.Equal(e.scopes, d.scopes) {
		return nil, false
	}
	left := e.resp.ExpiresAt.Sub(now)
	life := e.resp.ExpiresAt.Sub(e.issuedAt)
	revoked, trusted := en.Denied.Known(e.jti)
	signer := en.Keys.Signer() // a reload makes new Signers of the same keys
	if e.version != c.Version || e.issuedAt.Before(c.TokensRevokedBefore) || (e.signer != signer && e.signer.KID() != signer.KID()) ||
		revoked || !trusted || float64(left) <= c.TokenReuse*float64(life) {
		if revoked || e.version != c.Version || left <= 0 {
			rc.mu.Lock()
			if rc.entries[k] == e {
				delete(rc.entries, k)
			}
			rc.mu.Unlock()
		}
		return nil, false
	}
	resp := e.resp
	resp.ExpiresIn = int64(left / time.Second)
	resp.Reused = true
	rc.reused.Add(1)
	return &resp, true
}

// put keeps a token just signed for reuse.
func (rc *reuseCache) put(en *env.Env, c *store.Client, d *decision, jti string, signer *keys.Signer, issuedAt time.Time, resp *TokenResponse) {
	rc.signed.Add(1)
	e := &reuseEntry{env: en.Name, clientID: c.ID, version: c.Version, aud: slices.Clone(d.aud), scopes: slices.Clone(d.scopes),
		lifetime: d.lifetime, signer: signer, jti: jti, resp: *resp, issuedAt: issuedAt}
	e.resp.Scopes = e.scopes
	k := rc.key(en.Name, c, d)
	rc.mu.Lock()
	if _, ok := rc.entries[k]; !ok && len(rc.entries) >= reuseMax {
		for old := range rc.entries { // any one: map order is random
			delete(rc.entries, old)
			break
		}
	}
	rc.entries[k] = e
	rc.mu.Unlock()
}

// forget drops the tokens of a client of an environment (clientID "":
// of every client of it).
func (rc *reuseCache) forget(envName, clientID string) {
	rc.mu.Lock()
	for k, e := range rc.entries {
		if e.env == envName && (clientID == "" || e.clientID == clientID) {
			delete(rc.entries, k)
		}
	}
	rc.mu.Unlock()
}

// ForgetClient drops the tokens kept for reuse of a client that changed
// (clientID "": of every client of the environment). Correctness does not
// depend on it (a token is reused only for the client version it was
// issued to); it frees the memory at once.
func (s *Service) ForgetClient(envName, clientID string) { s.reuse.forget(envName, clientID) }

// ReuseCounts returns how many access tokens were returned again by token
// reuse and how many were signed for clients with reuse on, since start.
func (s *Service) ReuseCounts() (reused, signed uint64) {
	return s.reuse.reused.Load(), s.reuse.signed.Load()
}
