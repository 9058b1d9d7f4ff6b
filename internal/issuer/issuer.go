// Package issuer builds and signs JWT access tokens as profiled by RFC 9068:
// header typ "at+jwt" with the signing key's kid, and the claims iss, sub,
// client_id, aud, iat, nbf, exp, jti and scope.
package issuer

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2mauth/internal/jsonappend"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/verify"
)

// signerSource yields the key that signs new tokens.
type signerSource interface {
	Signer() *keys.Signer
}

// Issuer signs access tokens. It is safe for concurrent use.
type Issuer struct {
	issuer  string
	signers signerSource
	now     func() time.Time
	header  atomic.Pointer[cachedHeader]
	// signing is the RSA signing queue (see sign): the process's one,
	// signingQueue, outside tests.
	signing chan struct{}
}

type cachedHeader struct {
	signer *keys.Signer
	b64    string
}

// New returns an Issuer whose tokens carry iss = issuer.
func New(issuer string, signers signerSource, now func() time.Time) *Issuer {
	return &Issuer{issuer: issuer, signers: signers, now: now, signing: signingQueue}
}

// signingQueue admits GOMAXPROCS RSA signatures at a time, for the whole
// process (every environment's issuer shares the processors).
var signingQueue = make(chan struct{}, runtime.GOMAXPROCS(0))

// sign signs input with s, at most GOMAXPROCS RSA signatures at a time, the
// others waiting their turn in arrival order. An RSA signature is a
// millisecond of CPU: with more in flight than processors, the scheduler
// time-slices them, a signature preempted after its 10 ms slice waits in
// the global run queue behind fresher work, and that made the p99 of a
// token request under load tens of times its median. Waiting here costs a
// request only the signatures ahead of it. No lock is held meanwhile.
//
// EdDSA and ES256 sign in tens of microseconds, well within a slice: they
// pass straight through (the queue measurably cost them throughput and
// median latency, for no gain).
func (i *Issuer) sign(s *keys.Signer, input []byte) ([]byte, error) {
	if alg := s.Alg(); alg != keys.RS256 && alg != keys.PS256 {
		return s.Sign(input)
	}
	i.signing <- struct{}{}
	defer func() { <-i.signing }()
	return s.Sign(input)
}

// Request is what a token is issued for; policy has already decided it.
type Request struct {
	ClientID string
	Audience []string // one or more API identifiers
	Scopes   []string
	Lifetime time.Duration
	// Extra are static custom claims; registered claims always win.
	Extra map[string]any
	// NotIssuedBefore is the client's revocation cutoff (a whole second):
	// when it is less than a second ahead, iat is it rather than now, so
	// that a token issued right after a revocation is not revoked at
	// birth (iat counts whole seconds, the cutoff is the next one). nbf
	// stays now.
	NotIssuedBefore time.Time
	// Cnf binds the token to a key its holder proves (nil: a bearer
	// token): the claim cnf.
	Cnf *Confirmation
}

// Confirmation is the cnf claim of a sender-constrained token (RFC 7800):
// the RFC 7638 thumbprint of a DPoP key (RFC 9449 §6.1) or the SHA-256
// thumbprint of a client certificate (RFC 8705 §3.1). It is the type
// verify reads back, so that what is signed and what is checked cannot
// drift apart.
type Confirmation = verify.Confirmation

// Token is a signed access token.
type Token struct {
	Raw       string
	JTI       string
	IssuedAt  time.Time
	ExpiresAt time.Time
	// Alg is the algorithm of the key that signed it.
	Alg    string
	Signer *keys.Signer // the key that signed it
}

// claims is the RFC 9068 §2.2 claim set. aud is a string for one audience
// and an array for several (RFC 7519 §4.1.3).
type claims struct {
	Iss      string        `json:"iss"`
	Sub      string        `json:"sub"`
	ClientID string        `json:"client_id"`
	Aud      any           `json:"aud"`
	Iat      int64         `json:"iat"`
	Nbf      int64         `json:"nbf"`
	Exp      int64         `json:"exp"`
	JTI      string        `json:"jti"`
	Scope    string        `json:"scope,omitempty"`
	Cnf      *Confirmation `json:"cnf,omitempty"`
}

