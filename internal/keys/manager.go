package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
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
	// work is when the keys last loaded next need maintenance, and
	// recorded when the store says they do (Unix µs).
	work, recorded atomic.Int64
	// generate makes a private key for an algorithm (a hook for tests).
	// It is slow for RSA (tens of milliseconds), so it never runs inside a
	// transaction of the store.
	generate func(alg string) (crypto.Signer, error)
	// onChange is told of every committed change (nil: nobody).
	onChange func(ctx context.Context, c Change)
}

// Change is a committed change to the signing keys, for the audit trail.
type Change struct {
	// Action is key.create (the first key), key.rotate (a next key
	// scheduled), key.activate, key.revoke, key.remove (a retired key
	// unpublished once its tokens expired) or key.prune (a next key
	// sealed under another master key, deleted).
	Action string
	KID    string
	Alg    string
	// ActivateAt is when a scheduled key starts signing; Replacement the
	// key that replaced a revoked active key.
	ActivateAt  time.Time
	Replacement string
	// Scheduled: the lifecycle made the change, not a caller.
	Scheduled bool
}

// OnChange sets the function told of every committed change to the keys
// (call it before Init).
func (m *Manager) OnChange(fn func(ctx context.Context, c Change)) { m.onChange = fn }

func (m *Manager) changed(ctx context.Context, c Change) {
	if m.onChange != nil {
		m.onChange(ctx, c)
	}
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
	// status counts the keys by state (RotateAt is filled in by Status).
	status    Status
	activated time.Time // when the active key started signing
}

// NewManager returns a Manager; call Init before use.
func NewManager(st keyStore, master *MasterKey, policy Policy, now func() time.Time, log *slog.Logger) *Manager {
	return &Manager{store: st, master: master, policy: policy, now: now, log: log, generate: generate}
}

// Init loads the keys, creating the first signing key when the store has
// none (it signs at once: no token exists yet that a verifier could check),
// and runs one lifecycle step. Several processes may call it at once on one
// database: exactly one key becomes active and every process loads it.
//
// It writes nothing until the master key is proven against the stored keys
// (see CheckMasterKey): a wrong master key fails with both key ids named.
// Next keys sealed under another master key, which never signed, are
// deleted with a warning (see sortSealing).
func (m *Manager) Init(ctx context.Context) error {
	keys, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	if _, err := sortSealing(keys, m.master); err != nil {
		return err
	}
	if !slices.ContainsFunc(keys, func(k store.SigningKey) bool { return k.State == store.KeyActive }) {
		k, err := m.newKey(m.policy.Alg)
		if err != nil {
			return fmt.Errorf("init signing key: %w", err)
		}
		now := m.now().UTC()
		row := k.row(m.master, store.KeyActive, now, now)
		row.ActivatedAt = now
		created, err := m.store.CreateSigningKey(ctx, row)
		if err != nil {
			return fmt.Errorf("init signing key: %w", err)
		}
		if created {
			m.log.Info("created signing key", "kid", k.kid, "alg", k.alg)
			m.changed(ctx, Change{Action: "key.create", KID: k.kid, Alg: k.alg, Scheduled: true})
		}
	}
	if err := m.Maintain(ctx); err != nil {
		return err
	}
	return m.RecordWork(ctx)
}

// Maintain runs one lifecycle step and reloads the keys. It activates a
// next key whose time has come (retiring the active one), schedules the
// next rotation when it is due (or when the configured algorithm differs
// from the active key's), and removes retired keys whose tokens have all
// expired. Replicas call it periodically; whichever runs a step first does
// it, the others find it done.
//
// It decides on a plain read: when nothing is due (nearly always), it opens
// no transaction. A new key is generated before the transaction, which
// checks again that the step is still due (another replica may have done
// it) and writes only then.
func (m *Manager) Maintain(ctx context.Context) error {
	_, err := m.maintain(ctx)
	return err
}

// maintain is Maintain; it returns the rows the key set was loaded from.
func (m *Manager) maintain(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("key maintenance: %w", err)
	}
	p, err := m.step(rows, m.now().UTC(), nil)
	if err != nil {
		return nil, fmt.Errorf("key maintenance: %w", err)
	}
	if p.u.Empty() && p.rotateTo == "" {
		return rows, m.load(rows)
	}
	var k *fresh
	if p.rotateTo != "" {
		if k, err = m.newKey(p.rotateTo); err != nil {
			return nil, fmt.Errorf("key maintenance: %w", err)
		}
	}
	err = m.store.UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
		rows = keys
		if p, err = m.step(keys, m.now().UTC(), k); err != nil {
			return store.KeyUpdate{}, err
		}
		if len(p.pruned) > 0 {
			// Deleting keys needs every proof there is.
			if err := checkMetaSealing(meta, m.master); err != nil {
				return store.KeyUpdate{}, err
			}
		}
		return p.u, nil
	})
	if err != nil {
		return nil, fmt.Errorf("key maintenance: %w", err)
	}
	m.logPlan(ctx, p, true)
	if p.u.Empty() {
		// Nothing changed: the rows just read are the current ones.
		return rows, m.load(rows)
	}
	if rows, err = m.store.ListSigningKeys(ctx); err != nil {
		return nil, fmt.Errorf("load signing keys: %w", err)
	}
	return rows, m.load(rows)
}

