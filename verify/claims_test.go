package verify

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// aud is a string or an array of strings (RFC 7519 §4.1.3); anything else
// is malformed, even when the audience is in it.
func TestAudienceMustBeStringOrStrings(t *testing.T) {
	k := getKeys(t)
	v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}, &clock{t: testNow}, JWKSOptions{})
	for _, tc := range []struct {
		aud  string
		want error // nil: accepted
	}{
		{`"` + testAudience + `"`, nil},
		{`["x","` + testAudience + `"]`, nil},
		{`null`, ErrMalformed},
		{`["` + testAudience + `",null]`, ErrMalformed},
		{`["` + testAudience + `",1]`, ErrMalformed},
		{`{"0":"` + testAudience + `"}`, ErrMalformed},
	} {
		t.Run(tc.aud, func(t *testing.T) {
			claims := fmt.Sprintf(`{"iss":%q,"aud":%s,"exp":%d}`, testIssuer, tc.aud, testNow.Add(time.Hour).Unix())
			c, err := v.Verify(context.Background(), sign(t, hdr("RS256", "rsa"), claims, "RS256", k.rsa))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if c != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, %v; want %v", c, err, tc.want)
			}
		})
	}
}

// A genuine token with a line break added (which encoding/base64 would
// skip) is another string, not the same token: it is refused, so that
// nothing keyed by the token string (a cache, a deny-list) sees two
// spellings of one token.
func TestVerifyRefusesLineBreaksInGenuineToken(t *testing.T) {
	k := getKeys(t)
	v := newTestVerifier(t, &fakeJWKS{body: k.publishedSet(t), cc: "max-age=300"}, &clock{t: testNow}, JWKSOptions{})
	tok := sign(t, hdr("RS256", "rsa"), mustJSON(goodClaims()), "RS256", k.rsa)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	for _, brk := range []string{"\n", "\r", "\r\n"} {
		forged := tok[:len(tok)-4] + brk + tok[len(tok)-4:]
		if c, err := v.Verify(context.Background(), forged); c != nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("token with %q in its signature: %v, %v; want ErrMalformed", brk, c, err)
		}
	}
}
