package dpop

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// descriptions are every Error.Description Check may return.
var descriptions = []string{
	descTooLarge, descMalformed, descTyp, descAlg, descNoJWK, descPrivateJWK, descBadJWK, descKeyAlg,
	descSignature, descJTI, descHTM, descHTU, descRequestURL, descIAT, descOld, descFuture, descATH,
	descNonceMissing, descNonceInvalid,
}

// FuzzCheck: no input panics Check; a refusal carries one of the RFC's
// codes and one of the fixed descriptions (never the proof's contents);
// an accepted proof is within the size cap and says what Check promised:
// an allowed alg, a thumbprint, a jti within bounds, an iat in the window.
func FuzzCheck(f *testing.F) {
	testKeys(f)
	nonces := NewNonces([]byte("0123456789abcdef"), time.Minute, func() time.Time { return t0 })
	for _, o := range []ProofOptions{{Now: t0}, {Now: t0, AccessToken: testToken}, {Now: t0, Nonce: nonces.Current()}} {
		es, _ := NewProof(ecKey, "POST", testURL, o)
		ed, _ := NewProof(edKey, "POST", testURL, o)
		f.Add(es, o.AccessToken != "", o.Nonce != "")
		f.Add(ed, o.AccessToken != "", o.Nonce != "")
	}
	h := goodHeader(f, ecKey, "ES256")
	f.Add(craft(f, ecKey, "ES256", with(h, "jwk", with(jwkOf(f, ecKey), "d", "AAAA")), goodClaims()), false, false)
	f.Add(craft(f, ecKey, "ES256", h, with(goodClaims(), "htu", "https://AS.example:443/a/../oauth/token?q")), false, false)
	f.Add("e30.e30.c2ln", false, false)
	f.Add("", true, true)
	f.Fuzz(func(t *testing.T, proof string, withToken, withNonce bool) {
		req := Request{Method: "POST", URL: testURL}
		if withToken {
			req.AccessToken = testToken
		}
		var o Options
		if withNonce {
			o.Nonces = nonces
		}
		p, err := Check(proof, req, t0, o)
		if err != nil {
			if err.Code != CodeInvalidProof && err.Code != CodeUseNonce {
				t.Fatalf("code %q", err.Code)
			}
			if !slices.Contains(descriptions, err.Description) {
				t.Fatalf("description %q is not one of the fixed ones", err.Description)
			}
			if (err.Code == CodeUseNonce) != (err.Description == descNonceMissing || err.Description == descNonceInvalid) || err.Code == CodeUseNonce && !withNonce {
				t.Fatalf("code %q with %q (nonces %v)", err.Code, err.Description, withNonce)
			}
			if p != (Proof{}) {
				t.Fatalf("refused with %+v", p)
			}
			return
		}
		switch {
		case len(proof) > MaxProofSize:
			t.Fatalf("accepted %d bytes", len(proof))
		case !slices.Contains(DefaultAlgs, p.Alg):
			t.Fatalf("accepted alg %q", p.Alg)
		case len(p.JKT) != 43:
			t.Fatalf("JKT %q", p.JKT)
		case p.JTI == "" || len(p.JTI) > MaxJTILength:
			t.Fatalf("jti of %d bytes", len(p.JTI))
		case p.IssuedAt.Before(t0.Add(-DefaultMaxAge)) || p.IssuedAt.After(t0.Add(DefaultLeeway)):
			t.Fatalf("iat %v outside the window", p.IssuedAt)
		case withNonce && !nonces.Valid(p.Nonce):
			t.Fatalf("accepted nonce %q", p.Nonce)
		case strings.Count(proof, ".") != 2:
			t.Fatal("accepted a proof that is not three parts")
		}
	})
}
