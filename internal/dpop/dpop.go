// Package dpop checks and creates DPoP proofs (RFC 9449): the
// authorization server's token endpoint and the verify middleware check
// them with Check, and tokensource, the CLI and tests create them with
// NewProof.
//
// It implements:
//   - RFC 9449 §4.2 (the proof's syntax) and §4.3 (its checking): a compact
//     JWS (internal/jws, size-capped) whose header has typ "dpop+jwt", an
//     allow-listed asymmetric alg (none and HMAC never, whatever the list
//     says) and a jwk that is a public key fitting alg and verifies the
//     signature; claims jti (at most 256 bytes), htm equal to the request's
//     method, htu equal to the request's URL after §4.3's normalisation
//     (NormalizeURL: query and fragment ignored), iat within a window, ath
//     (§4.1: base64url SHA-256 of the access token) when an access token is
//     presented, and nonce (§8, §9) when the server asks for one.
//   - RFC 9449 §8 and §9 nonces (Nonces): stateless, an HMAC of a time
//     counter under a secret the replicas share, so that every replica
//     accepts the nonces any of them handed out, without storage.
//   - RFC 9449 §11.1 replay: Check leaves jti replay to the caller, who
//     remembers ReplayKey(proof) until ReplayUntil; ReplayCache is a bounded
//     in-memory memory of them for one process.
//
// Errors carry the RFC's code (invalid_dpop_proof or use_dpop_nonce) and a
// short description that never repeats the proof's contents, so that a
// caller may send it back and log it as it is.
package dpop

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/jws"
)

// Error codes of RFC 9449 §7.1 and §8 (token endpoint and resource
// server alike).
const (
	CodeInvalidProof = "invalid_dpop_proof"
	CodeUseNonce     = "use_dpop_nonce"
)

// Limits on what Check reads.
const (
	// MaxProofSize caps a proof (checked before anything is decoded). A
	// proof with an RSA-4096 jwk and signature is about 1.6 KiB.
	MaxProofSize = 8 << 10
	// MaxJTILength caps the jti claim, in bytes. RFC 9449 §4.2 asks for
	// at least 96 bits of randomness; nobody needs more than this to say so.
	MaxJTILength = 256
)

// Defaults of Options.
const (
	DefaultMaxAge = 60 * time.Second
	DefaultLeeway = 5 * time.Second
)

// DefaultAlgs are the proof algorithms accepted when Options.Algs is nil:
// all that internal/jws verifies, in the order discovery and the
// WWW-Authenticate algs parameter list them.
var DefaultAlgs = []string{"ES256", "RS256", "PS256", "EdDSA"}

// typ is the proof's required JOSE header typ (RFC 9449 §4.2).
const typ = "dpop+jwt"

// Options tell Check what to accept. The zero value accepts DefaultAlgs,
// proofs issued at most a minute ago and at most 5 seconds ahead, and
// requires no nonce.
type Options struct {
	// Algs is the allow-list of the header's alg (nil: DefaultAlgs).
	// none and HMAC algorithms are refused even when listed: a proof is
	// only worth something when signed with an asymmetric key.
	Algs []string
	// MaxAge is how long ago iat may be (zero or less: DefaultMaxAge).
	MaxAge time.Duration
	// Leeway is how far in the future iat may be, for clock skew (zero or
	// less: DefaultLeeway).
	Leeway time.Duration
	// Nonces, when set, makes a nonce mandatory: a proof without one, or
	// with one Nonces does not accept, fails with CodeUseNonce.
	Nonces *Nonces
}

func (o Options) maxAge() time.Duration {
	if o.MaxAge <= 0 {
		return DefaultMaxAge
	}
	return o.MaxAge
}

func (o Options) leeway() time.Duration {
	if o.Leeway <= 0 {
		return DefaultLeeway
	}
	return o.Leeway
}

// ReplayUntil is how long a replay memory must remember p: after
// iat+MaxAge Check refuses it as too old anyway; the leeway is added so
// that a clock a little behind cannot reopen the window.
func (o Options) ReplayUntil(p Proof) time.Time {
	return p.IssuedAt.Add(o.maxAge() + o.leeway())
}

