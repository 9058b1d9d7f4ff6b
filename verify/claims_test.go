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
