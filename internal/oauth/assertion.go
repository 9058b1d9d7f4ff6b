package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/jws"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/verify"
)

// Client assertion types (RFC 7521 §4.2, draft-ietf-oauth-spiffe-client-auth).
const (
	AssertionJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	AssertionJWTSPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
)

// Client authentication methods served by AssertionAuth.
const (
	// AuthPrivateKeyJWT is RFC 7523 §2.2 with draft-ietf-oauth-rfc7523bis.
	AuthPrivateKeyJWT = "private_key_jwt"
	// AuthFederated is workload identity federation: the assertion is a
	// token of a trusted external issuer, bound to the client by a trust
	// policy. It is not a registered token_endpoint_auth_method: such
	// clients send the same client_assertion parameters.
	AuthFederated = "federated"
)

// MaxAssertionBytes caps a client assertion: a Kubernetes or GitHub token
// is 1 to 2 KiB.
const MaxAssertionBytes = 16 << 10

// maxNumericDate is 9999-12-31T23:59:59Z, the latest date an assertion's
// exp, iat or nbf may name.
const maxNumericDate = 253402300799

// assertionAlgs are the only signature algorithms a client assertion may
// use: never none, never HMAC.
var assertionAlgs = []string{"RS256", "PS256", "ES256", "EdDSA"}

// AssertionConfig holds AssertionAuth's rules.
type AssertionConfig struct {
	// MaxLifetime bounds a private_key_jwt assertion's exp - iat (default
	// 5 min).
	MaxLifetime time.Duration
	// Leeway is the clock skew allowed on exp, nbf and iat (default 30 s).
	Leeway time.Duration
	// HTTPClient fetches jwks_uri and discovery documents (default: 5 s
	// timeout). Its requests go only to https URLs, or plain http on a
	// loopback host, whatever a redirect or a discovery document names.
	HTTPClient *http.Client
	// MaxRemoteKeySets bounds the key sets fetched by URL that are kept
	// (default 10,000).
	MaxRemoteKeySets int
	Now              func() time.Time
}

// AssertionAuth authenticates clients by a signed JWT sent as
// client_assertion (RFC 7521 §4.2): either the client's own assertion
// (private_key_jwt, verified with the public keys it registered) or a
// token its platform gave it (federated: Kubernetes service accounts,
// SPIFFE JWT-SVIDs, CI OIDC tokens, verified with a trust policy's keys and
// bound to exactly one client by its subject and claims).
//
// Assertions are parsed by the same strict parser as verify (internal/jws).
// Every failure is the same invalid_client, whatever failed, so an
// assertion tells its sender nothing about clients or policies. A jti is
// accepted once across every replica (private_key_jwt always; federated
// tokens as their trust policy says), remembered in the database until the
// assertion expires and in memory in front of it.
type AssertionAuth struct {
	cfg    AssertionConfig
	remote *remoteKeySets
	static staticKeySets
	replay *dpop.ReplayCache
	fed    federationIndex
}

