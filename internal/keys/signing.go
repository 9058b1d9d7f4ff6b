package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/jws"
)

// Supported signing algorithms (RFC 7518 §3, RFC 8037).
const (
	RS256 = "RS256" // RSASSA-PKCS1-v1_5, SHA-256, RSA-2048
	PS256 = "PS256" // RSASSA-PSS, SHA-256, RSA-2048
	ES256 = "ES256" // ECDSA P-256, SHA-256
	EdDSA = "EdDSA" // Ed25519
)

// Algorithms lists the supported algorithms.
var Algorithms = []string{RS256, PS256, ES256, EdDSA}

// ValidAlg reports whether alg is supported.
func ValidAlg(alg string) bool { return slices.Contains(Algorithms, alg) }

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

// Sign returns the JWS signature over signingInput (RFC 7515 §5.1), in the
// encoding RFC 7518 §3 prescribes for the algorithm.
func (s *Signer) Sign(signingInput []byte) ([]byte, error) {
	switch k := s.key.(type) {
	case *rsa.PrivateKey:
		h := sha256.Sum256(signingInput)
		if s.alg == PS256 {
			return rsa.SignPSS(rand.Reader, k, crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(signingInput)
		r, sv, err := ecdsa.Sign(rand.Reader, k, h[:])
		if err != nil {
			return nil, err
		}
		// JWS wants r || s, each left-padded to the curve size (RFC 7518 §3.4).
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		sv.FillBytes(out[32:])
		return out, nil
	case ed25519.PrivateKey:
		return ed25519.Sign(k, signingInput), nil
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
	case RS256, PS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("unsupported signing algorithm %q", alg)
}

// publicJWK returns the key's public JWK and its RFC 7638 thumbprint, which
// is used as the kid: it is derived from the key, so it never collides and
// anyone can recompute it.
func publicJWK(priv crypto.Signer, alg string) (kid string, jwk []byte, err error) {
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: alg, Use: "sig"}
	if pub.KeyID, err = jws.Thumbprint(pub.Key); err != nil {
		return "", nil, err
	}
	jwk, err = pub.MarshalJSON()
	return pub.KeyID, jwk, err
}

func sealAAD(kid string) string { return "m2mauth signing key " + kid }

// openSigner decrypts a stored key.
func openSigner(master *MasterKey, kid, alg, masterKeyID string, sealed []byte) (*Signer, error) {
	if masterKeyID != master.ID() {
		return nil, &MismatchError{What: "signing key " + kid, Stored: masterKeyID, Ours: master.ID()}
	}
	der, err := master.Open(sealed, sealAAD(kid))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", kid, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", kid, err)
	}
	priv, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: unsupported key type %T", kid, k)
	}
	return &Signer{kid: kid, alg: alg, key: priv}, nil
}
