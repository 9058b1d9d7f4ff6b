package tokensource

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"

	"github.com/m2mauth/m2mauth/internal/dpop"
)

// maxNonceOrigins bounds the DPoP nonces remembered: one per origin the
// Source's proofs went to (the token endpoint and the APIs of Transport).
const maxNonceOrigins = 64

// maxNonceSize bounds a remembered DPoP-Nonce; a longer one is ignored
// (it would be sent back in every proof).
const maxNonceSize = 1 << 10

// newDPoPKey returns the key that signs the Source's DPoP proofs: DPoPKey,
// or a new P-256 key with DPoP, or nil.
func newDPoPKey(cfg *Config) (crypto.Signer, error) {
	if cfg.DPoPKey != nil {
		// The same checks as a private_key_jwt key: what the servers accept.
		if _, err := keyAlgorithm(cfg.DPoPKey, ""); err != nil {
			return nil, fmt.Errorf("%w (DPoPKey)", err)
		}
		return cfg.DPoPKey, nil
	}
	if !cfg.DPoP {
		return nil, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tokensource: DPoP key: %w", err)
	}
	return key, nil
}

// proof is a DPoP proof for a request of method to u, with the hash of
// accessToken when set, and the last nonce of u's origin.
func (s *Source) proof(method, u, accessToken string) (string, error) {
	o := dpop.ProofOptions{AccessToken: accessToken, Now: s.cfg.Now()}
	if origin := originOf(u); origin != "" {
		s.mu.Lock()
		o.Nonce = s.dpopNonces[origin]
		s.mu.Unlock()
	}
	p, err := dpop.NewProof(s.dpopKey, method, u, o)
	if err != nil {
		return "", fmt.Errorf("tokensource: DPoP proof: %w", err)
	}
	return p, nil
}

// noteNonce remembers the DPoP-Nonce of an answer from u's origin, for the
// next proofs to it (RFC 9449 §8.2: a server may send a new one with any
// answer), and reports whether the answer had one.
func (s *Source) noteNonce(u string, h http.Header) bool {
	nonce := h.Get("DPoP-Nonce")
	if nonce == "" || len(nonce) > maxNonceSize {
		return false
	}
	origin := originOf(u)
	if origin == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dpopNonces == nil {
		s.dpopNonces = map[string]string{}
	}
	if _, ok := s.dpopNonces[origin]; !ok && len(s.dpopNonces) >= maxNonceOrigins {
		for k := range s.dpopNonces { // forget one: it asks again if it cares
			delete(s.dpopNonces, k)
			break
		}
	}
	s.dpopNonces[origin] = nonce
	return true
}

// originOf is the scheme://host[:port] of u as htu compares it ("" when u
// is not an http(s) URL).
func originOf(u string) string {
	n, err := dpop.NormalizeURL(u)
	if err != nil {
		return ""
	}
	host := strings.Index(n, "://") + len("://")
	if i := strings.IndexByte(n[host:], '/'); i >= 0 {
		return n[:host+i]
	}
	return n
}

// useDPoPNonce reports whether a 401 asks for a DPoP nonce (RFC 9449 §9):
// a DPoP challenge with error="use_dpop_nonce" and a DPoP-Nonce header.
func useDPoPNonce(h http.Header) bool {
	if h.Get("DPoP-Nonce") == "" {
		return false
	}
	for _, v := range h.Values("WWW-Authenticate") {
		if challengeParam(v, "DPoP", "error") == dpop.CodeUseNonce {
			return true
		}
	}
	return false
}

// challengeParam returns the value of the auth-param name of the challenge
// of scheme in a WWW-Authenticate value (RFC 9110 §11.6.1: challenges
// separated by commas, each a scheme then auth-params, values a token or a
// quoted-string), or "" when there is none.
func challengeParam(v, scheme, name string) string {
	var current string // the scheme whose parameters are being read
	i := 0
	for i < len(v) {
		for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == ',') {
			i++
		}
		start := i
		for i < len(v) && v[i] != ' ' && v[i] != '\t' && v[i] != ',' && v[i] != '=' {
			i++
		}
		word := v[start:i]
		j := i
		for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
			j++
		}
		if j >= len(v) || v[j] != '=' {
			if word != "" {
				current = word // a new challenge
			}
			continue
		}
		// word=value: a parameter of current.
		i = j + 1
		for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
			i++
		}
		var value string
		if i < len(v) && v[i] == '"' {
			var b strings.Builder
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				b.WriteByte(v[i])
			}
			i++ // the closing quote
			value = b.String()
		} else {
			start := i
			for i < len(v) && v[i] != ',' && v[i] != ' ' && v[i] != '\t' {
				i++
			}
			value = v[start:i]
		}
		if strings.EqualFold(current, scheme) && strings.EqualFold(word, name) {
			return value
		}
	}
	return ""
}
