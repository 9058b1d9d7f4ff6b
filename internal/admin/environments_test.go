package admin

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
	"github.com/m2mauth/m2mauth/verify"
)

const testDeployment = "https://auth.example"

func testIssuer(name string) string {
	if name == store.DefaultEnv {
		return testDeployment
	}
	return testDeployment + "/e/" + name
}

// envAccess plays introspection's access check: it finds the token's
// client among those of the environment the context carries, and records
// which environment it was asked in.
type envAccess struct {
	mu      sync.Mutex
	clients map[string]map[string]store.Client // env → id → client
	asked   []string
}

func (a *envAccess) Active(ctx context.Context, claims *verify.Claims) (store.Client, bool, error) {
	e := env.FromContext(ctx)
	if e == nil {
		return store.Client{}, false, fmt.Errorf("no environment in the context")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, e.Name)
	c, ok := a.clients[e.Name][claims.ClientID]
	if !ok || c.Disabled {
		return c, false, nil
	}
	return c, true, nil
}

// envFixture is the admin API over a fresh SQLite store, with environments
// built by hand (default, x and y), each with a real admin token verifier,
// and a fixed clock.
type envFixture struct {
	t       *testing.T
	st      store.Store
	now     time.Time
	key     *ecdsa.PrivateKey
	envs    map[string]*env.Env
	access  *envAccess
	h       *Handler
	mux     *http.ServeMux
	mu      sync.Mutex
	changed []string
}

func (f *envFixture) Env(_ context.Context, name string) (*env.Env, error) {
	if e, ok := f.envs[name]; ok {
		return e, nil
	}
	return nil, fmt.Errorf("environment %s: %w", name, store.ErrNotFound)
}

func newEnvFixture(t *testing.T) *envFixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "admin.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &envFixture{t: t, st: st, now: time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC), key: key, envs: map[string]*env.Env{}}
	clock := func() time.Time { return f.now }
	keySource := verify.KeySourceFunc(func(context.Context, string) (crypto.PublicKey, string, error) { return &key.PublicKey, "ES256", nil })
	for _, name := range []string{store.DefaultEnv, "x", "y"} {
		v, err := verify.New(verify.Config{Issuer: testIssuer(name), Audience: testIssuer(name) + "/admin", Keys: keySource, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		f.envs[name] = &env.Env{Name: name, Issuer: testIssuer(name), Store: st.InEnv(name), AdminVerifier: v}
	}
	grant := func(name string, scopes ...string) []store.Grant {
		return []store.Grant{{Audience: testIssuer(name) + "/admin", Scopes: scopes}}
	}
	f.access = &envAccess{clients: map[string]map[string]store.Client{
		store.DefaultEnv: {
			"deployer": {ID: "deployer", Grants: grant(store.DefaultEnv, AdminScope, DeploymentScope)},
			"plain":    {ID: "plain", Grants: grant(store.DefaultEnv, AdminScope)},
			// demoted holds a token with both scopes, but no longer the
			// deployment grant.
			"demoted":  {ID: "demoted", Grants: grant(store.DefaultEnv, AdminScope)},
			"disabled": {ID: "disabled", Disabled: true, Grants: grant(store.DefaultEnv, AdminScope, DeploymentScope)},
		},
		"x": {"xadmin": {ID: "xadmin", Grants: grant("x", AdminScope)}},
		"y": {"yadmin": {ID: "yadmin", Grants: grant("y", AdminScope)}},
	}}
	svc := NewService(st, secret.NewHasher(make([]byte, 32)), clock, nil, WithEnvIssuer(testIssuer))
	f.h = NewHandler(HandlerConfig{Service: svc, Log: slog.New(slog.DiscardHandler), Keys: fakeKeys{}, MaxTokenLifetime: time.Hour,
		Revoker: fakeRevoker{}, Access: f.access, Envs: f,
		EnvChanged: func(name string) { f.mu.Lock(); f.changed = append(f.changed, name); f.mu.Unlock() }})
	f.mux = http.NewServeMux()
	for _, r := range f.h.Routes() {
		f.mux.Handle(r.Pattern, f.h.Serve(r.Handle))
	}
	return f
}

// token is an access token of environment envName's admin API for client,
// with scopes.
func (f *envFixture) token(envName, client string, scopes ...string) string {
	f.t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: f.key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "k1"))
	if err != nil {
		f.t.Fatal(err)
	}
	claims, _ := json.Marshal(map[string]any{
		"iss": testIssuer(envName), "aud": testIssuer(envName) + "/admin", "sub": client, "client_id": client,
		"scope": strings.Join(scopes, " "), "iat": f.now.Unix(), "exp": f.now.Add(10 * time.Minute).Unix(), "jti": secret.NewID("jti_"),
	})
	jws, err := s.Sign(claims)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *envFixture) deployer() string {
	return f.token(store.DefaultEnv, "deployer", AdminScope, DeploymentScope)
}