// NewAssertionAuth returns an AssertionAuth.
func NewAssertionAuth(cfg AssertionConfig) *AssertionAuth {
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = 5 * time.Minute
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	cfg.HTTPClient = secureFetches(cfg.HTTPClient)
	if cfg.MaxRemoteKeySets == 0 {
		cfg.MaxRemoteKeySets = 10_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &AssertionAuth{cfg: cfg}
	a.remote = newRemoteKeySets(cfg)
	a.static.sets = map[string][]jws.Key{}
	a.replay = dpop.NewReplayCache(0)
	return a
}

// Methods implements Authenticator: the token_endpoint_auth_method values
// discovery lists (federated clients use the same parameters).
func (a *AssertionAuth) Methods() []string { return []string{AuthPrivateKeyJWT} }

// SigningAlgs are the algorithms an assertion may be signed with
// (token_endpoint_auth_signing_alg_values_supported), with Ed25519, RFC
// 9864's name for EdDSA on Ed25519, which the parser reads as EdDSA.
func (a *AssertionAuth) SigningAlgs() []string { return append(slices.Clone(assertionAlgs), "Ed25519") }

// InvalidateTrust drops what the federation index knows of environment
// en (nil: every environment's). An environment unloaded from memory is
// forgotten the same way. A trust policy or a client's federation changed
// (here or on another replica).
func (a *AssertionAuth) InvalidateTrust(en *env.Env) { a.fed.invalidate(en) }

// assertion is a parsed client assertion's registered claims.
type assertion struct {
	tok *jws.Token
	// checked is set once its signature was verified against a key.
	checked       bool
	iss, sub, jti string
	aud           []string
	audIsArray    bool
	exp, iat, nbf time.Time
}

// parseAssertion parses a client assertion strictly and reads its
// registered claims; a claim of the wrong type is an error.
func parseAssertion(raw string) (*assertion, error) {
	t, err := jws.Parse(raw, MaxAssertionBytes)
	if err != nil {
		return nil, err
	}
	h := t.Header
	switch {
	case !slices.Contains(assertionAlgs, h.Alg):
		return nil, errors.New("algorithm not allowed")
	case h.JWK || h.JKU || h.X5C || h.X5U:
		// A key named by the token itself would let anyone sign.
		return nil, errors.New("embedded or referenced key")
	}
	switch strings.ToLower(h.Typ) {
	case "", "jwt", "client-authentication+jwt":
	default:
		// Another kind of JWT (an access token, at+jwt) is not a client
		// assertion, even when signed by the right key.
		return nil, errors.New("typ is not a client assertion's")
	}
	a := &assertion{tok: t}
	strClaim := func(name string, dst *string) error {
		if v, ok := t.Claim(name); ok {
			s, ok := jws.String(v)
			if !ok {
				return errors.New(name + " is not a string")
			}
			*dst = s
		}
		return nil
	}
	timeClaim := func(name string, dst *time.Time) error {
		if v, ok := t.Claim(name); ok {
			secs, ok := jws.Seconds(v)
			if !ok || secs < 0 || secs > maxNumericDate {
				// Beyond these, time.Unix wraps around: a far-future nbf
				// would read as a date long past.
				return errors.New(name + " is not a NumericDate from 1970 to 9999")
			}
			*dst = time.Unix(secs, 0)
		}
		return nil
	}
	for _, err := range []error{strClaim("iss", &a.iss), strClaim("sub", &a.sub), strClaim("jti", &a.jti),
		timeClaim("exp", &a.exp), timeClaim("iat", &a.iat), timeClaim("nbf", &a.nbf)} {
		if err != nil {
			return nil, err
		}
	}
	if v, ok := t.Claim("aud"); ok {
		if a.aud, a.audIsArray, err = jws.StringOrStrings(v); err != nil {
			return nil, err
		}
	}
	if a.exp.IsZero() {
		return nil, errors.New("exp is required")
	}
	return a, nil
}

// Authenticate implements Authenticator.
func (a *AssertionAuth) Authenticate(ctx context.Context, creds Credentials) (Caller, *Error) {
	en := env.FromContext(ctx)
	as, err := parseAssertion(creds.Assertion)
	if err != nil {
		return Caller{}, refusedAssertion("", "assertion: not a well-formed signed JWT with the required claims")
	}
	caller, e := a.authenticate(ctx, en, creds, as)
	if e != nil && !as.checked {
		// Refused before its signature was checked (no such client or
		// policy, wrong audience, expired…): spend what a signature check
		// costs, so that the time of a refusal does not tell which check
		// refused it, nor whether the client or issuer exists.
		_ = jws.VerifySignature(as.tok.Header.Alg, dummyKeys()[as.tok.Header.Alg], as.tok.SigningInput, as.tok.Signature)
	}
	return caller, e
}

func (a *AssertionAuth) authenticate(ctx context.Context, en *env.Env, creds Credentials, as *assertion) (Caller, *Error) {
	if creds.AssertionType == AssertionJWTBearer && as.iss != "" && as.iss == as.sub {
		// iss = sub: the client's own assertion, if the client exists and
		// authenticates so. (A trusted issuer's token never has its
		// subject equal to its issuer.)
		c, err := en.Clients.GetClient(ctx, as.sub)
		switch {
		case err == nil:
			return a.privateKeyJWT(ctx, en, creds, as, c)
		case !errors.Is(err, store.ErrNotFound):
			return Caller{}, ErrUnavailable(err)
		}
	}
	return a.federated(ctx, en, creds, as)
}

// refusedAssertion is invalid_client, the same answer whatever refused the
// assertion; reason, a fixed text, tells the log which check did.
func refusedAssertion(known, reason string) *Error {
	e := errInvalidClient(known)
	e.reason = reason
	return e
}

// dummyKeys are public keys of each algorithm that no assertion verifies
// against, for spending a signature check's time: verifying costs the same
// whatever the key (an RSA modulus of the size, a point on the curve).
var dummyKeys = sync.OnceValue(func() map[string]crypto.PublicKey {
	h := sha256.Sum256([]byte("m2mauth dummy modulus"))
	n := new(big.Int).Lsh(big.NewInt(1), 2047)
	n.Add(n, new(big.Int).SetBytes(h[:]))
	n.SetBit(n, 0, 1)
	rsaKey := &rsa.PublicKey{N: n, E: 65537}
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("m2mauth: no randomness for a P-256 key: " + err.Error())
	}
	ecKey := ecPriv.Public()
	edKey := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public()
	return map[string]crypto.PublicKey{"RS256": rsaKey, "PS256": rsaKey, "ES256": ecKey, "EdDSA": edKey}
})

