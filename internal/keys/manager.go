package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/store"
)

// Policy is the signing key lifecycle.
//
// A key is generated as "next": published in the JWKS but not signing. It
// becomes "active" (signing) at its activation time, at least Prepublish
// after it was published, so that every verifier that caches the JWKS for
// up to its max-age has seen it before the first token it signs. The key it
// replaces becomes "retired": still published, no longer signing, until
// Retention after it stopped signing (the longest token lifetime plus
// leeway), and is then removed.
type Policy struct {
	Alg            string        // algorithm of new keys
	RotationPeriod time.Duration // how long a key signs before the next takes over; 0: never automatically
	Prepublish     time.Duration // publication lead before a key signs
	Retention      time.Duration // how long a retired key stays published
}

// keyStore is what the Manager needs from the store.
type keyStore interface {
	CreateSigningKey(ctx context.Context, k store.SigningKey) (bool, error)
	ListSigningKeys(ctx context.Context) ([]store.SigningKey, error)
	UpdateSigningKeys(ctx context.Context, fn func([]store.SigningKey, func(string) string) (store.KeyUpdate, error)) error
}

// ErrRotationScheduled: a manual rotation was asked for while one is
// already scheduled.
var ErrRotationScheduled = errors.New("a rotation is already scheduled")

// Manager holds the signing keys in use and the published key set, and runs
// the lifecycle. Every replica runs one; the store serialises their changes.
type Manager struct {
	store  keyStore
	master *MasterKey
	policy Policy
	now    func() time.Time
	log    *slog.Logger
	cur    atomic.Pointer[keySet]
}

type keySet struct {
	active *Signer
	next   *Signer // the key that takes over at nextAt (nil: none)
	nextAt time.Time
	public map[string]PublicKey
	jwks   []byte
	etag   string
	// fingerprint identifies the rows the set was built from.
	fingerprint string
}

// NewManager returns a Manager; call Init before use.
func NewManager(st keyStore, master *MasterKey, policy Policy, now func() time.Time, log *slog.Logger) *Manager {
	return &Manager{store: st, master: master, policy: policy, now: now, log: log}
}

// Init loads the keys, creating the first signing key when the store has
// none (it signs at once: no token exists yet that a verifier could check),
// and runs one lifecycle step. Several processes may call it at once on one
// database: exactly one key becomes active and every process loads it.
func (m *Manager) Init(ctx context.Context) error {
	keys, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	if !slices.ContainsFunc(keys, func(k store.SigningKey) bool { return k.State == store.KeyActive }) {
		kid, sealed, jwk, err := newKey(m.policy.Alg, m.master)
		if err != nil {
			return fmt.Errorf("init signing key: %w", err)
		}
		now := m.now().UTC()
		created, err := m.store.CreateSigningKey(ctx, store.SigningKey{
			KID: kid, Alg: m.policy.Alg, State: store.KeyActive, Private: sealed, PublicJWK: jwk,
			MasterKeyID: m.master.ID(), CreatedAt: now, ActivatedAt: now,
		})
		if err != nil {
			return fmt.Errorf("init signing key: %w", err)
		}
		if created {
			m.log.Info("created signing key", "kid", kid, "alg", m.policy.Alg)
		}
	}
	return m.Maintain(ctx)
}

// Maintain runs one lifecycle step and reloads the keys. It activates a
// next key whose time has come (retiring the active one), schedules the
// next rotation when it is due (or when the configured algorithm differs
// from the active key's), and removes retired keys whose tokens have all
// expired. Replicas call it periodically; whichever runs a step first does
// it, the others find it done.
func (m *Manager) Maintain(ctx context.Context) error {
	var seen []store.SigningKey
	changed := false
	err := m.store.UpdateSigningKeys(ctx, func(keys []store.SigningKey, _ func(string) string) (store.KeyUpdate, error) {
		u, err := m.step(keys, m.now().UTC())
		seen, changed = keys, !u.Empty()
		return u, err
	})
	if err != nil {
		return fmt.Errorf("key maintenance: %w", err)
	}
	if changed {
		return m.Reload(ctx)
	}
	// Nothing changed: the rows just read are the current ones.
	return m.load(seen)
}