type envResponse struct {
	code   int
	header http.Header
	body   map[string]any
}

// do sends a request to the admin API of environment envName (as the
// server does once it has resolved the environment and stripped /e/{name})
// with token, and decodes the answer.
func (f *envFixture) do(envName, token, method, path, body string, headers ...string) envResponse {
	f.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r = r.WithContext(env.NewContext(r.Context(), f.envs[envName]))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		r.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	out := envResponse{code: w.Code, header: w.Header()}
	if w.Body.Len() > 0 {
		if err := json.Unmarshal(w.Body.Bytes(), &out.body); err != nil {
			f.t.Fatalf("%s %s: %d %q is not JSON: %v", method, path, w.Code, w.Body, err)
		}
	}
	return out
}

func (f *envFixture) changedEnvs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.changed)
}

// create creates environment name as a deployment admin.
func (f *envFixture) create(name string) envResponse {
	f.t.Helper()
	res := f.do(store.DefaultEnv, f.deployer(), http.MethodPost, "/admin/v1/environments", `{"name":"`+name+`","display_name":"Production"}`)
	if res.code != http.StatusCreated {
		f.t.Fatalf("create %s: %d %v", name, res.code, res.body)
	}
	return res
}

func TestEnvironmentAuthorization(t *testing.T) {
	f := newEnvFixture(t)
	for _, tc := range []struct {
		name       string
		env        string // the request's environment
		token      string
		method     string
		path       string
		wantCode   int
		wantScope  string // WWW-Authenticate scope on 403
		wantCaller string
		deployment bool
	}{
		{name: "deployment admin, environments", env: "default", token: f.deployer(),
			method: "GET", path: "/admin/v1/environments", wantCode: 200, wantCaller: "deployer", deployment: true},
		{name: "deployment admin, default admin API", env: "default", token: f.deployer(),
			method: "GET", path: "/admin/v1/apis", wantCode: 200, wantCaller: "deployer", deployment: true},
		{name: "deployment admin, x's admin API", env: "x", token: f.deployer(),
			method: "GET", path: "/admin/v1/apis", wantCode: 200, wantCaller: "deployer", deployment: true},
		{name: "deployment admin, environments at x's address", env: "x", token: f.deployer(),
			method: "GET", path: "/admin/v1/environments", wantCode: 404},
		{name: "deployment admin without the deployment grant any more", env: "x", token: f.token("default", "demoted", AdminScope, DeploymentScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 403, wantScope: "admin deployment"},
		{name: "deployment admin disabled", env: "x", token: f.token("default", "disabled", AdminScope, DeploymentScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 401},
		{name: "deployment admin's token without the admin scope", env: "x", token: f.token("default", "deployer", DeploymentScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 403, wantScope: "admin deployment"},
		{name: "default admin, default admin API", env: "default", token: f.token("default", "plain", AdminScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 200, wantCaller: "plain"},
		{name: "default admin, environments", env: "default", token: f.token("default", "plain", AdminScope),
			method: "GET", path: "/admin/v1/environments", wantCode: 403, wantScope: "admin deployment"},
		{name: "default admin, creating an environment", env: "default", token: f.token("default", "plain", AdminScope),
			method: "POST", path: "/admin/v1/environments", wantCode: 403, wantScope: "admin deployment"},
		{name: "default admin, x's admin API", env: "x", token: f.token("default", "plain", AdminScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 403, wantScope: "admin deployment"},
		{name: "default admin asking for a scope it lacks", env: "x", token: f.token("default", "plain", AdminScope, DeploymentScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 403, wantScope: "admin deployment"},
		{name: "x admin, x's admin API", env: "x", token: f.token("x", "xadmin", AdminScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 200, wantCaller: "xadmin"},
		{name: "x admin claiming deployment, x's admin API", env: "x", token: f.token("x", "xadmin", AdminScope, DeploymentScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 200, wantCaller: "xadmin"},
		{name: "x admin, y's admin API", env: "y", token: f.token("x", "xadmin", AdminScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 401},
		{name: "x admin, default admin API", env: "default", token: f.token("x", "xadmin", AdminScope),
			method: "GET", path: "/admin/v1/apis", wantCode: 401},
		{name: "x admin, environments", env: "default", token: f.token("x", "xadmin", AdminScope),
			method: "GET", path: "/admin/v1/environments", wantCode: 401},
		{name: "x admin, environments at x's address", env: "x", token: f.token("x", "xadmin", AdminScope, DeploymentScope),
			method: "GET", path: "/admin/v1/environments", wantCode: 403, wantScope: "admin deployment"},
		{name: "x admin without the admin scope", env: "x", token: f.token("x", "xadmin"),
			method: "GET", path: "/admin/v1/apis", wantCode: 403, wantScope: "admin"},
		{name: "no token", env: "x", method: "GET", path: "/admin/v1/apis", wantCode: 401},
		{name: "garbage token", env: "x", token: "not-a-jwt", method: "GET", path: "/admin/v1/apis", wantCode: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do(tc.env, tc.token, tc.method, tc.path, "")
			if res.code != tc.wantCode {
				t.Fatalf("status %d, want %d: %v", res.code, tc.wantCode, res.body)
			}
			wa := res.header.Get("WWW-Authenticate")
			switch {
			case tc.wantCode == 401 && !strings.HasPrefix(wa, "Bearer "):
				t.Errorf("WWW-Authenticate %q", wa)
			case tc.wantCode == 403 && !strings.Contains(wa, `error="insufficient_scope"`) || tc.wantScope != "" && !strings.Contains(wa, `scope="`+tc.wantScope+`"`):
				t.Errorf("WWW-Authenticate %q, want insufficient_scope naming %q", wa, tc.wantScope)
			}
			if res.code >= 400 && res.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type %q", res.header.Get("Content-Type"))
			}
		})
	}
}

// A deployment admin's access is checked in the default environment, where
// its client lives, and the request then acts in the request's one, as the
// deployment admin.
func TestDeploymentAdminActsInTheRequestEnvironment(t *testing.T) {
	f := newEnvFixture(t)
	var caller string
	var deployment bool
	var acting string
	serve := f.h.Serve(func(w http.ResponseWriter, r *http.Request) error {
		caller, deployment, acting = CallerFromContext(r.Context()), DeploymentCallerFromContext(r.Context()), env.FromContext(r.Context()).Name
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	for _, tc := range []struct {
		name, env, token string
		wantAsked        []string
		wantDeployment   bool
	}{
		{"deployment admin in x", "x", f.deployer(), []string{"default"}, true},
		{"deployment admin in default", "default", f.deployer(), []string{"default"}, true},
		{"x admin in x", "x", f.token("x", "xadmin", AdminScope), []string{"x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.access.asked = nil
			r := httptest.NewRequest(http.MethodGet, "/admin/v1/apis", nil)
			r = r.WithContext(env.NewContext(r.Context(), f.envs[tc.env]))
			r.Header.Set("Authorization", "Bearer "+tc.token)
			w := httptest.NewRecorder()
			serve(w, r)
			if w.Code != http.StatusNoContent {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if !slices.Equal(f.access.asked, tc.wantAsked) {
				t.Errorf("access checked in %v, want %v", f.access.asked, tc.wantAsked)
			}
			if deployment != tc.wantDeployment || caller == "" || acting != tc.env {
				t.Errorf("caller %q deployment %v acting in %q", caller, deployment, acting)
			}
		})
	}
}

func TestEnvironmentLifecycle(t *testing.T) {
	f := newEnvFixture(t)
	tok := f.deployer()
	res := f.do("default", tok, "POST", "/admin/v1/environments",
		`{"name":"prod","display_name":"Production","signing_alg":"ES256","key_rotation_period":86400}`)
	if res.code != 201 {
		t.Fatalf("create: %d %v", res.code, res.body)
	}
	if res.header.Get("ETag") != `"1"` || res.header.Get("Location") != "/admin/v1/environments/prod" {
		t.Errorf("headers %v", res.header)
	}
	want := map[string]any{"name": "prod", "display_name": "Production", "signing_alg": "ES256", "key_rotation_period": float64(86400),
		"default": false, "issuer": testDeployment + "/e/prod", "admin_audience": testDeployment + "/e/prod/admin", "version": float64(1)}
	for k, v := range want {
		if res.body[k] != v {
			t.Errorf("%s = %v, want %v", k, res.body[k], v)
		}
	}
	if got := f.changedEnvs(); !slices.Equal(got, []string{"prod"}) {
		t.Errorf("EnvChanged got %v", got)
	}
	// The new environment's built-in admin API.
	api, err := f.st.InEnv("prod").GetAPI(context.Background(), testDeployment+"/e/prod/admin")
	if err != nil {
		t.Fatalf("admin API of prod: %v", err)
	}
	if api.Builtin != adminBuiltin || !slices.Equal(api.Scopes, []string{AdminScope}) || api.Name != "Production admin API" {
		t.Errorf("admin API %+v", api)
	}
	e, err := f.st.GetEnvironment(context.Background(), "prod")
	if err != nil || e.KeyRotationPeriod != 24*time.Hour || e.SigningAlg != "ES256" || !e.CreatedAt.Equal(f.now) {
		t.Errorf("stored %+v %v", e, err)
	}

	t.Run("get", func(t *testing.T) {
		res := f.do("default", tok, "GET", "/admin/v1/environments/prod", "")
		if res.code != 200 || res.body["name"] != "prod" || res.header.Get("ETag") != `"1"` {
			t.Fatalf("%d %v %v", res.code, res.header, res.body)
		}
		if res := f.do("default", tok, "GET", "/admin/v1/environments/nope", ""); res.code != 404 {
			t.Fatalf("unknown: %d %v", res.code, res.body)
		}
		res = f.do("default", tok, "GET", "/admin/v1/environments/default", "")
		if res.code != 200 || res.body["default"] != true || res.body["issuer"] != testDeployment || res.body["admin_audience"] != testDeployment+"/admin" {
			t.Fatalf("default: %d %v", res.code, res.body)
		}
	})

	t.Run("list", func(t *testing.T) {
		res := f.do("default", tok, "GET", "/admin/v1/environments", "")
		if res.code != 200 || names(res.body) != "default,prod" || res.body["next_cursor"] != nil {
			t.Fatalf("%d %v", res.code, res.body)
		}
		res = f.do("default", tok, "GET", "/admin/v1/environments?limit=1", "")
		if res.code != 200 || names(res.body) != "default" || res.body["next_cursor"] == nil {
			t.Fatalf("page 1: %d %v", res.code, res.body)
		}
		res = f.do("default", tok, "GET", "/admin/v1/environments?limit=1&cursor="+res.body["next_cursor"].(string), "")
		if res.code != 200 || names(res.body) != "prod" || res.body["next_cursor"] != nil {
			t.Fatalf("page 2: %d %v", res.code, res.body)
		}
		for q, want := range map[string]string{"prod": "prod", "PRODUCT": "prod", "zzz": ""} {
			res = f.do("default", tok, "GET", "/admin/v1/environments?q="+q, "")
			if res.code != 200 || names(res.body) != want {
				t.Errorf("q=%s: %d %v, want %q", q, res.code, res.body, want)
			}
		}
		if res := f.do("default", tok, "GET", "/admin/v1/environments?limit=0", ""); res.code != 400 {
			t.Errorf("limit=0: %d", res.code)
		}
	})

	t.Run("patch", func(t *testing.T) {
		for _, tc := range []struct {
			name, target, ifMatch, body string
			wantCode                    int
			wantField                   string
		}{
			{"stale If-Match", "prod", `"7"`, `{"display_name":"Prod"}`, 412, ""},
			{"empty display name", "prod", `"1"`, `{"display_name":""}`, 400, "display_name"},
			{"null display name", "prod", `"1"`, `{"display_name":null}`, 400, "display_name"},
			{"unknown algorithm", "prod", `"1"`, `{"signing_alg":"HS256"}`, 400, "signing_alg"},
			{"rotation too short", "prod", `"1"`, `{"key_rotation_period":60}`, 400, "key_rotation_period"},
			{"unknown member", "prod", `"1"`, `{"name":"other"}`, 400, "name"},
			{"default's keys", "default", "", `{"signing_alg":"ES256"}`, 400, "signing_alg"},
			{"unknown environment", "nope", "", `{"display_name":"N"}`, 404, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := f.do("default", tok, "PATCH", "/admin/v1/environments/"+tc.target, tc.body, "If-Match", tc.ifMatch)
				if res.code != tc.wantCode {
					t.Fatalf("%d %v, want %d", res.code, res.body, tc.wantCode)
				}
				if tc.wantField != "" && !slices.Contains(problemFields(res.body), tc.wantField) {
					t.Errorf("fields %v, want %s", problemFields(res.body), tc.wantField)
				}
			})
		}
		res := f.do("default", tok, "PATCH", "/admin/v1/environments/prod", `{"display_name":"Prod","signing_alg":null,"key_rotation_period":3600}`, "If-Match", `"1"`)
		if res.code != 200 || res.body["display_name"] != "Prod" || res.body["signing_alg"] != "" || res.body["key_rotation_period"] != float64(3600) ||
			res.header.Get("ETag") != `"2"` {
			t.Fatalf("%d %v %v", res.code, res.header, res.body)
		}
		if got := f.changedEnvs(); !slices.Equal(got, []string{"prod", "prod"}) {
			t.Errorf("EnvChanged got %v", got)
		}
		res = f.do("default", tok, "PATCH", "/admin/v1/environments/default", `{"display_name":"Main"}`)
		if res.code != 200 || res.body["display_name"] != "Main" {
			t.Fatalf("default display name: %d %v", res.code, res.body)
		}
	})
}

func names(body map[string]any) string {
	var out []string
	items, _ := body["items"].([]any)
	for _, it := range items {
		out = append(out, it.(map[string]any)["name"].(string))
	}
	return strings.Join(out, ",")
}

func TestCreateEnvironmentValidation(t *testing.T) {
	f := newEnvFixture(t)
	tok := f.deployer()
	for _, tc := range []struct {
		name, body string
		wantFields []string
	}{
		{"no name", `{"display_name":"D"}`, []string{"name"}},
		{"upper case", `{"name":"Prod","display_name":"D"}`, []string{"name"}},
		{"leading hyphen", `{"name":"-prod","display_name":"D"}`, []string{"name"}},
		{"trailing hyphen", `{"name":"prod-","display_name":"D"}`, []string{"name"}},
		{"underscore", `{"name":"a_b","display_name":"D"}`, []string{"name"}},
		{"dot", `{"name":"a.b","display_name":"D"}`, []string{"name"}},
		{"64 characters", `{"name":"` + strings.Repeat("a", 64) + `","display_name":"D"}`, []string{"name"}},
		{"default", `{"name":"default","display_name":"D"}`, []string{"name"}},
		{"no display name", `{"name":"ok"}`, []string{"display_name"}},
		{"blank display name", `{"name":"ok","display_name":"   "}`, []string{"display_name"}},
		{"control character", `{"name":"ok","display_name":"a\u0007b"}`, []string{"display_name"}},
		{"101 characters", `{"name":"ok","display_name":"` + strings.Repeat("é", 101) + `"}`, []string{"display_name"}},
		{"HMAC algorithm", `{"name":"ok","display_name":"D","signing_alg":"HS256"}`, []string{"signing_alg"}},
		{"rotation under an hour", `{"name":"ok","display_name":"D","key_rotation_period":3599}`, []string{"key_rotation_period"}},
		{"negative rotation", `{"name":"ok","display_name":"D","key_rotation_period":-1}`, []string{"key_rotation_period"}},
		{"everything wrong", `{"name":"A","display_name":"","signing_alg":"none","key_rotation_period":1}`,
			[]string{"name", "display_name", "signing_alg", "key_rotation_period"}},
		{"unknown member", `{"name":"ok","display_name":"D","issuer":"https://evil.example"}`, []string{"issuer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do("default", tok, "POST", "/admin/v1/environments", tc.body)
			if res.code != 400 {
				t.Fatalf("%d %v", res.code, res.body)
			}
			if got := problemFields(res.body); !slices.Equal(got, tc.wantFields) {
				t.Errorf("fields %v, want %v", got, tc.wantFields)
			}
		})
	}
	if got := f.changedEnvs(); len(got) != 0 {
		t.Errorf("EnvChanged called for refused creations: %v", got)
	}
	// A 63-character name and the longest display name are accepted.
	name63 := "a" + strings.Repeat("-", 61) + "z"
	res := f.do("default", tok, "POST", "/admin/v1/environments", `{"name":"`+name63+`","display_name":"`+strings.Repeat("é", 100)+`","key_rotation_period":3600}`)
	if res.code != 201 {
		t.Fatalf("63 characters: %d %v", res.code, res.body)
	}
}

func TestCreateEnvironmentDuplicate(t *testing.T) {
	f := newEnvFixture(t)
	f.create("prod")
	res := f.do("default", f.deployer(), "POST", "/admin/v1/environments", `{"name":"prod","display_name":"Again"}`)
	if res.code != 409 || res.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(res.body["detail"].(string), `"prod" already exists`) {
		t.Fatalf("%d %v %v", res.code, res.header, res.body)
	}
	if got := f.changedEnvs(); !slices.Equal(got, []string{"prod"}) {
		t.Errorf("EnvChanged got %v", got)
	}
}

func TestDeleteEnvironment(t *testing.T) {
	prepare := func(f *envFixture, name string) envResponse {
		f.t.Helper()
		res := f.do("default", f.deployer(), "POST", "/admin/v1/environments/"+name+"/deletion", "")
		if res.code != 200 {
			f.t.Fatalf("deletion of %s: %d %v", name, res.code, res.body)
		}
		return res
	}
	del := func(f *envFixture, name, confirmation string) envResponse {
		f.t.Helper()
		return f.do("default", f.deployer(), "DELETE", "/admin/v1/environments/"+name+"?confirmation="+confirmation, "")
	}

	t.Run("two steps", func(t *testing.T) {
		f := newEnvFixture(t)
		f.create("prod")
		res := prepare(f, "prod")
		if res.body["expires_at"] != f.now.Add(10*time.Minute).Format(time.RFC3339) {
			t.Errorf("expires_at %v", res.body["expires_at"])
		}
		env, _ := res.body["environment"].(map[string]any)
		if env["name"] != "prod" || env["version"] != float64(1) {
			t.Errorf("environment %v", env)
		}
		will, _ := res.body["will_delete"].(map[string]any)
		// (The built-in admin API is not counted.)
		if will["apis"] != float64(0) || will["clients"] != float64(0) || will["signing_keys"] == nil || will["trust_policies"] == nil {
			t.Errorf("will_delete %v", will)
		}
		f.now = f.now.Add(9 * time.Minute)
		if res := del(f, "prod", res.body["confirmation"].(string)); res.code != 204 {
			t.Fatalf("delete: %d %v", res.code, res.body)
		}
		if res := f.do("default", f.deployer(), "GET", "/admin/v1/environments/prod", ""); res.code != 404 {
			t.Fatalf("after delete: %d", res.code)
		}
		if got := f.changedEnvs(); !slices.Equal(got, []string{"prod", "prod"}) {
			t.Errorf("EnvChanged got %v", got)
		}
	})

	t.Run("refused", func(t *testing.T) {
		f := newEnvFixture(t)
		f.create("prod")
		conf := prepare(f, "prod").body["confirmation"].(string)
		raw, _ := base64.RawURLEncoding.DecodeString(conf)
		// The same MAC over a later expiry.
		parts := strings.SplitN(string(raw), ".", 3)
		later := base64.RawURLEncoding.EncodeToString([]byte(parts[0] + ".9999999999." + parts[2]))
		for _, tc := range []struct {
			name, confirmation string
			wantCode           int
			wantDetail         string
		}{
			{"no confirmation", "", 428, "two steps"},
			{"garbage", "not-a-confirmation", 428, "not one this server issued"},
			{"forged MAC", base64.RawURLEncoding.EncodeToString([]byte("1.9999999999.hmac-sha256$AAAA")), 428, "not one this server issued"},
			{"extended expiry", later, 428, "not one this server issued"},
			{"tampered", conf[:len(conf)-2] + "AA", 428, "not one this server issued"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := del(f, "prod", tc.confirmation)
				if res.code != tc.wantCode || !strings.Contains(res.body["detail"].(string), tc.wantDetail) {
					t.Fatalf("%d %v, want %d %q", res.code, res.body, tc.wantCode, tc.wantDetail)
				}
			})
		}
		if res := f.do("default", f.deployer(), "GET", "/admin/v1/environments/prod", ""); res.code != 200 {
			t.Fatalf("the environment is gone: %d", res.code)
		}
	})

	t.Run("confirmation of another environment", func(t *testing.T) {
		f := newEnvFixture(t)
		f.create("prod")
		conf := prepare(f, "prod").body["confirmation"].(string)
		// Same version, same expiry, another name: the MAC binds the name.
		if err := f.st.CreateEnvironment(context.Background(), store.Environment{Name: "other", DisplayName: "O", Version: 1, CreatedAt: f.now, UpdatedAt: f.now}); err != nil {
			t.Fatal(err)
		}
		if res := del(f, "other", conf); res.code != 428 {
			t.Fatalf("%d %v", res.code, res.body)
		}
	})

	t.Run("expired", func(t *testing.T) {
		f := newEnvFixture(t)
		f.create("prod")
		conf := prepare(f, "prod").body["confirmation"].(string)
		f.now = f.now.Add(10 * time.Minute)
		res := del(f, "prod", conf)
		if res.code != 428 || !strings.Contains(res.body["detail"].(string), "expired") {
			t.Fatalf("%d %v", res.code, res.body)
		}
	})

	t.Run("created again under the same name", func(t *testing.T) {
		f := newEnvFixture(t)
		f.create("prod")
		old := prepare(f, "prod").body["confirmation"].(string)
		if res := del(f, "prod", prepare(f, "prod").body["confirmation"].(string)); res.code != 204 {
			t.Fatalf("delete: %d %v", res.code, res.body)
		}
		f.now = f.now.Add(time.Second)
		f.create("prod") // version 1 again
		res := del(f, "prod", old)
		if res.code != 409 || !strings.Contains(res.body["detail"].(string), "created again") {
			t.Fatalf("the old environment's confirmation on the new one: %d %v", res.code, res.body)
		}
		if res := f.do("default", f.deployer(), "GET", "/admin/v1/environments/prod", ""); res.code != 200 {
			t.Fatalf("the new environment is gone: %d", res.code)
		}
	})

	t.Run("contents changed", func(t *testing.T) {
		f := newEnvFixture(t)
		f.create("prod")
		conf := prepare(f, "prod").body["confirmation"].(string)
		now := f.now
		if err := f.st.InEnv("prod").CreateAPI(context.Background(), store.API{ID: "api_x", Identifier: "https://x.example", Name: "X", Scopes: []string{"r"}, Version: 1, CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		res := del(f, "prod", conf)
		if res.code != 409 || !strings.Contains(res.body["detail"].(string), "APIs, clients or trust policies") {
			t.Fatalf("a confirmation that counted no API: %d %v", res.code, res.body)
		}
	})

	t.Run("stale", func(t *testing.T) {
		f := newEnvFixture(t)
		f.create("prod")
		conf := prepare(f, "prod").body["confirmation"].(string)
		if res := f.do("default", f.deployer(), "PATCH", "/admin/v1/environments/prod", `{"display_name":"Renamed"}`); res.code != 200 {
			t.Fatalf("patch: %d %v", res.code, res.body)
		}
		res := del(f, "prod", conf)
		if res.code != 409 || !strings.Contains(res.body["detail"].(string), "changed since the confirmation") {
			t.Fatalf("%d %v", res.code, res.body)
		}
		// A new confirmation works.
		if res := del(f, "prod", prepare(f, "prod").body["confirmation"].(string)); res.code != 204 {
			t.Fatalf("with a new confirmation: %d %v", res.code, res.body)
		}
	})

	t.Run("default environment", func(t *testing.T) {
		f := newEnvFixture(t)
		for _, res := range []envResponse{
			f.do("default", f.deployer(), "POST", "/admin/v1/environments/default/deletion", ""),
			del(f, "default", "anything"),
		} {
			if res.code != 409 || !strings.Contains(res.body["detail"].(string), "default environment cannot be deleted") {
				t.Errorf("%d %v", res.code, res.body)
			}
		}
	})

	t.Run("unknown environment", func(t *testing.T) {
		f := newEnvFixture(t)
		for _, res := range []envResponse{
			f.do("default", f.deployer(), "POST", "/admin/v1/environments/nope/deletion", ""),
			del(f, "nope", "anything"),
		} {
			if res.code != 404 {
				t.Errorf("%d %v", res.code, res.body)
			}
		}
	})
}

// Without an issuer for environments, the server cannot manage them.
func TestEnvironmentsOff(t *testing.T) {
	f := newEnvFixture(t)
	f.h.svc.envIssuer = nil
	res := f.do("default", f.deployer(), "POST", "/admin/v1/environments", `{"name":"prod","display_name":"P"}`)
	if res.code != 404 {
		t.Fatalf("%d %v", res.code, res.body)
	}
}

// The bootstrap admin is a deployment admin.
func TestBootstrapMakesADeploymentAdmin(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "admin.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := NewService(st, secret.NewHasher(make([]byte, 32)), time.Now, nil)
	id, _, created, err := svc.Bootstrap(ctx, testDeployment, testDeployment+"/admin", nil)
	if err != nil || !created {
		t.Fatalf("bootstrap: %v %v", created, err)
	}
	api, err := st.GetAPI(ctx, testDeployment+"/admin")
	if err != nil || !slices.Equal(api.Scopes, []string{AdminScope, DeploymentScope}) {
		t.Fatalf("admin API %+v %v", api, err)
	}
	c, err := st.GetClient(ctx, id)
	if err != nil || !IsDeploymentAdmin(c, testDeployment+"/admin") || !IsAdmin(c, testDeployment+"/admin") {
		t.Fatalf("bootstrap client %+v %v", c.Grants, err)
	}
}

// recordingInvalidator records what it is told.
type recordingInvalidator struct {
	mu      sync.Mutex
	clients []string
	all     int
}

func (r *recordingInvalidator) Invalidate(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clients = append(r.clients, id)
}

func (r *recordingInvalidator) InvalidateAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all++
}

func (r *recordingInvalidator) InvalidateTrust(string) {}

// The Service acts in the environment of the request: its store and its
// caches' invalidator.
func TestServiceActsInTheRequestEnvironment(t *testing.T) {
	f := newEnvFixture(t)
	ctx := context.Background()
	if err := f.st.CreateEnvironment(ctx, store.Environment{Name: "x", DisplayName: "X", Version: 1, CreatedAt: f.now, UpdatedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	inval := &recordingInvalidator{}
	f.envs["x"].Changed = inval
	tok := f.deployer()
	if res := f.do("x", tok, "POST", "/admin/v1/apis", `{"identifier":"https://orders.example","name":"Orders","scopes":["read"]}`); res.code != 201 {
		t.Fatalf("create API in x: %d %v", res.code, res.body)
	}
	res := f.do("x", tok, "POST", "/admin/v1/clients", `{"name":"job","grants":[{"audience":"https://orders.example","scopes":["read"]}]}`)
	if res.code != 201 {
		t.Fatalf("create client in x: %d %v", res.code, res.body)
	}
	id := res.body["client_id"].(string)
	if !slices.Equal(inval.clients, []string{id}) {
		t.Errorf("x's invalidator got %v, want [%s]", inval.clients, id)
	}
	if _, err := f.st.InEnv("x").GetClient(ctx, id); err != nil {
		t.Errorf("the client is not in x: %v", err)
	}
	if _, err := f.st.GetClient(ctx, id); err == nil {
		t.Error("the client is in the default environment")
	}
	for envName, want := range map[string]string{"x": "https://orders.example", "default": ""} {
		res := f.do(envName, tok, "GET", "/admin/v1/apis", "")
		var ids []string
		for _, it := range res.body["items"].([]any) {
			ids = append(ids, it.(map[string]any)["identifier"].(string))
		}
		if got := strings.Join(ids, ","); res.code != 200 || got != want {
			t.Errorf("APIs of %s: %d %q, want %q", envName, res.code, got, want)
		}
	}
	// What deleting x would remove is x's.
	res = f.do("default", tok, "POST", "/admin/v1/environments/x/deletion", "")
	will, _ := res.body["will_delete"].(map[string]any)
	if res.code != 200 || will["apis"] != float64(0) || will["clients"] != float64(1) {
		t.Errorf("will_delete of x: %d %v", res.code, res.body)
	}
}

// Two environments each get their own built-in admin API.
func TestCreateTwoEnvironments(t *testing.T) {
	f := newEnvFixture(t)
	f.create("staging")
	f.create("prod")
	for _, name := range []string{"staging", "prod"} {
		if _, err := f.st.InEnv(name).GetAPI(context.Background(), testIssuer(name)+"/admin"); err != nil {
			t.Errorf("admin API of %s: %v", name, err)
		}
	}
}

// Renaming an environment renames its built-in admin API, which is named
// after it.
func TestRenameEnvironmentRenamesItsAdminAPI(t *testing.T) {
	f := newEnvFixture(t)
	f.create("prod")
	aud := testIssuer("prod") + "/admin"
	if a, err := f.st.InEnv("prod").GetAPI(context.Background(), aud); err != nil || a.Name != "Production admin API" {
		t.Fatalf("before: %+v %v", a, err)
	}
	if res := f.do("default", f.deployer(), "PATCH", "/admin/v1/environments/prod", `{"display_name":"Live"}`); res.code != 200 {
		t.Fatalf("rename: %d %v", res.code, res.body)
	}
	if a, err := f.st.InEnv("prod").GetAPI(context.Background(), aud); err != nil || a.Name != "Live admin API" {
		t.Fatalf("after: %+v %v, want Live admin API", a, err)
	}
}
