package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/tokensource"
)

// assertionTypes maps --assertion-type to client_assertion_type.
var assertionTypes = map[string]string{
	"jwt-bearer":                       tokensource.AssertionTypeJWTBearer,
	"jwt-spiffe":                       tokensource.AssertionTypeSPIFFE,
	tokensource.AssertionTypeJWTBearer: tokensource.AssertionTypeJWTBearer,
	tokensource.AssertionTypeSPIFFE:    tokensource.AssertionTypeSPIFFE,
}

func runToken(ctx context.Context, e *env, args []string) error {
	var server, id, sec, audience, scopes string
	var keyFile, keyID, alg, assertionAudience, assertionFile, assertionType string
	var certFile, certKeyFile, caFile, dpopKeyFile string
	var out output
	f := newFlags(e, "token", "", `Gets an access token with the client-credentials grant and prints it; --json prints
the whole token response. The client authenticates with exactly one of:
  --client-secret   the client secret, sent with HTTP Basic;
  --private-key     private_key_jwt: a 60 s assertion signed with the key (aud: --assertion-audience);
  --assertion-file  a workload token (a Kubernetes projected service-account token, a SPIFFE
                    JWT-SVID, a CI OIDC token) sent as the client assertion;
  --cert            alone (with --client-id): the TLS client certificate (tls_client_auth or
                    self_signed_tls_client_auth, RFC 8705).
--cert with another credential presents the certificate too, for a token bound to it.
--dpop-key gets a DPoP-bound token (RFC 9449): the token request carries a proof signed with
the key, and every API request needs one too (m2mauth dpop proof).`)
	f.StringVar(&server, "server", "", "server base URL (e.g. http://127.0.0.1:8080)")
	f.StringVar(&id, "client-id", "", "client id (optional with --assertion-file)")
	f.StringVar(&sec, "client-secret", "", "client secret; prefer the environment variable")
	f.StringVar(&keyFile, "private-key", "", "private key file for private_key_jwt: PEM (PKCS#8, PKCS#1 or SEC1) or a private JWK")
	f.StringVar(&keyID, "key-id", "", "the assertion's kid (default: the JWK's kid, else the key's RFC 7638 thumbprint)")
	f.StringVar(&alg, "alg", "", "the assertion's algorithm: RS256 or PS256 for RSA (default RS256), ES256 for P-256, EdDSA for Ed25519")
	f.StringVar(&assertionAudience, "assertion-audience", "", "the assertion's aud (default: the issuer, taken as --server)")
	f.StringVar(&assertionFile, "assertion-file", "", "file holding the workload token to send as the client assertion")
	f.StringVar(&assertionType, "assertion-type", "", "client assertion type of --assertion-file: jwt-bearer or jwt-spiffe (default jwt-bearer)")
	f.StringVar(&certFile, "cert", "", "TLS client certificate file (PEM, with any intermediates) presented to the token endpoint (discovery's mtls_endpoint_aliases one)")
	f.StringVar(&certKeyFile, "key", "", "the private key of --cert (PEM; default: --cert, if it holds the key too)")
	f.StringVar(&caFile, "cacert", "", "CA certificates (PEM) to trust for the server's TLS certificate instead of the system's")
	f.StringVar(&dpopKeyFile, "dpop-key", "", "DPoP private key file (PEM or a private JWK); when there is none, a new P-256 key is written there")
	f.StringVar(&audience, "audience", "", "API identifier (default: the client's default audience)")
	f.StringVar(&scopes, "scopes", "", "space-separated scopes (default: all granted)")
	var envName string
	f.StringVar(&envName, "env", "", `the environment whose token endpoint to ask: --server + "/e/NAME" (for an
      environment addressed by host, give its URL as --server instead)`)
	out.register(f)
	f.setEnv("client-id", "M2MAUTH_CLIENT_ID")
	f.setEnv("client-secret", "M2MAUTH_CLIENT_SECRET")
	f.setEnv("private-key", "M2MAUTH_PRIVATE_KEY_FILE")
	f.setEnv("alg", "M2MAUTH_ASSERTION_ALG")
	f.setEnv("cert", "M2MAUTH_CLIENT_CERT")
	f.setEnv("key", "M2MAUTH_CLIENT_KEY")
	f.setEnv("dpop-key", dpopKeyEnv)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	// Say where a credential came from: a variable left in the shell is
	// the usual reason for two of them.
	onCommandLine := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { onCommandLine[fl.Name] = true })
	origin := func(name string) string {
		if onCommandLine[name] {
			return "--" + name
		}
		return fmt.Sprintf("--%s (from $%s)", name, f.envName(name))
	}
	var kinds []string
	for name, v := range map[string]string{"client-secret": sec, "private-key": keyFile, "assertion-file": assertionFile} {
		if v != "" {
			kinds = append(kinds, origin(name))
		}
	}
	switch {
	case server == "":
		return errors.New("--server is required")
	case len(kinds) == 0 && certFile == "":
		return errors.New("a client credential is required: --client-secret, --private-key, --assertion-file or --cert (tls_client_auth)")
	case len(kinds) > 1:
		slices.Sort(kinds)
		return fmt.Errorf("give exactly one client credential, not %s", strings.Join(kinds, " and "))
	}
	for _, o := range []struct{ name, v string }{{"key-id", keyID}, {"alg", alg}, {"assertion-audience", assertionAudience}} {
		if o.v != "" && keyFile == "" {
			return fmt.Errorf("%s applies only with --private-key", origin(o.name))
		}
	}
	if assertionType != "" && assertionFile == "" {
		return fmt.Errorf("%s applies only with --assertion-file", origin("assertion-type"))
	}
	if certKeyFile != "" && certFile == "" {
		return fmt.Errorf("%s applies only with --cert", origin("key"))
	}
	if len(kinds) == 0 && id == "" {
		return fmt.Errorf("--client-id is required with %s as the only credential (tls_client_auth)", origin("cert"))
	}
	client := httpClient
	var cert *tls.Certificate
	if certFile != "" || caFile != "" {
		tc := &tls.Config{}
		if certFile != "" {
			if certKeyFile == "" {
				certKeyFile = certFile
			}
			c, err := tls.LoadX509KeyPair(certFile, certKeyFile)
			if err != nil {
				return fmt.Errorf("%s: %w", origin("cert"), err)
			}
			cert = &c
			tc.Certificates = []tls.Certificate{c}
		}
		if caFile != "" {
			pool, err := readCAs(caFile)
			if err != nil {
				return fmt.Errorf("%s: %w", origin("cacert"), err)
			}
			tc.RootCAs = pool
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = tc
		client = &http.Client{Timeout: httpClient.Timeout, Transport: t}
	}
	base := strings.TrimRight(server, "/")
	if envName != "" && envName != defaultEnv && pathEnv(base) != envName && hostEnv(base) != envName {
		if err := checkEnvName(envName); err != nil {
			return fmt.Errorf("%s: %w", origin("env"), err)
		}
		base += "/e/" + envName
	}
	if sec != "" && id == "" {
		return errors.New("--client-id is required with --client-secret")
	}
	if sec != "" && client == httpClient && dpopKeyFile == "" {
		form := url.Values{"grant_type": {"client_credentials"}}
		if audience != "" {
			form.Set("audience", audience)
		}
		if scopes != "" {
			form.Set("scope", scopes)
		}
		tok, err := requestToken(ctx, base+"/oauth/token", id, sec, form)
		if err != nil {
			if strings.Contains(err.Error(), "invalid_dpop_proof") {
				// The client's tokens must be DPoP-bound: say how.
				return fmt.Errorf("%w (this client needs a DPoP key: add --dpop-key FILE)", err)
			}
			return err
		}
		return printToken(e, out, tok)
	}
	cfg := tokensource.Config{
		TokenURL: base + "/oauth/token", Issuer: base, ClientID: id,
		Scopes: strings.Fields(scopes), Audience: audience,
		HTTPClient: client, MaxRetries: -1, // one attempt, as with a secret
		// The certificate is in client; here it says that it may be the
		// credential (tls_client_auth).
		Certificate: cert,
	}
	if cert != nil {
		// RFC 8705 §5: the token endpoint that takes client certificates
		// may be another (serve --mtls-endpoint-base); discovery names it.
		cfg.TokenURL = ""
	}
	if dpopKeyFile != "" {
		key, err := loadOrCreateDPoPKey(e, dpopKeyFile)
		if err != nil {
			return fmt.Errorf("%s: %w", origin("dpop-key"), err)
		}
		cfg.DPoPKey = key
	}
	switch {
	case sec != "":
		cfg.ClientSecret = sec
	case keyFile != "":
		if id == "" {
			return errors.New("--client-id is required with --private-key (it is the assertion's iss and sub)")
		}
		cfg.PrivateKeyFile, cfg.KeyID, cfg.SigningAlg, cfg.AssertionAudience = keyFile, keyID, alg, assertionAudience
	case assertionFile != "":
		cfg.AssertionFile = assertionFile
		if assertionType != "" {
			typ, ok := assertionTypes[assertionType]
			if !ok {
				return fmt.Errorf("--assertion-type %q: want jwt-bearer or jwt-spiffe", assertionType)
			}
			cfg.AssertionType = typ
		}
	}
	src, err := tokensource.New(cfg)
	if err != nil {
		return err
	}
	tok, err := src.Token(ctx)
	if err != nil {
		return err
	}
	if dpopKeyFile != "" && tok.TokenType != "DPoP" {
		fmt.Fprintf(e.stderr, "note: the server answered token type %s: the token is not bound to the DPoP key\n", tok.TokenType)
	}
	return printToken(e, out, &tokenResponse{
		AccessToken: tok.AccessToken, TokenType: tok.TokenType, Scope: tok.Scope,
		ExpiresIn: int64(time.Until(tok.Expiry).Round(time.Second) / time.Second),
	})
}

// readCAs reads PEM certificates to trust, as curl's --cacert.
func readCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate in the file")
	}
	return pool, nil
}

func printToken(e *env, out output, tok *tokenResponse) error {
	if out.json {
		return printJSON(e.stdout, tok)
	}
	fmt.Fprintln(e.stdout, tok.AccessToken)
	return nil
}
