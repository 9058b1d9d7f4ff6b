package tokensource

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-jose/go-jose/v4"
)

// fileKey is a private key read from a file, with the kid and alg the file
// names (a JWK's), if any.
type fileKey struct {
	key      crypto.Signer
	kid, alg string
}

// ReadPrivateKey reads a private key file as New reads PrivateKeyFile: PEM
// (PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE
// KEY", unencrypted) or a private JWK (RFC 7517). For a DPoP key from a
// file (DPoPKey). Its errors name the file but never quote it.
func ReadPrivateKey(path string) (crypto.Signer, error) {
	k, err := loadPrivateKey(path)
	if err != nil {
		return nil, err
	}
	return k.key, nil
}

// loadPrivateKey reads a PEM (PKCS#8, PKCS#1 or SEC1) or JWK private key.
// Its errors name the file but never quote it.
func loadPrivateKey(path string) (*fileKey, error) {
	b, err := readSmallFile(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("tokensource: private key: %w", err)
	}
	var k *fileKey
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		k, err = parseJWK(t)
	} else {
		k, err = parsePEM(b)
	}
	if err != nil {
		return nil, fmt.Errorf("tokensource: private key %s: %w", path, err)
	}
	return k, nil
}

func parseJWK(b []byte) (*fileKey, error) {
	var probe struct {
		Keys json.RawMessage `json:"keys"`
	}
	if json.Unmarshal(b, &probe) == nil && probe.Keys != nil {
		return nil, errors.New("a JWK set: give the one private JWK")
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("not a usable JWK: %w", err)
	}
	if jwk.IsPublic() {
		return nil, errors.New("a public JWK: the private key is needed to sign")
	}
	signer, ok := jwk.Key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T JWK: want an RSA, EC P-256 or Ed25519 private key", jwk.Key)
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return nil, fmt.Errorf("a JWK for use %q: want sig", jwk.Use)
	}
	return &fileKey{key: signer, kid: jwk.KeyID, alg: jwk.Algorithm}, nil
}

func parsePEM(b []byte) (*fileKey, error) {
	var seen []string
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Headers["Proc-Type"] != "" {
			return nil, errors.New("an encrypted PEM block: decrypt it first (openssl pkey -in FILE -out PLAIN)")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("an encrypted private key: decrypt it first (openssl pkey -in FILE -out PLAIN)")
		default:
			seen = append(seen, block.Type) // EC PARAMETERS, PUBLIC KEY, CERTIFICATE …
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T key: want an RSA, EC P-256 or Ed25519 private key", key)
		}
		return &fileKey{key: signer}, nil
	}
	if len(seen) > 0 {
		return nil, fmt.Errorf("no private key, only %q: the private key is needed to sign", seen)
	}
	return nil, errors.New("neither PEM nor a JWK")
}

// maxKeyFile caps a private key file: an RSA-4096 key in a JWK is under
// 4 KiB; anything far larger (a device, a wrong path) is not a key.
const maxKeyFile = 64 << 10

// readSmallFile reads a file of at most max bytes, refusing a larger one
// without reading it all (found by the attack: /dev/zero as a key file).
func readSmallFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}
