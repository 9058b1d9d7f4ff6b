package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

// Errors from ParseKey, ParseKeySet and Thumbprint. Each wraps
// ErrInvalidKey.
var (
	ErrInvalidKey = errors.New("invalid key")
	// ErrUnsupportedKey is a key this package does not verify with: a kty
	// other than RSA, EC and OKP, a curve other than P-256 and Ed25519, an
	// alg other than RS256, PS256, ES256 and EdDSA, or "use":"enc".
	ErrUnsupportedKey = fmt.Errorf("%w: not a supported signature key", ErrInvalidKey)
	// ErrPrivateKey is a JWK carrying private or secret key members (RSA
	// d, p, q, dp, dq, qi, oth; EC and OKP d; oct k), whatever their value.
	ErrPrivateKey = fmt.Errorf("%w: private key material", ErrInvalidKey)
)

// Key is a public signature key read from a JWK (RFC 7517 §4).
type Key struct {
	Kid string
	Alg string // "" when the JWK does not say (then any alg of AlgorithmsFor(Key))
	// Key is a *rsa.PublicKey (at least 2048 bits), a *ecdsa.PublicKey on
	// P-256 or an ed25519.PublicKey.
	Key crypto.PublicKey
}

// jwkHead is what ParseKey checks before the key material is decoded.
type jwkHead struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	// Private and secret members: present (even as null) means refused.
	D   json.RawMessage `json:"d"`
	P   json.RawMessage `json:"p"`
	Q   json.RawMessage `json:"q"`
	DP  json.RawMessage `json:"dp"`
	DQ  json.RawMessage `json:"dq"`
	QI  json.RawMessage `json:"qi"`
	Oth json.RawMessage `json:"oth"`
	K   json.RawMessage `json:"k"`
}

// ParseKey reads one public signature JWK (RFC 7517 §4; key parameters of
// RFC 7518 §6.2.1 and §6.3.1, RFC 8037 §2). It refuses, with ErrPrivateKey,
// any JWK with private or secret members, so that nobody registers a
// private key by mistake; with ErrUnsupportedKey, a key type, curve, alg or
// "use" of "enc" or "x509-svid" it does not verify JWTs with; and with ErrInvalidKey, a malformed
// JWK, an RSA key under 2048 bits (or with an even modulus, or an exponent
// that is even or under 3), an EC point off its curve, an alg that does not
// fit the key's type, or x5c certificates that do not hold the key.
func ParseKey(jwk []byte) (Key, error) {
	var h jwkHead
	if err := json.Unmarshal(jwk, &h); err != nil {
		return Key{}, fmt.Errorf("%w: not a JWK (a JSON object with string kty, crv, kid, alg and use): %v", ErrInvalidKey, err)
	}
	for _, m := range []struct {
		name string
		raw  json.RawMessage
	}{{"d", h.D}, {"p", h.P}, {"q", h.Q}, {"dp", h.DP}, {"dq", h.DQ}, {"qi", h.QI}, {"oth", h.Oth}, {"k", h.K}} {
		if m.raw != nil {
			return Key{}, fmt.Errorf("%w (member %s): register and publish only the public key", ErrPrivateKey, m.name)
		}
	}
	h.Alg = CanonicalAlg(h.Alg)
	switch {
	case h.Kty == "":
		return Key{}, fmt.Errorf("%w: no kty", ErrInvalidKey)
	case h.Kty == "EC" && h.Crv != "P-256", h.Kty == "OKP" && h.Crv != "Ed25519":
		return Key{}, fmt.Errorf("%w: %s curve %q (only P-256 and Ed25519)", ErrUnsupportedKey, h.Kty, h.Crv)
	case h.Kty != "RSA" && h.Kty != "EC" && h.Kty != "OKP":
		return Key{}, fmt.Errorf("%w: kty %q (only RSA, EC and OKP)", ErrUnsupportedKey, h.Kty)
	case h.Use == "enc":
		return Key{}, fmt.Errorf("%w: an encryption key (use enc)", ErrUnsupportedKey)
	case h.Use == "x509-svid":
		// A SPIFFE bundle's X.509 authority signs certificates, never a
		// JWT-SVID (SPIFFE Trust Domain and Bundle §4.2.2).
		return Key{}, fmt.Errorf("%w: an X.509-SVID authority (use x509-svid) does not sign JWTs", ErrUnsupportedKey)
	case h.Alg != "" && !slices.Contains(algorithms, h.Alg):
		return Key{}, fmt.Errorf("%w: alg %q (only RS256, PS256, ES256 and EdDSA)", ErrUnsupportedKey, h.Alg)
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(jwk); err != nil {
		return Key{}, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	if !k.IsPublic() {
		return Key{}, fmt.Errorf("%w: not a public key", ErrPrivateKey)
	}
	if err := sound(k.Key); err != nil {
		return Key{}, err
	}
	if h.Alg != "" && !slices.Contains(AlgorithmsFor(k.Key), h.Alg) {
		return Key{}, fmt.Errorf("%w: alg %s does not fit a %s key", ErrInvalidKey, h.Alg, h.Kty)
	}
	return Key{Kid: h.Kid, Alg: h.Alg, Key: k.Key}, nil
}

// ParseKeySet reads a JWK Set (RFC 7517 §5): a JSON object whose keys
// member is an array of at most maxKeys JWKs, each read by ParseKey. The
// keys are returned in the set's order.
//
// As RFC 7517 §5 asks, a JWK refused with ErrUnsupportedKey (another key
// type or curve, an encryption key) is ignored, so a set that also serves
// other purposes still works. Any other refusal refuses the whole set: a
// private key (never publish or register one), a weak or broken key, or a
// kid used by two of the keys returned. Keys without a kid are returned
// (a caller then tries each key whose algorithms fit). A set with no key
// left is refused. Every error wraps ErrInvalidKey.
func ParseKeySet(body []byte, maxKeys int) ([]Key, error) {
	members, err := objectMembers(body)
	if err != nil {
		return nil, fmt.Errorf("%w: not a JWK Set: %v", ErrInvalidKey, err)
	}
	var raws []json.RawMessage
	for _, m := range members {
		if string(m.Name) == "keys" {
			if m.Value[0] != '[' || json.Unmarshal(m.Value, &raws) != nil {
				return nil, fmt.Errorf("%w: not a JWK Set: keys is not an array", ErrInvalidKey)
			}
		}
	}
	switch {
	case raws == nil:
		return nil, fmt.Errorf("%w: not a JWK Set: no keys member", ErrInvalidKey)
	case len(raws) > maxKeys:
		return nil, fmt.Errorf("%w: the set has %d keys, more than the %d allowed", ErrInvalidKey, len(raws), maxKeys)
	}
	keys := make([]Key, 0, len(raws))
	for i, raw := range raws {
		k, err := ParseKey(raw)
		if errors.Is(err, ErrUnsupportedKey) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if k.Kid != "" && slices.ContainsFunc(keys, func(o Key) bool { return o.Kid == k.Kid }) {
			return nil, fmt.Errorf("%w: key %d: kid %q is used by two keys", ErrInvalidKey, i, k.Kid)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: the set has no supported signature key", ErrInvalidKey)
	}
	return keys, nil
}

// algorithms are the JWS algorithms this package verifies.
var algorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}

// AlgorithmsFor returns the algorithms a key verifies: RS256 and PS256 for
// an RSA key, ES256 for a P-256 key, EdDSA for an Ed25519 key, and none for
// anything else. It looks at the key's type only: ParseKey checks soundness.
func AlgorithmsFor(key crypto.PublicKey) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k != nil {
			return []string{"RS256", "PS256"}
		}
	case *ecdsa.PublicKey:
		if k != nil && k.Curve == elliptic.P256() {
			return []string{"ES256"}
		}
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return []string{"EdDSA"}
		}
	}
	return nil
}

