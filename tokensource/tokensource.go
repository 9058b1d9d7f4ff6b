// Package tokensource gets OAuth 2.0 client-credentials access tokens
// (RFC 6749 §4.4) for a Go client and keeps one ready:
//
//   - Token(ctx) returns the cached token while it is fresh, and refreshes
//     it early, at a jittered point between 70 % and 80 % of its lifetime
//     by default, in the background: callers keep getting the current
//     token meanwhile, and many clients started together do not refresh in
//     step;
//   - concurrent callers share one request to the token endpoint;
//   - network errors, 5xx and 429 answers are retried with exponential
//     backoff and full jitter (429 and 503 honour Retry-After, bounded);
//     other 4xx answers are final and returned as *RetrieveError at once;
//   - the token endpoint comes from TokenURL or from the issuer's discovery
//     document (RFC 8414).
//
// The client authenticates in exactly one of four ways:
//
//   - a client secret (ClientSecret), sent with HTTP Basic (RFC 6749 §2.3.1);
//   - a private key (PrivateKey or PrivateKeyFile): private_key_jwt (RFC 7523
//     §2.2), a new short-lived assertion signed for every token request;
//   - a workload identity (AssertionFile or AssertionFunc): a token the
//     platform gives the workload (a Kubernetes projected service-account
//     token, a SPIFFE JWT-SVID, a CI OIDC token) sent as the client
//     assertion, read anew for every token request;
//   - a TLS client certificate alone (Certificate or GetClientCertificate
//     with ClientID): tls_client_auth or self_signed_tls_client_auth
//     (RFC 8705 §2), the server checks the certificate of the connection.
//
// A client certificate may also come with one of the other three: the
// server then binds the tokens to it (RFC 8705 §3) if the client or the
// server asks for that. An API accepts such a token only over a connection
// that presents the same certificate: send the API requests through
// HTTPTransport (Transport(nil) does).
//
// With DPoP or DPoPKey the tokens are DPoP-bound (RFC 9449): every token
// request carries a proof signed with the Source's key, and the API
// requests of Transport a proof for the request with the token's hash; a
// server's nonce challenge (use_dpop_nonce) is answered with one retry.
//
// Source.OAuth2 adapts it to golang.org/x/oauth2 (oauth2.NewClient), and
// Source.Transport wraps an http.RoundTripper that sets the Authorization
// header and, when the API answers 401, fetches a fresh token once and
// retries (only requests whose body can be replayed).
package tokensource

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/m2mauth/m2mauth/internal/dpop"
)