// appendJSON appends the claim set as json.Marshal(c) writes it, without
// reflection (the claim set is built for every token).
func (c *claims) appendJSON(b []byte) []byte {
	b = append(b, `{"iss":`...)
	b = jsonappend.String(b, c.Iss)
	b = append(b, `,"sub":`...)
	b = jsonappend.String(b, c.Sub)
	b = append(b, `,"client_id":`...)
	b = jsonappend.String(b, c.ClientID)
	b = append(b, `,"aud":`...)
	switch aud := c.Aud.(type) {
	case string:
		b = jsonappend.String(b, aud)
	case []string:
		b = jsonappend.Strings(b, aud)
	default:
		b = append(b, "null"...)
	}
	b = append(b, `,"iat":`...)
	b = jsonappend.Int(b, c.Iat)
	b = append(b, `,"nbf":`...)
	b = jsonappend.Int(b, c.Nbf)
	b = append(b, `,"exp":`...)
	b = jsonappend.Int(b, c.Exp)
	b = append(b, `,"jti":`...)
	b = jsonappend.String(b, c.JTI)
	if c.Scope != "" {
		b = append(b, `,"scope":`...)
		b = jsonappend.String(b, c.Scope)
	}
	if c.Cnf != nil {
		b = append(b, `,"cnf":{`...)
		sep := ""
		if c.Cnf.JKT != "" {
			b = append(b, `"jkt":`...)
			b = jsonappend.String(b, c.Cnf.JKT)
			sep = ","
		}
		if c.Cnf.X5tS256 != "" {
			b = append(b, sep+`"x5t#S256":`...)
			b = jsonappend.String(b, c.Cnf.X5tS256)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// NewJTI returns a token id with 144 random bits.
func NewJTI() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Issue builds and signs a token.
func (i *Issuer) Issue(r Request) (Token, error) {
	if len(r.Audience) == 0 {
		return Token{}, errors.New("issue: no audience")
	}
	if r.Lifetime < time.Second {
		return Token{}, errors.New("issue: lifetime under one second")
	}
	signer := i.signers.Signer()
	now := i.now().Truncate(time.Second)
	exp := now.Add(r.Lifetime.Truncate(time.Second))
	c := claims{
		Iss: i.issuer, Sub: r.ClientID, ClientID: r.ClientID,
		Iat: iatFor(now, r.NotIssuedBefore), Nbf: now.Unix(), Exp: exp.Unix(),
		JTI: NewJTI(), Scope: strings.Join(r.Scopes, " "), Cnf: r.Cnf,
	}
	if len(r.Audience) == 1 {
		c.Aud = r.Audience[0]
	} else {
		c.Aud = r.Audience
	}
	payload := c.appendJSON(make([]byte, 0, 512))
	var err error
	if len(r.Extra) > 0 {
		if payload, err = appendExtra(payload, r.Extra); err != nil {
			return Token{}, fmt.Errorf("issue: %w", err)
		}
	}
	header := i.headerFor(signer)
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(512))
	buf = append(buf, header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig, err := i.sign(signer, buf)
	if err != nil {
		return Token{}, fmt.Errorf("issue: %w", err)
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return Token{Raw: string(buf), JTI: c.JTI, IssuedAt: now, ExpiresAt: exp, Alg: signer.Alg(), Signer: signer}, nil
}

// headerFor returns the encoded JOSE header for signer, computing it once per
// signing key.
func (i *Issuer) headerFor(s *keys.Signer) string {
	if h := i.header.Load(); h != nil && h.signer == s {
		return h.b64
	}
	hdr, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{s.Alg(), "at+jwt", s.KID()})
	h := &cachedHeader{signer: s, b64: base64.RawURLEncoding.EncodeToString(hdr)}
	i.header.Store(h)
	return h.b64
}

// registered are the claims custom claims can never set.
var registered = map[string]bool{"iss": true, "sub": true, "client_id": true, "aud": true, "iat": true,
	"nbf": true, "exp": true, "jti": true, "scope": true, "cnf": true}

// appendExtra adds the custom claims to the encoded claim set, in key order,
// skipping registered names.
func appendExtra(payload []byte, extra map[string]any) ([]byte, error) {
	names := make([]string, 0, len(extra))
	for k := range extra {
		if !registered[k] {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	out := payload[:len(payload)-1] // drop the closing brace
	for _, k := range names {
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(extra[k])
		if err != nil {
			return nil, err
		}
		out = append(append(append(append(out, ','), kb...), ':'), vb...)
	}
	return append(out, '}'), nil
}

// iatFor is the iat of a token issued at now: now, or the client's
// revocation cutoff when it is less than a second ahead (see
// Request.NotIssuedBefore).
func iatFor(now, notBefore time.Time) int64 {
	if notBefore.After(now) && notBefore.Sub(now) <= time.Second {
		return (notBefore.UnixNano() + int64(time.Second) - 1) / int64(time.Second)
	}
	return now.Unix()
}
