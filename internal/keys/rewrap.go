package keys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/m2mauth/m2mauth/internal/store"
)

// Meta entries sealed under the master key.
const (
	secretHashKeyMeta = "secret_hash_key"
	secretHashKeyAAD  = "m2mauth secret hash key"
	secretHashKeyName = "secret hash key"
)

// sealedMeta is the stored form of a sealed meta value: "<master key id>:<base64>".
func sealMeta(mk *MasterKey, aad string, raw []byte) string {
	return mk.ID() + ":" + base64.StdEncoding.EncodeToString(mk.Seal(raw, aad))
}

// openMeta opens a sealed meta value; errors name it as what.
func openMeta(mk *MasterKey, aad, what, stored string) ([]byte, error) {
	i := strings.LastIndexByte(stored, ':')
	if i < 0 {
		return nil, fmt.Errorf("%s: corrupt sealed value", what)
	}
	if id := stored[:i]; id != mk.ID() {
		return nil, &MismatchError{What: what, Stored: id, Ours: mk.ID()}
	}
	sealed, err := base64.StdEncoding.DecodeString(stored[i+1:])
	if err != nil {
		return nil, fmt.Errorf("%s: corrupt sealed value", what)
	}
	pt, err := mk.Open(sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return pt, nil
}

// metaStore stores the sealed secret hashing key.
type metaStore interface {
	EnsureMeta(ctx context.Context, key, value string) (string, error)
}

// SecretHashKey returns the key client secrets are hashed under: random,
// created once per database (the first replica's wins), stored sealed under
// the master key, so that rotating the master key does not invalidate any
// secret. It creates the key when the database has none: call
// CheckMasterKey first, so that a wrong master key cannot seal it.
func SecretHashKey(ctx context.Context, st metaStore, mk *MasterKey) ([]byte, error) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	stored, err := st.EnsureMeta(ctx, secretHashKeyMeta, sealMeta(mk, secretHashKeyAAD, raw))
	if err != nil {
		return nil, fmt.Errorf("secret hash key: %w", err)
	}
	return openMeta(mk, secretHashKeyAAD, secretHashKeyName, stored)
}

// RewrapResult tells what Rewrap did.
type RewrapResult struct {
	// Resealed counts the values re-sealed under the new master key.
	Resealed int
	// Dropped lists the next keys that were sealed under a third master
	// key, and deleted: they never signed (see sortSealing).
	Dropped []string
}

// rewrapStore is what Rewrap needs: the deployment's environments, and
// each one's keys.
type rewrapStore interface {
	ListEnvironments(ctx context.Context, opts store.ListOptions) ([]store.Environment, error)
	InEnv(name string) store.Store
}

// Rewrap re-encrypts the private signing keys of every environment and the
// secret hashing key from the old master key to the new one, one
// environment's keys per transaction (the secret hashing key with the
// first). Values already sealed under the new key are left alone, so an
// interrupted rewrap can be run again. Next keys sealed under neither key
// are deleted, once their environment's active key has opened with one of
// them; any other key sealed under neither fails the rewrap, which then
// changes nothing: every environment is checked before any is changed.
// Servers must be stopped first and restarted with the new master key
// afterwards.
func Rewrap(ctx context.Context, st rewrapStore, old, next *MasterKey) (RewrapResult, error) {
	if old.ID() == next.ID() {
		return RewrapResult{}, errors.New("rewrap: the new master key is the current one")
	}
	envs, err := st.ListEnvironments(ctx, store.ListOptions{})
	if err != nil {
		return RewrapResult{}, fmt.Errorf("rewrap: %w", err)
	}
	// Check every environment first (an empty update writes nothing), so
	// that a refusal leaves the database as it was.
	for _, e := range envs {
		err := st.InEnv(e.Name).UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
			_, _, err := rewrapPlan(keys, meta, old, next)
			return store.KeyUpdate{}, err
		})
		if err != nil {
			return RewrapResult{}, inEnv(e.Name, err)
		}
	}
	var res RewrapResult
	for _, e := range envs {
		var u store.KeyUpdate
		var dropped []string
		err := st.InEnv(e.Name).UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
			var err error
			u, dropped, err = rewrapPlan(keys, meta, old, next)
			return u, err
		})
		if err != nil {
			return RewrapResult{}, inEnv(e.Name, err)
		}
		res.Resealed += len(u.Update) + len(u.Meta)
		res.Dropped = append(res.Dropped, dropped...)
	}
	return res, nil
}

// inEnv names the environment in an error, unless it is the default one.
func inEnv(env string, err error) error {
	if env == store.DefaultEnv {
		return err
	}
	return fmt.Errorf("environment %s: %w", env, err)
}

// rewrapPlan returns the update that re-seals one environment's keys (and
// the secret hashing key, unless already re-sealed) under next, and the
// next keys it deletes.
func rewrapPlan(keys []store.SigningKey, meta func(string) string, old, next *MasterKey) (store.KeyUpdate, []string, error) {
	var u store.KeyUpdate
	var dropped []store.SigningKey
	var droppedKIDs []string
	activeOpened := false
	for _, k := range keys {
		var der []byte
		var err error
		switch k.MasterKeyID {
		case next.ID():
			if k.State == store.KeyActive {
				_, err = next.Open(k.Private, sealAAD(k.KID))
			}
		case old.ID():
			der, err = old.Open(k.Private, sealAAD(k.KID))
		default:
			if k.State != store.KeyNext {
				return u, nil, fmt.Errorf("signing key %s (%s) is sealed under master key %s, which is neither the old (%s) nor the new one (%s)",
					k.KID, k.State, k.MasterKeyID, old.ID(), next.ID())
			}
			dropped = append(dropped, k)
			droppedKIDs = append(droppedKIDs, k.KID)
			continue
		}
		if err != nil {
			return u, nil, fmt.Errorf("signing key %s: %w", k.KID, err)
		}
		activeOpened = activeOpened || k.State == store.KeyActive
		if der != nil {
			k.Private, k.MasterKeyID = next.Seal(der, sealAAD(k.KID)), next.ID()
			u.Update = append(u.Update, k)
		}
	}
	if len(dropped) > 0 && !activeOpened {
		// Nothing proves that either key is the database's.
		return u, nil, fmt.Errorf("signing key %s (%s) is sealed under master key %s, which is neither the old (%s) nor the new one (%s)",
			dropped[0].KID, dropped[0].State, dropped[0].MasterKeyID, old.ID(), next.ID())
	}
	u.Delete = droppedKIDs
	if stored := meta(secretHashKeyMeta); stored != "" && !strings.HasPrefix(stored, next.ID()+":") {
		raw, err := openMeta(old, secretHashKeyAAD, secretHashKeyName, stored)
		if err != nil {
			return u, nil, err
		}
		u.Meta = map[string]string{secretHashKeyMeta: sealMeta(next, secretHashKeyAAD, raw)}
	}
	return u, droppedKIDs, nil
}
