package oauth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

// jsonMembers is n distinct JSON members.
func jsonMembers(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"m%d":1`, i)
	}
	return b.String()
}

func TestParseTokenRequest(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name        string
		contentType string
		body        string
		authz       string
		query       string
		want        *Request
		wantCode    string
		wantStatus  int
	}{
		{name: "post form", contentType: form, body: "grant_type=client_credentials&client_id=a&client_secret=s&scope=x%20y",
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretPost, ClientID: "a", Secret: "s"}, Scopes: []string{"x", "y"}}},
		{name: "form with charset", contentType: form + "; charset=UTF-8", body: "grant_type=client_credentials&client_id=a&client_secret=s",
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretPost, ClientID: "a", Secret: "s"}}},
		{name: "basic", contentType: form, body: "grant_type=client_credentials", authz: basic("a", "s"),
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretBasic, ClientID: "a", Secret: "s"}}},
		{name: "basic scheme is case-insensitive", contentType: form, body: "grant_type=client_credentials", authz: "bAsIc " + base64.StdEncoding.EncodeToString([]byte("a:s")),
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretBasic, ClientID: "a", Secret: "s"}}},
		{name: "basic is form-url-decoded (RFC 6749 §2.3.1)", contentType: form, body: "grant_type=client_credentials", authz: basic("a%3Ab", "s%2B%25+x"),
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretBasic, ClientID: "a:b", Secret: "s+% x", RawID: "a%3Ab", RawSecret: "s%2B%25+x"}}},
		{name: "basic that is not form-url-encoded is read raw", contentType: form, body: "grant_type=client_credentials", authz: basic("a", "s%zz+1"),
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretBasic, ClientID: "a", Secret: "s%zz+1"}}},
		{name: "basic raw, the same in the body: the raw reading only", contentType: form, body: "grant_type=client_credentials&client_secret=s%2B1", authz: basic("a", "s+1"),
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretBasic, ClientID: "a", Secret: "s+1"}}},
		{name: "basic decoded, the same id in the body: the decoded reading only", contentType: form, body: "grant_type=client_credentials&client_id=svc+oneA", authz: basic("svc+one%41", "s"),
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretBasic, ClientID: "svc oneA", Secret: "s"}}},
		{name: "too many parameters", contentType: form, body: "grant_type=client_credentials" + strings.Repeat("&x=1", 64), wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "too many JSON members", contentType: "application/json", body: "{" + strings.TrimSuffix(strings.Repeat(`"x":1,`, 0), ",") + jsonMembers(65) + "}", wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "too many resources in a JSON array", contentType: "application/json", body: `{"grant_type":"client_credentials","resource":[` + strings.TrimSuffix(strings.Repeat(`"r",`, 101), ",") + `]}`, wantCode: CodeInvalidTarget, wantStatus: 400},
		{name: "basic and the same credentials in the body", contentType: form, body: "grant_type=client_credentials&client_id=a&client_secret=s", authz: basic("a", "s"),
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretBasic, ClientID: "a", Secret: "s"}}},
		{name: "basic and the same id in the body", contentType: form, body: "grant_type=client_credentials&client_id=a", authz: basic("a", "s"),
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretBasic, ClientID: "a", Secret: "s"}}},
		{name: "basic and a different secret in the body", contentType: form, body: "grant_type=client_credentials&client_id=a&client_secret=t", authz: basic("a", "s"),
			wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "basic and a different id in the body", contentType: form, body: "grant_type=client_credentials&client_id=b", authz: basic("a", "s"),
			wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "basic not base64", contentType: form, body: "grant_type=client_credentials", authz: "Basic !!!",
			wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "basic without colon", contentType: form, body: "grant_type=client_credentials", authz: "Basic " + base64.StdEncoding.EncodeToString([]byte("as")),
			wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "bearer header is not client authentication", contentType: form, body: "grant_type=client_credentials&client_id=a&client_secret=s", authz: "Bearer xyz",
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretPost, ClientID: "a", Secret: "s"}}},
		{name: "credentials in the query are ignored", contentType: form, body: "grant_type=client_credentials", query: "client_id=a&client_secret=s",
			want: &Request{GrantType: "client_credentials"}},
		{name: "json", contentType: "application/json", body: `{"grant_type":"client_credentials","client_id":"a","client_secret":"s","audience":"https://api","scope":"x"}`,
			want: &Request{GrantType: "client_credentials", Credentials: Credentials{Method: AuthSecretPost, ClientID: "a", Secret: "s"}, Scopes: []string{"x"}, Resources: []string{"https://api"}}},
		{name: "json resource array and unknown members", contentType: "application/json", body: `{"grant_type":"client_credentials","resource":["r1","r2"],"extra":{"a":[1]}}`,
			want: &Request{GrantType: "client_credentials", Resources: []string{"r1", "r2"}}},
		{name: "json duplicate member", contentType: "application/json", body: `{"grant_type":"client_credentials","client_id":"a","client_id":"b"}`,
			wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "json number for a known member", contentType: "application/json", body: `{"grant_type":"client_credentials","client_id":5}`,
			wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "json array body", contentType: "application/json", body: `["grant_type"]`, wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "json trailing data", contentType: "application/json", body: `{"grant_type":"client_credentials"} {}`, wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "json truncated", contentType: "application/json", body: `{"grant_type":`, wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "resource repeats", contentType: form, body: "grant_type=client_credentials&resource=r1&resource=r2&audience=r0",
			want: &Request{GrantType: "client_credentials", Resources: []string{"r0", "r1", "r2"}}},
		{name: "duplicate scope parameter", contentType: form, body: "grant_type=client_credentials&scope=a&scope=b", wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "duplicate grant_type", contentType: form, body: "grant_type=client_credentials&grant_type=client_credentials", wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "duplicate client_secret", contentType: form, body: "grant_type=client_credentials&client_secret=a&client_secret=b", wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "empty parameters are omitted", contentType: form, body: "grant_type=client_credentials&scope=&client_id=",
			want: &Request{GrantType: "client_credentials"}},
		{name: "repeated scopes are deduplicated", contentType: form, body: "grant_type=client_credentials&scope=a+b++a",
			want: &Request{GrantType: "client_credentials", Scopes: []string{"a", "b"}}},
		{name: "scopes with / : and .", contentType: form, body: "grant_type=client_credentials&scope=banking%2Fread+orders:write+a.b",
			want: &Request{GrantType: "client_credentials", Scopes: []string{"banking/read", "orders:write", "a.b"}}},
		{name: "scope with a quote", contentType: form, body: "grant_type=client_credentials&scope=a%22b", wantCode: CodeInvalidScope, wantStatus: 400},
		{name: "missing grant_type", contentType: form, body: "client_id=a", wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "missing content type", body: "grant_type=client_credentials", wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "text/plain", contentType: "text/plain", body: "grant_type=client_credentials", wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "multipart", contentType: "multipart/form-data; boundary=x", body: "--x--", wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "bad form encoding", contentType: form, body: "grant_type=%zz", wantCode: CodeInvalidRequest, wantStatus: 400},
		{name: "body too large", contentType: form, body: "grant_type=client_credentials&x=" + strings.Repeat("a", MaxBodyBytes), wantCode: CodeInvalidRequest, wantStatus: 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := "/oauth/token"
			if tc.query != "" {
				target += "?" + tc.query
			}
			r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(tc.body))
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, MaxBodyBytes)
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			got, e := parseTokenRequest(r)
			if tc.wantCode != "" {
				if e == nil {
					t.Fatalf("got %+v, want error %s", got, tc.wantCode)
				}
				if e.Code != tc.wantCode || e.Status != tc.wantStatus {
					t.Fatalf("error = %s/%d, want %s/%d", e.Code, e.Status, tc.wantCode, tc.wantStatus)
				}
				return
			}
			if e != nil {
				t.Fatalf("unexpected error %v", e)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseTokenRequest: no input makes the parser panic, and every error is
// a 4xx with an RFC 6749 code whose description holds only the characters
// RFC 6749 §5.2 allows.
func FuzzParseTokenRequest(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=a&client_secret=s&scope=x", basic("a", "s"))
	f.Add("application/json", `{"grant_type":"client_credentials","resource":["a","b"],"x":{"y":[1,2]}}`, "")
	f.Add("application/json", `{"a":1,"a":2}`, "Basic !!")
	f.Add("application/x-www-form-urlencoded; charset=utf-8", "scope=%22&resource=a&resource=b", "Basic Og==")
	f.Fuzz(func(t *testing.T, contentType, body, authz string) {
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Authorization", authz)
		req, e := parseTokenRequest(r)
		if e == nil {
			if req.GrantType == "" {
				t.Fatal("accepted a request without grant_type")
			}
			return
		}
		if e.Status < 400 || e.Status >= 500 || e.Code == "" {
			t.Fatalf("error %d %q for client input", e.Status, e.Code)
		}
		for _, c := range []byte(e.Description) {
			if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Fatalf("error_description %q has a character RFC 6749 §5.2 forbids", e.Description)
			}
		}
	})
}

// The token response is written by hand: it must be what encoding/json
// writes for it.
func TestTokenResponseJSON(t *testing.T) {
	for _, r := range []tokenResponse{
		{AccessToken: "eyJ.a.b", TokenType: "Bearer", ExpiresIn: 900, Scope: "orders:read"},
		{AccessToken: "eyJ.a.b", TokenType: "DPoP", ExpiresIn: 1, Scope: "", RefreshToken: "rt_<&>"},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); string(got) != string(want) {
			t.Errorf("appendJSON:\n got %s\nwant %s", got, want)
		}
	}
}
