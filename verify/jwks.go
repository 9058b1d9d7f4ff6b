package verify

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/m2mauth/m2mauth/internal/jws"
)

// discoveryPlaceholder marks a JWKS whose URL comes from discovery.
const discoveryPlaceholder = ""

// JWKSOptions tunes a JWKS cache. Zero values take the defaults shown.
type JWKSOptions struct {
	// MinAge and MaxAge bound the lifetime taken from the response's
	// Cache-Control max-age (default 30 s and 24 h); DefaultAge applies
	// when it has none (default 5 min).
	MinAge, MaxAge, DefaultAge time.Duration
	// UnknownKIDCooldown is the least time between two fetches caused by
	// tokens naming a kid the cache does not know (default 30 s).
	UnknownKIDCooldown time.Duration
	// StaleIfError is how long past its lifetime the last good key set is
	// still used while fetching fails (default 24 h).
	StaleIfError time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failed fetch before
	// another is started in the background or for an unknown kid; it
	// doubles after each consecutive failure (default 5 s and 5 min).
	MinBackoff, MaxBackoff time.Duration
	// MaxBytes and MaxKeys cap a response (default 1 MiB and 100 keys).
	MaxBytes int64
	MaxKeys  int
	// HTTPClient fetches the key set (default: 10 s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *JWKSOptions) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.MinAge, 30*time.Second)
	def(&o.MaxAge, 24*time.Hour)
	def(&o.DefaultAge, 5*time.Minute)
	def(&o.UnknownKIDCooldown, 30*time.Second)
	def(&o.StaleIfError, 24*time.Hour)
	def(&o.MinBackoff, 5*time.Second)
	def(&o.MaxBackoff, 5*time.Minute)
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 20
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = 100
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

type publicKey struct {
	key crypto.PublicKey
	alg string
}

// JWKS is a KeySource that fetches a JWK Set (RFC 7517) over HTTP and
// caches it as its Cache-Control says:
//
//   - the set is kept for max-age (bounded by MinAge and MaxAge) and is
//     refreshed in the background during the last fifth of that time;
//   - a request never waits for a fetch while a usable set is cached (fresh,
//     or stale within StaleIfError): it is served from that set, and a
//     refresh is started in the background;
//   - at most one fetch is in flight, whatever started it; requests that
//     must wait for it (nothing usable is cached, or an unknown kid) share
//     it, each for no longer than its context allows;
//   - after a failed fetch, no fetch is started (in the background, for an
//     unknown kid, or for a request with nothing usable cached, which then
//     fails at once) until a backoff has passed (MinBackoff, doubling after each
//     further failure up to MaxBackoff, shortened by up to a fifth at random);
//     a successful fetch resets it;
//   - a token naming an unknown kid triggers a refetch (with Cache-Control:
//     no-cache) at most once per UnknownKIDCooldown, however many such
//     tokens arrive;
//   - each fetch replaces the set: a key the issuer removed stops verifying
//     once a refresh brings the new set;
//   - when fetching fails, the last good set is used for up to StaleIfError;
//   - responses over MaxBytes or MaxKeys are refused; keys without a kid,
//     RSA keys under 2048 bits, EC keys off their curve, keys whose use is
//     "enc" or whose alg does not fit them, and JWKs carrying private key
//     members are left out of the set.
type JWKS struct {
	url    string // "" until discovered
	issuer string
	opts   JWKSOptions
	jitter func() float64 // in [0, 1): the fraction of a fifth cut from a backoff

	mu          sync.Mutex
	keys        map[string]publicKey
	fetchedAt   time.Time
	expiresAt   time.Time
	lastUnknown time.Time // last fetch caused by an unknown kid
	fetches     int
	failures    int       // consecutive failed fetches
	retryAt     time.Time // no fetch starts before it
	lastErr     error     // the last fetch's error
	flight      *flight   // the fetch in progress, if any
	background  sync.WaitGroup
}

// flight is one fetch; done is closed when err is set.
type flight struct {
	done chan struct{}
	err  error
}

// NewJWKS returns a JWKS for url; when url is empty, the jwks_uri of the
// issuer's discovery document is used.
func NewJWKS(url, issuer string, opts JWKSOptions) *JWKS {
	opts.defaults()
	return &JWKS{url: url, issuer: strings.TrimRight(issuer, "/"), opts: opts, jitter: rand.Float64}
}

// Fetches reports how many times the key set has been fetched.
func (j *JWKS) Fetches() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetches
}

