package tokensource

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkTransport is the cost the Transport adds to an API request with
// a cached token: Bearer, and DPoP with its proof per request.
func BenchmarkTransport(b *testing.B) {
	ok := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	})
	for _, typ := range []string{"Bearer", "DPoP"} {
		b.Run(typ, func(b *testing.B) {
			s, err := New(Config{TokenURL: testTokenURL, ClientID: "a", ClientSecret: "s", DPoP: typ == "DPoP"})
			if err != nil {
				b.Fatal(err)
			}
			s.tok = &Token{AccessToken: "tok", TokenType: typ, Expiry: time.Now().Add(time.Hour), refreshAt: time.Now().Add(time.Hour)}
			t := s.Transport(ok)
			req, _ := http.NewRequest(http.MethodGet, "https://api.example/data?x=1", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := t.RoundTrip(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(resp, err)
				}
			}
		})
	}
}
