package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/server"
)

// connFlags locate the server and the admin credentials.
type connFlags struct {
	server, clientID, clientSecret, dataDir string
}

func (c *connFlags) register(f *flags) { c.registerAs(f, "") }

// registerAs registers the flags with a name prefix for the credential
// flags (commands whose own --client-id means something else use "admin-").
func (c *connFlags) registerAs(f *flags, prefix string) {
	f.StringVar(&c.server, "server", "", "server base URL (default: from <data-dir>/admin.json)")
	f.StringVar(&c.clientID, prefix+"client-id", "", "admin client id (default: from <data-dir>/admin.json)")
	f.StringVar(&c.clientSecret, prefix+"client-secret", "", "admin client secret (default: from <data-dir>/admin.json); prefer the environment variable")
	f.StringVar(&c.dataDir, "data-dir", "./m2mauth-data", "data directory holding admin.json")
	// The connection comes from the environment too; nothing else does.
	if f.envOnly == nil {
		f.envOnly = map[string]bool{}
	}
	for _, n := range []string{"server", prefix + "client-id", prefix + "client-secret", "data-dir"} {
		f.envOnly[n] = true
	}
	f.setEnv(prefix+"client-id", "M2MAUTH_ADMIN_CLIENT_ID")
	f.setEnv(prefix+"client-secret", "M2MAUTH_ADMIN_CLIENT_SECRET")
}

// parseConnect parses an admin command's arguments (minArgs to maxArgs
// positional ones) and logs in to the admin API.
func (c *connFlags) parseConnect(ctx context.Context, f *flags, args []string, minArgs, maxArgs int) (*adminClient, []string, error) {
	pos, err := f.parse(args, minArgs, maxArgs)
	if err != nil {
		return nil, nil, err
	}
	ac, err := c.connect(ctx)
	return ac, pos, err
}

// adminClient calls the admin API with a token of the admin client.
type adminClient struct {
	base  string
	http  *http.Client
	token string
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// connect resolves each setting from flags, then the environment (both done
// by flags.parse), then admin.json, and gets an admin token.
func (c *connFlags) connect(ctx context.Context) (*adminClient, error) {
	var creds server.AdminCredentials
	path := filepath.Join(c.dataDir, server.AdminFile)
	if c.server == "" || c.clientID == "" || c.clientSecret == "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("no admin credentials: pass --server, --client-id and --client-secret (or set M2MAUTH_SERVER, M2MAUTH_ADMIN_CLIENT_ID, M2MAUTH_ADMIN_CLIENT_SECRET), or run from the directory where the server created %s: %w", path, err)
		}
		if err := json.Unmarshal(b, &creds); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if c.server != "" {
		creds.Server = c.server
	}
	if c.clientID != "" {
		creds.ClientID = c.clientID
	}
	if c.clientSecret != "" {
		creds.ClientSecret = c.clientSecret
	}
	if creds.Server == "" || creds.ClientID == "" || creds.ClientSecret == "" {
		return nil, errors.New("incomplete admin credentials: need a server URL, a client id and a client secret")
	}
	ac := &adminClient{base: strings.TrimRight(creds.Server, "/"), http: httpClient}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}
	tok, err := requestToken(ctx, ac.base+"/admin/v1/token", creds.ClientID, creds.ClientSecret, form)
	if err != nil {
		return nil, fmt.Errorf("admin login: %w", err)
	}
	ac.token = tok.AccessToken
	return ac, nil
}

// tokenResponse is the RFC 6749 §5.1 success response.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// requestToken posts a client-credentials request with HTTP Basic auth.
func requestToken(ctx context.Context, endpoint, id, secret string, form url.Values) (*tokenResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		note := ""
		if resp.StatusCode >= 500 {
			note = requestIDNote(resp)
		}
		if json.Unmarshal(body, &oe) == nil && oe.Error != "" {
			return nil, fmt.Errorf("%s (HTTP %d): %s%s", oe.Error, resp.StatusCode, oe.Description, note)
		}
		return nil, fmt.Errorf("token endpoint answered HTTP %d%s", resp.StatusCode, note)
	}
	var tok tokenResponse
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return nil, errors.New("token endpoint answered 200 without an access token")
	}
	return &tok, nil
}

// problem is the admin API's RFC 9457 error body.
type problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// do sends a request to the admin API and decodes a JSON answer into out.
func (a *adminClient) do(ctx context.Context, method, path string, in, out any) error {
	return a.doIfMatch(ctx, method, path, "", in, out)
}

// doIfMatch is do with an If-Match precondition ("" for none).
func (a *adminClient) doIfMatch(ctx context.Context, method, path, ifMatch string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if ifMatch != "" {
		if !strings.HasPrefix(ifMatch, `"`) {
			ifMatch = `"` + ifMatch + `"`
		}
		req.Header.Set("If-Match", ifMatch)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 500 {
		return serverError(method, path, resp, b)
	}
	if resp.StatusCode >= 300 {
		var p problem
		if json.Unmarshal(b, &p) != nil || p.Status == 0 {
			return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
		}
		msg := p.Title
		if p.Detail != "" {
			msg += ": " + p.Detail
		}
		for _, fe := range p.Errors {
			msg += fmt.Sprintf("\n  %s: %s", fe.Field, fe.Message)
		}
		return errors.New(msg)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// serverError describes a 5xx answer: the status, what the problem body
// says, and the request id under which the server logged the cause.
func serverError(method, path string, resp *http.Response, body []byte) error {
	msg := fmt.Sprintf("%s %s: the server answered HTTP %d %s", method, path, resp.StatusCode, http.StatusText(resp.StatusCode))
	var p problem
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "") {
		detail := p.Detail
		if detail == "" {
			detail = p.Title
		}
		msg += ": " + detail
	}
	return errors.New(msg + requestIDNote(resp))
}

// requestIDNote names the answer's request id, if it has a printable one.
func requestIDNote(resp *http.Response) string {
	if id := resp.Header.Get("X-Request-Id"); plainID(id) {
		return " (request id " + id + ": the server's log has the cause under it)"
	}
	return ""
}

// plainID reports whether a request id is short and plain enough to print.
func plainID(s string) bool {
	return s != "" && len(s) <= 64 && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

// readAllLimited reads at most n bytes.
func readAllLimited(r io.Reader, n int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, n))
}
