package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/jws"
	"github.com/m2mauth/m2mauth/tokensource"
	"github.com/m2mauth/m2mauth/verify"
)

func dpopCommands() []command {
	return []command{
		{"proof", "print a DPoP proof for one request (for curl)", dpopProof},
		{"thumbprint", "print the RFC 7638 thumbprint of a DPoP key (cnf.jkt of its tokens)", dpopThumbprint},
	}
}

// dpopKeyEnv is the variable of --dpop-key (token) and --key (dpop …): the
// same key file for getting a token and for proving possession of it.
const dpopKeyEnv = "M2MAUTH_DPOP_KEY_FILE"

// loadOrCreateDPoPKey reads the DPoP key at path or, when there is no
// such file, generates an ECDSA P-256 key and writes it there (PKCS#8 PEM,
// mode 0600, never over an existing file), saying so on stderr.
func loadOrCreateDPoPKey(e *env, path string) (crypto.Signer, error) {
	key, err := tokensource.ReadPrivateKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	fmt.Fprintf(e.stderr, "wrote a new DPoP key (ECDSA P-256) to %s\n", path)
	return k, nil
}

func dpopProof(_ context.Context, e *env, args []string) error {
	var keyFile, method, rawURL, token, tokenFile, nonce string
	f := newFlags(e, "dpop proof", "", `Prints a DPoP proof (RFC 9449) for one request: a JWT signed with the key, for the
request's method and URL (query and fragment are left out), issued now, with the hash of
the access token (ath) when one is given. A proof is good for one request:
  T=$(m2mauth token --dpop-key k.pem …)
  curl -H "Authorization: DPoP $T" \
       -H "DPoP: $(m2mauth dpop proof --key k.pem --method GET --url https://api.example.com/data --token "$T")" \
       https://api.example.com/data
Without --token it is a proof for the token endpoint (as m2mauth token --dpop-key sends).`)
	f.StringVar(&keyFile, "key", "", "the DPoP private key file: PEM (PKCS#8, PKCS#1 or SEC1) or a private JWK (required)")
	f.StringVar(&method, "method", "GET", "the request's HTTP method (htm)")
	f.StringVar(&rawURL, "url", "", "the request's URL (htu; required)")
	f.StringVar(&token, "token", "", "the access token sent with the proof (its hash is ath)")
	f.StringVar(&tokenFile, "token-file", "", "a file holding the access token, instead of --token")
	f.StringVar(&nonce, "nonce", "", "the server's last DPoP-Nonce")
	f.setEnv("key", dpopKeyEnv)
	f.setEnv("token", "")
	f.setEnv("token-file", "")
	f.setEnv("url", "")
	f.setEnv("method", "")
	f.setEnv("nonce", "")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	switch {
	case keyFile == "":
		return errors.New("--key is required")
	case rawURL == "":
		return errors.New("--url is required")
	case token != "" && tokenFile != "":
		return errors.New("give --token or --token-file, not both")
	}
	if tokenFile != "" {
		f, err := os.Open(tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		b, err := readAllLimited(f, verify.MaxTokenSize+1)
		f.Close()
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return fmt.Errorf("--token-file %s: empty", tokenFile)
		}
	}
	key, err := tokensource.ReadPrivateKey(keyFile)
	if err != nil {
		return err
	}
	proof, err := dpop.NewProof(key, method, rawURL, dpop.ProofOptions{AccessToken: token, Nonce: nonce})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, proof)
	return nil
}

func dpopThumbprint(_ context.Context, e *env, args []string) error {
	var keyFile string
	f := newFlags(e, "dpop thumbprint", "", "Prints the RFC 7638 SHA-256 thumbprint of a DPoP key's public key: the cnf.jkt of the\ntokens bound to it.")
	f.StringVar(&keyFile, "key", "", "the DPoP private key file: PEM or a private JWK (required)")
	f.setEnv("key", dpopKeyEnv)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if keyFile == "" {
		return errors.New("--key is required")
	}
	key, err := tokensource.ReadPrivateKey(keyFile)
	if err != nil {
		return err
	}
	jkt, err := jws.Thumbprint(key.Public())
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, jkt)
	return nil
}
