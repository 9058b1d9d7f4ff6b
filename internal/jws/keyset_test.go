package jws

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
)

func TestPublicKeySet(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	privDER, _ := x509.MarshalPKCS8PrivateKey(key)
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	kid, _ := Thumbprint(&key.PublicKey)
	jwk := `{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`
	cases := []struct {
		name, in string
		keys     int
		kid      string
		err      string
	}{
		{"PEM public key", pubPEM, 1, kid, ""},
		{"two PEM keys with a certificate-like block between", pubPEM + "-----BEGIN PARAMETERS-----\nAA==\n-----END PARAMETERS-----\n" + pubPEM, 2, kid, ""},
		{"one JWK", "  " + jwk + "\n", 1, "", ""},
		{"JWK Set", `{"keys":[` + jwk + `]}`, 1, "", ""},
		{"PEM private key", privPEM, 0, "", "private key"},
		{"JWK with d", `{"kty":"EC","d":"x"}`, 0, "", `member "d"`},
		{"set with a symmetric key", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, 0, "", `member "k"`},
		{"keys not an array", `{"keys":{}}`, 0, "", "not a JWK Set"},
		{"object without kty", `{"a":1}`, 0, "", "neither a JWK Set"},
		{"broken JSON", `{"keys":`, 0, "", "not valid JSON"},
		{"nothing", "", 0, "", "no public key"},
		{"text", "hello", 0, "", "no public key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PublicKeySet([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var set struct {
				Keys []struct {
					Kid string `json:"kid"`
					D   string `json:"d"`
				} `json:"keys"`
			}
			if err := json.Unmarshal(got, &set); err != nil || len(set.Keys) != tc.keys {
				t.Fatalf("set %s: %v, want %d keys", got, err, tc.keys)
			}
			if tc.kid != "" && set.Keys[0].Kid != tc.kid {
				t.Errorf("kid %q, want the thumbprint %q", set.Keys[0].Kid, tc.kid)
			}
			if set.Keys[0].D != "" {
				t.Error("private material in the set")
			}
		})
	}
}
