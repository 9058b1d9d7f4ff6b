package keys

import (
	"context"
	"errors"
	"fmt"

	"github.com/m2mauth/m2mauth/internal/store"
)

// ErrMasterKeyMismatch: the database holds values sealed under another
// master key than this process's. Errors wrapping it name both key ids.
var ErrMasterKeyMismatch = errors.New("sealed under another master key")

// MismatchError is a stored value sealed under another master key.
type MismatchError struct {
	What   string // "signing key <kid> (<state>)" or "secret hash key"
	Stored string // id of the master key the value is sealed under
	Ours   string // id of this process's master key
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s is sealed under master key %s, but this server's master key is %s: "+
		"use the master key the database is sealed under (after 'm2mauth key rewrap', restart every server with the new key)",
		e.What, e.Stored, e.Ours)
}

// Is makes MismatchError match ErrMasterKeyMismatch.
func (e *MismatchError) Is(target error) bool { return target == ErrMasterKeyMismatch }

func keyMismatch(k store.SigningKey, ours string) error {
	return &MismatchError{What: "signing key " + k.KID + " (" + k.State + ")", Stored: k.MasterKeyID, Ours: ours}
}

// sorted is the outcome of checking which master key the keys are sealed
// under.
type sorted struct {
	keys    []store.SigningKey // keys sealed under this master key
	foreign []store.SigningKey // next keys sealed under another one, to delete
}

// sortSealing checks that the keys are sealed under mk. The one exception
// is a next key sealed under another master key while the active key is
// sealed under mk (and opens with it): such a key has never signed (a
// process signs with a next key only once it also holds the active key, and
// no process holds both), no token depends on it and nothing can ever use
// it, so it is returned for deletion. A database reaches that state when a
// server of an earlier version was started with the wrong master key and a
// different --signing-alg: it scheduled a rotation before finding the key
// wrong. Any other key sealed under another master key is an error naming
// both key ids.
func sortSealing(keys []store.SigningKey, mk *MasterKey) (sorted, error) {
	var s sorted
	var active *store.SigningKey
	for i, k := range keys {
		switch {
		case k.MasterKeyID == mk.ID():
			s.keys = append(s.keys, k)
			if k.State == store.KeyActive {
				active = &keys[i]
			}
		case k.State == store.KeyNext:
			s.foreign = append(s.foreign, k)
		default:
			return sorted{}, keyMismatch(k, mk.ID())
		}
	}
	if len(s.foreign) == 0 {
		return s, nil
	}
	// Deleting needs proof that mk is the database's key, not only a key
	// whose id some rows carry: the active key must open with it.
	if active == nil {
		return sorted{}, keyMismatch(s.foreign[0], mk.ID())
	}
	if _, err := mk.Open(active.Private, sealAAD(active.KID)); err != nil {
		return sorted{}, fmt.Errorf("signing key %s: %w", active.KID, err)
	}
	return s, nil
}

// checkMetaSealing checks that the sealed secret hash key, if the database
// has one, is sealed under mk.
func checkMetaSealing(meta func(string) string, mk *MasterKey) error {
	stored := meta(secretHashKeyMeta)
	if stored == "" {
		return nil
	}
	_, err := openMeta(mk, secretHashKeyAAD, secretHashKeyName, stored)
	return err
}

// keyLister reads the signing keys.
type keyLister interface {
	ListSigningKeys(ctx context.Context) ([]store.SigningKey, error)
}

// CheckMasterKey proves mk against the signing keys the database holds,
// writing nothing: every key must be sealed under it (next keys sealed
// under another master key excepted, see Manager.Init), and the active key
// must open with it. A database without keys passes. Call it before
// anything that writes sealed values (SecretHashKey creates the secret hash
// key when the database has none), so that a wrong master key fails with
// both key ids named, before it can seal anything.
func CheckMasterKey(ctx context.Context, st keyLister, mk *MasterKey) error {
	keys, err := st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	s, err := sortSealing(keys, mk)
	if err != nil {
		return err
	}
	for _, k := range s.keys {
		if k.State == store.KeyActive {
			if _, err := mk.Open(k.Private, sealAAD(k.KID)); err != nil {
				return fmt.Errorf("signing key %s: %w", k.KID, err)
			}
		}
	}
	return nil
}
