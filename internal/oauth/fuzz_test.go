package oauth

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
)

// FuzzJSONObjectMembers: no input panics the member scanner; what it
// accepts is a JSON object that encoding/json decodes to exactly the same
// members, and what it refuses is a 400 invalid_request whose description
// holds only the characters RFC 6749 §5.2 allows.
func FuzzJSONObjectMembers(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"grant_type":"client_credentials","client_id":"a"}`, `{"a":1,"a":2}`, `{"a":{"b":[1,{"c":null}]}} `,
		`{"a":"\u00e9\ud83d\ude00","b":-1.5e3,"c":true}`, `{"a":1}{}`, `[1]`, `{"a":1,}`, `{"a" 1}`, "{\"\xff\":1}", ` {"a":[]} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		members, e := JSONObjectMembers(body)
		if e != nil {
			if members != nil || e.Status != http.StatusBadRequest || e.Code != CodeInvalidRequest {
				t.Fatalf("error %d %q with members %v", e.Status, e.Code, members)
			}
			for _, c := range []byte(e.Description) {
				if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
					t.Fatalf("error_description %q has a character RFC 6749 §5.2 forbids", e.Description)
				}
			}
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(body, &want); err != nil || want == nil {
			t.Fatalf("accepted %q, which encoding/json refuses as an object: %v", body, err)
		}
		if len(want) != len(members) {
			t.Fatalf("%q: %d members, encoding/json finds %d", body, len(members), len(want))
		}
		for k, v := range want {
			if got, ok := members[k]; !ok || !bytes.Equal(got, v) {
				t.Fatalf("%q: member %q = %q, encoding/json says %q", body, k, got, v)
			}
		}
	})
}

// FuzzParseAssertion: whatever a client sends as client_assertion, parsing
// never panics, and an accepted assertion has an allowed algorithm, no
// embedded key, an exp and a client assertion's typ.
func FuzzParseAssertion(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhIiwic3ViIjoiYSIsImV4cCI6MX0.AAAA")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, raw string) {
		as, err := parseAssertion(raw)
		if err != nil {
			return
		}
		h := as.tok.Header
		if !slices.Contains(assertionAlgs, h.Alg) || h.JWK || h.JKU || h.X5C || h.X5U || as.exp.IsZero() {
			t.Fatalf("accepted %q: header %+v exp %v", raw, h, as.exp)
		}
	})
}