// Config configures a Source.
type Config struct {
	// TokenURL is the token endpoint; when empty, the token_endpoint of
	// Issuer's discovery document is used.
	TokenURL string
	// Issuer is the authorization server's issuer identifier: where
	// discovery starts when TokenURL is empty, and the audience of
	// private_key_jwt assertions.
	Issuer string

	// ClientID identifies the client. Required with ClientSecret, with
	// a private key and with a client certificate alone; optional with an
	// assertion source (the server finds the client from the assertion),
	// sent as client_id when set.
	ClientID string

	// Client authentication: set exactly one of ClientSecret, a private
	// key (PrivateKey or PrivateKeyFile) or an assertion source
	// (AssertionFile or AssertionFunc); or none of them and a client
	// certificate (tls_client_auth).

	// ClientSecret is sent with HTTP Basic (client_secret_basic).
	ClientSecret string

	// PrivateKey signs a private_key_jwt assertion (RFC 7523 §2.2) for
	// every token request: iss = sub = ClientID, aud = AssertionAudience,
	// iat = now, exp = now + AssertionLifetime, a random 128-bit jti, and
	// the header typ "client-authentication+jwt". RSA (2048 bits or more),
	// ECDSA P-256 and Ed25519 keys are supported; the signer may be backed
	// by a KMS or an HSM.
	PrivateKey crypto.Signer
	// PrivateKeyFile is a file holding the private key, read by New: PEM
	// (PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE
	// KEY", unencrypted) or a private JWK (RFC 7517).
	PrivateKeyFile string
	// KeyID is the assertion's kid header (default: the JWK's kid, else the
	// key's RFC 7638 thumbprint, base64url SHA-256).
	KeyID string
	// SigningAlg is the assertion's algorithm: RS256 or PS256 for RSA,
	// ES256 for P-256, EdDSA for Ed25519 (default: the JWK's alg, else
	// RS256, ES256 or EdDSA by the key type).
	SigningAlg string
	// AssertionAudience is the assertion's aud, one string (default:
	// Issuer). Set it to the token endpoint URL for a server that wants
	// that instead of its issuer identifier.
	AssertionAudience string
	// AssertionLifetime is exp - iat of each assertion, in whole seconds
	// (default 60 s, at most MaxAssertionLifetime).
	AssertionLifetime time.Duration

	// AssertionFile is a file holding the workload's token (a Kubernetes
	// projected service-account token, a SPIFFE JWT-SVID), read again for
	// every token request: the platform rotates it on disk.
	AssertionFile string
	// AssertionFunc returns the workload's token for each token request
	// (e.g. GitHubActionsToken). Its errors are returned to the caller of
	// Token as they are, never retried by the Source.
	AssertionFunc func(ctx context.Context) (string, error)
	// AssertionType is the client_assertion_type sent with AssertionFile
	// or AssertionFunc: AssertionTypeJWTBearer (default) or
	// AssertionTypeSPIFFE.
	AssertionType string

	// Certificate is the client's TLS certificate (with its private key
	// and any intermediates), presented to the token endpoint and, through
	// HTTPTransport, to APIs (RFC 8705): alone it authenticates the client
	// (tls_client_auth or self_signed_tls_client_auth), with another
	// credential it only binds the tokens to it.
	Certificate *tls.Certificate
	// GetClientCertificate, instead of Certificate, returns the
	// certificate for each TLS handshake: for one that is rotated, such as
	// a SPIFFE X.509-SVID from the Workload API. The handshakes of
	// connections already open are not repeated, so a rotated certificate
	// is used from the next new connection on.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)

	Scopes []string
	// Audience is sent as the audience parameter when set.
	Audience string

	// DPoP makes the tokens DPoP-bound (RFC 9449) to an ECDSA P-256 key
	// the Source generates and holds for its lifetime: every token
	// request carries a proof (htm POST, htu the token endpoint), and
	// Transport sends "Authorization: DPoP <token>" with a proof for each
	// API request. A server that answers token_type Bearer anyway (it does
	// not do DPoP) is taken at its word: Token.TokenType is "Bearer" and
	// Transport sends the token as a Bearer token.
	DPoP bool
	// DPoPKey, instead of a generated key, signs the proofs: ECDSA P-256
	// (ES256), Ed25519 (EdDSA) or RSA of 2048 bits or more (RS256); it may
	// be backed by a KMS or an HSM, and ReadPrivateKey reads one from a
	// file. It implies DPoP. Give it a key of its own, not the
	// private_key_jwt key: a DPoP key proves possession of the tokens, and
	// may be kept with less care than the client's identity.
	DPoPKey crypto.Signer

	// HTTPClient sends the token requests (default: 10 s timeout, through
	// a clone of http.DefaultTransport that presents Certificate or
	// GetClientCertificate when one is set). A client given here must
	// present the certificate itself (its Transport's TLSClientConfig):
	// Certificate or GetClientCertificate then only tells the Source that
	// the client authenticates with it.
	HTTPClient *http.Client
	// RefreshBefore is the fraction of a token's lifetime left when it is
	// refreshed (default 0.2); a random part of up to half of it is added
	// as jitter.
	RefreshBefore float64
	// MaxRetries bounds retries of one fetch (default 4; negative: none,
	// e.g. for a command-line tool that reports the first error); the backoff
	// starts at MinBackoff (default 200 ms) and doubles up to MaxBackoff
	// (default 10 s).
	MaxRetries             int
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Token is an access token.
type Token struct {
	AccessToken string
	// TokenType is "Bearer" or, from a DPoP Source, "DPoP".
	TokenType string
	Scope     string
	Expiry    time.Time
	refreshAt time.Time
}

// Valid reports whether the token can still be sent (with a margin of 10 s
// for clock skew and transit).
func (t *Token) Valid(now time.Time) bool {
	return t != nil && t.AccessToken != "" && now.Before(t.Expiry.Add(-expiryMargin))
}

const expiryMargin = 10 * time.Second

// RetrieveError is a final error answer of the token endpoint.
type RetrieveError struct {
	StatusCode  int
	Code        string // RFC 6749 §5.2 error, e.g. invalid_client
	Description string
}

func (e *RetrieveError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("token endpoint: %d %s: %s", e.StatusCode, e.Code, e.Description)
	}
	return fmt.Sprintf("token endpoint: HTTP %d", e.StatusCode)
}

