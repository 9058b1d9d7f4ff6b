package jws

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// fuzzMaxSize is the size cap FuzzParse parses with.
const fuzzMaxSize = 4 << 10

// FuzzParse: no input panics Parse; what it refuses it refuses with
// ErrMalformed; and what it accepts is a canonical compact JWS whose
// header and claims encoding/json reads the same way: the same members,
// alg, kid and typ, the same embedded-key flags, no crit and no b64.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		compact(`{"alg":"RS256","kid":"k1","typ":"JWT"}`, `{"iss":"https://a.example","aud":["x","y"],"exp":1700000000}`, "sig"),
		compact(`{"alg":"ES256","jwk":{"kty":"EC"},"x5t#S256":"AAAA"}`, `{}`, "s"),
		compact(`{"alg":"RS256","ALG":"none"}`, `{}`, "s"),
		compact(`{"alg":"RS256","crit":["b64"],"b64":false}`, `{}`, "s"),
		compact(`{"alg":1}`, `{"sub":"\u0061"}`, "s"),
		"e30.e30.c2ln", "e30.e30.", "e30..c2ln", "e30=.e30.c2ln", "a.b.c.d", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := Parse(token, fuzzMaxSize)
		if err != nil {
			if tok != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %v, %v", tok, err)
			}
			return
		}
		if len(token) > fuzzMaxSize {
			t.Fatalf("accepted %d bytes, over the cap", len(token))
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 || string(tok.SigningInput) != parts[0]+"."+parts[1] {
			t.Fatalf("%q: signing input %q", token, tok.SigningInput)
		}
		var decoded [3][]byte
		for i, p := range parts {
			b, err := base64.RawURLEncoding.DecodeString(p)
			if err != nil || base64.RawURLEncoding.EncodeToString(b) != p || p == "" {
				t.Fatalf("%q: part %d %q is not canonical non-empty base64url", token, i, p)
			}
			decoded[i] = b
		}
		if !bytes.Equal(decoded[2], tok.Signature) {
			t.Fatalf("%q: signature %x, want %x", token, tok.Signature, decoded[2])
		}
		hdr, names, ok := stdMembers(decoded[0])
		if !ok || repeatedFold(names) {
			t.Fatalf("%q: header %q is not an object of distinct members", token, decoded[0])
		}
		for _, name := range []string{"crit", "b64"} {
			if _, ok := hdr[name]; ok {
				t.Fatalf("%q: accepted a %s header", token, name)
			}
		}
		for _, s := range []struct {
			name string
			got  string
		}{{"alg", tok.Header.Alg}, {"kid", tok.Header.Kid}, {"typ", tok.Header.Typ}} {
			var want string
			if raw, ok := hdr[s.name]; ok && json.Unmarshal(raw, &want) != nil {
				t.Fatalf("%q: header %s %s is not a string", token, s.name, raw)
			}
			if s.got != want {
				t.Fatalf("%q: %s %q, encoding/json says %q", token, s.name, s.got, want)
			}
		}
		has := func(names ...string) bool {
			for _, n := range names {
				if _, ok := hdr[n]; ok {
					return true
				}
			}
			return false
		}
		h := tok.Header
		if h.JWK != has("jwk") || h.JKU != has("jku") || h.X5C != has("x5c") || h.X5U != has("x5u") || h.X5T != has("x5t", "x5t#S256") {
			t.Fatalf("%q: flags %+v for header %s", token, h, decoded[0])
		}
		claims, names, ok := stdMembers(decoded[1])
		if !ok || repeatedFold(names) || len(claims) != len(tok.Claims) {
			t.Fatalf("%q: claims %q: %d members, encoding/json finds %d", token, decoded[1], len(tok.Claims), len(claims))
		}
		for _, m := range tok.Claims {
			raw, ok := tok.Claim(string(m.Name))
			if want := claims[string(m.Name)]; !ok || !bytes.Equal(raw, want) || !bytes.Equal(m.Value, want) {
				t.Fatalf("%q: claim %q = %q, encoding/json says %q", token, m.Name, raw, want)
			}
		}
	})
}