// plan is one lifecycle step: the update and what it means.
type plan struct {
	u         store.KeyUpdate
	removed   []string           // retired keys whose last token has expired
	pruned    []store.SigningKey // next keys sealed under another master key
	activated *store.SigningKey
	scheduled *store.SigningKey
	// rotateTo is the algorithm of a rotation that is due, when no key
	// was supplied for it.
	rotateTo string
}

// step works out the lifecycle step due at now. It never generates a key: a
// rotation that is due uses k when it is of the right algorithm, and is
// otherwise reported in rotateTo.
func (m *Manager) step(keys []store.SigningKey, now time.Time, k *fresh) (plan, error) {
	var p plan
	s, err := sortSealing(keys, m.master)
	if err != nil {
		return p, err
	}
	for _, f := range s.foreign {
		p.u.Delete = append(p.u.Delete, f.KID)
		p.pruned = append(p.pruned, f)
	}
	var active, next *store.SigningKey
	for i := range s.keys {
		switch k := &s.keys[i]; k.State {
		case store.KeyActive:
			active = k
		case store.KeyNext:
			if next == nil || k.ActivateAt.Before(next.ActivateAt) {
				next = k
			}
		case store.KeyRetired:
			if !now.Before(k.RemoveAt) {
				p.u.Delete = append(p.u.Delete, k.KID)
				p.removed = append(p.removed, k.KID)
			}
		}
	}
	if next != nil && !now.Before(next.ActivateAt) {
		if active != nil {
			a := *active
			a.State, a.RetiredAt, a.RemoveAt = store.KeyRetired, next.ActivateAt, next.ActivateAt.Add(m.policy.Retention)
			p.u.Update = append(p.u.Update, a)
		}
		n := *next
		n.State, n.ActivatedAt = store.KeyActive, next.ActivateAt
		p.u.Update = append(p.u.Update, n)
		p.activated = &n
		active, next = &n, nil
	}
	if next == nil && active != nil && m.policy.RotationPeriod > 0 {
		at := active.ActivatedAt.Add(m.policy.RotationPeriod)
		due := at.Add(-m.policy.Prepublish)
		if active.Alg != m.policy.Alg {
			// The configured algorithm changed: rotate to it now (signing
			// once it has been published for Prepublish).
			due, at = now, now
		}
		if !now.Before(due) {
			if k == nil || k.alg != m.policy.Alg {
				p.rotateTo = m.policy.Alg
				return p, nil
			}
			if earliest := now.Add(m.policy.Prepublish); at.Before(earliest) {
				at = earliest
			}
			row := k.row(m.master, store.KeyNext, now, at)
			p.u.Insert = append(p.u.Insert, row)
			p.scheduled = &row
		}
	}
	return p, nil
}

// logPlan logs a step once it is committed, and tells onChange of it;
// scheduled: the lifecycle made the step (else its caller scheduled the
// rotation).
func (m *Manager) logPlan(ctx context.Context, p plan, scheduled bool) {
	for _, k := range p.pruned {
		m.changed(ctx, Change{Action: "key.prune", KID: k.KID, Alg: k.Alg, Scheduled: true})
		m.log.Warn("deleted a next signing key sealed under another master key: it never signed, and no server with this database's master key can use it; "+
			"it was most likely created by a server started with the wrong master key",
			"kid", k.KID, "alg", k.Alg, "sealed_under", k.MasterKeyID, "master_key_id", m.master.ID())
	}
	for _, kid := range p.removed {
		m.log.Info("removed retired signing key: its last token has expired", "kid", kid)
		m.changed(ctx, Change{Action: "key.remove", KID: kid, Scheduled: true})
	}
	if k := p.activated; k != nil {
		m.log.Info("signing key activated", "kid", k.KID, "alg", k.Alg)
		m.changed(ctx, Change{Action: "key.activate", KID: k.KID, Alg: k.Alg, Scheduled: true})
	}
	if k := p.scheduled; k != nil {
		m.log.Info("scheduled signing key rotation", "kid", k.KID, "alg", k.Alg, "activate_at", k.ActivateAt)
		m.changed(ctx, Change{Action: "key.rotate", KID: k.KID, Alg: k.Alg, ActivateAt: k.ActivateAt, Scheduled: scheduled})
	}
}