// Source gets and caches tokens. It is safe for concurrent use.
type Source struct {
	cfg  Config
	auth clientAuth
	sf   singleflight.Group
	// tlsTransport is the transport the Source made to present the client
	// certificate (nil: none).
	tlsTransport *http.Transport
	// dpopKey signs DPoP proofs (nil: no DPoP).
	dpopKey crypto.Signer

	mu       sync.Mutex
	tok      *Token
	tokenURL string
	// The background refresh: whether one is running, and after failures
	// the time the next may start and the wait that led to it.
	bgRunning bool
	bgNext    time.Time
	bgWait    time.Duration
	// dpopNonces is the last DPoP-Nonce of each origin (RFC 9449 §8, §9).
	dpopNonces map[string]string
}

// New returns a Source. It reads PrivateKeyFile, if set, and does no other
// I/O until the first Token call.
func New(cfg Config) (*Source, error) {
	if cfg.TokenURL == "" && cfg.Issuer == "" {
		return nil, errors.New("tokensource: TokenURL or Issuer is required")
	}
	var tlsTransport *http.Transport
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
		if cfg.Certificate != nil || cfg.GetClientCertificate != nil {
			tlsTransport = clientCertTransport(cfg.Certificate, cfg.GetClientCertificate)
			cfg.HTTPClient.Transport = tlsTransport
		}
	}
	if cfg.RefreshBefore <= 0 || cfg.RefreshBefore >= 1 {
		cfg.RefreshBefore = 0.2
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 4
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	auth, err := newClientAuth(&cfg)
	if err != nil {
		return nil, err
	}
	dpopKey, err := newDPoPKey(&cfg)
	if err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, auth: auth, tokenURL: cfg.TokenURL, tlsTransport: tlsTransport, dpopKey: dpopKey}, nil
}

// clientCertTransport is a clone of http.DefaultTransport (its proxy,
// timeouts and HTTP/2) that presents the client certificate.
func clientCertTransport(cert *tls.Certificate, get func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	if cert != nil {
		t.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	} else {
		t.TLSClientConfig.GetClientCertificate = get
	}
	return t
}

// HTTPTransport returns the transport the Source sends token requests
// through: with Certificate or GetClientCertificate and no HTTPClient, one
// that presents the client certificate; else HTTPClient's (nil:
// http.DefaultTransport). It is the base for API requests with
// certificate-bound tokens (RFC 8705 §3), which an API accepts only over a
// connection that presents the certificate the token is bound to:
//
//	api := &http.Client{Transport: src.Transport(src.HTTPTransport())}
//
// It is shared with the token requests (one pool of connections): do not
// modify it.
func (s *Source) HTTPTransport() http.RoundTripper {
	if s.tlsTransport != nil {
		return s.tlsTransport
	}
	if s.cfg.HTTPClient.Transport != nil {
		return s.cfg.HTTPClient.Transport
	}
	return http.DefaultTransport
}