// Thumbprint returns the RFC 7638 §3 thumbprint of a public key: the
// SHA-256 of its required JWK members in lexicographic order, base64url
// without padding. Private keys are refused: pass their Public().
func Thumbprint(key crypto.PublicKey) (string, error) {
	// The members are written by hand rather than through go-jose: a DPoP
	// proof's key is thumbprinted on every request, and this costs a few
	// allocations instead of about forty.
	enc := base64.RawURLEncoding
	var arr [1200]byte
	b := arr[:0]
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil || k.E <= 0 {
			return "", fmt.Errorf("%w: no key", ErrInvalidKey)
		}
		var e [8]byte
		binary.BigEndian.PutUint64(e[:], uint64(k.E))
		i := 0
		for i < len(e)-1 && e[i] == 0 {
			i++
		}
		b = append(b, `{"e":"`...)
		b = enc.AppendEncode(b, e[i:])
		b = append(b, `","kty":"RSA","n":"`...)
		b = enc.AppendEncode(b, k.N.Bytes())
		b = append(b, `"}`...)
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return "", fmt.Errorf("%w: no key", ErrInvalidKey)
		}
		point, err := k.Bytes()
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
		size := (len(point) - 1) / 2
		b = append(b, `{"crv":"`...)
		b = append(b, k.Curve.Params().Name...)
		b = append(b, `","kty":"EC","x":"`...)
		b = enc.AppendEncode(b, point[1:1+size])
		b = append(b, `","y":"`...)
		b = enc.AppendEncode(b, point[1+size:])
		b = append(b, `"}`...)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("%w: bad Ed25519 key", ErrInvalidKey)
		}
		b = append(b, `{"crv":"Ed25519","kty":"OKP","x":"`...)
		b = enc.AppendEncode(b, k)
		b = append(b, `"}`...)
	default:
		return "", fmt.Errorf("%w: thumbprint of a %T", ErrUnsupportedKey, key)
	}
	sum := sha256.Sum256(b)
	return enc.EncodeToString(sum[:]), nil
}

// sound refuses weak or invalid public keys.
func sound(key crypto.PublicKey) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: RSA key under 2048 bits", ErrInvalidKey)
		}
		if k.N.Bit(0) == 0 || k.E < 3 || k.E&1 == 0 {
			return fmt.Errorf("%w: RSA key with an even modulus or an even or tiny exponent", ErrInvalidKey)
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: only P-256", ErrUnsupportedKey)
		}
		if _, err := k.ECDH(); err != nil {
			return fmt.Errorf("%w: EC point not on the curve", ErrInvalidKey)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: bad Ed25519 key", ErrInvalidKey)
		}
	default:
		return fmt.Errorf("%w: key type %T", ErrUnsupportedKey, key)
	}
	return nil
}
