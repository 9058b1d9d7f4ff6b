package oauth

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"
)

// A NumericDate past what time.Time holds as Unix seconds wraps around
// into the distant past: an assertion "not valid before" such a date
// passed the nbf check. Such dates are refused, like any claim of the
// wrong type; dates a token can carry still parse.
func TestAssertionDatesBeyondRangeAreRefused(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := NewAssertionAuth(AssertionConfig{Now: func() time.Time { return now }})
	enc := base64.RawURLEncoding.EncodeToString
	token := func(extra string) string {
		claims := fmt.Sprintf(`{"iss":"c","sub":"c","aud":"https://auth.example","iat":%d,"exp":%d,"jti":"j"%s}`, now.Unix(), now.Unix()+60, extra)
		return enc([]byte(`{"alg":"ES256"}`)) + "." + enc([]byte(claims)) + "." + enc(make([]byte, 64))
	}
	for _, extra := range []string{
		`,"nbf":9223372036854775000`,
		`,"nbf":9.2e18`,
		`,"nbf":-9223372036854775000`,
	} {
		as, err := parseAssertion(token(extra))
		if err == nil && a.timely(now, as, 5*time.Minute) {
			t.Errorf("%s: accepted as timely (nbf read as %v)", extra, as.nbf)
		}
	}
	for _, extra := range []string{``, `,"nbf":1800000000`, `,"nbf":1799999999.5`} {
		as, err := parseAssertion(token(extra))
		if err != nil || !a.timely(now, as, 5*time.Minute) {
			t.Errorf("%s: refused (%v)", extra, err)
		}
	}
}
