package tokensource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

// GitHubActionsToken returns an assertion source (for Config.AssertionFunc)
// that asks GitHub Actions for the job's OIDC token, once per token
// request, with audience as its aud ("" for GitHub's default, the
// repository owner's URL). GitHub gives a job the request URL and bearer
// token in ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN
// when its workflow grants "permissions: id-token: write"; they are read
// at each call. client sends the request (nil: one with a 10 s timeout).
func GitHubActionsToken(audience string, client *http.Client) func(context.Context) (string, error) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return func(ctx context.Context) (string, error) {
		reqURL, bearer := os.Getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), os.Getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
		if reqURL == "" || bearer == "" {
			return "", errors.New("GitHub Actions OIDC: ACTIONS_ID_TOKEN_REQUEST_URL or ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set (the workflow needs \"permissions: id-token: write\")")
		}
		u, err := url.Parse(reqURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", errors.New("GitHub Actions OIDC: ACTIONS_ID_TOKEN_REQUEST_URL is not an http(s) URL")
		}
		if audience != "" {
			q := u.Query()
			q.Set("audience", audience)
			u.RawQuery = q.Encode()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return "", fmt.Errorf("GitHub Actions OIDC: %w", err)
		}
		req.Header.Set("Authorization", "bearer "+bearer)
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("GitHub Actions OIDC: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GitHub Actions OIDC: HTTP %d", resp.StatusCode)
		}
		var body struct {
			Value string `json:"value"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxAssertionSize)).Decode(&body); err != nil || body.Value == "" {
			return "", errors.New("GitHub Actions OIDC: an answer without a token")
		}
		return body.Value, nil
	}
}
