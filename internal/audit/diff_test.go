package audit

import (
	"encoding/json"
	"testing"
)

// An issuance's diff is written by hand: it must be what encoding/json
// writes for the map it stands for.
func TestTokenDiffJSON(t *testing.T) {
	tests := []struct {
		name string
		it   tokenItem
	}{
		{"bearer", tokenItem{audience: []string{"https://api.example.com/?a=<b>&c"}, scopes: []string{"orders:read", "orders:write"}}},
		{"reused, no scopes", tokenItem{audience: []string{"a", "b"}, reused: true}},
		{"bound", tokenItem{audience: []string{"a"}, scopes: []string{}, binding: "dpop+x5t"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			diff := map[string]map[string]any{
				"audience": {"after": tc.it.audience}, "scopes": {"after": tc.it.scopes}, "reused": {"after": tc.it.reused},
			}
			if tc.it.binding != "" {
				diff["binding"] = map[string]any{"after": tc.it.binding}
			}
			want, err := json.Marshal(diff)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.it.appendDiff(nil); string(got) != string(want) {
				t.Errorf("appendDiff:\n got %s\nwant %s", got, want)
			}
		})
	}
}
