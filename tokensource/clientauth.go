package tokensource

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/m2mauth/m2mauth/internal/jws"
)

// Client assertion types (RFC 7523 §2.2; draft-ietf-oauth-spiffe-client-auth).
const (
	AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	AssertionTypeSPIFFE    = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
)

// Assertion lifetimes of private_key_jwt.
const (
	DefaultAssertionLifetime = time.Minute
	MaxAssertionLifetime     = 5 * time.Minute
)

// assertionJWTType is the typ header of a private_key_jwt assertion
// (draft-ietf-oauth-rfc7523bis), so that it cannot pass for another kind
// of JWT.
const assertionJWTType = "client-authentication+jwt"

// maxAssertionSize bounds an assertion read from a file or a callback.
const maxAssertionSize = 64 << 10

// clientAuth adds the client's credentials to a token request.
type clientAuth interface {
	authenticate(ctx context.Context, form url.Values, h http.Header) error
}

// newClientAuth checks that cfg configures exactly one client
// authentication and returns it, filling the defaults in cfg.
func newClientAuth(cfg *Config) (clientAuth, error) {
	var kinds []string
	if cfg.ClientSecret != "" {
		kinds = append(kinds, "ClientSecret")
	}
	if cfg.PrivateKey != nil {
		kinds = append(kinds, "PrivateKey")
	}
	if cfg.PrivateKeyFile != "" {
		kinds = append(kinds, "PrivateKeyFile")
	}
	if cfg.AssertionFile != "" {
		kinds = append(kinds, "AssertionFile")
	}
	if cfg.AssertionFunc != nil {
		kinds = append(kinds, "AssertionFunc")
	}
	withCert := cfg.Certificate != nil || cfg.GetClientCertificate != nil
	if cfg.Certificate != nil && cfg.GetClientCertificate != nil {
		return nil, errors.New("tokensource: Certificate and GetClientCertificate are set: set one")
	}
	switch len(kinds) {
	case 0:
		if withCert {
			break // tls_client_auth or self_signed_tls_client_auth
		}
		return nil, errors.New("tokensource: no client authentication: set ClientSecret, PrivateKey, PrivateKeyFile, AssertionFile or AssertionFunc, or a client certificate (Certificate or GetClientCertificate) with ClientID")
	case 1:
	default:
		return nil, fmt.Errorf("tokensource: %s are set: set exactly one client authentication", strings.Join(kinds, " and "))
	}
	withKey := cfg.PrivateKey != nil || cfg.PrivateKeyFile != ""
	withSource := cfg.AssertionFile != "" || cfg.AssertionFunc != nil
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"KeyID", cfg.KeyID != ""}, {"SigningAlg", cfg.SigningAlg != ""},
		{"AssertionAudience", cfg.AssertionAudience != ""}, {"AssertionLifetime", cfg.AssertionLifetime != 0},
	} {
		if f.set && !withKey {
			return nil, fmt.Errorf("tokensource: %s applies only to private_key_jwt (PrivateKey or PrivateKeyFile)", f.name)
		}
	}
	if cfg.AssertionType != "" && !withSource {
		return nil, errors.New("tokensource: AssertionType applies only to AssertionFile or AssertionFunc")
	}
	switch {
	case len(kinds) == 0:
		// RFC 8705 §2: the TLS handshake authenticates; client_id names
		// the client whose registered subject or key the server checks.
		if cfg.ClientID == "" {
			return nil, errors.New("tokensource: ClientID is required with a client certificate as the only credential (tls_client_auth)")
		}
		return tlsAuth{id: cfg.ClientID}, nil
	case cfg.ClientSecret != "":
		if cfg.ClientID == "" {
			return nil, errors.New("tokensource: ClientID is required with ClientSecret")
		}
		return secretAuth{id: cfg.ClientID, secret: cfg.ClientSecret}, nil
	case withKey:
		return newKeyAuth(cfg)
	default:
		switch cfg.AssertionType {
		case "":
			cfg.AssertionType = AssertionTypeJWTBearer
		case AssertionTypeJWTBearer, AssertionTypeSPIFFE:
		default:
			return nil, fmt.Errorf("tokensource: AssertionType %q: want AssertionTypeJWTBearer or AssertionTypeSPIFFE", cfg.AssertionType)
		}
		get := cfg.AssertionFunc
		if cfg.AssertionFile != "" {
			get = fileAssertion(cfg.AssertionFile)
		}
		return sourceAuth{id: cfg.ClientID, typ: cfg.AssertionType, get: get}, nil
	}
}

// secretAuth is client_secret_basic: RFC 6749 §2.3.1 form-encodes both
// parts before Basic.
type secretAuth struct{ id, secret string }

func (a secretAuth) authenticate(_ context.Context, _ url.Values, h http.Header) error {
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(a.id)+":"+url.QueryEscape(a.secret))))
	return nil
}

// tlsAuth is tls_client_auth or self_signed_tls_client_auth (RFC 8705 §2):
// the client certificate of the TLS connection is the credential, and the
// request only names the client.
type tlsAuth struct{ id string }

func (a tlsAuth) authenticate(_ context.Context, form url.Values, _ http.Header) error {
	form.Set("client_id", a.id)
	return nil
}

// keyAuth is private_key_jwt (RFC 7523 §2.2 and draft-ietf-oauth-rfc7523bis).
type keyAuth struct {
	id, aud  string
	lifetime time.Duration
	signer   jose.Signer
	now      func() time.Time
}

