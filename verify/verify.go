// Package verify validates JWT access tokens (RFC 9068) for resource
// servers: it fetches and caches the issuer's JWK Set, checks the signature
// with an allow-listed asymmetric algorithm and a key of the matching type,
// then typ, iss, aud, exp, nbf and iat; and it provides net/http middleware
// that answers failures as RFC 6750 describes.
//
// The middleware also enforces sender-constrained tokens: a token whose cnf
// claim (Claims.Cnf) binds it to a DPoP key is accepted only with the DPoP
// scheme and a valid proof of that key for the request (RFC 9449 §7), and
// one bound to a client certificate only over that certificate (RFC 8705
// §3); MiddlewareOptions can require bound tokens for an API.
//
// Parsing is strict: a token larger than MaxTokenSize is refused before any
// decoding; base64url must be canonical and unpadded, without line breaks;
// header and claims must be valid UTF-8 JSON objects without repeated or
// case-variant member names; crit and b64 headers are refused, and jku,
// x5u, jwk and x5c are never followed.
package verify

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/jws"
)

// Errors returned by Verify, so callers can tell an expired token from a
// forged one. Every error from Verify wraps ErrInvalidToken.
//
// ErrInvalidToken, ErrMalformed, ErrAlgorithm and ErrSignature are the very
// values the module's internal JWS parser returns, so errors.Is matches
// them wherever the token was parsed.
var (
	ErrInvalidToken = jws.ErrInvalidToken
	ErrMalformed    = jws.ErrMalformed
	ErrAlgorithm    = jws.ErrAlgorithm
	ErrUnknownKey   = fmt.Errorf("%w: unknown signing key", ErrInvalidToken)
	ErrSignature    = jws.ErrSignature
	ErrType         = fmt.Errorf("%w: not an access token (typ)", ErrInvalidToken)
	ErrIssuer       = fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	ErrAudience     = fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	ErrExpired      = fmt.Errorf("%w: expired", ErrInvalidToken)
	ErrNotYetValid  = fmt.Errorf("%w: not yet valid", ErrInvalidToken)
	// ErrBound is a sender-constrained token (one with cnf: DPoP-bound or
	// certificate-bound) given to Verify, which cannot check its binding:
	// without the check, a stolen bound token would work as a bearer
	// token. Middleware checks bindings; so may a caller of VerifyBound.
	ErrBound = fmt.Errorf("%w: the token is sender-constrained (cnf), and its binding is not checked here", ErrInvalidToken)
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
	Issuer   string // exact iss value required
	Audience string // must be in aud
	// AnyAudience skips the audience check: for an authorization server's
	// own introspection, which applies its own audience rules.
	AnyAudience bool
	Algorithms  []string      // allow-list; default DefaultAlgorithms (never none or HMAC)
	Leeway      time.Duration // clock skew allowed on exp, nbf, iat; default 60 s

	// Keys come from Keys if set; otherwise from the JWK Set at JWKSURL,
	// or, when that is empty too, at the jwks_uri of the issuer's
	// discovery document (RFC 8414), fetched and cached by a JWKS.
	Keys       KeySource
	JWKSURL    string
	HTTPClient *http.Client // default: a client with a 10 s timeout
	JWKS       JWKSOptions  // cache behaviour of the JWKS

	// Introspection, when set, turns on online mode (see
	// IntrospectionConfig for the trade-off).
	Introspection *IntrospectionConfig

	Now func() time.Time // default time.Now
}

// Verifier validates tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	algs   []string
	online *introspector
	// issuerJSON is the issuer as a JSON string without escapes, or ""
	// when it needs some (then iss is always decoded).
	issuerJSON string
}

