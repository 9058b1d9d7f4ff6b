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
)

// sealedMeta is the stored form of a sealed meta value: "<master key id>:<base64>".
func sealMeta(mk *MasterKey, aad string, raw []byte) string {
	return mk.ID() + ":" + base64.StdEncoding.EncodeToString(mk.Seal(raw, aad))
}

func openMeta(mk *MasterKey, aad, stored string) ([]byte, error) {
	i := strings.LastIndexByte(stored, ':')
	if i < 0 {
		return nil, errors.New("corrupt sealed value")
	}
	if id := stored[:i]; id != mk.ID() {
		return nil, fmt.Errorf("sealed under master key %s, but this server's master key is %s: start it with the master key the database was created with (or run m2mauth key rewrap)", id, mk.ID())
	}
	sealed, err := base64.StdEncoding.DecodeString(stored[i+1:])
	if err != nil {
		return nil, errors.New("corrupt sealed value")
	}
	return mk.Open(sealed, aad)
}

// metaStore stores the sealed secret hashing key.
type metaStore interface {
	EnsureMeta(ctx context.Context, key, value string) (string, error)
}

// SecretHashKey returns the key client secrets are hashed under: random,
// created once per database (the first replica's wins), stored sealed under
// the master key, so that rotating the master key does not invalidate any
// secret.
func SecretHashKey(ctx context.Context, st metaStore, mk *MasterKey) ([]byte, error) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	stored, err := st.EnsureMeta(ctx, secretHashKeyMeta, sealMeta(mk, secretHashKeyAAD, raw))
	if err != nil {
		return nil, fmt.Errorf("secret hash key: %w", err)
	}
	key, err := openMeta(mk, secretHashKeyAAD, stored)
	if err != nil {
		return nil, fmt.Errorf("secret hash key: %w", err)
	}
	return key, nil
}

// Rewrap re-encrypts every private signing key and the secret hashing key
// from the old master key to the new one, in one transaction, and reports
// how many values it re-sealed. Values already sealed under the new key are
// left alone, so an interrupted rewrap can be run again. Servers must be
// restarted with the new master key afterwards.
func Rewrap(ctx context.Context, st keyStore, old, next *MasterKey) (int, error) {
	if old.ID() == next.ID() {
		return 0, errors.New("rewrap: the new master key is the current one")
	}
	n := 0
	err := st.UpdateSigningKeys(ctx, func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error) {
		var u store.KeyUpdate
		for _, k := range keys {
			if k.MasterKeyID == next.ID() {
				continue
			}
			if k.MasterKeyID != old.ID() {
				return u, fmt.Errorf("signing key %s is sealed under master key %s, which is neither the old (%s) nor the new one", k.KID, k.MasterKeyID, old.ID())
			}
			der, err := old.Open(k.Private, sealAAD(k.KID))
			if err != nil {
				return u, fmt.Errorf("signing key %s: %w", k.KID, err)
			}
			k.Private, k.MasterKeyID = next.Seal(der, sealAAD(k.KID)), next.ID()
			u.Update = append(u.Update, k)
		}
		if stored := meta(secretHashKeyMeta); stored != "" && !strings.HasPrefix(stored, next.ID()+":") {
			raw, err := openMeta(old, secretHashKeyAAD, stored)
			if err != nil {
				return u, fmt.Errorf("secret hash key: %w", err)
			}
			u.Meta = map[string]string{secretHashKeyMeta: sealMeta(next, secretHashKeyAAD, raw)}
		}
		n = len(u.Update) + len(u.Meta)
		return u, nil
	})
	return n, err
}
