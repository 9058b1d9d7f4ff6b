package console_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/clientcache"
	"github.com/m2mauth/m2mauth/internal/console"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

// envHarness serves the console alone over two environments of one
// database, "default" and "staging" (path addressed: the console is at the
// host's root, the entry environment is the default one). Its
// environments are built here, as the server's resolver would.
type envHarness struct {
	t       *testing.T
	url     string
	db      store.Store // the default environment's
	hasher  *secret.Hasher
	console *console.Console
	signer  *fakeSigner

	mu   sync.Mutex
	envs map[string]*env.Env
}

func newEnvHarness(t *testing.T) *envHarness {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "m2mauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	h := &envHarness{t: t, db: db, hasher: secret.NewHasher(key), envs: map[string]*env.Env{}, signer: &fakeSigner{secrets: map[string]string{}}}
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	now := time.Now()
	if err := db.CreateEnvironment(ctx, store.Environment{Name: "staging", DisplayName: "Staging area", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"default", "staging"} {
		e := h.env(name)
		if err := e.Store.CreateAPI(ctx, store.API{ID: secret.NewID("api_"), Identifier: e.AdminAudience(), Name: "Admin API",
			Scopes: []string{admin.AdminScope, "deployment"}, Builtin: "admin", CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	h.console, err = console.New(console.Config{
		// One service for every environment: ctxStore makes it act in
		// the environment of each call's context.
		Service: admin.NewService(ctxStore{db}, h.hasher, time.Now, nil),
		Envs:    h, Keys: noKeys{}, SignIn: h.signer,
		Idle: 30 * time.Minute, MaxAge: 8 * time.Hour, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, r := range h.console.Routes() {
		mux.Handle(r.Pattern, r.Handler)
	}
	// Every request comes in on the default environment (the host).
	handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(env.NewContext(r.Context(), h.env("default"))))
	})
	return h
}

// env builds (once) the environment named, whether or not it exists.
func (h *envHarness) env(name string) *env.Env {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.envs[name]; e != nil {
		return e
	}
	st := h.db.InEnv(name)
	iss := h.url
	if name != store.DefaultEnv {
		iss += "/e/" + name
	}
	e := &env.Env{Name: name, Issuer: iss, Store: st, Hasher: h.hasher, Clients: clientcache.New(st, 0, 100, time.Now)}
	h.envs[name] = e
	return e
}

// Env implements env.Resolver: the environments the database holds.
func (h *envHarness) Env(ctx context.Context, name string) (*env.Env, error) {
	if _, err := h.db.GetEnvironment(ctx, name); err != nil {
		return nil, fmt.Errorf("environment %s: %w", name, err)
	}
	return h.env(name), nil
}

// adminClient creates an admin client in the environment named (with the
// deployment scope too when deployment), with a secret the fake signer
// accepts.
func (h *envHarness) adminClient(envName string, deployment bool) (id, sec string) {
	h.t.Helper()
	e := h.env(envName)
	scopes := []string{admin.AdminScope}
	if deployment {
		scopes = append(scopes, "deployment")
	}
	id, sec = secret.NewID("m2mc_"), secret.NewID("sec_")
	if err := e.Store.CreateClient(context.Background(), store.Client{ID: id, Name: "admin of " + envName,
		Grants: []store.Grant{{Audience: e.AdminAudience(), Scopes: scopes}}}); err != nil {
		h.t.Fatal(err)
	}
	h.signer.mu.Lock()
	h.signer.secrets[envName+"/"+id] = sec
	h.signer.mu.Unlock()
	return id, sec
}

// app creates a plain application in the environment named.
func (h *envHarness) app(envName, name string) string {
	h.t.Helper()
	id := secret.NewID("m2mc_")
	if err := h.env(envName).Store.CreateClient(context.Background(), store.Client{ID: id, Name: name}); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// envBrowser is a browser on the harness's console.
type envBrowser struct {
	h    *envHarness
	http *http.Client
	csrf string
	env  string // of the last page's forms
}

func (h *envHarness) browser() *envBrowser {
	jar, _ := cookiejar.New(nil)
	return &envBrowser{h: h, http: &http.Client{Jar: jar}}
}

var envFormField = regexp.MustCompile(`name="env" value="([^"]*)"`)

func (b *envBrowser) read(resp *http.Response, err error) (int, string, string) {
	b.h.t.Helper()
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	page := string(body)
	if m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page); m != nil {
		b.csrf = m[1]
	}
	if m := envFormField.FindStringSubmatch(page); m != nil {
		b.env = m[1]
	}
	return resp.StatusCode, page, resp.Request.URL.RequestURI()
}

func (b *envBrowser) get(path string) (int, string, string) {
	b.h.t.Helper()
	return b.read(b.http.Get(b.h.url + path))
}

// post submits a form with the last page's CSRF token and environment
// unless the form has them.
func (b *envBrowser) post(path string, form url.Values) (int, string, string) {
	b.h.t.Helper()
	f := url.Values{"csrf": {b.csrf}, "env": {b.env}}
	for k, v := range form {
		f[k] = v
	}
	return b.read(b.http.PostForm(b.h.url+path, f))
}

// signIn signs in with the form, in the environment named.
func (b *envBrowser) signIn(envName, id, sec string) (int, string, string) {
	b.h.t.Helper()
	return b.read(b.http.PostForm(b.h.url+"/console/sign-in", url.Values{"environment": {envName}, "client_id": {id}, "client_secret": {sec}}))
}

// cookie returns the session cookie's value.
func (b *envBrowser) cookie() string {
	u, _ := url.Parse(b.h.url)
	for _, c := range b.http.Jar.Cookies(u) {
		if c.Name == "m2mauth-console" {
			return c.Value
		}
	}
	return ""
}

func (b *envBrowser) setCookie(value string) {
	u, _ := url.Parse(b.h.url)
	b.http.Jar.SetCookies(u, []*http.Cookie{{Name: "m2mauth-console", Value: value, Path: "/"}})
}

// viewing is the environment a page's header shows ("" if none).
func viewing(page string) string { return optionalText(page, "env-name") }

// fakeSigner accepts the secrets of the harness's admin clients, in
// their environment only, and records where it was asked.
type fakeSigner struct {
	mu      sync.Mutex
	secrets map[string]string // "env/id" → secret
	asked   []string          // the environments of the calls
}

func (f *fakeSigner) SignIn(r *http.Request, clientID, sec string) (store.Client, *oauth.Error) {
	e := env.FromContext(r.Context())
	f.mu.Lock()
	f.asked = append(f.asked, e.Name)
	want, ok := f.secrets[e.Name+"/"+clientID]
	f.mu.Unlock()
	if !ok || want != sec {
		return store.Client{}, &oauth.Error{Status: http.StatusUnauthorized, Code: "invalid_client"}
	}
	cl, err := e.Store.GetClient(r.Context(), clientID)
	if err != nil {
		return store.Client{}, &oauth.Error{Status: http.StatusInternalServerError, Err: err}
	}
	return cl, nil
}

type noKeys struct{}

func (noKeys) List(context.Context, time.Duration) ([]keys.KeyInfo, error) { return nil, nil }
func (noKeys) Rotate(context.Context, string) (store.SigningKey, error) {
	return store.SigningKey{}, errors.New("no keys here")
}
func (noKeys) Revoke(context.Context, string) (string, error) { return "", errors.New("no keys here") }

// ctxStore is a store.Store acting in the environment of each call's
// context (the default one's without): the console's one admin.Service
// then acts in the environment a page views.
type ctxStore struct{ store.Store }

func (s ctxStore) of(ctx context.Context) store.Store {
	if e := env.FromContext(ctx); e != nil {
		return e.Store
	}
	return s.Store
}

func (s ctxStore) CreateAPI(ctx context.Context, api store.API) error {
	return s.of(ctx).CreateAPI(ctx, api)
}

func (s ctxStore) GetAPI(ctx context.Context, identifier string) (store.API, error) {
	return s.of(ctx).GetAPI(ctx, identifier)
}

func (s ctxStore) ListAPIs(ctx context.Context, opts store.ListOptions) ([]store.API, error) {
	return s.of(ctx).ListAPIs(ctx, opts)
}

func (s ctxStore) UpdateAPI(ctx context.Context, identifier string, revokeBefore time.Time, fn func(*store.API) error) (store.API, error) {
	return s.of(ctx).UpdateAPI(ctx, identifier, revokeBefore, fn)
}

func (s ctxStore) DeleteAPI(ctx context.Context, identifier string, force bool, revokeBefore time.Time) error {
	return s.of(ctx).DeleteAPI(ctx, identifier, force, revokeBefore)
}

func (s ctxStore) CreateClient(ctx context.Context, c store.Client) error {
	return s.of(ctx).CreateClient(ctx, c)
}

func (s ctxStore) GetClient(ctx context.Context, id string) (store.Client, error) {
	return s.of(ctx).GetClient(ctx, id)
}

func (s ctxStore) ClientIDs(ctx context.Context, fn func(id string)) error {
	return s.of(ctx).ClientIDs(ctx, fn)
}

func (s ctxStore) GrantHolderIDs(ctx context.Context, audience string, fn func(id string)) error {
	return s.of(ctx).GrantHolderIDs(ctx, audience, fn)
}

func (s ctxStore) ListClients(ctx context.Context, opts store.ListOptions) ([]store.Client, error) {
	return s.of(ctx).ListClients(ctx, opts)
}

func (s ctxStore) UpdateClient(ctx context.Context, id string, fn func(*store.Client) error) (store.Client, error) {
	return s.of(ctx).UpdateClient(ctx, id, fn)
}

func (s ctxStore) DeleteClient(ctx context.Context, id string, at time.Time) error {
	return s.of(ctx).DeleteClient(ctx, id, at)
}

func (s ctxStore) CreateRefreshToken(ctx context.Context, t store.RefreshToken) error {
	return s.of(ctx).CreateRefreshToken(ctx, t)
}

func (s ctxStore) RedeemRefreshToken(ctx context.Context, hash string, now time.Time, next func(store.RefreshToken) (store.RefreshToken, error)) (store.RefreshToken, error) {
	return s.of(ctx).RedeemRefreshToken(ctx, hash, now, next)
}

func (s ctxStore) DeleteExpiredRefreshTokens(ctx context.Context, before time.Time) (int, error) {
	return s.of(ctx).DeleteExpiredRefreshTokens(ctx, before)
}

func (s ctxStore) GetRefreshToken(ctx context.Context, hash string) (store.RefreshToken, error) {
	return s.of(ctx).GetRefreshToken(ctx, hash)
}

func (s ctxStore) RevokeRefreshFamily(ctx context.Context, familyID string, now time.Time) error {
	return s.of(ctx).RevokeRefreshFamily(ctx, familyID, now)
}

func (s ctxStore) RevokeClientRefreshTokens(ctx context.Context, clientID string, now time.Time) error {
	return s.of(ctx).RevokeClientRefreshTokens(ctx, clientID, now)
}

func (s ctxStore) RevokeToken(ctx context.Context, r store.Revocation) error {
	return s.of(ctx).RevokeToken(ctx, r)
}

func (s ctxStore) IsRevoked(ctx context.Context, jti string) (bool, error) {
	return s.of(ctx).IsRevoked(ctx, jti)
}

func (s ctxStore) ListRevocations(ctx context.Context, now time.Time, after *store.Revocation, limit int) ([]store.Revocation, error) {
	return s.of(ctx).ListRevocations(ctx, now, after, limit)
}

func (s ctxStore) DeleteExpiredRevocations(ctx context.Context, before time.Time) (int, error) {
	return s.of(ctx).DeleteExpiredRevocations(ctx, before)
}

func (s ctxStore) FederatedIdentities(ctx context.Context) (map[string][]store.FederatedIdentity, error) {
	return s.of(ctx).FederatedIdentities(ctx)
}

func (s ctxStore) CreateTrustPolicy(ctx context.Context, p store.TrustPolicy) error {
	return s.of(ctx).CreateTrustPolicy(ctx, p)
}

func (s ctxStore) GetTrustPolicy(ctx context.Context, name string) (store.TrustPolicy, error) {
	return s.of(ctx).GetTrustPolicy(ctx, name)
}

func (s ctxStore) ListTrustPolicies(ctx context.Context) ([]store.TrustPolicy, error) {
	return s.of(ctx).ListTrustPolicies(ctx)
}

func (s ctxStore) UpdateTrustPolicy(ctx context.Context, name string, fn func(*store.TrustPolicy) error) (store.TrustPolicy, error) {
	return s.of(ctx).UpdateTrustPolicy(ctx, name, fn)
}

func (s ctxStore) DeleteTrustPolicy(ctx context.Context, name string) error {
	return s.of(ctx).DeleteTrustPolicy(ctx, name)
}

func (s ctxStore) UseAssertionID(ctx context.Context, key string, expires time.Time) (fresh bool, err error) {
	return s.of(ctx).UseAssertionID(ctx, key, expires)
}

func (s ctxStore) DeleteExpiredAssertionIDs(ctx context.Context, before time.Time) (int, error) {
	return s.of(ctx).DeleteExpiredAssertionIDs(ctx, before)
}

func (s ctxStore) TouchSecrets(ctx context.Context, lastUsed map[string]time.Time) error {
	return s.of(ctx).TouchSecrets(ctx, lastUsed)
}

func (s ctxStore) AddTokenUsage(ctx context.Context, counts []store.UsageCount) error {
	return s.of(ctx).AddTokenUsage(ctx, counts)
}

func (s ctxStore) TokenUsageByHour(ctx context.Context, since time.Time) ([]store.UsageCount, error) {
	return s.of(ctx).TokenUsageByHour(ctx, since)
}

func (s ctxStore) TopTokenClients(ctx context.Context, since time.Time, limit int) ([]store.UsageCount, error) {
	return s.of(ctx).TopTokenClients(ctx, since, limit)
}

func (s ctxStore) TokenUsage(ctx context.Context, since time.Time, clientIDs []string) ([]store.UsageCount, error) {
	return s.of(ctx).TokenUsage(ctx, since, clientIDs)
}

func (s ctxStore) DeleteTokenUsage(ctx context.Context, before time.Time) (int, error) {
	return s.of(ctx).DeleteTokenUsage(ctx, before)
}

func (s ctxStore) Counts(ctx context.Context) (store.Counts, error) {
	return s.of(ctx).Counts(ctx)
}

func (s ctxStore) ExpiringSecrets(ctx context.Context, from, to time.Time, limit int) ([]store.SecretExpiry, error) {
	return s.of(ctx).ExpiringSecrets(ctx, from, to, limit)
}

func (s ctxStore) CreateConsoleSession(ctx context.Context, cs store.ConsoleSession) error {
	return s.of(ctx).CreateConsoleSession(ctx, cs)
}

func (s ctxStore) GetConsoleSession(ctx context.Context, idHash string, now time.Time, idle time.Duration) (store.ConsoleSession, error) {
	return s.of(ctx).GetConsoleSession(ctx, idHash, now, idle)
}

func (s ctxStore) TouchConsoleSession(ctx context.Context, idHash string, t time.Time) error {
	return s.of(ctx).TouchConsoleSession(ctx, idHash, t)
}

func (s ctxStore) SetConsoleSessionViewing(ctx context.Context, idHash, viewing string) error {
	return s.of(ctx).SetConsoleSessionViewing(ctx, idHash, viewing)
}

func (s ctxStore) DeleteConsoleSession(ctx context.Context, idHash string) error {
	return s.of(ctx).DeleteConsoleSession(ctx, idHash)
}

func (s ctxStore) DeleteExpiredConsoleSessions(ctx context.Context, now time.Time, idle time.Duration) (int, error) {
	return s.of(ctx).DeleteExpiredConsoleSessions(ctx, now, idle)
}

func (s ctxStore) CreateConsoleLink(ctx context.Context, hash, clientID, viewing string, expires time.Time) error {
	return s.of(ctx).CreateConsoleLink(ctx, hash, clientID, viewing, expires)
}

func (s ctxStore) UseConsoleLink(ctx context.Context, hash string, now time.Time) (clientID, viewing string, err error) {
	return s.of(ctx).UseConsoleLink(ctx, hash, now)
}

func (s ctxStore) DeleteExpiredConsoleLinks(ctx context.Context, before time.Time) (int, error) {
	return s.of(ctx).DeleteExpiredConsoleLinks(ctx, before)
}

func (s ctxStore) CreateSigningKey(ctx context.Context, k store.SigningKey) (created bool, err error) {
	return s.of(ctx).CreateSigningKey(ctx, k)
}

func (s ctxStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	return s.of(ctx).ListSigningKeys(ctx)
}

func (s ctxStore) UpdateSigningKeys(ctx context.Context, fn func(keys []store.SigningKey, meta func(string) string) (store.KeyUpdate, error)) error {
	return s.of(ctx).UpdateSigningKeys(ctx, fn)
}

func (s ctxStore) InitBootstrap(ctx context.Context, b store.Bootstrap) (created bool, err error) {
	return s.of(ctx).InitBootstrap(ctx, b)
}

func (s ctxStore) GetMeta(ctx context.Context, key string) (string, error) {
	return s.of(ctx).GetMeta(ctx, key)
}

func (s ctxStore) EnsureMeta(ctx context.Context, key, value string) (string, error) {
	return s.of(ctx).EnsureMeta(ctx, key, value)
}

func (s ctxStore) CreateEnvironment(ctx context.Context, e store.Environment) error {
	return s.of(ctx).CreateEnvironment(ctx, e)
}

func (s ctxStore) GetEnvironment(ctx context.Context, name string) (store.Environment, error) {
	return s.of(ctx).GetEnvironment(ctx, name)
}

func (s ctxStore) ListEnvironments(ctx context.Context, opts store.ListOptions) ([]store.Environment, error) {
	return s.of(ctx).ListEnvironments(ctx, opts)
}

func (s ctxStore) UpdateEnvironment(ctx context.Context, name string, fn func(*store.Environment) error) (store.Environment, error) {
	return s.of(ctx).UpdateEnvironment(ctx, name, fn)
}

func (s ctxStore) DeleteEnvironment(ctx context.Context, name string, version int64) error {
	return s.of(ctx).DeleteEnvironment(ctx, name, version)
}

func (s ctxStore) KeyWorkDue(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return s.of(ctx).KeyWorkDue(ctx, now, limit)
}

func (s ctxStore) SetKeyWorkAt(ctx context.Context, at time.Time) error {
	return s.of(ctx).SetKeyWorkAt(ctx, at)
}

func (s ctxStore) Ping(ctx context.Context) error {
	return s.of(ctx).Ping(ctx)
}

func (s ctxStore) AppendAuditEvents(ctx context.Context, events []store.AuditEvent) error {
	return s.of(ctx).AppendAuditEvents(ctx, events)
}

func (s ctxStore) ListAuditEvents(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	return s.of(ctx).ListAuditEvents(ctx, f)
}

func (s ctxStore) DeleteAuditEvents(ctx context.Context, before time.Time) (int, error) {
	return s.of(ctx).DeleteAuditEvents(ctx, before)
}
