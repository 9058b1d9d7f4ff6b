package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

type simClock struct{ t time.Time }

func (c *simClock) now() time.Time { return c.t }

var allAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA}

// signToken makes a compact JWS with the manager's current signer.
func signToken(t *testing.T, m *Manager, exp time.Time) (raw, kid, alg string) {
	t.Helper()
	s := m.Signer()
	hdr, _ := json.Marshal(map[string]string{"alg": s.Alg(), "kid": s.KID(), "typ": "at+jwt"})
	payload, _ := json.Marshal(map[string]int64{"exp": exp.Unix()})
	input := b64(string(hdr)) + "." + b64(string(payload))
	sig, err := s.Sign([]byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64Bytes(sig), s.KID(), s.Alg()
}

// cachingVerifier caches the JWKS for exactly max-age and never refetches
// early, even on an unknown kid: the strictest verifier there is.
type cachingVerifier struct {
	fetch     func() []byte
	maxAge    time.Duration
	set       jose.JSONWebKeySet
	fetchedAt time.Time
	fetches   int
}

func (v *cachingVerifier) verify(now time.Time, raw string) error {
	if v.fetches == 0 || !now.Before(v.fetchedAt.Add(v.maxAge)) {
		v.set = jose.JSONWebKeySet{}
		if err := json.Unmarshal(v.fetch(), &v.set); err != nil {
			return err
		}
		v.fetchedAt = now
		v.fetches++
	}
	jws, err := jose.ParseSignedCompact(raw, allAlgs)
	if err != nil {
		return err
	}
	keys := v.set.Key(jws.Signatures[0].Protected.KeyID)
	if len(keys) != 1 {
		return errors.New("kid not in the cached JWKS")
	}
	if keys[0].Algorithm != jws.Signatures[0].Protected.Algorithm {
		return errors.New("key/alg mismatch")
	}
	_, err = jws.Verify(keys[0].Key)
	return err
}

// Across four full rotation cycles, with algorithm changes through all four
// algorithms, a verifier that caches the JWKS for max-age validates every
// token issued at every instant, for its whole life: zero failures.
func TestRotationCyclesNeverBreakCachedVerifiers(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mk, _ := ParseMasterKey(GenerateMasterKeyText())
	clock := &simClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const (
		period     = 3 * time.Hour
		maxAge     = 5 * time.Minute
		prepublish = 2 * maxAge
		maxToken   = time.Hour
		step       = time.Minute
	)
	policy := Policy{Alg: RS256, RotationPeriod: period, Prepublish: prepublish, Retention: maxToken + 5*time.Minute}
	m := NewManager(st, mk, policy, clock.now, log)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	// Five verifiers whose refetches fall at every phase of the max-age
	// window (one starts each minute), so that no key event can coincide
	// with a refetch for all of them.
	var verifiers []*cachingVerifier
	for range 5 {
		verifiers = append(verifiers, &cachingVerifier{fetch: func() []byte { b, _ := m.JWKS(); return b }, maxAge: maxAge})
	}

	type tok struct {
		raw string
		exp time.Time
	}
	var live []tok
	signers := map[string]string{} // kid → alg
	var order []string
	failures, checks := 0, 0
	algPlan := []string{RS256, ES256, EdDSA, PS256} // the configured algorithm per cycle
	end := clock.t.Add(time.Duration(len(algPlan))*period + 2*time.Hour)
	for i := 0; clock.t.Before(end); i++ {
		// A "restart" with a new --signing-alg at the start of each cycle.
		if cycle := int(clock.t.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) / period); cycle < len(algPlan) && m.policy.Alg != algPlan[cycle] {
			policy.Alg = algPlan[cycle]
			m = NewManager(st, mk, policy, clock.now, log)
			if err := m.Init(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Maintenance runs only every third step: the switch of signer must
		// not depend on it.
		if i%3 == 0 {
			if err := m.Maintain(ctx); err != nil {
				t.Fatal(err)
			}
		}
		lifetime := maxToken
		if i%2 == 1 {
			lifetime = 15 * time.Minute
		}
		raw, kid, alg := signToken(t, m, clock.t.Add(lifetime))
		if _, seen := signers[kid]; !seen {
			order = append(order, alg)
		}
		signers[kid] = alg
		live = append(live, tok{raw, clock.t.Add(lifetime)})
		kept := live[:0]
		for j, tk := range live {
			if !clock.t.Before(tk.exp) {
				continue
			}
			kept = append(kept, tk)
			// The fresh token every step; every live token every tenth.
			if j != len(live)-1 && i%10 != 0 {
				continue
			}
			for n, v := range verifiers {
				if i < n {
					continue // not started yet
				}
				checks++
				if err := v.verify(clock.t, tk.raw); err != nil {
					failures++
					if failures <= 5 {
						t.Errorf("%s: verifier %d: token failed: %v", clock.t.Format(time.RFC3339), n, err)
					}
				}
			}
		}
		live = kept
		if body, _ := m.JWKS(); len(body) > 0 {
			var set jose.JSONWebKeySet
			_ = json.Unmarshal(body, &set)
			if len(set.Keys) > 3 {
				t.Fatalf("%s: %d keys published; retired keys are not being removed", clock.t, len(set.Keys))
			}
		}
		clock.t = clock.t.Add(step)
	}
	t.Logf("%d verifications, %d JWKS fetches per verifier, signing keys in order: %v", checks, verifiers[0].fetches, order)
	if failures != 0 {
		t.Fatalf("%d of %d verifications failed", failures, checks)
	}
	if fmt.Sprint(order) != fmt.Sprint([]string{"RS256", "RS256", "ES256", "EdDSA", "PS256"}) && len(order) < 4 {
		t.Errorf("signing keys used: %v; want rotations through every algorithm", order)
	}
	for _, want := range []string{RS256, ES256, EdDSA, PS256} {
		found := false
		for _, a := range signers {
			found = found || a == want
		}
		if !found {
			t.Errorf("no token was signed with %s", want)
		}
	}
}

// A manual rotation is pre-published; a second one is refused while it is
// scheduled; the new key signs only from its activation time on.
func TestManualRotateAndRevoke(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mk, _ := ParseMasterKey(GenerateMasterKeyText())
	clock := &simClock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewManager(st, mk, Policy{Alg: RS256, Prepublish: 10 * time.Minute, Retention: time.Hour}, clock.now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	first := m.Signer().KID()
	if st := m.Status(); st != (Status{Active: 1}) {
		t.Fatalf("status with rotation off and no next key: %+v", st)
	}
	next, err := m.Rotate(ctx, ES256)
	if err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st != (Status{Active: 1, Next: 1, RotateAt: clock.t.Add(10 * time.Minute)}) {
		t.Fatalf("status with a rotation scheduled: %+v", st)
	}
	if _, ok := m.PublicKey(next.KID); !ok || m.Signer().KID() != first {
		t.Fatal("the new key must be published at once and not sign yet")
	}
	if _, err := m.Rotate(ctx, ""); !errors.Is(err, ErrRotationScheduled) {
		t.Fatalf("second rotation: %v", err)
	}
	if _, err := m.Rotate(ctx, "HS256"); err == nil {
		t.Fatal("HS256 accepted")
	}
	clock.t = clock.t.Add(10*time.Minute - time.Second)
	if m.Signer().KID() != first {
		t.Fatal("signed with the new key before its activation")
	}
	clock.t = clock.t.Add(time.Second)
	if m.Signer().KID() != next.KID || m.Signer().Alg() != ES256 {
		t.Fatal("the new key does not sign at its activation time")
	}
	if err := m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	infos, _ := m.List(ctx, time.Hour)
	states := map[string]KeyInfo{}
	for _, in := range infos {
		states[in.KID] = in
	}
	if len(infos) != 2 || states[next.KID].State != store.KeyActive || states[first].State != store.KeyRetired ||
		!states[first].RetiredAt.Equal(clock.t) || !states[first].RemoveAt.Equal(clock.t.Add(time.Hour)) {
		t.Fatalf("after activation: %+v", infos)
	}
	if st := m.Status(); st != (Status{Active: 1, Retired: 1}) {
		t.Fatalf("status after activation: %+v", st)
	}

	// Emergency revocation of the active key: unpublished at once, a new
	// key signs at once.
	repl, err := m.Revoke(ctx, next.KID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.PublicKey(next.KID); ok || m.Signer().KID() != repl || repl == next.KID {
		t.Fatalf("after revoke: signer %s, replacement %s, revoked still published: %v", m.Signer().KID(), repl, ok)
	}
	if _, err := m.Revoke(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	// Revoking a retired key only unpublishes it.
	if _, err := m.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.PublicKey(first); ok {
		t.Fatal("revoked retired key still published")
	}
}

// Every key in the store is ciphertext; after a rewrap the new master key
// alone opens them, and the secret hashing key is unchanged.
func TestRewrap(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old, _ := ParseMasterKey(GenerateMasterKeyText())
	next, _ := ParseMasterKey(GenerateMasterKeyText())
	clock := &simClock{time.Now()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewManager(st, old, Policy{Alg: ES256, Prepublish: time.Minute, Retention: time.Hour}, clock.now, log)
	if err := m.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rotate(ctx, EdDSA); err != nil {
		t.Fatal(err)
	}
	hashKey, err := SecretHashKey(ctx, st, old)
	if err != nil {
		t.Fatal(err)
	}
	kid := m.Signer().KID()

	res, err := Rewrap(ctx, st, old, next)
	if err != nil || res.Resealed != 3 || len(res.Dropped) != 0 {
		t.Fatalf("rewrap: %+v, %v; want 3 values (two keys, the hash key)", res, err)
	}
	if res, err := Rewrap(ctx, st, old, next); err != nil || res.Resealed != 0 {
		t.Fatalf("second rewrap: %+v, %v; want nothing left to do", res, err)
	}
	if err := NewManager(st, old, m.policy, clock.now, log).Reload(ctx); err == nil {
		t.Fatal("the old master key still opens the keys")
	}
	m2 := NewManager(st, next, m.policy, clock.now, log)
	if err := m2.Reload(ctx); err != nil || m2.Signer().KID() != kid {
		t.Fatalf("the new master key: %v (kid %s)", err, kid)
	}
	if got, err := SecretHashKey(ctx, st, next); err != nil || string(got) != string(hashKey) {
		t.Fatalf("secret hash key after rewrap: %v", err)
	}
	rows, _ := st.ListSigningKeys(ctx)
	for _, r := range rows {
		if r.MasterKeyID != next.ID() || r.Private[0] != sealVersion {
			t.Errorf("key %s: sealed under %s", r.KID, r.MasterKeyID)
		}
	}
}
