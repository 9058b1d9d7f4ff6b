package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/m2mauth/m2mauth/internal/jws"
)

// fakeNet answers every request itself, as the network would: loopback
// URLs are the configured key sources, which redirect (or, in discovery,
// point) to a plain-http address elsewhere, which serves a key set. It
// records the requests that reached that address.
type fakeNet struct {
	jwks     []byte
	mu       sync.Mutex
	outbound []string
}

func (f *fakeNet) RoundTrip(r *http.Request) (*http.Response, error) {
	resp := func(status int, body string, h ...string) *http.Response {
		hdr := http.Header{}
		for i := 0; i+1 < len(h); i += 2 {
			hdr.Set(h[i], h[i+1])
		}
		return &http.Response{StatusCode: status, Header: hdr, Body: io.NopCloser(strings.NewReader(body)), Request: r}
	}
	switch {
	case r.URL.Host != "127.0.0.1":
		f.mu.Lock()
		f.outbound = append(f.outbound, r.URL.String())
		f.mu.Unlock()
		return resp(200, string(f.jwks)), nil
	case r.URL.Path == "/redirect/jwks":
		return resp(http.StatusFound, "", "Location", "http://192.0.2.1/jwks"), nil
	case r.URL.Path == "/iss/.well-known/openid-configuration":
		return resp(200, `{"issuer":"http://127.0.0.1/iss","jwks_uri":"http://192.0.2.1/jwks"}`), nil
	}
	return resp(404, ""), nil
}

// Keys are fetched over https, or plain http on a loopback address only
// (as the admin API requires of a configured jwks_uri, since keys fetched
// over plain http could be replaced on the way): a key source that
// redirects to plain http elsewhere, or a discovery document that names
// such a jwks_uri, gives no key, and nothing is fetched from there.
func TestKeysAreNeverFetchedOverPlainHTTPElsewhere(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := priv.PublicKey.Bytes()
	enc := base64.RawURLEncoding.EncodeToString
	set, _ := json.Marshal(map[string]any{"keys": []any{map[string]string{"kty": "EC", "crv": "P-256", "kid": "k1",
		"x": enc(raw[1:33]), "y": enc(raw[33:])}}})
	h := jws.Header{Alg: "ES256", Kid: "k1"}
	for _, tt := range []struct{ name, url, issuer string }{
		{"jwks_uri redirecting to plain http", "http://127.0.0.1/redirect/jwks", ""},
		{"discovery naming a plain-http jwks_uri", "", "http://127.0.0.1/iss"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nw := &fakeNet{jwks: set}
			a := NewAssertionAuth(AssertionConfig{HTTPClient: &http.Client{Transport: nw}})
			_, ok, _ := a.remote.key(context.Background(), tt.url, tt.issuer, h)
			if ok || len(nw.outbound) != 0 {
				t.Errorf("key found: %v; plain-http fetches elsewhere: %v", ok, nw.outbound)
			}
		})
	}
	// A loopback source is still fetched over http.
	a := NewAssertionAuth(AssertionConfig{HTTPClient: &http.Client{Transport: loopbackJWKS{set}}})
	if _, ok, e := a.remote.key(context.Background(), "http://127.0.0.1/jwks", "", h); !ok || e != nil {
		t.Errorf("loopback http key source: ok %v, error %v", ok, e)
	}
}

// loopbackJWKS serves set at every URL.
type loopbackJWKS struct{ set []byte }

func (l loopbackJWKS) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(string(l.set))), Request: r}, nil
}
