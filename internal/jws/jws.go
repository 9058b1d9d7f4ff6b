// Package jws parses and verifies JSON Web Signatures in compact form and
// the JSON Web Keys that verify them, strictly, for every part of m2mauth
// that accepts a signed token: resource-server validation (verify) and the
// authorization server's JWT client assertions.
//
// It implements:
//   - RFC 7515 §7.1 (compact serialization) and §5.2 (validation): exactly
//     three non-empty parts, strict unpadded base64url (§2), header and
//     payload valid UTF-8 JSON objects without repeated member names
//     (§5.2 step 4; case variants are refused too, since some parsers match
//     names case-insensitively), crit refused (§4.1.11), unencoded payloads
//     (RFC 7797 b64) refused. Embedded key references — jwk (§4.1.3), jku
//     (§4.1.2), x5c (§4.1.6), x5u (§4.1.5), x5t and x5t#S256 (§4.1.7,
//     §4.1.8) — are never followed; Header reports their presence.
//   - RFC 7518 §3.3, §3.4 and §3.5 (RS256, ES256, PS256) and RFC 8037 §3.1
//     (EdDSA with Ed25519); nothing else, and never none or HMAC.
//   - RFC 7519 §2 NumericDate and §4.1.3 aud (Seconds, StringOrStrings).
//   - RFC 7517 §4 and §5 (JWK and JWK Set) with the key parameters of
//     RFC 7518 §6.2.1 (EC), §6.3.1 (RSA) and RFC 8037 §2 (OKP): RSA keys of
//     at least 2048 bits, P-256 points on the curve, Ed25519; private key
//     members refused.
//   - RFC 7638 §3 (JWK thumbprint, SHA-256).
package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Errors from Parse and VerifySignature. Every one wraps ErrInvalidToken.
// (verify exports these very values under the same names.)
var (
	ErrInvalidToken = errors.New("invalid token")
	ErrMalformed    = fmt.Errorf("%w: malformed", ErrInvalidToken)
	ErrAlgorithm    = fmt.Errorf("%w: algorithm not allowed", ErrInvalidToken)
	ErrSignature    = fmt.Errorf("%w: bad signature", ErrInvalidToken)
)

// strictB64 is base64url without padding, rejecting non-zero trailing bits
// and any byte outside its alphabet except CR and LF, which encoding/base64
// always skips: Parse refuses those first, so that every token has exactly
// one spelling.
var strictB64 = base64.RawURLEncoding.Strict()

// Header is the part of a JOSE header (RFC 7515 §4) callers act on.
type Header struct {
	Alg, Kid, Typ string
	// Embedded key references: never followed; callers that must refuse
	// them (client assertions) check these. Each is true when the header
	// has the member, whatever its value; X5T stands for x5t and x5t#S256.
	JWK, JKU, X5C, X5U, X5T bool
}

// Member is one top-level member of a JSON object: its name (unescaped)
// and its raw JSON value, a slice of the input.
type Member struct{ Name, Value []byte }

// Token is a parsed JWS in compact serialization (RFC 7515 §7.1). Its
// signature is not verified until VerifyWith or VerifySignature says so.
type Token struct {
	Header       Header
	Claims       []Member // payload members in order
	SigningInput []byte   // ASCII(BASE64URL(header) || '.' || BASE64URL(payload))
	Signature    []byte
}