// Key implements KeySource.
func (j *JWKS) Key(ctx context.Context, kid string) (crypto.PublicKey, string, error) {
	now := j.opts.Now()
	j.mu.Lock()
	var wait *flight
	switch {
	case j.keys == nil || !now.Before(j.expiresAt.Add(j.opts.StaleIfError)):
		// Nothing usable: wait for a fetch, shared with the other waiters,
		// unless the last one failed within the backoff: then fail at
		// once, so that a process started during an outage does not send
		// the issuer one fetch per request.
		if j.flight == nil && now.Before(j.retryAt) {
			err := j.lastErr
			j.mu.Unlock()
			return nil, "", fmt.Errorf("jwks: backing off after a failed fetch: %w", err)
		}
		wait = j.startLocked(false)
	case now.After(j.expiresAt.Add(-j.expiresAt.Sub(j.fetchedAt)/5)) && !now.Before(j.retryAt):
		// Expired or in the last fifth of its life, and not backing off:
		// refresh without making anyone wait.
		j.startLocked(false)
	}
	j.mu.Unlock()
	if wait != nil {
		if err := j.wait(ctx, wait); err != nil {
			return nil, "", err
		}
	}
	if k, ok := j.lookup(kid); ok {
		return k.key, k.alg, nil
	}
	// Unknown kid: perhaps a new key. Refetch, at most once per cooldown
	// and not while backing off (joining a fetch in flight costs nothing).
	j.mu.Lock()
	wait = nil
	if now.Sub(j.lastUnknown) >= j.opts.UnknownKIDCooldown && (j.flight != nil || !now.Before(j.retryAt)) {
		j.lastUnknown = now
		wait = j.startLocked(true)
	}
	j.mu.Unlock()
	if wait != nil && j.wait(ctx, wait) == nil {
		if k, ok := j.lookup(kid); ok {
			return k.key, k.alg, nil
		}
	}
	return nil, "", ErrUnknownKey
}

func (j *JWKS) lookup(kid string) (publicKey, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	k, ok := j.keys[kid]
	return k, ok
}

// startLocked returns the fetch in flight, starting one if there is none.
// The fetch does not depend on any request: it runs to completion (or its
// own timeout) however many waiters give up. j.mu must be held.
func (j *JWKS) startLocked(noCache bool) *flight {
	if j.flight != nil {
		return j.flight
	}
	f := &flight{done: make(chan struct{})}
	j.flight = f
	j.background.Add(1)
	go func() {
		defer j.background.Done()
		err := j.fetch(context.Background(), noCache)
		now := j.opts.Now()
		j.mu.Lock()
		if err != nil {
			j.failures++
			j.retryAt = now.Add(j.backoff(j.failures))
		} else {
			j.failures, j.retryAt = 0, time.Time{}
		}
		j.lastErr = err
		f.err = err
		j.flight = nil
		j.mu.Unlock()
		close(f.done)
	}()
	return f
}

// wait waits for f, or for ctx to end.
func (j *JWKS) wait(ctx context.Context, f *flight) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff is the pause after the n-th consecutive failure: MinBackoff
// doubled n-1 times, at most MaxBackoff, less up to a fifth at random.
func (j *JWKS) backoff(n int) time.Duration {
	d := j.opts.MinBackoff
	for i := 1; i < n && d < j.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, j.opts.MaxBackoff)
	return d - time.Duration(float64(d/5)*j.jitter())
}