func (m *Manager) step(keys []store.SigningKey, now time.Time) (store.KeyUpdate, error) {
	var u store.KeyUpdate
	var active, next *store.SigningKey
	for i := range keys {
		switch k := &keys[i]; k.State {
		case store.KeyActive:
			active = k
		case store.KeyNext:
			if next == nil || k.ActivateAt.Before(next.ActivateAt) {
				next = k
			}
		case store.KeyRetired:
			if !now.Before(k.RemoveAt) {
				u.Delete = append(u.Delete, k.KID)
				m.log.Info("removed retired signing key: its last token has expired", "kid", k.KID)
			}
		}
	}
	if next != nil && !now.Before(next.ActivateAt) {
		if active != nil {
			a := *active
			a.State, a.RetiredAt, a.RemoveAt = store.KeyRetired, next.ActivateAt, next.ActivateAt.Add(m.policy.Retention)
			u.Update = append(u.Update, a)
		}
		n := *next
		n.State, n.ActivatedAt = store.KeyActive, next.ActivateAt
		u.Update = append(u.Update, n)
		m.log.Info("signing key activated", "kid", n.KID, "alg", n.Alg)
		active, next = &n, nil
	}
	if next == nil && active != nil && m.policy.RotationPeriod > 0 {
		at := active.ActivatedAt.Add(m.policy.RotationPeriod)
		due := at.Add(-m.policy.Prepublish)
		if active.Alg != m.policy.Alg {
			due = now // the configured algorithm changed: rotate to it now
		}
		if !now.Before(due) {
			k, err := m.nextKey(m.policy.Alg, now, at)
			if err != nil {
				return u, err
			}
			u.Insert = append(u.Insert, k)
			m.log.Info("scheduled signing key rotation", "kid", k.KID, "alg", k.Alg, "activate_at", k.ActivateAt)
		}
	}
	return u, nil
}

// nextKey generates a next key that activates at the later of at and
// now + Prepublish.
func (m *Manager) nextKey(alg string, now, at time.Time) (store.SigningKey, error) {
	kid, sealed, jwk, err := newKey(alg, m.master)
	if err != nil {
		return store.SigningKey{}, err
	}
	if earliest := now.Add(m.policy.Prepublish); at.Before(earliest) {
		at = earliest
	}
	return store.SigningKey{KID: kid, Alg: alg, State: store.KeyNext, Private: sealed, PublicJWK: jwk,
		MasterKeyID: m.master.ID(), CreatedAt: now, ActivateAt: at}, nil
}

// Rotate schedules a normal, pre-published rotation to a new key of alg
// ("" for the configured algorithm): it is published now and signs from
// now + Prepublish on.
func (m *Manager) Rotate(ctx context.Context, alg string) (store.SigningKey, error) {
	if alg == "" {
		alg = m.policy.Alg
	}
	if !ValidAlg(alg) {
		return store.SigningKey{}, fmt.Errorf("unsupported signing algorithm %q", alg)
	}
	// Activate a key that is due first, so that it does not count as
	// scheduled.
	if err := m.Maintain(ctx); err != nil {
		return store.SigningKey{}, err
	}
	var created store.SigningKey
	err := m.store.UpdateSigningKeys(ctx, func(keys []store.SigningKey, _ func(string) string) (store.KeyUpdate, error) {
		for _, k := range keys {
			if k.State == store.KeyNext {
				return store.KeyUpdate{}, fmt.Errorf("%w: key %s activates at %s", ErrRotationScheduled, k.KID, k.ActivateAt.Format(time.RFC3339))
			}
		}
		now := m.now().UTC()
		k, err := m.nextKey(alg, now, now)
		created = k
		return store.KeyUpdate{Insert: []store.SigningKey{k}}, err
	})
	if err != nil {
		return store.SigningKey{}, err
	}
	m.log.Info("scheduled signing key rotation", "kid", created.KID, "alg", alg, "activate_at", created.ActivateAt)
	return created, m.Reload(ctx)
}

// Revoke removes a key at once: it is unpublished and stops signing. If it
// was the active key, a replacement signs at once, without pre-publication:
// verifiers holding a cached JWKS reject its tokens until they refetch, and
// every token the revoked key signed stops verifying. This is for a
// compromised key; use Rotate otherwise.
func (m *Manager) Revoke(ctx context.Context, kid string) (replacement string, err error) {
	// A next key whose time has come already signs: make it the active key
	// in the store first, so that revoking it replaces it.
	if err := m.Maintain(ctx); err != nil {
		return "", err
	}
	err = m.store.UpdateSigningKeys(ctx, func(keys []store.SigningKey, _ func(string) string) (store.KeyUpdate, error) {
		i := slices.IndexFunc(keys, func(k store.SigningKey) bool { return k.KID == kid })
		if i < 0 {
			return store.KeyUpdate{}, fmt.Errorf("signing key %s: %w", kid, store.ErrNotFound)
		}
		u := store.KeyUpdate{Delete: []string{kid}}
		if keys[i].State != store.KeyActive {
			return u, nil
		}
		now := m.now().UTC()
		// Promote an already published next key if there is one.
		for _, k := range keys {
			if k.State == store.KeyNext {
				k.State, k.ActivateAt, k.ActivatedAt = store.KeyActive, now, now
				replacement = k.KID
				u.Update = append(u.Update, k)
				return u, nil
			}
		}
		k, err := m.nextKey(m.policy.Alg, now, now)
		if err != nil {
			return u, err
		}
		k.State, k.ActivateAt, k.ActivatedAt = store.KeyActive, now, now
		replacement = k.KID
		u.Insert = append(u.Insert, k)
		return u, nil
	})
	if err != nil {
		return "", err
	}
	m.log.Warn("signing key revoked: it is unpublished and its tokens no longer verify", "kid", kid, "replacement", replacement)
	return replacement, m.Reload(ctx)
}

