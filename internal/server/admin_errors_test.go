package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// Every error on an admin path is an RFC 9457 problem, including the
// router's 404 and 405; the decoder refuses repeated members at any depth
// (also when they differ only in case) and bodies that are not JSON.
func TestAdminErrorEnvelope(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read")
	tests := []struct {
		name, method, path, contentType, body string
		status                                int
	}{
		{"unknown admin path", "GET", "/admin/v1/nothing-here", "", "", 404},
		{"unknown admin version", "GET", "/admin/v2/clients", "", "", 404},
		{"the admin prefix alone", "GET", "/admin", "", "", 404},
		{"an unclean admin path (no HTML redirect)", "GET", "//admin/v1/clients", "", "", 404},
		{"a dot segment", "GET", "/admin/v1/./clients", "", "", 404},
		{"method not allowed", "DELETE", "/admin/v1/apis", "", "", 405},
		{"method not allowed on a resource", "POST", "/admin/v1/keys", "", "", 405},
		{"repeated member", "POST", "/admin/v1/apis", "application/json", `{"identifier":"https://a","name":"a","name":"b"}`, 400},
		{"member repeated in another case", "POST", "/admin/v1/apis", "application/json", `{"identifier":"https://a","name":"a","NAME":"b"}`, 400},
		{"repeated member in a nested object", "POST", "/admin/v1/clients", "application/json",
			`{"name":"c","grants":[{"audience":"` + ordersAPI + `","audience":"https://other","scopes":[]}]}`, 400},
		{"repeated member in a patch", "PATCH", "/admin/v1/apis/" + strings.ReplaceAll(ordersAPI, "/", "%2F"), "application/merge-patch+json", `{"name":"a","name":"b"}`, 400},
		{"text/plain", "POST", "/admin/v1/apis", "text/plain", `{"identifier":"https://a","name":"a"}`, 415},
		{"a type that only starts like JSON", "POST", "/admin/v1/apis", "application/jsonx", `{"identifier":"https://a","name":"a"}`, 415},
		{"merge-patch on POST", "POST", "/admin/v1/apis", "application/merge-patch+json", `{"identifier":"https://a","name":"a"}`, 415},
		{"no content type", "POST", "/admin/v1/apis", "", `{"identifier":"https://a","name":"a"}`, 415},
		{"rotation body not JSON", "POST", "/admin/v1/clients/nobody/secrets", "text/plain", `{"grace_seconds":0}`, 415},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, body)
			req.Header.Set("Authorization", "Bearer "+ts.token)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, b := ts.do(req)
			var p struct {
				Status int    `json:"status"`
				Title  string `json:"title"`
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" ||
				json.Unmarshal(b, &p) != nil || p.Status != tc.status || p.Title == "" {
				t.Errorf("%d %s %s, want a %d problem", resp.StatusCode, resp.Header.Get("Content-Type"), b, tc.status)
			}
			if tc.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	// The same checks pass a good body through.
	if resp, b := ts.adminDo(http.MethodPatch, "/admin/v1/apis/"+strings.ReplaceAll(ordersAPI, "/", "%2F"), `{"name":"renamed"}`,
		"Content-Type", "application/merge-patch+json"); resp.StatusCode != 200 {
		t.Errorf("merge-patch: %d %s", resp.StatusCode, b)
	}
}

// failingStore fails every call while down, as a database that stopped
// answering.
type failingStore struct {
	store.Store
	down   atomic.Bool
	frozen atomic.Bool // calls hang until their context ends
}

var errDown = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

func (f *failingStore) ListAPIs(ctx context.Context, o store.ListOptions) ([]store.API, error) {
	if f.down.Load() {
		return nil, errDown
	}
	if f.frozen.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return f.Store.ListAPIs(ctx, o)
}

func (f *failingStore) CreateAPI(ctx context.Context, a store.API) error {
	if f.down.Load() {
		return errDown
	}
	return f.Store.CreateAPI(ctx, a)
}

// InEnv keeps the faults in the default environment, whose data the server
// reaches through its environment's store.
func (f *failingStore) InEnv(name string) store.Store {
	if name == f.Store.Env() {
		return f
	}
	return f.Store.InEnv(name)
}

func (f *failingStore) Ping(ctx context.Context) error {
	if f.down.Load() {
		return errDown
	}
	if f.frozen.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.Store.Ping(ctx)
}

// The admin API answers 503 with Retry-After while the database is down,
// as the token endpoints do, not 500.
func TestAdminDatabaseDown(t *testing.T) {
	cfg := testConfig(t)
	cfg.Addr, cfg.Issuer = "127.0.0.1:1", "http://127.0.0.1:1"
	st, err := OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	fs := &failingStore{Store: st}
	srv, err := newServer(context.Background(), cfg, NewLogger(io.Discard, "json", "error"), nil, fs, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var creds AdminCredentials
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, AdminFile)); err != nil || json.Unmarshal(b, &creds) != nil {
		t.Fatal(err)
	}
	do := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, r)
		return w
	}
	login := httptest.NewRequest(http.MethodPost, "/admin/v1/token", strings.NewReader("grant_type=client_credentials"))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	login.SetBasicAuth(creds.ClientID, creds.ClientSecret)
	var tr tokenResp
	if w := do(login); w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &tr) != nil {
		t.Fatalf("login: %d", w.Code)
	}
	req := func(method, body string) *http.Request {
		r := httptest.NewRequest(method, "/admin/v1/apis", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tr.AccessToken)
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		return r
	}
	if w := do(req("GET", "")); w.Code != 200 {
		t.Fatalf("before: %d", w.Code)
	}
	fs.down.Store(true)
	for _, r := range []*http.Request{req("GET", ""), req("POST", `{"identifier":"https://x","name":"x"}`)} {
		w := do(r)
		if w.Code != 503 || w.Header().Get("Retry-After") == "" || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s while the database is down: %d %q %s", r.Method, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
		if strings.Contains(w.Body.String(), "5432") {
			t.Error("the answer shows the cause")
		}
	}
	fs.down.Store(false)
	if w := do(req("GET", "")); w.Code != 200 {
		t.Errorf("after: %d", w.Code)
	}
	// A database that stops answering without refusing (frozen, a network
	// black hole): the request's deadline ends the wait, and the answer is
	// a 503.
	srv.timeouts = Timeouts{Request: 100 * time.Millisecond}
	fs.frozen.Store(true)
	if w := do(req("GET", "")); w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Errorf("while the database is frozen: %d %s", w.Code, w.Body)
	}
	fs.frozen.Store(false)
}
