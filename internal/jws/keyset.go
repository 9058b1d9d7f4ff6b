package jws

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// privateMembers are the JWK members that hold private or secret key
// material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// PublicKeySet reads public keys as a person supplies them and returns a
// JWK Set: a JWK Set (returned as it is: a SPIFFE trust bundle is one),
// one public JWK, or PEM public keys ("PUBLIC KEY", "RSA PUBLIC KEY"). A
// key made from PEM gets its RFC 7638 thumbprint as kid (what tokensource
// and `m2mauth token` use by default). Private key material is refused.
// The keys themselves are checked where the set is registered.
func PublicKeySet(b []byte) (json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		return keySetFromJSON(b)
	}
	return keySetFromPEM(b)
}

func keySetFromJSON(b []byte) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, errors.New("it is not valid JSON")
	}
	checkPublic := func(i int, raw json.RawMessage) error {
		var k map[string]json.RawMessage
		if json.Unmarshal(raw, &k) != nil {
			return fmt.Errorf("key %d is not a JSON object", i)
		}
		for _, m := range privateMembers {
			if _, ok := k[m]; ok {
				return fmt.Errorf("key %d holds private key material (member %q): give the public key only", i, m)
			}
		}
		return nil
	}
	if raw, ok := obj["keys"]; ok {
		var keys []json.RawMessage
		if json.Unmarshal(raw, &keys) != nil {
			return nil, errors.New("it is not a JWK Set: keys is not an array")
		}
		for i, k := range keys {
			if err := checkPublic(i, k); err != nil {
				return nil, err
			}
		}
		return json.RawMessage(b), nil
	}
	if _, ok := obj["kty"]; !ok {
		return nil, errors.New("it is neither a JWK Set (with keys) nor a JWK (with kty)")
	}
	if err := checkPublic(0, b); err != nil {
		return nil, err
	}
	return json.Marshal(map[string][]json.RawMessage{"keys": {json.RawMessage(b)}})
}

func keySetFromPEM(b []byte) (json.RawMessage, error) {
	var keys []jose.JSONWebKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		var pub crypto.PublicKey
		var err error
		switch {
		case block.Type == "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case block.Type == "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, errors.New("it is a private key: give the public key only (openssl pkey -in KEY -pubout -out KEY.pub.pem)")
		default:
			continue // certificates, parameters
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", block.Type, err)
		}
		kid, err := Thumbprint(pub)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", block.Type, err)
		}
		keys = append(keys, jose.JSONWebKey{Key: pub, KeyID: kid, Use: "sig"})
	}
	if len(keys) == 0 {
		return nil, errors.New("no public key: give a JWK Set, a public JWK, or a PEM public key")
	}
	return json.Marshal(jose.JSONWebKeySet{Keys: keys})
}
