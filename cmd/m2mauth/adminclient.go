package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/server"
)

// connFlags locate the server and the admin credentials, and the
// environment an admin command acts on.
type connFlags struct {
	server, clientID, clientSecret, dataDir string
	// env is the environment to manage ("": the one of the server URL).
	env string
	// deployment marks a command of the deployment itself (environment
	// …): it has no --env and logs in as a deployment admin.
	deployment bool
}

func (c *connFlags) register(f *flags) { c.registerAs(f, "") }

// registerAs registers the flags with a name prefix for the credential
// flags (commands whose own --client-id means something else use "admin-").
func (c *connFlags) registerAs(f *flags, prefix string) {
	f.StringVar(&c.server, "server", "", "server base URL (default: from <data-dir>/admin.json)")
	f.StringVar(&c.clientID, prefix+"client-id", "", "admin client id (default: from <data-dir>/admin.json)")
	f.StringVar(&c.clientSecret, prefix+"client-secret", "", "admin client secret (default: from <data-dir>/admin.json); prefer the environment variable")
	f.StringVar(&c.dataDir, "data-dir", "./m2mauth-data", "data directory holding admin.json")
	names := []string{"server", prefix + "client-id", prefix + "client-secret", "data-dir"}
	if !c.deployment {
		f.StringVar(&c.env, "env", "", envFlagHelp)
		names = append(names, "env")
		f.setEnv("env", "M2MAUTH_ENV")
	}
	// The connection comes from the environment too; nothing else does.
	if f.envOnly == nil {
		f.envOnly = map[string]bool{}
	}
	for _, n := range names {
		f.envOnly[n] = true
	}
	f.setEnv(prefix+"client-id", "M2MAUTH_ADMIN_CLIENT_ID")
	f.setEnv(prefix+"client-secret", "M2MAUTH_ADMIN_CLIENT_SECRET")
}

// envFlagHelp documents --env, the connection setting every admin command has.
const envFlagHelp = `the environment to manage (default: the one --server names; "default": the deployment's own).
      With a deployment admin's credentials the command acts on NAME's admin API; an
      environment admin's credentials work for their own environment (--server its URL)`

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

// adminClient calls the admin API of one environment with an admin token.
type adminClient struct {
	// base is the URL the admin API is under (base+"/admin/v1/…"): the
	// environment's URL.
	base string
	// root is the deployment's URL (the default environment's), where the
	// environments are managed, when the token is a deployment admin's
	// ("" otherwise); env names the environment targeted ("" when none was
	// named: the one base is).
	root, env string
	http      *http.Client
	token     string
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// The admin API's scopes: every admin holds "admin"; a deployment admin
// (a client of the default environment) also holds "deployment".
const (
	adminScope      = "admin"
	deploymentScope = "deployment"
)

// credentials resolves each setting from flags, then the environment (both
// done by flags.parse), then admin.json.
func (c *connFlags) credentials() (server.AdminCredentials, error) {
	var creds server.AdminCredentials
	path := filepath.Join(c.dataDir, server.AdminFile)
	if c.server == "" || c.clientID == "" || c.clientSecret == "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return creds, fmt.Errorf("no admin credentials: pass --server, --client-id and --client-secret (or set M2MAUTH_SERVER, M2MAUTH_ADMIN_CLIENT_ID, M2MAUTH_ADMIN_CLIENT_SECRET), or run from the directory where the server created %s: %w", path, err)
		}
		if err := json.Unmarshal(b, &creds); err != nil {
			return creds, fmt.Errorf("%s: %w", path, err)
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
		return creds, errors.New("incomplete admin credentials: need a server URL, a client id and a client secret")
	}
	creds.Server = strings.TrimRight(creds.Server, "/")
	return creds, nil
}

// login gets a token of the admin API at creds.Server with the scope.
// (admin.json of older versions says scope "admin": the scope asked for is
// always the one the command needs.)
func login(ctx context.Context, creds server.AdminCredentials, scope string) (*adminClient, error) {
	ac := &adminClient{base: creds.Server, http: httpClient}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	tok, err := requestToken(ctx, ac.base+"/admin/v1/token", creds.ClientID, creds.ClientSecret, form)
	if err != nil {
		return nil, fmt.Errorf("admin login: %w", err)
	}
	ac.token = tok.AccessToken
	if strings.Contains(" "+scope+" ", " "+deploymentScope+" ") {
		ac.root = ac.base
	}
	return ac, nil
}