// privateKeyJWT checks an RFC 7523 §2.2 assertion of client c, as
// draft-ietf-oauth-rfc7523bis profiles it: aud is the issuer identifier as
// one string (never an array: the audience-injection vector the draft
// closes; the token endpoint URL only when the client's compatibility
// switch is on), exp at most MaxLifetime after iat, a jti never seen
// before, and a signature by one of the client's keys.
func (a *AssertionAuth) privateKeyJWT(ctx context.Context, en *env.Env, creds Credentials, as *assertion, c store.Client) (Caller, *Error) {
	fail := func(reason string) *Error { return refusedAssertion(c.ID, reason) }
	if c.AuthMethod != AuthPrivateKeyJWT {
		return Caller{}, fail("private_key_jwt: the client authenticates another way")
	}
	if creds.ClientID != "" && creds.ClientID != c.ID {
		return Caller{}, fail("private_key_jwt: client_id differs from the assertion's iss")
	}
	if as.audIsArray || len(as.aud) != 1 {
		return Caller{}, fail("private_key_jwt: aud is not one string")
	}
	if aud := as.aud[0]; aud != en.Issuer && !(c.AcceptTokenEndpointAudience && aud == en.Issuer+"/oauth/token") {
		return Caller{}, fail("private_key_jwt: aud does not name this server")
	}
	now := a.cfg.Now()
	if !a.timely(now, as, a.cfg.MaxLifetime) {
		return Caller{}, fail("private_key_jwt: expired, not yet valid, or living longer than the maximum")
	}
	if as.jti == "" || len(as.jti) > 256 {
		return Caller{}, fail("private_key_jwt: jti missing or longer than 256 characters")
	}
	key, ok, e := a.clientKey(ctx, c, as.tok.Header)
	if e != nil {
		e.client = c.ID
		return Caller{}, e
	}
	if !ok {
		return Caller{}, fail("private_key_jwt: no registered key fits the header's kid and alg")
	}
	as.checked = true
	if as.tok.VerifyWith(key) != nil {
		return Caller{}, fail("private_key_jwt: bad signature")
	}
	if c.Disabled {
		return Caller{}, fail("private_key_jwt: the client is disabled")
	}
	fresh, err := a.once(ctx, en, "client "+c.ID, as.jti, as.exp)
	if err != nil {
		return Caller{}, ErrUnavailable(err)
	}
	if !fresh {
		return Caller{}, fail("private_key_jwt: jti already used (a replay)")
	}
	return Caller{Client: c, Method: AuthPrivateKeyJWT}, nil
}