// New returns a Verifier for cfg. It does no I/O: keys are fetched on
// first use.
func New(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" || (cfg.Audience == "" && !cfg.AnyAudience) {
		return nil, errors.New("verify: Issuer and Audience are required")
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(DefaultAlgorithms, a) {
			return nil, fmt.Errorf("verify: algorithm %q is not supported (only RS256, PS256, ES256 and EdDSA are)", a)
		}
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Keys == nil {
		if cfg.JWKSURL == "" {
			cfg.JWKSURL = discoveryPlaceholder
		}
		cfg.JWKS.HTTPClient = cmp.Or(cfg.JWKS.HTTPClient, cfg.HTTPClient)
		if cfg.JWKS.Now == nil {
			cfg.JWKS.Now = cfg.Now
		}
		cfg.Keys = NewJWKS(cfg.JWKSURL, cfg.Issuer, cfg.JWKS)
	}
	v := &Verifier{cfg: cfg, algs: cfg.Algorithms}
	if q := `"` + cfg.Issuer + `"`; jws.PlainString(q) {
		v.issuerJSON = q
	}
	if ic := cfg.Introspection; ic != nil {
		if ic.URL == "" || ic.ClientID == "" || ic.ClientSecret == "" {
			return nil, errors.New("verify: Introspection needs URL, ClientID and ClientSecret")
		}
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		v.online = newIntrospector(*ic, client, cfg.Now)
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
	// Cnf is the token's confirmation (RFC 7800 §3.1): the key or
	// certificate it is bound to; zero for a bearer token. Verify refuses
	// bound tokens (ErrBound); Middleware enforces the binding (RFC 9449
	// §7, RFC 8705 §3); VerifyBound returns it for its caller to check.
	Cnf Confirmation
	// Raw holds every claim, registered and custom, as sent.
	Raw map[string]json.RawMessage
}

// Confirmation is a token's cnf claim, the members m2mauth issues.
type Confirmation struct {
	// JKT is the RFC 7638 thumbprint of the DPoP key the token is bound
	// to (RFC 9449 §6.1).
	JKT string `json:"jkt,omitempty"`
	// X5tS256 is the base64url SHA-256 of the DER client certificate the
	// token is bound to (RFC 8705 §3.1).
	X5tS256 string `json:"x5t#S256,omitempty"`
}

// Bound reports whether the token is sender-constrained.
func (c Confirmation) Bound() bool { return c.JKT != "" || c.X5tS256 != "" }

// HasScope reports whether the token was granted scope.
func (c *Claims) HasScope(scope string) bool { return slices.Contains(c.Scopes, scope) }

// Verify validates a bearer token and returns its claims. Claims are never
// returned together with an error. Checks, in order: size, structure and
// encoding, algorithm allow-list, typ (RFC 9068 §2.1), key (by kid) and
// its type, signature, then iss (exact), aud, exp, nbf and iat (with
// leeway). A sender-constrained token (cnf) is refused with ErrBound: its
// holder must also prove the key or certificate, which Verify cannot see
// (Middleware can).
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	return v.verify(ctx, token, false)
}

// VerifyBound is Verify that also accepts sender-constrained tokens,
// leaving their binding (Claims.Cnf) to the caller: a DPoP proof signed by
// the key of Cnf.JKT (RFC 9449 §7.1), or a client certificate whose
// SHA-256 thumbprint is Cnf.X5tS256 (RFC 8705 §3). A caller that does not
// check them must use Verify.
func (v *Verifier) VerifyBound(ctx context.Context, token string) (*Claims, error) {
	return v.verify(ctx, token, true)
}

// Key identifies the public key a token was verified with: its kid, the
// token's alg, and the key the KeySource gave for the kid.
type Key struct {
	ID     string
	Alg    string
	Public crypto.PublicKey
}

// VerifyBoundKey is VerifyBound, also returning the key the signature was
// checked with, for a caller that keeps verified tokens (see Recheck).
func (v *Verifier) VerifyBoundKey(ctx context.Context, token string) (*Claims, Key, error) {
	var k Key
	c, err := v.verifyKey(ctx, token, true, &k)
	if err != nil {
		return nil, Key{}, err
	}
	return c, k, nil
}

// Recheck decides again about claims that VerifyBoundKey returned with key,
// without the signature: the KeySource must still give key (the same
// public key, for the same algorithm) for its kid, so that a key removed or
// replaced since refuses the token, and exp, nbf and iat must hold now (with
// the leeway). In online mode the token is asked about again too: token is
// the one the claims came from. A nil error means that VerifyBound would
// accept the token now.
func (v *Verifier) Recheck(ctx context.Context, token string, c *Claims, key Key) error {
	pub, alg, err := v.cfg.Keys.Key(ctx, key.ID)
	if err != nil {
		if errors.Is(err, ErrInvalidToken) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUnknownKey, err)
	}
	if (alg != "" && alg != key.Alg) || !slices.Contains(v.algs, key.Alg) {
		return fmt.Errorf("%w: the key is for %s", ErrAlgorithm, alg)
	}
	eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(key.Public) {
		return fmt.Errorf("%w: the key changed", ErrUnknownKey)
	}
	if err := v.checkTimes(c, v.cfg.Now()); err != nil {
		return err
	}
	if v.online == nil {
		return nil
	}
	active, err := v.online.active(ctx, token, c.ExpiresAt)
	if err != nil {
		return err
	}
	if !active {
		return ErrRevoked
	}
	return nil
}

func (v *Verifier) verify(ctx context.Context, token string, allowBound bool) (*Claims, error) {
	return v.verifyKey(ctx, token, allowBound, nil)
}

// verifyKey verifies token, recording the key it was checked with in used
// when that is not nil.
func (v *Verifier) verifyKey(ctx context.Context, token string, allowBound bool, used *Key) (*Claims, error) {
	tok, err := jws.Parse(token, MaxTokenSize)
	if err != nil {
		return nil, err
	}
	h := tok.Header
	if !slices.Contains(v.algs, h.Alg) {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, h.Alg)
	}
	if t := strings.ToLower(h.Typ); t != "at+jwt" && t != "application/at+jwt" {
		return nil, ErrType
	}
	key, alg, err := v.cfg.Keys.Key(ctx, h.Kid)
	if err != nil {
		if errors.Is(err, ErrInvalidToken) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrUnknownKey, err)
	}
	if alg != "" && alg != h.Alg {
		return nil, fmt.Errorf("%w: the key is for %s", ErrAlgorithm, alg)
	}
	if err := tok.VerifyWith(key); err != nil {
		return nil, err
	}
	c, err := v.checkClaims(tok.Claims)
	if err != nil {
		return nil, err
	}
	if used != nil {
		*used = Key{ID: h.Kid, Alg: h.Alg, Public: key}
	}
	if !allowBound && c.Cnf.Bound() {
		return nil, ErrBound
	}
	if v.online == nil {
		return c, nil
	}
	active, err := v.online.active(ctx, token, c.ExpiresAt)
	if err != nil {
		return nil, err
	}
	if !active {
		return nil, ErrRevoked
	}
	return c, nil
}