// Request is the HTTP request the proof must be bound to.
type Request struct {
	// Method is the request's method, compared with htm as it is
	// (case-sensitive, RFC 9110 §9.1).
	Method string
	// URL is the request's URL as the client reached it (scheme, host and
	// path; a query is ignored), compared with htu after NormalizeURL.
	URL string
	// AltURL, when set, is another URL the same endpoint is reached at
	// (its RFC 8705 §5 mTLS alias): htu may name either.
	AltURL string
	// AccessToken is the access token presented with the proof at a
	// resource server: the proof must then carry ath, its hash. Empty at
	// the token endpoint, where an ath in the proof is ignored (RFC 9449
	// §4.3 requires it only with an access token).
	AccessToken string
}

// Proof is what a proof that passed Check says.
type Proof struct {
	JKT      string    // RFC 7638 SHA-256 thumbprint of the header's jwk: cnf.jkt
	JTI      string    // the jti claim
	IssuedAt time.Time // the iat claim
	Alg      string    // the header's alg
	Nonce    string    // the nonce claim ("" when absent)
}

// Error is a refused proof. Code is CodeInvalidProof or CodeUseNonce;
// Description is short, fixed text that never repeats the proof.
type Error struct{ Code, Description string }

func (e *Error) Error() string { return "dpop: " + e.Code + ": " + e.Description }

// Descriptions of refused proofs: fixed text (a test holds them all).
const (
	descTooLarge     = "the proof is too large"
	descMalformed    = "the proof is not a compact JWS with JSON header and claims"
	descTyp          = "the proof's typ is not dpop+jwt"
	descAlg          = "the proof's alg is not allowed"
	descNoJWK        = "the proof has no jwk header"
	descPrivateJWK   = "the proof's jwk holds private key material"
	descBadJWK       = "the proof's jwk is not a supported public key"
	descKeyAlg       = "the proof's jwk does not fit its alg"
	descSignature    = "the proof's signature does not verify with its jwk"
	descJTI          = "the proof's jti is missing, not a string, or too long"
	descHTM          = "the proof's htm does not match the request method"
	descHTU          = "the proof's htu does not match the request URL"
	descRequestURL   = "the request URL cannot be compared"
	descIAT          = "the proof's iat is missing or not a number"
	descOld          = "the proof is too old"
	descFuture       = "the proof's iat is in the future"
	descATH          = "the proof's ath is missing or does not match the access token"
	descNonceMissing = "a DPoP nonce is required"
	descNonceInvalid = "the proof's nonce is invalid or expired"
)

func invalid(desc string) *Error { return &Error{Code: CodeInvalidProof, Description: desc} }

