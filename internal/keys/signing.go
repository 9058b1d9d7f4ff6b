package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/store"
)

// Supported signing algorithms.
const (
	RS256 = "RS256"
)

// Signer signs JWS signing inputs with one private key. It is immutable and
// safe for concurrent use.
type Signer struct {
	kid string
	alg string
	key crypto.Signer
}

// KID returns the key id (the RFC 7638 JWK thumbprint, base64url).
func (s *Signer) KID() string { return s.kid }

// Alg returns the JWS algorithm name.
func (s *Signer) Alg() string { return s.alg }

// Sign returns the JWS signature over signingInput (RFC 7515 §5.1).
func (s *Signer) Sign(signingInput []byte) ([]byte, error) {
	h := sha256.Sum256(signingInput)
	switch k := s.key.(type) {
	case *rsa.PrivateKey:
		return rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
	}
	return nil, fmt.Errorf("sign: unsupported key type %T", s.key)
}

// PublicKey is a published verification key.
type PublicKey struct {
	Key crypto.PublicKey
	Alg string
}

// generate creates a new private key for alg.
func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unsupported signing algorithm %q", alg)
}

// publicJWK returns the key's public JWK and its RFC 7638 thumbprint, which
// is used as the kid.
func publicJWK(priv crypto.Signer, alg string) (kid string, jwk []byte, err error) {
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: alg, Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", nil, err
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	jwk, err = pub.MarshalJSON()
	return pub.KeyID, jwk, err
}

func sealAAD(kid string) string { return "m2mauth signing key " + kid }

// keyStore is what the Manager needs from the store.
type keyStore interface {
	CreateSigningKey(ctx context.Context, k store.SigningKey) (bool, error)
	ListSigningKeys(ctx context.Context) ([]store.SigningKey, error)
}

// Manager holds the signing key in use and the published key set.
type Manager struct {
	store  keyStore
	master *MasterKey
	alg    string
	now    func() time.Time
	log    *slog.Logger
	cur    atomic.Pointer[keySet]
}

type keySet struct {
	active *Signer
	public map[string]PublicKey
	jwks   []byte
	etag   string
}

// NewManager returns a Manager; call Init before use.
func NewManager(st keyStore, master *MasterKey, alg string, now func() time.Time, log *slog.Logger) *Manager {
	return &Manager{store: st, master: master, alg: alg, now: now, log: log}
}

// Init loads the keys, creating the first signing key when the store has
// none. Several processes may call it at once on one database: exactly one
// key becomes active and every process loads that one.
func (m *Manager) Init(ctx context.Context) error {
	if err := m.Reload(ctx); err == nil {
		return nil
	} else if !errors.Is(err, errNoActiveKey) {
		return err
	}
	priv, err := generate(m.alg)
	if err != nil {
		return fmt.Errorf("init signing key: %w", err)
	}
	kid, jwk, err := publicJWK(priv, m.alg)
	if err != nil {
		return fmt.Errorf("init signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("init signing key: %w", err)
	}
	now := m.now().UTC()
	created, err := m.store.CreateSigningKey(ctx, store.SigningKey{
		KID: kid, Alg: m.alg, State: store.KeyActive,
		Private: m.master.Seal(der, sealAAD(kid)), PublicJWK: jwk, MasterKeyID: m.master.ID(),
		CreatedAt: now, ActivatedAt: now,
	})
	if err != nil {
		return fmt.Errorf("init signing key: %w", err)
	}
	if created {
		m.log.Info("created signing key", "kid", kid, "alg", m.alg)
	}
	return m.Reload(ctx)
}

var errNoActiveKey = errors.New("no active signing key")

// Reload reads the keys from the store and swaps them in atomically.
func (m *Manager) Reload(ctx context.Context) error {
	rows, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	ks := &keySet{public: map[string]PublicKey{}}
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
		if r.State != store.KeyActive {
			continue
		}
		signer, err := m.open(r)
		if err != nil {
			return err
		}
		ks.active = signer
	}
	jwks.WriteString(`]}`)
	if ks.active == nil {
		return errNoActiveKey
	}
	ks.jwks = jwks.Bytes()
	sum := sha256.Sum256(ks.jwks)
	ks.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
	m.cur.Store(ks)
	return nil
}

func (m *Manager) open(r store.SigningKey) (*Signer, error) {
	if r.MasterKeyID != m.master.ID() {
		return nil, fmt.Errorf("signing key %s is sealed under master key %s, but this server's master key is %s: start it with the master key the database was created with",
			r.KID, r.MasterKeyID, m.master.ID())
	}
	der, err := m.master.Open(r.Private, sealAAD(r.KID))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", r.KID, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", r.KID, err)
	}
	priv, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: unsupported key type %T", r.KID, k)
	}
	return &Signer{kid: r.KID, alg: r.Alg, key: priv}, nil
}

// Signer returns the key that signs new tokens.
func (m *Manager) Signer() *Signer { return m.cur.Load().active }

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
	seen := map[string]bool{}
	var out []string
	for _, k := range m.cur.Load().public {
		if !seen[k.Alg] {
			seen[k.Alg] = true
			out = append(out, k.Alg)
		}
	}
	slices.Sort(out)
	return out
}
