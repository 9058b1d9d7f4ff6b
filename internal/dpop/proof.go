package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ProofOptions are the optional parts of a proof made by NewProof.
type ProofOptions struct {
	// AccessToken, when set, adds its hash as ath (a proof sent to a
	// resource server with the token, RFC 9449 §7).
	AccessToken string
	// Nonce, when set, is the nonce claim: the last DPoP-Nonce the server
	// sent (RFC 9449 §8).
	Nonce string
	// Now is the proof's iat (zero: time.Now()).
	Now time.Time
	// Alg chooses PS256 for an RSA key (RS256 otherwise); for other keys
	// it must be empty or the key's one algorithm.
	Alg string
}

// NewProof makes a DPoP proof (RFC 9449 §4.2) for a request of method to
// url, signed with key: a *ecdsa.PrivateKey on P-256 (ES256), an
// ed25519.PrivateKey (EdDSA), a *rsa.PrivateKey (RS256, or PS256), or any
// crypto.Signer whose Public is one of those keys (an HSM or KMS key).
// The header carries typ dpop+jwt, alg and the public key as jwk; the
// claims a random 128-bit jti, htm, htu (url normalised by NormalizeURL,
// so without its query), iat, and ath and nonce when o has them.
func NewProof(key crypto.Signer, method, url string, o ProofOptions) (string, error) {
	if key == nil {
		return "", errors.New("dpop: no key")
	}
	alg, jwk, err := publicJWK(key.Public(), o.Alg)
	if err != nil {
		return "", err
	}
	htu, err := NormalizeURL(url)
	if err != nil {
		return "", err
	}
	if !validMethod(method) {
		return "", errors.New("dpop: the method is not an HTTP method token (e.g. GET, POST)")
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("dpop: jti: %w", err)
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	header, err := json.Marshal(struct {
		Typ string          `json:"typ"`
		Alg string          `json:"alg"`
		JWK json.RawMessage `json:"jwk"`
	}{typ, alg, jwk})
	if err != nil {
		return "", fmt.Errorf("dpop: header: %w", err)
	}
	claims := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		ATH   string `json:"ath,omitempty"`
		Nonce string `json:"nonce,omitempty"`
	}{base64.RawURLEncoding.EncodeToString(jti[:]), method, htu, now.Unix(), "", o.Nonce}
	if o.AccessToken != "" {
		claims.ATH = AccessTokenHash(o.AccessToken)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("dpop: claims: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := sign(key, alg, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// publicJWK returns the alg for pub (and the wanted alg) and pub as a
// public JWK with only its required members (RFC 7638 §3.2 order).
func publicJWK(pub crypto.PublicKey, want string) (alg string, jwk []byte, err error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return "", nil, errors.New("dpop: an ECDSA key must be on P-256")
		}
		e, err := k.ECDH()
		if err != nil {
			return "", nil, fmt.Errorf("dpop: ECDSA key: %w", err)
		}
		pt := e.Bytes() // 0x04 || X || Y, 32 bytes each
		alg = "ES256"
		jwk, err = json.Marshal(struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
			Y   string `json:"y"`
		}{"P-256", "EC", b64(pt[1:33]), b64(pt[33:])})
		if err != nil {
			return "", nil, err
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", nil, errors.New("dpop: bad Ed25519 key")
		}
		alg = "EdDSA"
		jwk, err = json.Marshal(struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
		}{"Ed25519", "OKP", b64(k)})
		if err != nil {
			return "", nil, err
		}
	case *rsa.PublicKey:
		if k == nil {
			return "", nil, errors.New("dpop: no RSA key")
		}
		if k.N.BitLen() < 2048 {
			// Servers (this one included) refuse proofs by smaller keys.
			return "", nil, errors.New("dpop: RSA key under 2048 bits")
		}
		alg = "RS256"
		if want == "PS256" {
			alg = "PS256"
		}
		jwk, err = json.Marshal(struct {
			E   string `json:"e"`
			Kty string `json:"kty"`
			N   string `json:"n"`
		}{b64(big.NewInt(int64(k.E)).Bytes()), "RSA", b64(k.N.Bytes())})
		if err != nil {
			return "", nil, err
		}
	default:
		return "", nil, fmt.Errorf("dpop: unsupported key type %T (ECDSA P-256, Ed25519 or RSA)", pub)
	}
	if want != "" && want != alg {
		return "", nil, fmt.Errorf("dpop: alg %q does not fit the key (%s)", want, alg)
	}
	return alg, jwk, nil
}

// sign signs input for alg, with the signature in JWS form (RFC 7518
// §3.4: ECDSA as r||s, 32 bytes each, not ASN.1).
func sign(key crypto.Signer, alg string, input []byte) ([]byte, error) {
	if alg == "EdDSA" {
		sig, err := key.Sign(rand.Reader, input, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("dpop: sign: %w", err)
		}
		return sig, nil
	}
	digest := sha256.Sum256(input)
	var opts crypto.SignerOpts = crypto.SHA256
	if alg == "PS256" {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	sig, err := key.Sign(rand.Reader, digest[:], opts)
	if err != nil {
		return nil, fmt.Errorf("dpop: sign: %w", err)
	}
	if alg != "ES256" {
		return sig, nil
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 ||
		rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
		return nil, errors.New("dpop: sign: the signer returned no ECDSA signature")
	}
	out := make([]byte, 64)
	rs.R.FillBytes(out[:32])
	rs.S.FillBytes(out[32:])
	return out, nil
}

// validMethod reports whether m is an RFC 9110 §9.1 method token in
// upper case, as htm is compared case-sensitively: "post" or "GE T" would
// only make a proof no server accepts.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}
