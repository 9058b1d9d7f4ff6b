package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
)

// strictB64 is base64url without padding, rejecting non-zero trailing bits
// (so every token has exactly one encoding).
var strictB64 = base64.RawURLEncoding.Strict()

// jwsHeader is the part of a JOSE header this package acts on. jku, x5u,
// jwk and x5c are deliberately not read: keys come only from the KeySource.
type jwsHeader struct {
	Alg string
	Kid string
	Typ string
}

// compact is a parsed JWS compact serialization (RFC 7515 §7.1).
type compact struct {
	header       jwsHeader
	claims       []member
	signingInput []byte
	signature    []byte
}

// parseCompact splits and decodes a token strictly: three segments, strict
// base64url, valid UTF-8 JSON objects without repeated (or case-variant)
// member names, no crit and no b64 header.
func parseCompact(token string) (*compact, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: token larger than %d bytes", ErrMalformed, MaxTokenSize)
	}
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first <= 0 || last == first || strings.Count(token, ".") != 2 || last == len(token)-1 {
		return nil, fmt.Errorf("%w: not a JWS in compact form (three non-empty parts)", ErrMalformed)
	}
	hdrB, err := strictB64.DecodeString(token[:first])
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	payload, err := strictB64.DecodeString(token[first+1 : last])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	sig, err := strictB64.DecodeString(token[last+1:])
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}
	members, err := objectMembers(hdrB)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var h jwsHeader
	for _, m := range members {
		var dst *string
		switch string(m.name) {
		case "alg":
			dst = &h.Alg
		case "kid":
			dst = &h.Kid
		case "typ":
			dst = &h.Typ
		case "crit":
			return nil, fmt.Errorf("%w: crit header with extensions this verifier does not understand", ErrMalformed)
		case "b64":
			return nil, fmt.Errorf("%w: unencoded payloads (b64) are not accepted", ErrMalformed)
		default:
			continue
		}
		v, ok := jsonString(m.value)
		if !ok {
			return nil, fmt.Errorf("%w: header member %s is not a string", ErrMalformed, m.name)
		}
		*dst = v
	}
	claims, err := objectMembers(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	return &compact{header: h, claims: claims, signingInput: []byte(token[:last]), signature: sig}, nil
}

// verifySignature checks sig over input with key for alg (RFC 7518 §3); the
// key's type must be the one alg uses.
func verifySignature(alg string, key crypto.PublicKey, input, sig []byte) error {
	switch alg {
	case "RS256", "PS256":
		k, ok := key.(*rsa.PublicKey)
		if !ok {
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
		if !ok || k.Curve != elliptic.P256() {
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
