package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
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
//     refreshed in the background during the last fifth of that time, so
//     requests do not wait for it;
//   - a token naming an unknown kid triggers a refetch (with Cache-Control:
//     no-cache) at most once per UnknownKIDCooldown, however many such
//     tokens arrive; concurrent callers share one in-flight fetch;
//   - each fetch replaces the set: a key the issuer removed stops verifying;
//   - when fetching fails, the last good set is used for up to StaleIfError;
//   - responses over MaxBytes or MaxKeys are refused, as are RSA keys under
//     2048 bits, EC keys off their curve, and keys whose use is "enc".
type JWKS struct {
	url    string // "" until discovered
	issuer string
	opts   JWKSOptions
	sf     singleflight.Group

	mu          sync.Mutex
	keys        map[string]publicKey
	fetchedAt   time.Time
	expiresAt   time.Time
	lastUnknown time.Time // last fetch caused by an unknown kid
	fetches     int
	background  sync.WaitGroup
}

// NewJWKS returns a JWKS for url; when url is empty, the jwks_uri of the
// issuer's discovery document is used.
func NewJWKS(url, issuer string, opts JWKSOptions) *JWKS {
	opts.defaults()
	return &JWKS{url: url, issuer: strings.TrimRight(issuer, "/"), opts: opts}
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
	keys, fetchedAt, expiresAt := j.keys, j.fetchedAt, j.expiresAt
	j.mu.Unlock()

	switch {
	case keys == nil || !now.Before(expiresAt):
		// Nothing usable yet, or expired: fetch and wait.
		if err := j.refresh(ctx, false); err != nil && !j.staleUsable(now) {
			return nil, "", err
		}
	case now.After(expiresAt.Add(-expiresAt.Sub(fetchedAt) / 5)):
		// In the last fifth of its life: refresh without making anyone wait.
		j.background.Add(1)
		go func() {
			defer j.background.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = j.refresh(ctx, false)
		}()
	}
	if k, ok := j.lookup(kid); ok {
		return k.key, k.alg, nil
	}
	// Unknown kid: perhaps a new key. Refetch, at most once per cooldown.
	j.mu.Lock()
	allowed := now.Sub(j.lastUnknown) >= j.opts.UnknownKIDCooldown
	if allowed {
		j.lastUnknown = now
	}
	j.mu.Unlock()
	if allowed {
		if err := j.refresh(ctx, true); err == nil {
			if k, ok := j.lookup(kid); ok {
				return k.key, k.alg, nil
			}
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

func (j *JWKS) staleUsable(now time.Time) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.keys != nil && now.Before(j.expiresAt.Add(j.opts.StaleIfError))
}

// refresh fetches the set once for all concurrent callers.
func (j *JWKS) refresh(ctx context.Context, noCache bool) error {
	ch := j.sf.DoChan("jwks", func() (any, error) {
		return nil, j.fetch(context.WithoutCancel(ctx), noCache)
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
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

// parseJWKS decodes a key set, keeping only sound signature keys with a kid.
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
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue // a key of a type we do not know does not spoil the set
		}
		if k.KeyID == "" || k.Use == "enc" || !k.IsPublic() {
			continue
		}
		if err := sound(k.Key); err != nil {
			continue
		}
		keys[k.KeyID] = publicKey{key: k.Key, alg: k.Algorithm}
	}
	return keys, nil
}

// sound refuses weak or invalid public keys.
func sound(key crypto.PublicKey) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return errors.New("RSA key under 2048 bits")
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return errors.New("only P-256")
		}
		if _, err := k.ECDH(); err != nil {
			return errors.New("EC point not on the curve")
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return errors.New("bad Ed25519 key")
		}
	default:
		return fmt.Errorf("unsupported key type %T", key)
	}
	return nil
}
