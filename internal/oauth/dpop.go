package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/env"
)

// DPoPConfig configures DPoP at the standard token endpoint (RFC 9449).
type DPoPConfig struct {
	// MaxAge is how old a proof's iat may be (0: dpop.DefaultMaxAge);
	// its jti is remembered that long (plus the leeway).
	MaxAge time.Duration
	// NonceSecret, when set, makes nonces mandatory (RFC 9449 §8): it
	// returns the secret of an environment's nonces, the same on every
	// replica (derived from the master key), so that a nonce handed out
	// by one replica is accepted by all.
	NonceSecret func(issuer string) []byte
	// AliasBase returns the base URL of an environment's mTLS endpoint
	// aliases (RFC 8705 §5), "" without them: a proof's htu may name the
	// token endpoint there as well as under the issuer. htu is compared
	// with advertised URLs, never one built from the request's Host:
	// behind a proxy the server does not see the URL the client used.
	AliasBase func(en *env.Env) string
	Now       func() time.Time
}

// dpopChecker checks the proofs of one server's token endpoint.
type dpopChecker struct {
	cfg    DPoPConfig
	replay *dpop.ReplayCache
	mu     sync.Mutex
	nonces map[string]*dpop.Nonces // by issuer
}

func newDPoPChecker(cfg DPoPConfig) *dpopChecker {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &dpopChecker{cfg: cfg, replay: dpop.NewReplayCache(0), nonces: map[string]*dpop.Nonces{}}
}

// maxNonceSets bounds the environments whose nonces are held.
const maxNonceSets = 10_000

// noncesFor returns the nonces of en, nil when nonces are off.
func (d *dpopChecker) noncesFor(en *env.Env) *dpop.Nonces {
	if d.cfg.NonceSecret == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.nonces[en.Issuer]
	if !ok {
		if len(d.nonces) >= maxNonceSets {
			clear(d.nonces)
		}
		n = dpop.NewNonces(d.cfg.NonceSecret(en.Issuer), 0, d.cfg.Now)
		d.nonces[en.Issuer] = n
	}
	return n
}

func (d *dpopChecker) options(en *env.Env) dpop.Options {
	return dpop.Options{MaxAge: d.cfg.MaxAge, Nonces: d.noncesFor(en)}
}

// errDPoP is a refused proof (400 invalid_dpop_proof, RFC 9449 §5).
func errDPoP(desc string) *Error { return dpopError(dpop.CodeInvalidProof, desc) }

// dpopError is a 400 with a DPoP error code; desc is fixed text (package
// dpop's descriptions never repeat the proof), so the log may record it.
func dpopError(code, desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Description: desc, reason: desc}
}

// check runs the stateless checks of the request's proof (everything but
// jti replay), before the client is authenticated. It returns nil and no
// error when the request carries no DPoP header. With nonces on, it sets
// the DPoP-Nonce header on the answer whenever the client does not hold
// the current nonce (RFC 9449 §8.2), whatever the answer.
func (d *dpopChecker) check(w http.ResponseWriter, r *http.Request) (*dpop.Proof, *Error) {
	// The canonical key ("Dpop"), read directly: Header.Values would
	// canonicalise "DPoP" at an allocation per request, and a request
	// without a proof must cost nothing here (nor a nonce's HMAC).
	vs := r.Header["Dpop"]
	if len(vs) == 0 {
		return nil, nil
	}
	en := env.FromContext(r.Context())
	o := d.options(en)
	var current string
	if o.Nonces != nil {
		current = o.Nonces.Current()
	}
	if len(vs) > 1 {
		// RFC 9449 §4.3 step 1: exactly one DPoP header.
		return nil, d.withNonce(w, current, "", errDPoP("a request carries one DPoP header"))
	}
	req := dpop.Request{Method: http.MethodPost, URL: en.Issuer + "/oauth/token"}
	if d.cfg.AliasBase != nil {
		if base := d.cfg.AliasBase(en); base != "" {
			req.AltURL = base + "/oauth/token"
		}
	}
	p, de := dpop.Check(vs[0], req, d.cfg.Now(), o)
	if de != nil {
		return nil, d.withNonce(w, current, "", dpopError(de.Code, de.Description))
	}
	d.withNonce(w, current, p.Nonce, nil)
	return &p, nil
}

// withNonce sets DPoP-Nonce to current (when nonces are on) unless the
// proof already carried it; it returns e.
func (d *dpopChecker) withNonce(w http.ResponseWriter, current, had string, e *Error) *Error {
	if current != "" && had != current {
		w.Header().Set("DPoP-Nonce", current)
	}
	return e
}

// use records the proof's jti, once the client is known (so that junk
// from nobody cannot fill the table), and reports a replay: refused on
// this replica from memory, and across replicas by the database, until
// the proof would be too old anyway.
func (d *dpopChecker) use(ctx context.Context, p *dpop.Proof) *Error {
	en := env.FromContext(ctx)
	// The environment's issuer keeps environments apart; the hash keeps
	// the stored key short and printable.
	sum := sha256.Sum256([]byte(en.Issuer + "\x00dpop\x00" + dpop.ReplayKey(*p)))
	key := hex.EncodeToString(sum[:])
	until := dpop.Options{MaxAge: d.cfg.MaxAge}.ReplayUntil(*p)
	fresh, err := useOnce(ctx, d.replay, en, key, until, d.cfg.Now())
	if err != nil {
		return ErrUnavailable(err)
	}
	if !fresh {
		return errDPoP("the proof's jti was used before")
	}
	return nil
}

// DPoPAlgs are the proof algorithms the token endpoint accepts
// (dpop_signing_alg_values_supported).
func DPoPAlgs() []string { return append([]string(nil), dpop.DefaultAlgs...) }
