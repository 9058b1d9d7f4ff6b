// Package verify validates JWT access tokens (RFC 9068) for resource
// servers: signature with an allow-listed algorithm and a key from a
// KeySource, then typ, iss, aud, exp, nbf and iat.
package verify

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Errors returned by Verify, so callers can tell an expired token from a
// forged one. Every error from Verify wraps ErrInvalidToken.
var (
	ErrInvalidToken = errors.New("invalid token")
	ErrMalformed    = fmt.Errorf("%w: malformed", ErrInvalidToken)
	ErrAlgorithm    = fmt.Errorf("%w: algorithm not allowed", ErrInvalidToken)
	ErrUnknownKey   = fmt.Errorf("%w: unknown signing key", ErrInvalidToken)
	ErrSignature    = fmt.Errorf("%w: bad signature", ErrInvalidToken)
	ErrType         = fmt.Errorf("%w: not an access token (typ)", ErrInvalidToken)
	ErrIssuer       = fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	ErrAudience     = fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	ErrExpired      = fmt.Errorf("%w: expired", ErrInvalidToken)
	ErrNotYetValid  = fmt.Errorf("%w: not yet valid", ErrInvalidToken)
)

// MaxTokenSize caps the token length checked before any decoding.
const MaxTokenSize = 16 << 10

// DefaultAlgorithms are the asymmetric algorithms accepted by default.
var DefaultAlgorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}

// KeySource finds the public key for a kid, with the algorithm it is for.
type KeySource interface {
	Key(ctx context.Context, kid string) (key crypto.PublicKey, alg string, err error)
}

// KeySourceFunc adapts a function to KeySource.
type KeySourceFunc func(ctx context.Context, kid string) (crypto.PublicKey, string, error)

// Key implements KeySource.
func (f KeySourceFunc) Key(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
	return f(ctx, kid)
}

// Config configures a Verifier.
type Config struct {
	Issuer     string        // exact iss value required
	Audience   string        // must be in aud
	Algorithms []string      // allow-list; default DefaultAlgorithms
	Leeway     time.Duration // clock skew allowed on exp, nbf, iat; default 60 s
	Keys       KeySource
	Now        func() time.Time
}

// Verifier validates tokens. It is safe for concurrent use.
type Verifier struct {
	cfg  Config
	algs []jose.SignatureAlgorithm
}

// New returns a Verifier for cfg.
func New(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" || cfg.Keys == nil {
		return nil, errors.New("verify: Issuer, Audience and Keys are required")
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	v := &Verifier{cfg: cfg}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(DefaultAlgorithms, a) {
			return nil, fmt.Errorf("verify: algorithm %q is not supported (only asymmetric algorithms are)", a)
		}
		v.algs = append(v.algs, jose.SignatureAlgorithm(a))
	}
	if cfg.Leeway == 0 {
		v.cfg.Leeway = 60 * time.Second
	}
	if cfg.Now == nil {
		v.cfg.Now = time.Now
	}
	return v, nil
}

// Claims are a validated token's claims.
type Claims struct {
	Issuer    string
	Subject   string
	ClientID  string
	Audience  []string
	IssuedAt  time.Time
	NotBefore time.Time
	ExpiresAt time.Time
	JTI       string
	Scopes    []string
	// Raw holds every claim, registered and custom, as sent.
	Raw map[string]json.RawMessage
}

// HasScope reports whether the token was granted scope.
func (c *Claims) HasScope(scope string) bool { return slices.Contains(c.Scopes, scope) }

type registered struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	ClientID string   `json:"client_id"`
	Aud      audience `json:"aud"`
	Iat      *int64   `json:"iat"`
	Nbf      *int64   `json:"nbf"`
	Exp      *int64   `json:"exp"`
	JTI      string   `json:"jti"`
	Scope    string   `json:"scope"`
}

type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = many
	return nil
}

// Verify validates token and returns its claims. Claims are never returned
// together with an error.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: token larger than %d bytes", ErrMalformed, MaxTokenSize)
	}
	if strings.Count(token, ".") != 2 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected signature algorithm") {
			return nil, ErrAlgorithm
		}
		return nil, ErrMalformed
	}
	if len(jws.Signatures) != 1 {
		return nil, ErrMalformed
	}
	h := jws.Signatures[0].Protected
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return nil, fmt.Errorf("%w: unsupported crit header", ErrMalformed)
	}
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if t := strings.ToLower(typ); t != "at+jwt" && t != "application/at+jwt" {
		return nil, ErrType
	}
	key, alg, err := v.cfg.Keys.Key(ctx, h.KeyID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknownKey, err)
	}
	if alg != h.Algorithm {
		return nil, fmt.Errorf("%w: key is for %s", ErrAlgorithm, alg)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, ErrSignature
	}
	var raw map[string]json.RawMessage
	var reg registered
	if json.Unmarshal(payload, &raw) != nil || json.Unmarshal(payload, &reg) != nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object", ErrMalformed)
	}
	if reg.Iss != v.cfg.Issuer {
		return nil, ErrIssuer
	}
	if !slices.Contains(reg.Aud, v.cfg.Audience) {
		return nil, ErrAudience
	}
	now := v.cfg.Now()
	if reg.Exp == nil {
		return nil, fmt.Errorf("%w: no exp", ErrMalformed)
	}
	c := &Claims{
		Issuer: reg.Iss, Subject: reg.Sub, ClientID: reg.ClientID, Audience: reg.Aud,
		ExpiresAt: time.Unix(*reg.Exp, 0), JTI: reg.JTI, Raw: raw,
	}
	if !now.Before(c.ExpiresAt.Add(v.cfg.Leeway)) {
		return nil, ErrExpired
	}
	if reg.Nbf != nil {
		c.NotBefore = time.Unix(*reg.Nbf, 0)
		if now.Add(v.cfg.Leeway).Before(c.NotBefore) {
			return nil, ErrNotYetValid
		}
	}
	if reg.Iat != nil {
		c.IssuedAt = time.Unix(*reg.Iat, 0)
		if now.Add(v.cfg.Leeway).Before(c.IssuedAt) {
			return nil, ErrNotYetValid
		}
	}
	if reg.Scope != "" {
		c.Scopes = strings.Split(reg.Scope, " ")
	}
	return c, nil
}