// errNotDeployment marks admin credentials that are not a deployment
// admin's.
var errNotDeployment = errors.New("not a deployment admin")

// connectDeployment logs in as a deployment admin, at the deployment's
// (the default environment's) admin API.
func (c *connFlags) connectDeployment(ctx context.Context) (*adminClient, error) {
	creds, err := c.credentials()
	if err != nil {
		return nil, err
	}
	ac, err := login(ctx, creds, adminScope+" "+deploymentScope)
	if isInvalidScope(err) {
		return nil, fmt.Errorf("the admin client %s is %w (it holds no %q scope on the admin API of %s): environments are managed with a deployment admin's credentials", creds.ClientID, errNotDeployment, deploymentScope, creds.Server)
	}
	return ac, err
}

// connect logs in to the admin API of the environment the flags name: with
// no --env (or --env default), the one of the server URL, as before
// environments. With --env NAME, an environment admin's credentials for
// NAME (the server URL is NAME's) are used as they are; otherwise they must
// be a deployment admin's: the command learns NAME's issuer from the
// deployment's admin API and sends its requests to <issuer>/admin/v1/….
func (c *connFlags) connect(ctx context.Context) (*adminClient, error) {
	ac, err := c.loginFor(ctx, c.env)
	if err != nil || ac.root == "" {
		return ac, err
	}
	return ac.enter(ctx, c.env)
}

// loginFor logs in for environment name: as the admin of the server URL's
// environment when name is "" or "default", or when the server URL is
// name's; else as a deployment admin, at the deployment's admin API (the
// client's root is then set).
func (c *connFlags) loginFor(ctx context.Context, name string) (*adminClient, error) {
	creds, err := c.credentials()
	if err != nil {
		return nil, err
	}
	if name == "" || name == defaultEnv {
		return login(ctx, creds, adminScope)
	}
	if err := checkEnvName(name); err != nil {
		return nil, fmt.Errorf("--env: %w", err)
	}
	own := func() (*adminClient, error) {
		ac, err := login(ctx, creds, adminScope)
		if ac != nil {
			ac.env = name
		}
		return ac, err
	}
	if pathEnv(creds.Server) == name {
		return own() // NAME's own URL (path addressing): its own admin
	}
	ac, err := login(ctx, creds, adminScope+" "+deploymentScope)
	if isInvalidScope(err) {
		if hostEnv(creds.Server) == name {
			return own() // NAME's own URL (host addressing)
		}
		return nil, fmt.Errorf("--env %s: the admin client %s is %w (it holds no %q scope on the admin API of %s): use a deployment admin's credentials, or %s's own admin credentials with --server set to %s's URL",
			name, creds.ClientID, errNotDeployment, deploymentScope, creds.Server, name, name)
	}
	return ac, err
}

// enter returns a client of environment name's admin API, with a's
// deployment token.
func (a *adminClient) enter(ctx context.Context, name string) (*adminClient, error) {
	if name == defaultEnv {
		return a.deploymentClient(), nil
	}
	res, _, err := a.environment(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("environment %s: %w", name, err)
	}
	return a.in(res), nil
}

// in returns a client of the environment's admin API with a's token. An
// environment addressed by path under the deployment's issuer is reached
// under the URL a reached the deployment at (the issuer may be a public
// name the command's host does not use).
func (a *adminClient) in(res environmentResource) *adminClient {
	b := *a
	b.env = res.Name
	b.base = strings.TrimRight(res.Issuer, "/")
	if iss := tokenIssuer(a.token); iss != "" && a.root != "" {
		if rest, ok := strings.CutPrefix(b.base, strings.TrimRight(iss, "/")+"/e/"); ok {
			b.base = a.root + "/e/" + rest
		}
	}
	return &b
}

