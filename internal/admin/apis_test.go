package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

// apiTestServer serves the admin API over a fresh SQLite store, with a
// fixed clock and any bearer token accepted as an admin's.
func apiTestServer(t *testing.T) http.Handler {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "admin.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	svc := NewService(st, secret.NewHasher(make([]byte, 32)), func() time.Time { return now }, nil)
	h := NewHandler(HandlerConfig{Service: svc, Verifier: adminVerifier{}, Log: slog.New(slog.DiscardHandler),
		Keys: fakeKeys{}, MaxTokenLifetime: time.Hour, Revoker: fakeRevoker{}, Access: activeAdmin{}})
	mux := http.NewServeMux()
	for _, r := range h.Routes() {
		mux.Handle(r.Pattern, h.Serve(r.Handle))
	}
	return mux
}

// call sends body (JSON text) and returns the status and the decoded answer.
func call(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer test")
	if body != "" {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		r.Header.Set("Content-Type", ct)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var out map[string]any
	if w.Body.Len() > 0 {
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: %d %q is not JSON: %v", method, path, w.Code, w.Body, err)
		}
	}
	return w.Code, out
}

// problemFields returns the field names of a problem's errors.
func problemFields(p map[string]any) []string {
	var out []string
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		out = append(out, e.(map[string]any)["field"].(string))
	}
	return out
}

func descriptionsOf(t *testing.T, res map[string]any) map[string]any {
	t.Helper()
	d, ok := res["scope_descriptions"].(map[string]any)
	if !ok {
		t.Fatalf("scope_descriptions is %#v, want a JSON object: %v", res["scope_descriptions"], res)
	}
	return d
}

func TestScopeDescriptionsValidation(t *testing.T) {
	h := apiTestServer(t)
	long := strings.Repeat("é", maxScopeDescLen)
	tests := []struct {
		name   string
		descs  string
		fields []string // nil: accepted
	}{
		{"none", `{}`, nil},
		{"null", `null`, nil},
		{"some", `{"orders:read":"Read orders"}`, nil},
		{"every scope, at the length limit in characters", `{"orders:read":"` + long + `","orders:write":"Change orders\tand more"}`, nil},
		{"a scope the API lacks", `{"orders:delete":"Delete orders"}`, []string{"scope_descriptions.orders:delete"}},
		{"a key that is no scope at all", `{"not a scope":"x"}`, []string{"scope_descriptions"}},
		{"empty", `{"orders:read":""}`, []string{"scope_descriptions.orders:read"}},
		{"blank", `{"orders:read":"  "}`, []string{"scope_descriptions.orders:read"}},
		{"too long", `{"orders:read":"` + long + `x"}`, []string{"scope_descriptions.orders:read"}},
		{"a control character", `{"orders:write":"line\nbreak"}`, []string{"scope_descriptions.orders:write"}},
		{"each bad one named, in order", `{"other":"x","orders:read":"\u0000"}`,
			[]string{"scope_descriptions.orders:read", "scope_descriptions.other"}},
		{"more than there are scopes", `{"orders:read":"a","orders:write":"b","c":"c"}`, []string{"scope_descriptions"}},
		{"not an object", `["orders:read"]`, []string{}},
		{"not text", `{"orders:read":1}`, []string{}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "https://api" + strings.Repeat("x", i) + ".example.com"
			status, res := call(t, h, http.MethodPost, "/admin/v1/apis",
				`{"identifier":"`+id+`","name":"Orders","scopes":["orders:read","orders:write","orders:read"],"scope_descriptions":`+tc.descs+`}`)
			if tc.fields == nil {
				if status != http.StatusCreated {
					t.Fatalf("%d %v, want 201", status, res)
				}
				var want map[string]any
				if tc.descs != "null" {
					_ = json.Unmarshal([]byte(tc.descs), &want)
				}
				if want == nil {
					want = map[string]any{}
				}
				if diff := cmp.Diff(want, descriptionsOf(t, res)); diff != "" {
					t.Errorf("created with (-want +got):\n%s", diff)
				}
				_, got := call(t, h, http.MethodGet, "/admin/v1/apis/"+url.PathEscape(id), "")
				if diff := cmp.Diff(want, descriptionsOf(t, got)); diff != "" {
					t.Errorf("read back (-want +got):\n%s", diff)
				}
				return
			}
			if status != http.StatusBadRequest {
				t.Fatalf("%d %v, want 400", status, res)
			}
			if len(tc.fields) > 0 && !cmp.Equal(problemFields(res), tc.fields) {
				t.Errorf("error fields %v, want %v: %v", problemFields(res), tc.fields, res["errors"])
			}
			if status, _ := call(t, h, http.MethodGet, "/admin/v1/apis/"+url.PathEscape(id), ""); status != http.StatusNotFound {
				t.Errorf("a refused API was stored: GET %d", status)
			}
		})
	}
}