// timely checks exp, nbf and iat against now with leeway, and that the
// assertion lives at most maxLifetime (from iat, or from now without one).
func (a *AssertionAuth) timely(now time.Time, as *assertion, maxLifetime time.Duration) bool {
	l := a.cfg.Leeway
	switch {
	case !now.Before(as.exp.Add(l)):
		return false // expired
	case !as.nbf.IsZero() && now.Add(l).Before(as.nbf):
		return false
	case !as.iat.IsZero() && now.Add(l).Before(as.iat):
		return false // issued in the future
	}
	from := as.iat
	if from.IsZero() {
		from = now
	}
	return as.exp.Sub(from) <= maxLifetime
}

// clientKey finds the key of client c named by h: by kid, or, for keys
// registered inline, the one key whose algorithms fit when the assertion
// names none. Keys from a jwks_uri must be named by kid.
func (a *AssertionAuth) clientKey(ctx context.Context, c store.Client, h jws.Header) (crypto.PublicKey, bool, *Error) {
	if len(c.JWKS) > 0 {
		keys, err := a.static.get(c.JWKS)
		if err != nil {
			return nil, false, nil
		}
		k, ok := pickKey(keys, h)
		return k, ok, nil
	}
	if c.JWKSURI == "" || h.Kid == "" {
		return nil, false, nil
	}
	return a.remote.key(ctx, c.JWKSURI, "", h)
}

// pickKey returns the key of keys for header h: the one with its kid, or,
// without a kid, the only key whose algorithms include h.Alg.
func pickKey(keys []jws.Key, h jws.Header) (crypto.PublicKey, bool) {
	var found *jws.Key
	for i, k := range keys {
		if (h.Kid != "" && k.Kid != h.Kid) || !keyFits(k, h.Alg) {
			continue
		}
		if found != nil {
			return nil, false // ambiguous without a kid
		}
		found = &keys[i]
	}
	if found == nil {
		return nil, false
	}
	return found.Key, true
}

func keyFits(k jws.Key, alg string) bool {
	if k.Alg != "" {
		return k.Alg == alg
	}
	return slices.Contains(jws.AlgorithmsFor(k.Key), alg)
}

// once records the use of jti by scope until exp (plus leeway) and reports
// whether it is the first: the in-memory front answers repeats on this
// replica; the database decides among replicas.
func (a *AssertionAuth) once(ctx context.Context, en *env.Env, scope, jti string, exp time.Time) (bool, error) {
	sum := sha256.Sum256([]byte(en.Issuer + "\x00" + scope + "\x00" + jti))
	return useOnce(ctx, a.replay, en, hex.EncodeToString(sum[:]), exp.Add(a.cfg.Leeway), a.cfg.Now())
}

// useOnce records a single-use key (an assertion's or a DPoP proof's jti)
// until until and reports whether it was its first use: this replica's
// memory answers a repeat without a round trip; the database decides
// among replicas. A key is remembered only once the database has
// answered, so that a request refused because the database was down may
// be sent again.
func useOnce(ctx context.Context, front *dpop.ReplayCache, en *env.Env, key string, until, now time.Time) (bool, error) {
	if front.Seen(key, now) {
		return false, nil
	}
	fresh, err := en.Store.UseAssertionID(ctx, key, until)
	if err != nil {
		return false, err
	}
	front.Use(key, until, now)
	return fresh, nil
}

// staticKeySets caches parsed inline key sets by their content's hash.
type staticKeySets struct {
	mu   sync.Mutex
	sets map[string][]jws.Key
}

const staticKeySetsMax = 10_000

func (s *staticKeySets) get(raw []byte) ([]jws.Key, error) {
	sum := sha256.Sum256(raw)
	id := string(sum[:])
	s.mu.Lock()
	keys, ok := s.sets[id]
	s.mu.Unlock()
	if ok {
		return keys, nil
	}
	keys, err := jws.ParseKeySet(raw, 100)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.sets) >= staticKeySetsMax {
		clear(s.sets)
	}
	s.sets[id] = keys
	s.mu.Unlock()
	return keys, nil
}

// remoteKeySets are key sets fetched by URL (a client's jwks_uri, a trust
// policy's jwks_uri) or through an issuer's discovery document, each
// through verify's JWKS cache: Cache-Control, unknown-kid refetch with a
// cooldown, backoff, stale-if-error, size caps.
type remoteKeySets struct {
	cfg  AssertionConfig
	mu   sync.Mutex
	sets map[string]*verify.JWKS
}