// KeyInfo describes a key for listings.
type KeyInfo struct {
	KID         string
	Alg         string
	State       string
	CreatedAt   time.Time
	ActivateAt  time.Time
	ActivatedAt time.Time
	RetiredAt   time.Time
	RemoveAt    time.Time
	// TokensLiveUntil is when the last token this key signed (or can sign)
	// expires; zero for a key that has signed nothing yet.
	TokensLiveUntil time.Time
}

// List describes every key, newest first.
func (m *Manager) List(ctx context.Context, maxTokenLifetime time.Duration) ([]KeyInfo, error) {
	keys, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := m.now().UTC()
	out := make([]KeyInfo, 0, len(keys))
	for _, k := range keys {
		info := KeyInfo{KID: k.KID, Alg: k.Alg, State: k.State, CreatedAt: k.CreatedAt, ActivateAt: k.ActivateAt,
			ActivatedAt: k.ActivatedAt, RetiredAt: k.RetiredAt, RemoveAt: k.RemoveAt}
		switch k.State {
		case store.KeyActive:
			info.TokensLiveUntil = now.Add(maxTokenLifetime)
		case store.KeyRetired:
			info.TokensLiveUntil = k.RetiredAt.Add(maxTokenLifetime)
		}
		out = append(out, info)
	}
	return out, nil
}

// Reload reads the keys from the store and swaps them in atomically. On
// failure the previous key set stays in use.
func (m *Manager) Reload(ctx context.Context) error {
	rows, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	return m.load(rows)
}

// load swaps in the key set rows describe. When they describe the set in
// use (the common case of a periodic maintenance), nothing is decrypted or
// rebuilt.
func (m *Manager) load(rows []store.SigningKey) error {
	var fp strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&fp, "%s|%s|%d|%s;", r.KID, r.State, r.ActivateAt.UnixMicro(), r.MasterKeyID)
	}
	if cur := m.cur.Load(); cur != nil && cur.fingerprint == fp.String() {
		return nil
	}
	ks := &keySet{public: map[string]PublicKey{}, fingerprint: fp.String()}
	var err error
	var jwks bytes.Buffer
	jwks.WriteString(`{"keys":[`)
	for _, r := range rows {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(r.PublicJWK); err != nil {
			return fmt.Errorf("load signing key %s: public JWK: %w", r.KID, err)
		}
		if len(ks.public) > 0 {
			jwks.WriteByte(',')
		}
		jwks.Write(r.PublicJWK)
		ks.public[r.KID] = PublicKey{Key: jwk.Key, Alg: r.Alg}
		switch r.State {
		case store.KeyActive:
			if ks.active, err = openSigner(m.master, r.KID, r.Alg, r.MasterKeyID, r.Private); err != nil {
				return err
			}
		case store.KeyNext:
			if ks.next == nil || r.ActivateAt.Before(ks.nextAt) {
				if ks.next, err = openSigner(m.master, r.KID, r.Alg, r.MasterKeyID, r.Private); err != nil {
					return err
				}
				ks.nextAt = r.ActivateAt
			}
		}
	}
	jwks.WriteString(`]}`)
	if ks.active == nil {
		return errors.New("load signing keys: no active key")
	}
	ks.jwks = jwks.Bytes()
	sum := sha256.Sum256(ks.jwks)
	ks.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
	m.cur.Store(ks)
	return nil
}

// Signer returns the key that signs new tokens now: the active key, or the
// next key once its activation time has come. The switch is decided by the
// clock, not by when a replica happens to run Maintain, so every replica
// switches at the same instant.
func (m *Manager) Signer() *Signer {
	ks := m.cur.Load()
	if ks.next != nil && !m.now().Before(ks.nextAt) {
		return ks.next
	}
	return ks.active
}

// JWKS returns the published JWK Set document and its ETag.
func (m *Manager) JWKS() (body []byte, etag string) {
	ks := m.cur.Load()
	return ks.jwks, ks.etag
}

// PublicKey returns the published key with this kid.
func (m *Manager) PublicKey(kid string) (PublicKey, bool) {
	k, ok := m.cur.Load().public[kid]
	return k, ok
}

// Algorithms returns the algorithms of the published keys, for discovery.
func (m *Manager) Algorithms() []string {
	var out []string
	for _, k := range m.cur.Load().public {
		if !slices.Contains(out, k.Alg) {
			out = append(out, k.Alg)
		}
	}
	slices.Sort(out)
	return out
}
