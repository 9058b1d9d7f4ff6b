package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/dpop"
	"github.com/m2mauth/m2mauth/internal/jws"
)

// BenchmarkVerify measures Verify with a warm key cache, beside the raw
// signature verification it must stay within 20 % of.
func BenchmarkVerify(b *testing.B) {
	k := getKeys(b)
	f := &fakeJWKS{body: k.publishedSet(b), cc: "max-age=86400"}
	v := newTestVerifier(b, f, &clock{t: testNow}, JWKSOptions{})
	claims := claimsWith("exp", testNow.Add(time.Hour).Unix())
	for _, tc := range []struct {
		alg, kid string
		key      any
		raw      func(input, sig []byte) bool
	}{
		{"RS256", "rsa", k.rsa, func(input, sig []byte) bool {
			h := sha256.Sum256(input)
			return rsa.VerifyPKCS1v15(&k.rsa.PublicKey, crypto.SHA256, h[:], sig) == nil
		}},
		{"ES256", "ec", k.ec, func(input, sig []byte) bool {
			h := sha256.Sum256(input)
			return ecdsa.Verify(&k.ec.PublicKey, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		}},
		{"EdDSA", "ed", k.ed, func(input, sig []byte) bool {
			return ed25519.Verify(k.ed.Public().(ed25519.PublicKey), input, sig)
		}},
	} {
		tok := sign(b, hdr(tc.alg, tc.kid), claims, tc.alg, tc.key)
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		parsed, _ := jws.Parse(tok, MaxTokenSize)
		b.Run(tc.alg+"/Verify", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.alg+"/raw-signature", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !tc.raw(parsed.SigningInput, parsed.Signature) {
					b.Fatal("bad signature")
				}
			}
		})
	}
}

// BenchmarkVerifyOverhead is everything Verify does besides the signature:
// parsing, the key lookup and the claim checks.
func BenchmarkVerifyOverhead(b *testing.B) {
	k := getKeys(b)
	f := &fakeJWKS{body: k.publishedSet(b), cc: "max-age=86400"}
	v := newTestVerifier(b, f, &clock{t: testNow}, JWKSOptions{})
	tok := sign(b, hdr("RS256", "rsa"), claimsWith("exp", testNow.Add(time.Hour).Unix()), "RS256", k.rsa)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		parsed, err := jws.Parse(tok, MaxTokenSize)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := v.cfg.Keys.Key(context.Background(), parsed.Header.Kid); err != nil {
			b.Fatal(err)
		}
		if _, err := v.checkClaims(parsed.Claims); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMiddleware is a request through Middleware with a plain bearer
// token, and with a DPoP-bound token and its proof (ES256, EdDSA): the
// cost of DPoP is the proof's parse, key and signature check on top of the
// token's. Proofs are single-use, so they are made, outside the timer, in
// batches.
func BenchmarkMiddleware(b *testing.B) {
	k := getKeys(b)
	c := getClientKeys(b)
	f := &fakeJWKS{body: k.publishedSet(b), cc: "max-age=86400"}
	v := newTestVerifier(b, f, &clock{t: testNow}, JWKSOptions{})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	request := func(authz, proof string) *http.Request {
		r := httptest.NewRequest("GET", "/api/data", nil)
		r.Host = "api.example"
		r.Header.Set("Authorization", authz)
		if proof != "" {
			r.Header.Set("DPoP", proof)
		}
		return r
	}
	serve := func(b *testing.B, h http.Handler, r *http.Request) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatalf("%d %q", w.Code, w.Header().Values("WWW-Authenticate"))
		}
	}
	b.Run("Bearer", func(b *testing.B) {
		h := Middleware(v, MiddlewareOptions{})(ok)
		r := request("Bearer "+boundToken(b, nil, "exp", testNow.Add(time.Hour).Unix()), "")
		b.ReportAllocs()
		for b.Loop() {
			serve(b, h, r)
		}
	})
	for _, tc := range []struct {
		alg string
		key crypto.Signer
	}{{"ES256", c.dpop}, {"EdDSA", c.ed}} {
		b.Run("DPoP-"+tc.alg, func(b *testing.B) {
			h := Middleware(v, MiddlewareOptions{})(ok)
			tok := boundToken(b, map[string]string{"jkt": jktOf(b, tc.key)}, "exp", testNow.Add(time.Hour).Unix())
			var batch []*http.Request
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if len(batch) == 0 {
					b.StopTimer()
					for range 500 {
						batch = append(batch, request("DPoP "+tok, proof(b, tc.key, "GET", apiURL, dpop.ProofOptions{AccessToken: tok})))
					}
					b.StartTimer()
				}
				serve(b, h, batch[len(batch)-1])
				batch = batch[:len(batch)-1]
			}
		})
	}
}