// fresh is a new key, generated and sealed outside any transaction.
type fresh struct {
	kid, alg    string
	sealed, jwk []byte
}

// newKey generates a key for alg and seals it under the master key.
func (m *Manager) newKey(alg string) (*fresh, error) {
	priv, err := m.generate(alg)
	if err != nil {
		return nil, err
	}
	kid, jwk, err := publicJWK(priv, alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return &fresh{kid: kid, alg: alg, sealed: m.master.Seal(der, sealAAD(kid)), jwk: jwk}, nil
}

// row is the stored form of k, created at now, activating at activateAt.
func (k *fresh) row(master *MasterKey, state string, now, activateAt time.Time) store.SigningKey {
	return store.SigningKey{KID: k.kid, Alg: k.alg, State: state, Private: k.sealed, PublicJWK: k.jwk,
		MasterKeyID: master.ID(), CreatedAt: now, ActivateAt: activateAt}
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
	rows, err := m.maintain(ctx)
	if err != nil {
		return store.SigningKey{}, err
	}
	if err := rotationScheduled(rows); err != nil {
		return store.SigningKey{}, err
	}
	k, err := m.newKey(alg)
	if err != nil {
		return store.SigningKey{}, err
	}
	var created store.SigningKey
	var pruned []store.SigningKey
	err = m.store.UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
		u, s, err := m.sortForUpdate(keys, meta)
		if err != nil {
			return u, err
		}
		pruned = s.foreign
		if err := rotationScheduled(s.keys); err != nil {
			return store.KeyUpdate{}, err
		}
		now := m.now().UTC()
		created = k.row(m.master, store.KeyNext, now, now.Add(m.policy.Prepublish))
		u.Insert = append(u.Insert, created)
		return u, nil
	})
	if err != nil {
		return store.SigningKey{}, err
	}
	m.logPlan(ctx, plan{pruned: pruned, scheduled: &created}, false)
	if err := m.Reload(ctx); err != nil {
		return created, err
	}
	return created, m.RecordWork(ctx)
}

func rotationScheduled(keys []store.SigningKey) error {
	for _, k := range keys {
		if k.State == store.KeyNext {
			return fmt.Errorf("%w: key %s activates at %s", ErrRotationScheduled, k.KID, k.ActivateAt.Format(time.RFC3339))
		}
	}
	return nil
}

// sortForUpdate checks the sealing of the keys read in a transaction, and
// starts its update with the deletion of foreign next keys.
func (m *Manager) sortForUpdate(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, sorted, error) {
	var u store.KeyUpdate
	s, err := sortSealing(keys, m.master)
	if err != nil {
		return u, s, err
	}
	if len(s.foreign) > 0 {
		if err := checkMetaSealing(meta, m.master); err != nil {
			return u, s, err
		}
	}
	for _, k := range s.foreign {
		u.Delete = append(u.Delete, k.KID)
	}
	return u, s, nil
}

// errNeedKey: a revocation found, in its transaction, that it needs a
// replacement key it had not generated.
var errNeedKey = errors.New("a replacement key is needed")

// Revoke removes a key at once: it is unpublished and stops signing. If it
// was the active key, a replacement signs at once, without pre-publication:
// verifiers holding a cached JWKS reject its tokens until they refetch, and
// every token the revoked key signed stops verifying. This is for a
// compromised key; use Rotate otherwise.
func (m *Manager) Revoke(ctx context.Context, kid string) (replacement string, err error) {
	// A next key whose time has come already signs: make it the active key
	// in the store first, so that revoking it replaces it.
	rows, err := m.maintain(ctx)
	if err != nil {
		return "", err
	}
	// A replacement is generated before the transaction when the plain
	// read says one is needed, and after it when the transaction finds
	// one needed that the read did not (another replica changed the keys).
	need := needsReplacement(rows, kid)
	var k *fresh
	var pruned []store.SigningKey
	for attempt := 0; ; attempt++ {
		if need && k == nil {
			if k, err = m.newKey(m.policy.Alg); err != nil {
				return "", err
			}
		}
		replacement = ""
		err = m.store.UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
			u, s, err := m.sortForUpdate(keys, meta)
			if err != nil {
				return u, err
			}
			pruned = s.foreign
			i := slices.IndexFunc(s.keys, func(k store.SigningKey) bool { return k.KID == kid })
			if i < 0 {
				return store.KeyUpdate{}, fmt.Errorf("signing key %s: %w", kid, store.ErrNotFound)
			}
			u.Delete = append(u.Delete, kid)
			if s.keys[i].State != store.KeyActive {
				return u, nil
			}
			now := m.now().UTC()
			// Promote an already published next key if there is one.
			for _, n := range s.keys {
				if n.State == store.KeyNext {
					n.State, n.ActivateAt, n.ActivatedAt = store.KeyActive, now, now
					replacement = n.KID
					u.Update = append(u.Update, n)
					return u, nil
				}
			}
			if k == nil {
				return store.KeyUpdate{}, errNeedKey
			}
			row := k.row(m.master, store.KeyActive, now, now)
			row.ActivatedAt = now
			replacement = row.KID
			u.Insert = append(u.Insert, row)
			return u, nil
		})
		if errors.Is(err, errNeedKey) && attempt == 0 {
			need = true
			continue
		}
		break
	}
	if err != nil {
		return "", err
	}
	m.logPlan(ctx, plan{pruned: pruned}, false)
	m.log.Warn("signing key revoked: it is unpublished and its tokens no longer verify", "kid", kid, "replacement", replacement)
	m.changed(ctx, Change{Action: "key.revoke", KID: kid, Replacement: replacement})
	if err := m.Reload(ctx); err != nil {
		return replacement, err
	}
	return replacement, m.RecordWork(ctx)
}