func newRemoteKeySets(cfg AssertionConfig) *remoteKeySets {
	return &remoteKeySets{cfg: cfg, sets: map[string]*verify.JWKS{}}
}

// key returns the key named by h from the set at url, or, when url is
// empty, the set of issuer's discovery document.
func (r *remoteKeySets) key(ctx context.Context, url, issuer string, h jws.Header) (crypto.PublicKey, bool, *Error) {
	id := url
	if id == "" {
		id = "discovery " + issuer
	}
	r.mu.Lock()
	set, ok := r.sets[id]
	if !ok {
		if len(r.sets) >= r.cfg.MaxRemoteKeySets {
			clear(r.sets)
		}
		set = verify.NewJWKS(url, issuer, verify.JWKSOptions{HTTPClient: r.cfg.HTTPClient, Now: r.cfg.Now})
		r.sets[id] = set
	}
	r.mu.Unlock()
	key, alg, err := set.Key(ctx, h.Kid)
	switch {
	case errors.Is(err, verify.ErrUnknownKey) || errors.Is(err, verify.ErrInvalidToken):
		return nil, false, nil
	case err != nil:
		// The key source cannot be reached and nothing usable is cached:
		// the server cannot decide.
		return nil, false, ErrUnavailable(err)
	}
	if alg != "" && alg != h.Alg {
		return nil, false, nil
	}
	if !slices.Contains(jws.AlgorithmsFor(key), h.Alg) {
		return nil, false, nil
	}
	return key, true, nil
}

// secureFetches returns a copy of c whose requests go only where a key
// source may be configured (https, or plain http on a loopback host):
// keys fetched over plain http from elsewhere could be replaced on the
// way, and the configured URL's check alone would let a redirect or a
// discovery document's jwks_uri lead there.
func secureFetches(c *http.Client) *http.Client {
	cc := *c
	next := cc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cc.Transport = keySourceTransport{next}
	return &cc
}

type keySourceTransport struct{ next http.RoundTripper }

func (t keySourceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	host := r.URL.Hostname()
	ip := net.ParseIP(host)
	switch {
	case r.URL.Scheme == "https":
	case r.URL.Scheme == "http" && (host == "localhost" || ip != nil && ip.IsLoopback()):
	default:
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, fmt.Errorf("key source %s: only https, or http on a loopback host", r.URL.Redacted())
	}
	return t.next.RoundTrip(r)
}

// clientKeys returns every key client c registered (its jwks, or the set
// at its jwks_uri), for checks that find a key by its value rather than
// by a kid: self_signed_tls_client_auth (RFC 8705 §2.2).
func (a *AssertionAuth) clientKeys(ctx context.Context, c store.Client) ([]crypto.PublicKey, *Error) {
	if len(c.JWKS) > 0 {
		keys, err := a.static.get(c.JWKS)
		if err != nil {
			return nil, nil
		}
		out := make([]crypto.PublicKey, len(keys))
		for i, k := range keys {
			out[i] = k.Key
		}
		return out, nil
	}
	if c.JWKSURI == "" {
		return nil, nil
	}
	return a.remote.keys(ctx, c.JWKSURI)
}

// keys returns every key of the set at url.
func (r *remoteKeySets) keys(ctx context.Context, url string) ([]crypto.PublicKey, *Error) {
	r.mu.Lock()
	set, ok := r.sets[url]
	if !ok {
		if len(r.sets) >= r.cfg.MaxRemoteKeySets {
			clear(r.sets)
		}
		set = verify.NewJWKS(url, "", verify.JWKSOptions{HTTPClient: r.cfg.HTTPClient, Now: r.cfg.Now})
		r.sets[url] = set
	}
	r.mu.Unlock()
	keys, err := set.Keys(ctx)
	if errors.Is(err, verify.ErrInvalidToken) {
		return nil, nil
	}
	if err != nil {
		return nil, ErrUnavailable(err)
	}
	return keys, nil
}