func TestScopeDescriptionsUpdates(t *testing.T) {
	h := apiTestServer(t)
	path := "/admin/v1/apis/" + url.PathEscape("https://orders.example.com")
	if status, res := call(t, h, http.MethodPost, "/admin/v1/apis", `{"identifier":"https://orders.example.com","name":"Orders",
		"scopes":["orders:read","orders:write"],"scope_descriptions":{"orders:read":"Read orders","orders:write":"Change orders"}}`); status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, res)
	}
	steps := []struct {
		name, method, body string
		status             int
		want               map[string]any // after the step
	}{
		{"a patch of other fields keeps them", http.MethodPatch, `{"name":"Orders v2"}`, 200,
			map[string]any{"orders:read": "Read orders", "orders:write": "Change orders"}},
		{"a removed scope takes its description along", http.MethodPatch, `{"scopes":["orders:read","orders:admin"]}`, 200,
			map[string]any{"orders:read": "Read orders"}},
		{"a patch replaces the whole map", http.MethodPatch, `{"scope_descriptions":{"orders:admin":"Everything"}}`, 200,
			map[string]any{"orders:admin": "Everything"}},
		{"a new scope and its description in one patch", http.MethodPatch,
			`{"scopes":["orders:read","orders:admin","orders:ship"],"scope_descriptions":{"orders:ship":"Ship orders","orders:admin":"Everything"}}`, 200,
			map[string]any{"orders:ship": "Ship orders", "orders:admin": "Everything"}},
		{"a description for a scope the same patch removes", http.MethodPatch,
			`{"scopes":["orders:read"],"scope_descriptions":{"orders:ship":"Ship orders"}}`, 400,
			map[string]any{"orders:ship": "Ship orders", "orders:admin": "Everything"}},
		{"a description for a scope the API lacks", http.MethodPatch, `{"scope_descriptions":{"orders:delete":"x"}}`, 400,
			map[string]any{"orders:ship": "Ship orders", "orders:admin": "Everything"}},
		{"null removes them", http.MethodPatch, `{"scope_descriptions":null}`, 200, map[string]any{}},
		{"a PUT with them sets them", http.MethodPut,
			`{"name":"Orders","scopes":["orders:read"],"scope_descriptions":{"orders:read":"Read"}}`, 200, map[string]any{"orders:read": "Read"}},
		{"a PUT without them removes them", http.MethodPut, `{"name":"Orders","scopes":["orders:read"]}`, 200, map[string]any{}},
	}
	for _, s := range steps {
		status, res := call(t, h, s.method, path, s.body)
		if status != s.status {
			t.Fatalf("%s: %d %v, want %d", s.name, status, res, s.status)
		}
		if status == 200 {
			if diff := cmp.Diff(s.want, descriptionsOf(t, res)); diff != "" {
				t.Errorf("%s: answered (-want +got):\n%s", s.name, diff)
			}
		}
		_, got := call(t, h, http.MethodGet, path, "")
		if diff := cmp.Diff(s.want, descriptionsOf(t, got)); diff != "" {
			t.Errorf("%s: read back (-want +got):\n%s", s.name, diff)
		}
	}
	// Listings carry them too.
	_, list := call(t, h, http.MethodGet, "/admin/v1/apis", "")
	items, _ := list["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("list: %v", list)
	}
	if d := descriptionsOf(t, items[0].(map[string]any)); len(d) != 0 {
		t.Errorf("listed descriptions %v, want {}", d)
	}
}