func (v *Verifier) checkClaims(members []jws.Member) (*Claims, error) {
	c := &Claims{Raw: make(map[string]json.RawMessage, len(members))}
	var exp, nbf, iat []byte
	bad := func(name string) (*Claims, error) {
		return nil, fmt.Errorf("%w: claim %s has the wrong type", ErrMalformed, name)
	}
	for _, m := range members {
		name := claimName(m.Name)
		c.Raw[name] = json.RawMessage(m.Value)
		var dst *string
		switch name {
		case "iss":
			dst = &c.Issuer
		case "sub":
			dst = &c.Subject
		case "client_id":
			dst = &c.ClientID
		case "jti":
			dst = &c.JTI
		case "scope":
			s, ok := jws.String(m.Value)
			if !ok {
				return bad(name)
			}
			c.Scopes = strings.Fields(s)
		case "aud":
			aud, _, err := jws.StringOrStrings(m.Value)
			if err != nil {
				return bad(name)
			}
			c.Audience = aud
		case "exp":
			exp = m.Value
		case "nbf":
			nbf = m.Value
		case "iat":
			iat = m.Value
		case "cnf":
			cnf, ok := parseCnf(m.Value)
			if !ok {
				return bad(name)
			}
			c.Cnf = cnf
		}
		if name == "iss" && string(m.Value) == v.issuerJSON {
			// The expected issuer, spelled plainly: no copy needed.
			c.Issuer = v.cfg.Issuer
			continue
		}
		if dst != nil {
			s, ok := jws.String(m.Value)
			if !ok {
				return bad(name)
			}
			*dst = s
		}
	}
	if c.Issuer != v.cfg.Issuer {
		return nil, ErrIssuer
	}
	if !v.cfg.AnyAudience && !slices.Contains(c.Audience, v.cfg.Audience) {
		return nil, ErrAudience
	}
	if exp == nil {
		return nil, fmt.Errorf("%w: no exp", ErrMalformed)
	}
	now := v.cfg.Now()
	for _, t := range []struct {
		name string
		raw  []byte
		dst  *time.Time
	}{{"exp", exp, &c.ExpiresAt}, {"nbf", nbf, &c.NotBefore}, {"iat", iat, &c.IssuedAt}} {
		if t.raw == nil {
			continue
		}
		secs, ok := jws.Seconds(t.raw)
		if !ok {
			return bad(t.name)
		}
		*t.dst = time.Unix(secs, 0)
	}
	if err := v.checkTimes(c, now); err != nil {
		return nil, err
	}
	return c, nil
}

// checkTimes checks exp, nbf and iat at now, with the leeway.
func (v *Verifier) checkTimes(c *Claims, now time.Time) error {
	if !now.Before(c.ExpiresAt.Add(v.cfg.Leeway)) {
		return ErrExpired
	}
	if !c.NotBefore.IsZero() && now.Add(v.cfg.Leeway).Before(c.NotBefore) {
		return ErrNotYetValid
	}
	if !c.IssuedAt.IsZero() && now.Add(v.cfg.Leeway).Before(c.IssuedAt) {
		return ErrNotYetValid
	}
	return nil
}

// claimName returns name as a string, without allocating for the claims
// m2mauth issues (the string(b) of a switch allocates nothing).
func claimName(b []byte) string {
	switch string(b) {
	case "iss":
		return "iss"
	case "sub":
		return "sub"
	case "aud":
		return "aud"
	case "exp":
		return "exp"
	case "nbf":
		return "nbf"
	case "iat":
		return "iat"
	case "jti":
		return "jti"
	case "client_id":
		return "client_id"
	case "scope":
		return "scope"
	case "cnf":
		return "cnf"
	}
	return string(b)
}

// parseCnf reads a cnf claim (RFC 7800 §3.1): an object whose jkt and
// x5t#S256 members, when present, are non-empty strings, each at most
// once (names matched exactly); other confirmation methods are ignored.
// Only tokens that carry a cnf pay for this.
func parseCnf(raw []byte) (Confirmation, bool) {
	var c Confirmation
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return c, false
	}
	var seenJKT, seenX5t bool
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return c, false
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return c, false
		}
		var dst *string
		switch name {
		case "jkt":
			if seenJKT {
				return c, false
			}
			dst, seenJKT = &c.JKT, true
		case "x5t#S256":
			if seenX5t {
				return c, false
			}
			dst, seenX5t = &c.X5tS256, true
		default:
			continue
		}
		s, ok := jws.String(v)
		if !ok || s == "" {
			return c, false
		}
		*dst = s
	}
	return c, true
}