func (j *JWKS) fetch(ctx context.Context, noCache bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url, err := j.jwksURL(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	if noCache {
		req.Header.Set("Cache-Control", "no-cache")
	}
	resp, err := j.opts.HTTPClient.Do(req)
	j.mu.Lock()
	j.fetches++
	j.mu.Unlock()
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks: %s answered %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, j.opts.MaxBytes+1))
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	if int64(len(body)) > j.opts.MaxBytes {
		return fmt.Errorf("jwks: response larger than %d bytes", j.opts.MaxBytes)
	}
	keys, err := parseJWKS(body, j.opts.MaxKeys)
	if err != nil {
		return err
	}
	age := maxAge(resp.Header.Get("Cache-Control"), j.opts.DefaultAge)
	age = min(max(age, j.opts.MinAge), j.opts.MaxAge)
	now := j.opts.Now()
	j.mu.Lock()
	j.keys, j.fetchedAt, j.expiresAt = keys, now, now.Add(age) // replace, never merge
	j.mu.Unlock()
	return nil
}

// jwksURL returns the configured URL or discovers it once.
func (j *JWKS) jwksURL(ctx context.Context) (string, error) {
	j.mu.Lock()
	url := j.url
	j.mu.Unlock()
	if url != "" {
		return url, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	resp, err := j.opts.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery: %s answered %d", req.URL, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&meta); err != nil || meta.JWKSURI == "" {
		return "", errors.New("discovery: no jwks_uri in the discovery document")
	}
	// RFC 8414 §3.3: the document must be the issuer's own.
	if strings.TrimRight(meta.Issuer, "/") != j.issuer {
		return "", fmt.Errorf("discovery: the document is for issuer %q, not %q", meta.Issuer, j.issuer)
	}
	j.mu.Lock()
	j.url = meta.JWKSURI
	j.mu.Unlock()
	return meta.JWKSURI, nil
}

// maxAge reads max-age from a Cache-Control header.
func maxAge(cc string, def time.Duration) time.Duration {
	for _, part := range strings.Split(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(strings.ToLower(part)), "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				return time.Duration(n) * time.Second
			}
		}
		if strings.TrimSpace(strings.ToLower(part)) == "no-store" || strings.TrimSpace(strings.ToLower(part)) == "no-cache" {
			return 0
		}
	}
	return def
}

// parseJWKS decodes a key set, keeping only sound signature keys with a
// kid (read by jws.ParseKey): a key this package cannot use, for whatever
// reason, does not spoil the set. When two keys share a kid, the last wins.
func parseJWKS(body []byte, maxKeys int) (map[string]publicKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("jwks: not a JWK Set: %w", err)
	}
	if len(set.Keys) > maxKeys {
		return nil, fmt.Errorf("jwks: %d keys, more than the %d allowed", len(set.Keys), maxKeys)
	}
	keys := map[string]publicKey{}
	for _, raw := range set.Keys {
		k, err := jws.ParseKey(raw)
		if err != nil || k.Kid == "" {
			continue
		}
		keys[k.Kid] = publicKey{key: k.Key, alg: k.Alg}
	}
	return keys, nil
}

// Keys returns every key of the set, for a caller that finds a key by
// something other than its kid (a self-signed client certificate's key,
// RFC 8705 §2.2). It fetches as Key does for a kid the set lacks: at
// most once per UnknownKIDCooldown beyond the cache's own refreshes, so
// that a newly added key is found.
func (j *JWKS) Keys(ctx context.Context) ([]crypto.PublicKey, error) {
	if _, _, err := j.Key(ctx, ""); err != nil && !errors.Is(err, ErrUnknownKey) {
		return nil, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]crypto.PublicKey, 0, len(j.keys))
	for _, k := range j.keys {
		out = append(out, k.key)
	}
	return out, nil
}