// needsReplacement reports whether revoking kid needs a new key: it is the
// active key and no next key can take over.
func needsReplacement(keys []store.SigningKey, kid string) bool {
	active := false
	for _, k := range keys {
		if k.State == store.KeyNext {
			return false
		}
		active = active || (k.KID == kid && k.State == store.KeyActive)
	}
	return active
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
	m.work.Store(m.nextWork(rows).UnixMicro())
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
			ks.status.Active++
			ks.activated = r.ActivatedAt
		case store.KeyNext:
			ks.status.Next++
		case store.KeyRetired:
			ks.status.Retired++
		}
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

// maxWorkInterval bounds the time between two maintenance steps of an
// environment's keys when nothing is scheduled (a changed policy or clock
// is noticed within it).
const maxWorkInterval = 24 * time.Hour

// nextWork returns when the keys in rows next need a lifecycle step: a next
// key's activation, a retired key's removal, a rotation's pre-publication,
// at once when there is no key, and within maxWorkInterval regardless.
func (m *Manager) nextWork(rows []store.SigningKey) time.Time {
	now := m.now().UTC()
	at := now.Add(maxWorkInterval)
	var active *store.SigningKey
	next := false
	for i := range rows {
		switch k := &rows[i]; k.State {
		case store.KeyActive:
			active = k
		case store.KeyNext:
			next = true
			at = earlier(at, k.ActivateAt)
		case store.KeyRetired:
			at = earlier(at, k.RemoveAt)
		}
	}
	switch {
	case active == nil && !next:
		return now
	case active != nil && !next && active.Alg != m.policy.Alg:
		return now
	case active != nil && !next && m.policy.RotationPeriod > 0:
		at = earlier(at, active.ActivatedAt.Add(m.policy.RotationPeriod-m.policy.Prepublish))
	}
	return at
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Policy returns the lifecycle the manager applies.
func (m *Manager) Policy() Policy { return m.policy }

// NextWork returns when the keys this manager last loaded next need
// maintenance.
func (m *Manager) NextWork() time.Time { return time.UnixMicro(m.work.Load()).UTC() }

// workRecorder is a store that records when its keys next need
// maintenance, so that maintenance visits only the environments due.
type workRecorder interface {
	SetKeyWorkAt(ctx context.Context, at time.Time) error
}

// Recorded tells the manager when the store last recorded its keys' next
// work (so that RecordWork writes only a change).
func (m *Manager) Recorded(at time.Time) { m.recorded.Store(at.UnixMicro()) }

// RecordWork stores NextWork in the store, when the store records it and
// it differs from what the store holds.
func (m *Manager) RecordWork(ctx context.Context) error {
	w, ok := m.store.(workRecorder)
	next := m.NextWork()
	if !ok || m.recorded.Load() == next.UnixMicro() {
		return nil
	}
	if err := w.SetKeyWorkAt(ctx, next); err != nil {
		return err
	}
	m.recorded.Store(next.UnixMicro())
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

// Status is a summary of the keys in use.
type Status struct {
	Active, Next, Retired int // keys by state
	// RotateAt is when the next rotation is due: the next key's
	// activation, or the end of the active key's rotation period; zero
	// when none is scheduled and rotation is off.
	RotateAt time.Time
}

// Status summarises the keys last loaded (from memory: no store access).
func (m *Manager) Status() Status {
	ks := m.cur.Load()
	if ks == nil {
		return Status{}
	}
	st := ks.status
	switch {
	case ks.next != nil:
		st.RotateAt = ks.nextAt
	case m.policy.RotationPeriod > 0 && !ks.activated.IsZero():
		st.RotateAt = ks.activated.Add(m.policy.RotationPeriod)
	}
	return st
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
