package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// DefaultNoncePeriod is how often nonces change when NewNonces is given
// no period.
const DefaultNoncePeriod = 5 * time.Minute

// MinNonceSecret is the shortest secret NewNonces takes, in bytes.
const MinNonceSecret = 16

// nonceLen is how much of the HMAC a nonce carries: 128 bits, half of
// SHA-256 (RFC 2104 §5 allows truncating to half), 22 base64url characters.
const nonceLen = 16

// nonceLabel separates these MACs from any other use of the secret.
const nonceLabel = "m2mauth dpop nonce v1\x00"

// Nonces hands out and checks server nonces (RFC 9449 §8 at the
// authorization server, §9 at a resource server) without storage: a nonce
// is an HMAC-SHA256, under a secret, of the number of the time period it
// was handed out in. Every replica given the same secret and period
// therefore hands out the same nonce and accepts the nonces of the others.
// A nonce is accepted during its period and the next one, so a client
// always has at least one period to use what it was given. Safe for
// concurrent use.
type Nonces struct {
	secret []byte
	period time.Duration
	now    func() time.Time
}

// NewNonces returns nonces under secret (at least MinNonceSecret random
// bytes, the same on every replica; NewNonces panics on a shorter one, a
// configuration mistake to catch before serving) that change every period
// (zero or less: DefaultNoncePeriod), on the clock now (nil: time.Now).
func NewNonces(secret []byte, period time.Duration, now func() time.Time) *Nonces {
	if len(secret) < MinNonceSecret {
		panic("dpop: a nonce secret needs at least 16 bytes")
	}
	if period <= 0 {
		period = DefaultNoncePeriod
	}
	if now == nil {
		now = time.Now
	}
	return &Nonces{secret: append([]byte(nil), secret...), period: period, now: now}
}

// Current is the nonce to hand out now (the DPoP-Nonce header).
func (n *Nonces) Current() string {
	return base64.RawURLEncoding.EncodeToString(n.mac(n.counter()))
}

// Valid says whether nonce is the nonce of the current or the previous
// period. The comparison is constant-time.
func (n *Nonces) Valid(nonce string) bool {
	got := make([]byte, nonceLen)
	if len(nonce) != base64.RawURLEncoding.EncodedLen(nonceLen) {
		return false
	}
	if k, err := base64.RawURLEncoding.Strict().Decode(got, []byte(nonce)); err != nil || k != nonceLen {
		return false
	}
	c := n.counter()
	cur := subtle.ConstantTimeCompare(got, n.mac(c))
	prev := subtle.ConstantTimeCompare(got, n.mac(c-1))
	return cur|prev == 1
}

func (n *Nonces) counter() uint64 {
	return uint64(n.now().UnixNano() / int64(n.period))
}

func (n *Nonces) mac(counter uint64) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write([]byte(nonceLabel))
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], counter)
	m.Write(c[:])
	return m.Sum(nil)[:nonceLen]
}