// Token returns a valid token: the cached one while it is fresh; past its
// refresh point the cached one while a new one is fetched in the
// background (after a failed background fetch, the next waits MinBackoff,
// doubling up to MaxBackoff); a new one (waiting for it) when there is no
// valid token.
func (s *Source) Token(ctx context.Context) (*Token, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	tok := s.tok
	s.mu.Unlock()
	if tok.Valid(now) {
		if !now.Before(tok.refreshAt) && s.startBackground(now) {
			go func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				_, err := s.refresh(ctx)
				s.backgroundDone(err)
			}()
		}
		return tok, nil
	}
	return s.refresh(ctx)
}

// startBackground reports whether a background refresh may start now: none
// is running, and the wait after the last failed one is over.
func (s *Source) startBackground(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bgRunning || now.Before(s.bgNext) {
		return false
	}
	s.bgRunning = true
	return true
}

// backgroundDone records the end of a background refresh: after a failure
// the next one waits, MinBackoff doubling up to MaxBackoff.
func (s *Source) backgroundDone(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bgRunning = false
	if err == nil {
		s.bgWait = 0
		return
	}
	s.bgWait = min(max(2*s.bgWait, s.cfg.MinBackoff), s.cfg.MaxBackoff)
	s.bgNext = s.cfg.Now().Add(s.bgWait)
}

// Invalidate drops tok from the cache (if it is still the cached one), so
// that the next Token call fetches a new one: for a token the API refused.
func (s *Source) Invalidate(tok *Token) {
	s.mu.Lock()
	if s.tok == tok {
		s.tok = nil
	}
	s.mu.Unlock()
}