func newKeyAuth(cfg *Config) (*keyAuth, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("tokensource: ClientID is required with a private key (it is the assertion's iss and sub)")
	}
	key, kid, alg := cfg.PrivateKey, cfg.KeyID, cfg.SigningAlg
	if cfg.PrivateKeyFile != "" {
		k, err := loadPrivateKey(cfg.PrivateKeyFile)
		if err != nil {
			return nil, err
		}
		key = k.key
		if kid == "" {
			kid = k.kid
		}
		if alg == "" {
			alg = k.alg
		}
	}
	alg, err := keyAlgorithm(key, alg)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = jws.Thumbprint(key.Public()); err != nil {
			return nil, fmt.Errorf("tokensource: key thumbprint: %w", err)
		}
	}
	aud := cfg.AssertionAudience
	if aud == "" {
		aud = cfg.Issuer
	}
	if aud == "" {
		return nil, errors.New("tokensource: private_key_jwt needs the assertion's audience: set Issuer (the authorization server's issuer identifier) or AssertionAudience")
	}
	if cfg.AssertionLifetime == 0 {
		cfg.AssertionLifetime = DefaultAssertionLifetime
	}
	if cfg.AssertionLifetime < time.Second || cfg.AssertionLifetime > MaxAssertionLifetime {
		return nil, fmt.Errorf("tokensource: AssertionLifetime %s: want 1s to %s", cfg.AssertionLifetime, MaxAssertionLifetime)
	}
	opts := (&jose.SignerOptions{}).WithType(assertionJWTType).WithHeader("kid", kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: cryptosigner.Opaque(key)}, opts)
	if err != nil {
		return nil, fmt.Errorf("tokensource: %s signer: %w", alg, err)
	}
	return &keyAuth{id: cfg.ClientID, aud: aud, lifetime: cfg.AssertionLifetime.Truncate(time.Second), signer: signer, now: cfg.Now}, nil
}

// keyAlgorithm checks that key is usable and returns its JWS algorithm:
// alg if it fits the key, else the key type's default.
func keyAlgorithm(key crypto.Signer, alg string) (string, error) {
	var fits []string
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < 2048 {
			return "", fmt.Errorf("tokensource: RSA key of %d bits: want 2048 or more", pub.N.BitLen())
		}
		fits = []string{"RS256", "PS256"}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return "", fmt.Errorf("tokensource: unsupported curve %s: want P-256 (ES256)", pub.Curve.Params().Name)
		}
		fits = []string{"ES256"}
	case ed25519.PublicKey:
		fits = []string{"EdDSA"}
	default:
		return "", fmt.Errorf("tokensource: unsupported key type %T: want RSA, ECDSA P-256 or Ed25519", pub)
	}
	if alg == "" {
		return fits[0], nil
	}
	for _, f := range fits {
		if alg == f {
			return alg, nil
		}
	}
	return "", fmt.Errorf("tokensource: algorithm %q does not fit this key: want %s", alg, strings.Join(fits, " or "))
}

func (a *keyAuth) authenticate(_ context.Context, form url.Values, _ http.Header) error {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return fmt.Errorf("tokensource: assertion jti: %w", err)
	}
	now := a.now().Truncate(time.Second)
	claims := jwt.Claims{
		Issuer: a.id, Subject: a.id,
		Audience: jwt.Audience{a.aud}, // one element: a JSON string, never an array
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(a.lifetime)),
		ID: base64.RawURLEncoding.EncodeToString(jti[:]),
	}
	assertion, err := jwt.Signed(a.signer).Claims(claims).Serialize()
	if err != nil {
		return fmt.Errorf("tokensource: signing the client assertion: %w", err)
	}
	form.Set("client_id", a.id)
	form.Set("client_assertion_type", AssertionTypeJWTBearer)
	form.Set("client_assertion", assertion)
	return nil
}

// sourceAuth sends a token from an assertion source (a workload identity).
type sourceAuth struct {
	id, typ string
	get     func(context.Context) (string, error)
}

func (a sourceAuth) authenticate(ctx context.Context, form url.Values, _ http.Header) error {
	assertion, err := a.get(ctx)
	if err != nil {
		return fmt.Errorf("tokensource: client assertion: %w", err)
	}
	assertion = strings.TrimSpace(assertion)
	if !compactJWS(assertion) {
		return errors.New("tokensource: client assertion: not a JWT (want header.payload.signature)")
	}
	if a.id != "" {
		form.Set("client_id", a.id)
	}
	form.Set("client_assertion_type", a.typ)
	form.Set("client_assertion", assertion)
	return nil
}

// fileAssertion reads the file on every call: Kubernetes and SPIFFE
// helpers replace the token on disk before it expires.
func fileAssertion(path string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxAssertionSize+1))
		if err != nil {
			return "", err
		}
		if len(b) > maxAssertionSize {
			return "", fmt.Errorf("%s: larger than %d bytes", path, maxAssertionSize)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			return "", fmt.Errorf("%s: empty", path)
		}
		return string(b), nil
	}
}

// compactJWS reports whether s has the shape of a compact JWS: three
// base64url parts, the first two non-empty. It never says what s holds,
// which may be a secret.
func compactJWS(s string) bool {
	if len(s) > maxAssertionSize {
		return false
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, p := range parts {
		if strings.ContainsFunc(p, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			return false
		}
	}
	return true
}