// Check checks a DPoP proof (the DPoP header's value) for req at now, as
// RFC 9449 §4.3 asks, except jti replay (step 12): the caller remembers
// ReplayKey of the proof it accepts until o.ReplayUntil, across replicas
// where it has them. It returns the proof's key thumbprint, jti, iat, alg
// and nonce, or an Error: CodeUseNonce when o.Nonces is set and the nonce
// is missing or not accepted (checked last, so only for an otherwise good
// proof), CodeInvalidProof for everything else.
func Check(proof string, req Request, now time.Time, o Options) (Proof, *Error) {
	if len(proof) > MaxProofSize {
		return Proof{}, invalid(descTooLarge)
	}
	tok, err := jws.Parse(proof, MaxProofSize)
	if err != nil {
		return Proof{}, invalid(descMalformed)
	}
	h := tok.Header
	if h.Typ != typ {
		return Proof{}, invalid(descTyp)
	}
	algs := o.Algs
	if algs == nil {
		algs = DefaultAlgs
	}
	if h.Alg == "" || strings.EqualFold(h.Alg, "none") || strings.HasPrefix(h.Alg, "HS") || !slices.Contains(algs, h.Alg) {
		return Proof{}, invalid(descAlg)
	}
	if !h.JWK {
		return Proof{}, invalid(descNoJWK)
	}
	key, perr := headerKey(proof)
	if perr != nil {
		return Proof{}, perr
	}
	if !slices.Contains(jws.AlgorithmsFor(key.Key), h.Alg) || key.Alg != "" && key.Alg != h.Alg {
		return Proof{}, invalid(descKeyAlg)
	}

	p := Proof{Alg: h.Alg}
	var haveJTI, haveHTM, haveHTU, haveIAT, haveATH bool
	var htm, htu, ath string
	var ok bool
	for _, m := range tok.Claims {
		switch string(m.Name) {
		case "jti":
			p.JTI, ok = jws.String(m.Value)
			if !ok || p.JTI == "" || len(p.JTI) > MaxJTILength {
				return Proof{}, invalid(descJTI)
			}
			haveJTI = true
		case "htm":
			if htm, ok = jws.String(m.Value); !ok {
				return Proof{}, invalid(descHTM)
			}
			haveHTM = true
		case "htu":
			if htu, ok = jws.String(m.Value); !ok {
				return Proof{}, invalid(descHTU)
			}
			haveHTU = true
		case "iat":
			sec, ok := jws.Seconds(m.Value)
			if !ok {
				return Proof{}, invalid(descIAT)
			}
			p.IssuedAt, haveIAT = time.Unix(sec, 0), true
		case "ath":
			ath, haveATH = jws.String(m.Value)
		case "nonce":
			// A nonce that is not a string reads as no nonce: with
			// Nonces set that asks for one, without it nothing reads it.
			p.Nonce, _ = jws.String(m.Value)
		}
	}
	switch {
	case !haveJTI:
		return Proof{}, invalid(descJTI)
	case !haveHTM || htm != req.Method:
		return Proof{}, invalid(descHTM)
	case !haveHTU:
		return Proof{}, invalid(descHTU)
	case !haveIAT:
		return Proof{}, invalid(descIAT)
	}
	want, err := NormalizeURL(req.URL)
	if err != nil {
		return Proof{}, invalid(descRequestURL)
	}
	got, err := NormalizeURL(htu)
	if err != nil {
		return Proof{}, invalid(descHTU)
	}
	if got != want {
		alt, err := NormalizeURL(req.AltURL)
		if req.AltURL == "" || err != nil || got != alt {
			return Proof{}, invalid(descHTU)
		}
	}
	if now.Sub(p.IssuedAt) > o.maxAge() {
		return Proof{}, invalid(descOld)
	}
	if p.IssuedAt.Sub(now) > o.leeway() {
		return Proof{}, invalid(descFuture)
	}
	// The signature last of the checks that cost nothing to pass: a proof
	// for another request, or an old one, is refused without a
	// public-key operation.
	if err := tok.VerifyWith(key.Key); err != nil {
		if errors.Is(err, jws.ErrAlgorithm) {
			return Proof{}, invalid(descAlg)
		}
		return Proof{}, invalid(descSignature)
	}
	if req.AccessToken != "" {
		if !haveATH || subtle.ConstantTimeCompare([]byte(ath), []byte(AccessTokenHash(req.AccessToken))) != 1 {
			return Proof{}, invalid(descATH)
		}
	}
	if o.Nonces != nil {
		if p.Nonce == "" {
			return Proof{}, &Error{Code: CodeUseNonce, Description: descNonceMissing}
		}
		if !o.Nonces.Valid(p.Nonce) {
			return Proof{}, &Error{Code: CodeUseNonce, Description: descNonceInvalid}
		}
	}
	jkt, err := jws.Thumbprint(key.Key)
	if err != nil {
		return Proof{}, invalid(descBadJWK)
	}
	p.JKT = jkt
	return p, nil
}

// headerKey reads the jwk member of the proof's header, which jws.Parse
// has already decoded, checked and reported present but does not return.
func headerKey(proof string) (jws.Key, *Error) {
	raw, err := base64.RawURLEncoding.DecodeString(proof[:strings.IndexByte(proof, '.')])
	if err != nil {
		return jws.Key{}, invalid(descMalformed)
	}
	var hdr struct {
		JWK json.RawMessage `json:"jwk"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil || len(hdr.JWK) == 0 || hdr.JWK[0] != '{' {
		return jws.Key{}, invalid(descBadJWK)
	}
	key, err := jws.ParseKey(hdr.JWK)
	switch {
	case errors.Is(err, jws.ErrPrivateKey):
		return jws.Key{}, invalid(descPrivateJWK)
	case err != nil:
		return jws.Key{}, invalid(descBadJWK)
	}
	return key, nil
}

// AccessTokenHash is the ath claim for token (RFC 9449 §4.2): the
// base64url (unpadded) SHA-256 of its ASCII bytes.
func AccessTokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// ReplayKey is what to remember of an accepted proof to refuse it again
// (RFC 9449 §11.1): a hash of its key thumbprint and jti, so that two
// clients choosing the same jti do not collide and the stored value has a
// fixed size whatever the jti.
func ReplayKey(p Proof) string {
	h := sha256.New()
	h.Write([]byte(p.JKT))
	h.Write([]byte{0})
	h.Write([]byte(p.JTI))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
