package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
	"github.com/m2mauth/m2mauth/verify"
)

// adminVerifier accepts any bearer token as an admin's.
type adminVerifier struct{}

func (adminVerifier) Verify(context.Context, string) (*verify.Claims, error) {
	return &verify.Claims{Subject: "m2mc_admin", ClientID: "m2mc_admin", Audience: []string{fuzzAdminAPI}, Scopes: []string{AdminScope}}, nil
}

const fuzzAdminAPI = "https://issuer.example/admin"

// activeAdmin finds every token active, for an admin client.
type activeAdmin struct{}

func (activeAdmin) Active(_ context.Context, c *verify.Claims) (store.Client, bool, error) {
	return store.Client{ID: c.ClientID, Grants: []store.Grant{{Audience: fuzzAdminAPI, Scopes: []string{AdminScope}}}}, true, nil
}

type fakeKeys struct{}

func (fakeKeys) List(context.Context, time.Duration) ([]keys.KeyInfo, error) { return nil, nil }
func (fakeKeys) Rotate(_ context.Context, alg string) (store.SigningKey, error) {
	return store.SigningKey{KID: "k2", Alg: alg, State: store.KeyNext}, nil
}
func (fakeKeys) Revoke(context.Context, string) (string, error) { return "", store.ErrNotFound }

type fakeRevoker struct{}

func (fakeRevoker) RevokeAny(context.Context, string) (bool, error) { return false, nil }

// The admin routes whose bodies the fuzzer writes.
var fuzzRoutes = []struct{ method, path string }{
	{http.MethodPost, "/admin/v1/apis"},
	{http.MethodPatch, "/admin/v1/apis/https:%2F%2Forders.example.com"},
	{http.MethodPut, "/admin/v1/apis/https:%2F%2Forders.example.com"},
	{http.MethodPost, "/admin/v1/clients"},
	{http.MethodPatch, "/admin/v1/clients/m2mc_fuzz"},
	{http.MethodPut, "/admin/v1/clients/m2mc_fuzz"},
	{http.MethodPost, "/admin/v1/clients/m2mc_fuzz/secrets"},
	{http.MethodPost, "/admin/v1/revocations"},
	{http.MethodPost, "/admin/v1/keys/rotate"},
}

// FuzzAdminBody: whatever body (and Content-Type) a route of the admin
// API is sent, the answer is never a 5xx and every error is an RFC 9457
// problem. This covers decode, decodePatch and the validation behind them.
func FuzzAdminBody(f *testing.F) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	svc := NewService(st, secret.NewHasher(make([]byte, 32)), time.Now, nil)
	if _, err := svc.CreateAPI(ctx, APIInput{Identifier: "https://orders.example.com", Name: "Orders", Scopes: []string{"orders:read"}}); err != nil {
		f.Fatal(err)
	}
	if _, _, err := svc.CreateClient(ctx, ClientInput{ClientID: "m2mc_fuzz", ClientSecret: strings.Repeat("s", 40), Name: "fuzz",
		Grants: []GrantInput{{Audience: "https://orders.example.com", Scopes: []string{"orders:read"}}}}); err != nil {
		f.Fatal(err)
	}
	h := NewHandler(HandlerConfig{Service: svc, Verifier: adminVerifier{}, Log: slog.New(slog.DiscardHandler),
		Keys: fakeKeys{}, MaxTokenLifetime: time.Hour, Revoker: fakeRevoker{}, Access: activeAdmin{}})
	mux := http.NewServeMux()
	for _, r := range h.Routes() {
		mux.Handle(r.Pattern, h.Serve(r.Handle))
	}
	for i := range fuzzRoutes {
		f.Add(uint8(i), "application/json", []byte(`{}`))
	}
	f.Add(uint8(0), "application/json", []byte(`{"identifier":"https://a.example","name":"A","scopes":["x"],"token_lifetime_seconds":60}`))
	f.Add(uint8(1), "application/merge-patch+json", []byte(`{"name":null,"scopes":["orders:read","b"]}`))
	f.Add(uint8(1), "application/merge-patch+json", []byte(`{"scopes":["b"],"scope_descriptions":{"b":"B","orders:read":""}}`))
	f.Add(uint8(2), "application/json", []byte(`{"name":"O","scopes":["a"],"scope_descriptions":{"a":"A"}}`))
	f.Add(uint8(3), "application/json", []byte(`{"name":"c","grants":[{"audience":"https://orders.example.com","scopes":["orders:read"]}],"custom_claims":{"t":1}}`))
	f.Add(uint8(4), "application/merge-patch+json", []byte(`{"grants":null,"metadata":{"k":"v"},"disabled":true}`))
	f.Add(uint8(6), "application/json", []byte(`{"grace_seconds":-1}`))
	f.Add(uint8(7), "application/json", []byte(`{"token":"a.b.c"}`))
	f.Add(uint8(8), "application/json", []byte(`{"alg":"ES256"}`))
	f.Add(uint8(3), "text/plain", []byte(`{"name":1}{}`))
	f.Fuzz(func(t *testing.T, route uint8, contentType string, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		r := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		r.Body = http.MaxBytesReader(nil, r.Body, MaxBodyBytes)
		r.Header.Set("Authorization", "Bearer fuzz")
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", rt.method, rt.path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var p problem
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" || json.Unmarshal(w.Body.Bytes(), &p) != nil || p.Status != w.Code {
				t.Fatalf("%s %s: %d answered %s %s, not a problem", rt.method, rt.path, w.Code, ct, w.Body)
			}
		}
	})
}
