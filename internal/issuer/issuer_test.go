package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

func TestIssue(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mk, _ := keys.ParseMasterKey(keys.GenerateMasterKeyText())
	now := time.Date(2026, 11, 22, 10, 0, 0, 700e6, time.UTC)
	km := keys.NewManager(st, mk, keys.Policy{Alg: keys.RS256}, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := km.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	iss := New("https://issuer", km, func() time.Time { return now })

	tests := []struct {
		name  string
		req   Request
		check func(t *testing.T, hdr, claims map[string]any)
	}{
		{"one audience is a string", Request{ClientID: "c", Audience: []string{"a"}, Scopes: []string{"x", "y"}, Lifetime: 15 * time.Minute},
			func(t *testing.T, hdr, c map[string]any) {
				if c["aud"] != "a" || c["scope"] != "x y" || c["iat"] != float64(now.Unix()) || c["exp"] != float64(now.Unix()+900) {
					t.Errorf("claims %v", c)
				}
				if hdr["typ"] != "at+jwt" || hdr["alg"] != "RS256" || hdr["kid"] != km.Signer().KID() {
					t.Errorf("header %v", hdr)
				}
			}},
		{"several audiences are an array; no scope member when empty", Request{ClientID: "c", Audience: []string{"a", "b"}, Lifetime: time.Minute},
			func(t *testing.T, _, c map[string]any) {
				if aud, _ := c["aud"].([]any); len(aud) != 2 {
					t.Errorf("aud %v", c["aud"])
				}
				if _, ok := c["scope"]; ok {
					t.Error("empty scope was written")
				}
			}},
		{"custom claims never override registered ones", Request{ClientID: "c", Audience: []string{"a"}, Lifetime: time.Minute,
			Extra: map[string]any{"tenant": "acme", "sub": "evil", "iss": "evil", "exp": 1, "nested": map[string]any{"k": []int{1}}}},
			func(t *testing.T, _, c map[string]any) {
				if c["tenant"] != "acme" || c["sub"] != "c" || c["iss"] != "https://issuer" || c["exp"] == float64(1) || c["nested"] == nil {
					t.Errorf("claims %v", c)
				}
			}},
		{"a certificate binding is cnf.x5t#S256; a custom cnf never overrides it", Request{ClientID: "c", Audience: []string{"a"}, Lifetime: time.Minute,
			Cnf: &Confirmation{X5tS256: "abc"}, Extra: map[string]any{"cnf": map[string]any{"jkt": "evil"}}},
			func(t *testing.T, _, c map[string]any) {
				if cnf, _ := c["cnf"].(map[string]any); len(cnf) != 1 || cnf["x5t#S256"] != "abc" {
					t.Errorf("cnf %v", c["cnf"])
				}
			}},
		{"a DPoP binding is cnf.jkt", Request{ClientID: "c", Audience: []string{"a"}, Lifetime: time.Minute, Cnf: &Confirmation{JKT: "k"}},
			func(t *testing.T, _, c map[string]any) {
				if cnf, _ := c["cnf"].(map[string]any); len(cnf) != 1 || cnf["jkt"] != "k" {
					t.Errorf("cnf %v", c["cnf"])
				}
			}},
		{"a custom cnf claim is never written to a bearer token", Request{ClientID: "c", Audience: []string{"a"}, Lifetime: time.Minute,
			Extra: map[string]any{"cnf": map[string]any{"jkt": "evil"}}},
			func(t *testing.T, _, c map[string]any) {
				if _, ok := c["cnf"]; ok {
					t.Errorf("cnf %v", c["cnf"])
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := iss.Issue(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(tok.Raw, ".")
			if len(parts) != 3 {
				t.Fatalf("%d parts", len(parts))
			}
			var hdr, claims map[string]any
			for i, v := range []*map[string]any{&hdr, &claims} {
				b, err := base64.RawURLEncoding.DecodeString(parts[i])
				if err != nil {
					t.Fatal(err)
				}
				// Duplicate member names would be a forgery vector: none.
				if strings.Count(string(b), `"sub"`) > 1 {
					t.Fatalf("duplicate sub in %s", b)
				}
				if err := json.Unmarshal(b, v); err != nil {
					t.Fatalf("part %d: %v", i, err)
				}
			}
			tc.check(t, hdr, claims)
		})
	}
	if _, err := iss.Issue(Request{ClientID: "c", Lifetime: time.Minute}); err == nil {
		t.Error("a token without audience was issued")
	}
}

// The claim set is written by hand: it must be what encoding/json writes.
func TestClaimsJSON(t *testing.T) {
	base := claims{Iss: "https://auth.example.com", Sub: "m2mc_x", ClientID: "m2mc_x", Aud: "https://api.example.com/?a=<b>&c",
		Iat: 1, Nbf: 2, Exp: 903, JTI: "jti-\u2028", Scope: "orders:read orders:write"}
	tests := []struct {
		name   string
		mutate func(*claims)
	}{
		{"one audience", func(*claims) {}},
		{"several audiences", func(c *claims) { c.Aud = []string{"a", "b\"c"} }},
		{"no scope", func(c *claims) { c.Scope = "" }},
		{"dpop", func(c *claims) { c.Cnf = &Confirmation{JKT: "thumb"} }},
		{"certificate", func(c *claims) { c.Cnf = &Confirmation{X5tS256: "x5t"} }},
		{"both", func(c *claims) { c.Cnf = &Confirmation{JKT: "thumb", X5tS256: "x5t"} }},
		{"empty cnf", func(c *claims) { c.Cnf = &Confirmation{} }},
		{"odd text", func(c *claims) { c.Sub, c.ClientID = "\x00\xff\t", "é" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mutate(&c)
			want, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.appendJSON(nil); string(got) != string(want) {
				t.Errorf("appendJSON:\n got %s\nwant %s", got, want)
			}
		})
	}
}