// refresh fetches a token once for all concurrent callers.
func (s *Source) refresh(ctx context.Context) (*Token, error) {
	ch := s.sf.DoChan("token", func() (any, error) {
		tok, err := s.fetchWithRetry(context.WithoutCancel(ctx))
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.tok, s.bgWait = tok, 0
		s.mu.Unlock()
		return tok, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Token), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// retryable is an error worth another attempt, possibly after a delay the
// server asked for.
type retryable struct {
	err        error
	retryAfter time.Duration
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

func (s *Source) fetchWithRetry(ctx context.Context) (*Token, error) {
	backoff := s.cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		tok, err := s.fetch(ctx)
		var r *retryable
		if err == nil || !errors.As(err, &r) || attempt >= s.cfg.MaxRetries {
			if r != nil {
				return nil, r.err
			}
			return tok, err
		}
		// Full jitter (a random wait up to the backoff), or what the server
		// asked for, bounded.
		wait := time.Duration(rand.Int64N(int64(backoff) + 1))
		if r.retryAfter > 0 {
			wait = min(r.retryAfter, s.cfg.MaxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

func (s *Source) endpoint(ctx context.Context) (string, error) {
	s.mu.Lock()
	u := s.tokenURL
	s.mu.Unlock()
	if u != "" {
		return u, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.cfg.Issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", err
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", &retryable{err: fmt.Errorf("discovery: %w", err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		return "", &retryable{err: fmt.Errorf("discovery: HTTP %d", resp.StatusCode)}
	}
	var meta struct {
		TokenEndpoint string `json:"token_endpoint"`
		Aliases       struct {
			TokenEndpoint string `json:"token_endpoint"`
		} `json:"mtls_endpoint_aliases"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&meta) != nil || meta.TokenEndpoint == "" {
		return "", fmt.Errorf("discovery: no token_endpoint (HTTP %d)", resp.StatusCode)
	}
	u = meta.TokenEndpoint
	// RFC 8705 §5: a client that presents a certificate uses the mTLS
	// alias, where the server asks for one (the plain endpoint may not).
	if (s.cfg.Certificate != nil || s.cfg.GetClientCertificate != nil) && meta.Aliases.TokenEndpoint != "" {
		u = meta.Aliases.TokenEndpoint
	}
	s.mu.Lock()
	s.tokenURL = u
	s.mu.Unlock()
	return u, nil
}

func (s *Source) fetch(ctx context.Context) (*Token, error) {
	endpoint, err := s.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	tok, nonced, err := s.post(ctx, endpoint)
	// RFC 9449 §8: the server wants its nonce in the proof and has sent
	// one. Once more with it; a second challenge is final (a server that
	// always wants a newer nonce must not keep the Source asking).
	if re := (*RetrieveError)(nil); nonced && errors.As(err, &re) && re.Code == dpop.CodeUseNonce {
		tok, _, err = s.post(ctx, endpoint)
	}
	return tok, err
}

// post sends one token request; nonced reports whether the answer carried
// a DPoP-Nonce.
func (s *Source) post(ctx context.Context, endpoint string) (_ *Token, nonced bool, _ error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(s.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(s.cfg.Scopes, " "))
	}
	if s.cfg.Audience != "" {
		form.Set("audience", s.cfg.Audience)
	}
	// A new assertion for every attempt: a server that saw the last one
	// (even when its answer was lost) refuses its jti, and a workload
	// token on disk may have been rotated since.
	header := http.Header{}
	if err := s.auth.authenticate(ctx, form, header); err != nil {
		return nil, false, err
	}
	if s.dpopKey != nil {
		proof, err := s.proof(http.MethodPost, endpoint, "")
		if err != nil {
			return nil, false, err
		}
		header.Set("DPoP", proof)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, false, err
	}
	maps.Copy(req.Header, header)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	sent := s.cfg.Now()
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, false, &retryable{err: fmt.Errorf("token endpoint: %w", err)}
	}
	defer resp.Body.Close()
	if s.dpopKey != nil {
		nonced = s.noteNonce(endpoint, resp.Header)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nonced, &retryable{err: fmt.Errorf("token endpoint: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		re := &RetrieveError{StatusCode: resp.StatusCode}
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &e) == nil {
			re.Code, re.Description = e.Error, e.Description
		}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return nil, nonced, &retryable{err: re, retryAfter: retryAfter(resp.Header.Get("Retry-After"))}
		}
		return nil, nonced, re
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Scope       string `json:"scope"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return nil, nonced, errors.New("token endpoint: a 200 answer without an access token")
	}
	var typ string
	switch {
	case strings.EqualFold(tr.TokenType, "bearer"):
		typ = "Bearer"
	case strings.EqualFold(tr.TokenType, "dpop") && s.dpopKey != nil:
		typ = "DPoP"
	case s.dpopKey != nil:
		return nil, nonced, fmt.Errorf("token endpoint: token type %q, want DPoP or Bearer", tr.TokenType)
	default:
		// A DPoP token without a proof from us: nothing could send it.
		return nil, nonced, fmt.Errorf("token endpoint: token type %q, want Bearer", tr.TokenType)
	}
	lifetime := time.Duration(tr.ExpiresIn) * time.Second
	if lifetime <= 0 {
		lifetime = time.Hour // RFC 6749 §5.1: expires_in is recommended, not required
	}
	// Refresh between (1 - RefreshBefore) and (1 - 1.5 RefreshBefore) of
	// the lifetime, counted from when the request was sent.
	early := time.Duration(float64(lifetime) * s.cfg.RefreshBefore * (1 + rand.Float64()/2))
	return &Token{
		AccessToken: tr.AccessToken, TokenType: typ, Scope: tr.Scope,
		Expiry: sent.Add(lifetime), refreshAt: sent.Add(lifetime - early),
	}, nonced, nil
}

func retryAfter(v string) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	return 0
}

// OAuth2 adapts the Source to oauth2.TokenSource, e.g. for oauth2.NewClient.
// oauth2.TokenSource has no context: its calls use context.Background, so
// prefer Transport, whose requests carry their own context. oauth2's
// transport sends no DPoP proofs: for DPoP-bound tokens use Transport.
func (s *Source) OAuth2() oauth2.TokenSource { return oauth2Source{s} }

type oauth2Source struct{ s *Source }

func (o oauth2Source) Token() (*oauth2.Token, error) {
	t, err := o.s.Token(context.Background())
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, Expiry: t.Expiry}, nil
}

// crossOriginRedirect reports whether req follows a redirect to another
// origin (scheme, host or port) than the request that was redirected.
func crossOriginRedirect(req *http.Request) bool {
	for prev := req.Response; prev != nil && prev.Request != nil; prev = prev.Request.Response {
		from := prev.Request.URL
		if from.Scheme != req.URL.Scheme || !strings.EqualFold(from.Host, req.URL.Host) {
			return true
		}
	}
	return false
}

// Transport returns an http.RoundTripper that sends requests through base
// (nil: the transport the Source made to present Certificate or
// GetClientCertificate, else http.DefaultTransport) with "Authorization:
// Bearer <token>", or for a DPoP token "Authorization: DPoP <token>" and a
// DPoP proof of the request (htm its method, htu its URL without query and
// fragment, ath the token's hash, and the origin's last DPoP-Nonce). For
// certificate-bound tokens base must present the client certificate (see
// HTTPTransport).
//
// When the answer is 401, it retries if the request can be sent again (no
// body, or GetBody set, as http.NewRequest does for in-memory bodies):
// once with a new proof when a DPoP API asks for a nonce (WWW-Authenticate
// DPoP error="use_dpop_nonce" with a DPoP-Nonce), and once with a new
// token otherwise.
func (s *Source) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
		if s.tlsTransport != nil {
			base = s.tlsTransport
		}
	}
	return &transport{s: s, base: base}
}

type transport struct {
	s    *Source
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if crossOriginRedirect(req) {
		// http.Client drops Authorization on a redirect to another host;
		// adding the token back would hand it to whoever the API
		// redirects to (found by the attack).
		return t.base.RoundTrip(req)
	}
	tok, err := t.s.Token(req.Context())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	out, err := t.authorize(req, tok)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	nonce := t.noteNonce(req, tok, resp)
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	// At most one retry for a nonce and one with a new token: a server
	// that keeps asking gets its last 401 back.
	var nonceRetried, tokenRetried bool
	for resp.StatusCode == http.StatusUnauthorized && replayable {
		challenge := nonce && tok.TokenType == "DPoP" && useDPoPNonce(resp.Header)
		switch {
		case challenge && !nonceRetried:
			nonceRetried = true // the same token, with a proof carrying the nonce
		case !challenge && !tokenRetried:
			tokenRetried = true
			t.s.Invalidate(tok)
			fresh, err := t.s.Token(req.Context())
			if err != nil || fresh.AccessToken == tok.AccessToken {
				return resp, nil // nothing better to offer: keep the 401
			}
			tok = fresh
		default:
			return resp, nil
		}
		retry, err := t.authorize(req, tok)
		if err != nil {
			return resp, nil
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return resp, nil
			}
			retry.Body = body
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp, err = t.base.RoundTrip(retry); err != nil {
			return nil, err
		}
		nonce = t.noteNonce(req, tok, resp)
	}
	return resp, nil
}

// authorize returns a copy of req that carries tok (and for a DPoP token
// a proof).
func (t *transport) authorize(req *http.Request, tok *Token) (*http.Request, error) {
	if tok.TokenType != "DPoP" {
		return withToken(req, tok), nil
	}
	u := *req.URL
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	proof, err := t.s.proof(req.Method, u.String(), tok.AccessToken)
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "DPoP "+tok.AccessToken)
	r.Header.Set("DPoP", proof)
	return r, nil
}

// noteNonce remembers the DPoP-Nonce of an API's answer to a DPoP request
// and reports whether there was one.
func (t *transport) noteNonce(req *http.Request, tok *Token, resp *http.Response) bool {
	if tok.TokenType != "DPoP" {
		return false
	}
	return t.s.noteNonce(req.URL.String(), resp.Header)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func withToken(req *http.Request, tok *Token) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return r
}
