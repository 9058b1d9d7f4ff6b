package oauth

import (
	"bytes"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// formParamsReference is the decoding formParams replaces: url.ParseQuery,
// then the empty values left out.
func formParamsReference(body []byte) (params, bool) {
	if bytes.Count(body, []byte("&")) >= maxParams {
		return nil, false
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, false
	}
	p := params{}
	for k, vs := range v {
		for _, s := range vs {
			if s != "" {
				p[k] = append(p[k], s)
			}
		}
	}
	return p, true
}

var formSamples = []string{
	"", "grant_type=client_credentials&scope=orders%3Aread",
	"a=1&a=2&b=&a=3&c", "a=1;b=2", "a=%zz", "%zz=1", "&&a=1&&", "a+b=c+d&resource=x&resource=y&resource=",
	"=1&a==2", "scope=a%20b+c",
}

func TestFormParams(t *testing.T) {
	for _, body := range formSamples {
		checkFormParams(t, body)
	}
}

func checkFormParams(t *testing.T, body string) {
	t.Helper()
	want, ok := formParamsReference([]byte(body))
	got, e := formParams([]byte(body))
	if ok != (e == nil) {
		t.Fatalf("%q: error %v; want ok=%v", body, e, ok)
	}
	if ok && !cmp.Equal(got, want, cmp.Comparer(func(a, b params) bool { return cmp.Equal(map[string][]string(a), map[string][]string(b)) })) {
		t.Errorf("%q: %v; want %v", body, got, want)
	}
}

func FuzzFormParams(f *testing.F) {
	for _, s := range formSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) { checkFormParams(t, body) })
}
