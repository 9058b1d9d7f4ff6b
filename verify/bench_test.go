package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"testing"
	"time"

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
