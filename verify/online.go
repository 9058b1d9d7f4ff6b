package verify

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrRevoked: the token is valid by its signature and claims, but the
// issuer's introspection says it is no longer active (revoked, or its
// client disabled or deleted).
var ErrRevoked = fmt.Errorf("%w: revoked", ErrInvalidToken)

// ErrIntrospectionUnavailable: online mode could not reach the issuer's
// introspection endpoint. It is not an ErrInvalidToken: the token may be
// fine, and Middleware answers 503, not 401.
var ErrIntrospectionUnavailable = errors.New("introspection unavailable")

// IntrospectionConfig turns on online mode: after a token passes every
// local check, the issuer's introspection endpoint (RFC 7662) is asked
// whether it is still active, so that revocations take effect before the
// token expires.
//
// The trade-off: pure JWT validation needs no call to the issuer and works
// when it is down, but a revoked token is accepted until it expires (15
// minutes by default). Online mode sees a revocation within CacheTTL, at
// the cost of one call per token per CacheTTL and of refusing requests
// (503) while the issuer cannot be reached.
type IntrospectionConfig struct {
	// URL is the introspection endpoint, e.g. https://auth.example.com/oauth/introspect.
	URL string
	// ClientID and ClientSecret authenticate this resource server: a client
	// of the issuer with the introspection permission for its audience.
	ClientID, ClientSecret string
	// CacheTTL is how long an answer, positive or negative, is reused; it is
	// never longer than the token's remaining life (default 30 s).
	CacheTTL time.Duration
	// MaxEntries bounds the cache (default 10,000).
	MaxEntries int
}

type introspector struct {
	cfg    IntrospectionConfig
	client *http.Client
	now    func() time.Time
	sf     singleflight.Group

	mu      sync.Mutex
	entries map[[32]byte]cached
}

type cached struct {
	active bool
	until  time.Time
}

func newIntrospector(cfg IntrospectionConfig, client *http.Client, now func() time.Time) *introspector {
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	return &introspector{cfg: cfg, client: client, now: now, entries: map[[32]byte]cached{}}
}

// active reports whether the issuer still considers token active.
func (in *introspector) active(ctx context.Context, token string, exp time.Time) (bool, error) {
	key := sha256.Sum256([]byte(token)) // the cache never holds tokens
	now := in.now()
	in.mu.Lock()
	e, ok := in.entries[key]
	in.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.active, nil
	}
	v, err, _ := in.sf.Do(string(key[:]), func() (any, error) {
		return in.ask(ctx, token)
	})
	if err != nil {
		return false, err
	}
	active := v.(bool)
	until := now.Add(in.cfg.CacheTTL)
	if exp.Before(until) {
		until = exp
	}
	in.mu.Lock()
	if len(in.entries) >= in.cfg.MaxEntries {
		for k, e := range in.entries { // drop the expired; if none, start over
			if !now.Before(e.until) {
				delete(in.entries, k)
			}
		}
		if len(in.entries) >= in.cfg.MaxEntries {
			in.entries = map[[32]byte]cached{}
		}
	}
	in.entries[key] = cached{active: active, until: until}
	in.mu.Unlock()
	return active, nil
}

func (in *introspector) ask(ctx context.Context, token string) (bool, error) {
	body := url.Values{"token": {token}, "token_type_hint": {"access_token"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.cfg.URL, strings.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrIntrospectionUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	resp, err := in.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrIntrospectionUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%w: the endpoint answered %d", ErrIntrospectionUnavailable, resp.StatusCode)
	}
	var r struct {
		Active bool `json:"active"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&r); err != nil {
		return false, fmt.Errorf("%w: %v", ErrIntrospectionUnavailable, err)
	}
	return r.Active, nil
}