// Parse splits and decodes a compact JWS strictly: at most maxSize bytes
// (checked before any decoding), three non-empty parts, strict base64url
// (nothing but its alphabet: no padding, no line breaks or spaces),
// valid UTF-8 JSON objects without repeated or case-variant member names,
// no crit and no b64 header. alg, kid and typ must be strings when present.
// Every error wraps ErrMalformed.
func Parse(token string, maxSize int) (*Token, error) {
	if len(token) > maxSize {
		return nil, fmt.Errorf("%w: token larger than %d bytes", ErrMalformed, maxSize)
	}
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first <= 0 || last == first || strings.Count(token, ".") != 2 || last == len(token)-1 {
		return nil, fmt.Errorf("%w: not a JWS in compact form (three non-empty parts)", ErrMalformed)
	}
	if strings.IndexByte(token, '\n') >= 0 || strings.IndexByte(token, '\r') >= 0 {
		return nil, fmt.Errorf("%w: a line break in the token", ErrMalformed)
	}
	// One allocation holds the signing input and the three decoded parts.
	hdrN, payN, sigN := strictB64.DecodedLen(first), strictB64.DecodedLen(last-first-1), strictB64.DecodedLen(len(token)-last-1)
	buf := make([]byte, last+hdrN+payN+sigN)
	input := buf[:last:last]
	copy(input, token)
	rest := buf[last:]
	decode := func(part string, n int) ([]byte, bool) {
		got, err := strictB64.Decode(rest[:n:n], []byte(part))
		out := rest[:got:got]
		rest = rest[n:]
		return out, err == nil
	}
	hdrB, ok := decode(token[:first], hdrN)
	if !ok {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	payload, ok := decode(token[first+1:last], payN)
	if !ok {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	sig, ok := decode(token[last+1:], sigN)
	if !ok {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}
	members, err := objectMembers(hdrB)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var h Header
	for _, m := range members {
		var dst *string
		switch string(m.Name) {
		case "alg":
			dst = &h.Alg
		case "kid":
			dst = &h.Kid
		case "typ":
			dst = &h.Typ
		case "jwk":
			h.JWK = true
		case "jku":
			h.JKU = true
		case "x5c":
			h.X5C = true
		case "x5u":
			h.X5U = true
		case "x5t", "x5t#S256":
			h.X5T = true
		case "crit":
			return nil, fmt.Errorf("%w: crit header with extensions this verifier does not understand", ErrMalformed)
		case "b64":
			return nil, fmt.Errorf("%w: unencoded payloads (b64) are not accepted", ErrMalformed)
		}
		if dst == nil {
			continue
		}
		v, ok := knownHeaderValue(m.Value)
		if !ok {
			v, ok = String(m.Value)
		}
		if !ok {
			return nil, fmt.Errorf("%w: header member %s is not a string", ErrMalformed, m.Name)
		}
		*dst = v
	}
	h.Alg = CanonicalAlg(h.Alg)
	claims, err := objectMembers(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	return &Token{Header: h, Claims: claims, SigningInput: input, Signature: sig}, nil
}

// knownHeaderValue returns the common alg and typ values without
// allocating (the string(b) of a switch allocates nothing).
func knownHeaderValue(raw []byte) (string, bool) {
	switch string(raw) {
	case `"RS256"`:
		return "RS256", true
	case `"PS256"`:
		return "PS256", true
	case `"ES256"`:
		return "ES256", true
	case `"EdDSA"`:
		return "EdDSA", true
	case `"at+jwt"`:
		return "at+jwt", true
	case `"JWT"`:
		return "JWT", true
	case `"dpop+jwt"`:
		return "dpop+jwt", true
	}
	return "", false
}

// CanonicalAlg returns the name this package uses for alg: the
// fully-specified "Ed25519" of RFC 9864 §2.2 (Node's WebCrypto and
// oauth4webapi send it) is "EdDSA" with an Ed25519 key, the only EdDSA
// curve supported, so it reads as "EdDSA"; every other name is unchanged.
// Parse and ParseKey apply it, so that allow-lists name EdDSA alone.
func CanonicalAlg(alg string) string {
	if alg == "Ed25519" {
		return "EdDSA"
	}
	return alg
}

// Claim returns the raw JSON value of the payload member name (matched
// exactly; Parse has refused case variants).
func (t *Token) Claim(name string) (raw []byte, ok bool) {
	for _, m := range t.Claims {
		if string(m.Name) == name {
			return m.Value, true
		}
	}
	return nil, false
}

// VerifyWith checks the token's signature with key for the header's alg:
// VerifySignature(t.Header.Alg, key, t.SigningInput, t.Signature).
func (t *Token) VerifyWith(key crypto.PublicKey) error {
	return VerifySignature(t.Header.Alg, key, t.SigningInput, t.Signature)
}

// VerifySignature checks sig over input with key for alg (RFC 7518 §3.3,
// §3.4, §3.5; RFC 8037 §3.1): RS256, PS256, ES256 and EdDSA only, and the
// key's type must be the one alg uses (a *rsa.PublicKey, a P-256
// *ecdsa.PublicKey, an ed25519.PublicKey). It returns ErrAlgorithm for any
// other alg or a key of another type, ErrSignature for a bad signature.
func VerifySignature(alg string, key crypto.PublicKey, input, sig []byte) error {
	switch alg {
	case "RS256", "PS256":
		k, ok := key.(*rsa.PublicKey)
		if !ok || k == nil {
			return fmt.Errorf("%w: %s needs an RSA key", ErrAlgorithm, alg)
		}
		h := sha256.Sum256(input)
		var err error
		if alg == "RS256" {
			err = rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig)
		} else {
			err = rsa.VerifyPSS(k, crypto.SHA256, h[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		if err != nil {
			return ErrSignature
		}
		return nil
	case "ES256":
		k, ok := key.(*ecdsa.PublicKey)
		if !ok || k == nil || k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: ES256 needs a P-256 key", ErrAlgorithm)
		}
		if len(sig) != 64 {
			return ErrSignature
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		h := sha256.Sum256(input)
		if r.Sign() == 0 || s.Sign() == 0 || !ecdsa.Verify(k, h[:], r, s) {
			return ErrSignature
		}
		return nil
	case "EdDSA":
		k, ok := key.(ed25519.PublicKey)
		if !ok || len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: EdDSA needs an Ed25519 key", ErrAlgorithm)
		}
		if !ed25519.Verify(k, input, sig) {
			return ErrSignature
		}
		return nil
	}
	return ErrAlgorithm
}
