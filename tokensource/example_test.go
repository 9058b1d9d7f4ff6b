package tokensource_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"log"
	"net/http"

	"github.com/m2mauth/m2mauth/tokensource"
)

// A client that authenticates with private_key_jwt: its public key is
// registered with the client (jwks or jwks_uri), and every token request
// carries a new assertion signed with the private key, so no secret is
// shared with the server.
func ExampleNew_privateKeyJWT() {
	src, err := tokensource.New(tokensource.Config{
		Issuer:         "https://auth.example.com", // the assertion's aud; discovery finds the token endpoint
		ClientID:       "m2mc_billing",
		PrivateKeyFile: "/etc/billing/client-key.pem", // PEM or JWK; kid from the JWK or the RFC 7638 thumbprint
		KeyID:          "billing-2025",                // the kid registered with the public key
		Scopes:         []string{"orders:read"},
		Audience:       "https://api.example.com",
	})
	if err != nil {
		log.Fatal(err)
	}
	api := &http.Client{Transport: src.Transport(nil)}
	resp, err := api.Get("https://api.example.com/orders")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
}

// The key may be any crypto.Signer, such as one backed by a KMS or an HSM;
// the algorithm follows the key type (ES256 for this P-256 key).
func ExampleNew_signer() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // in practice: a KMS or HSM signer
	if err != nil {
		log.Fatal(err)
	}
	src, err := tokensource.New(tokensource.Config{
		Issuer:     "https://auth.example.com",
		ClientID:   "m2mc_billing",
		PrivateKey: key,
		KeyID:      "billing-kms-1",
	})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := src.Token(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	_ = tok.AccessToken
}

// A Kubernetes workload authenticates with its projected service-account
// token, whose audience is the authorization server's issuer:
//
//	volumes:
//	- name: m2mauth-token
//	  projected:
//	    sources:
//	    - serviceAccountToken:
//	        path: token
//	        audience: https://auth.example.com
//	        expirationSeconds: 3600
//
// The kubelet rotates the file; the Source reads it for every token
// request. The server's trust policy maps the service account to a client,
// so ClientID may be left out.
func ExampleNew_kubernetes() {
	src, err := tokensource.New(tokensource.Config{
		Issuer:        "https://auth.example.com",
		AssertionFile: "/var/run/secrets/m2mauth/token",
		Audience:      "https://api.example.com",
	})
	if err != nil {
		log.Fatal(err)
	}
	api := &http.Client{Transport: src.Transport(nil)}
	_ = api
}

// A SPIFFE workload sends its JWT-SVID, kept on disk by a SPIFFE helper,
// with the jwt-spiffe assertion type.
func ExampleNew_spiffe() {
	_, err := tokensource.New(tokensource.Config{
		Issuer:        "https://auth.example.com",
		AssertionFile: "/run/spiffe/jwt_svid.token",
		AssertionType: tokensource.AssertionTypeSPIFFE,
	})
	if err != nil {
		log.Fatal(err)
	}
}

// DPoP-bound tokens (RFC 9449): the Source generates a P-256 key, sends a
// proof with every token request, and its Transport sends a proof with
// every API request; a stolen token is useless without the key.
func ExampleNew_dpop() {
	src, err := tokensource.New(tokensource.Config{
		Issuer:         "https://auth.example.com",
		ClientID:       "m2mc_billing",
		PrivateKeyFile: "/etc/billing/client-key.pem",
		DPoP:           true, // or DPoPKey: a crypto.Signer (KMS, HSM, tokensource.ReadPrivateKey)
	})
	if err != nil {
		log.Fatal(err)
	}
	api := &http.Client{Transport: src.Transport(nil)} // Authorization: DPoP …, and a DPoP proof
	_ = api
}

// Mutual TLS (RFC 8705): the client certificate authenticates the client
// (tls_client_auth; the server checks the registered subject, or the key
// for self_signed_tls_client_auth) and binds the tokens to it. The API
// requests go through the same certificate: Transport(nil) uses the
// Source's TLS transport.
func ExampleNew_mutualTLS() {
	cert, err := tls.LoadX509KeyPair("/etc/billing/client.crt", "/etc/billing/client.key")
	if err != nil {
		log.Fatal(err)
	}
	src, err := tokensource.New(tokensource.Config{
		Issuer:      "https://auth.example.com",
		ClientID:    "m2mc_billing",
		Certificate: &cert, // or GetClientCertificate, for a rotated one (a SPIFFE X.509-SVID)
	})
	if err != nil {
		log.Fatal(err)
	}
	api := &http.Client{Transport: src.Transport(nil)}
	_ = api
}

// A GitHub Actions job (with "permissions: id-token: write") sends the
// job's OIDC token, asked for the authorization server's issuer as its
// audience.
func ExampleGitHubActionsToken() {
	src, err := tokensource.New(tokensource.Config{
		Issuer:        "https://auth.example.com",
		AssertionFunc: tokensource.GitHubActionsToken("https://auth.example.com", nil),
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = src
}