// deploymentClient returns a client of the deployment's (the default
// environment's) admin API, with a's deployment token.
func (a *adminClient) deploymentClient() *adminClient {
	b := *a
	b.base, b.env = a.root, ""
	return &b
}

// tokenIssuer reads the iss of a JWT without checking it: only to tell
// where the server that just issued it lives ("" when unreadable).
func tokenIssuer(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &claims) != nil {
		return ""
	}
	return claims.Iss
}

// pathEnv is the environment a URL addresses by path (…/e/NAME), or "".
func pathEnv(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return ""
	}
	i := strings.LastIndex(u.Path, "/e/")
	if i < 0 || strings.Contains(u.Path[i+3:], "/") {
		return ""
	}
	return u.Path[i+3:]
}

// hostEnv is the first label of a URL's host: the environment when the
// URL addresses one by host (NAME.auth.example.com).
func hostEnv(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return ""
	}
	label, _, _ := strings.Cut(u.Hostname(), ".")
	return label
}

// tokenError is an RFC 6749 §5.2 error answer of the token endpoint.
type tokenError struct {
	code, msg string
}

func (e *tokenError) Error() string { return e.msg }

// isInvalidScope reports whether err is the token endpoint's invalid_scope:
// the client does not hold a scope it asked for.
func isInvalidScope(err error) bool {
	var te *tokenError
	return errors.As(err, &te) && te.code == "invalid_scope"
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
	// A 503 asking for a short wait (right after the client's tokens were
	// revoked, the server asks for the rest of that second) is waited out
	// and asked again, twice at most.
	for attempt := 0; ; attempt++ {
		tok, wait, err := requestTokenOnce(ctx, endpoint, id, secret, form)
		if err == nil || wait <= 0 || wait > maxTokenWait || attempt == 2 {
			return tok, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, err
		}
	}
}

// maxTokenWait is the longest Retry-After of a 503 the CLI waits out.
const maxTokenWait = 2 * time.Second

// requestTokenOnce asks once; wait is the Retry-After of a 503.
func requestTokenOnce(ctx context.Context, endpoint, id, secret string, form url.Values) (_ *tokenResponse, wait time.Duration, _ error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusServiceUnavailable {
			if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
				wait = time.Duration(secs) * time.Second
			}
		}
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		note := ""
		if resp.StatusCode >= 500 {
			note = requestIDNote(resp)
		}
		if json.Unmarshal(body, &oe) == nil && oe.Error != "" {
			return nil, wait, &tokenError{code: oe.Error, msg: fmt.Sprintf("%s (HTTP %d): %s%s", oe.Error, resp.StatusCode, oe.Description, note)}
		}
		return nil, wait, fmt.Errorf("token endpoint answered HTTP %d%s", resp.StatusCode, note)
	}
	var tok tokenResponse
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return nil, 0, errors.New("token endpoint answered 200 without an access token")
	}
	return &tok, 0, nil
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
	_, err := a.send(ctx, method, path, ifMatch, in, out)
	return err
}

// send is doIfMatch that also returns the answer's ETag (quotes removed).
func (a *adminClient) send(ctx context.Context, method, path, ifMatch string, in, out any) (string, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return "", err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return "", err
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
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode >= 500 {
		return "", &apiError{resp.StatusCode, serverError(method, path, resp, b).Error()}
	}
	if resp.StatusCode >= 300 {
		var p problem
		if json.Unmarshal(b, &p) != nil || p.Status == 0 {
			return "", &apiError{resp.StatusCode, fmt.Sprintf("%s %s: HTTP %d", method, path, resp.StatusCode)}
		}
		msg := p.Title
		if p.Detail != "" {
			msg += ": " + p.Detail
		}
		for _, fe := range p.Errors {
			msg += fmt.Sprintf("\n  %s: %s", fe.Field, fe.Message)
		}
		return "", &apiError{resp.StatusCode, msg}
	}
	etag := strings.TrimPrefix(strings.Trim(resp.Header.Get("ETag"), `"`), `W/"`)
	if out != nil {
		return etag, json.Unmarshal(b, out)
	}
	return etag, nil
}

// apiError is an error answer of the admin API.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// isStatus reports whether err is an admin API answer with that status.
func isStatus(err error, status int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status == status
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
