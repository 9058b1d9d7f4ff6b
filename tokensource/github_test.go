package tokensource

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestGitHubActionsToken(t *testing.T) {
	const reqToken = "gh-request-token-secret"
	var status int
	var gotURL, gotAuth string
	idp := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		gotURL, gotAuth = r.URL.String(), r.Header.Get("Authorization")
		body := `{"count":1,"value":"` + jwtLike(`{"sub":"repo:octo/app:ref:refs/heads/main"}`) + `"}`
		if status != 200 {
			body = `{"message":"` + reqToken + `"}`
		}
		return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}, nil
	})}
	src := GitHubActionsToken("https://auth.example", idp)

	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "")
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
	if _, err := src(t.Context()); err == nil || !strings.Contains(err.Error(), "id-token: write") {
		t.Fatalf("outside GitHub Actions: %v", err)
	}

	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "https://pipelines.actions.example/_apis/idtoken?api-version=2.0")
	t.Setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", reqToken)
	srv := &tokenServer{expiresIn: 900}
	s := newSource(t, srv, func(c *Config) { c.ClientID, c.ClientSecret, c.AssertionFunc = "", "", src })
	status = 200
	if tok, err := s.Token(t.Context()); err != nil || tok.AccessToken != "tok-1" {
		t.Fatalf("%v %v", tok, err)
	}
	if gotURL != "https://pipelines.actions.example/_apis/idtoken?api-version=2.0&audience=https%3A%2F%2Fauth.example" || gotAuth != "bearer "+reqToken {
		t.Fatalf("request %s with %q", gotURL, gotAuth)
	}
	if f := srv.forms[0]; f.Get("client_assertion") != jwtLike(`{"sub":"repo:octo/app:ref:refs/heads/main"}`) || f.Get("client_assertion_type") != AssertionTypeJWTBearer {
		t.Fatalf("form %v", f)
	}

	// Refused: the error says so, once, without the request token.
	status = 403
	s.Invalidate(s.tok)
	_, err := s.Token(t.Context())
	if err == nil || !strings.Contains(err.Error(), "GitHub Actions OIDC: HTTP 403") || strings.Contains(err.Error(), reqToken) || srv.count() != 1 {
		t.Fatalf("refused: %v after %d token requests", err, srv.count())
	}
	var re *RetrieveError
	if errors.As(err, &re) {
		t.Fatalf("a GitHub error reported as the token endpoint's: %v", err)
	}
}
