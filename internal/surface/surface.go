// Package surface implements the compatibility envelopes of the services
// m2mauth replaces, so that their existing clients work unchanged once their
// base URL points here. Each surface is an oauth.Codec: it parses its own
// request format into the one oauth.Request and renders every answer,
// success or error, in its own envelope from one place; the oauth.Endpoint
// pipeline does the rest, as for the standard endpoint, so the tokens are
// identical.
package surface

import (
	"encoding/json"
	"mime"
	"net/http"

	"github.com/m2mauth/m2mauth/internal/oauth"
)

// Names of the surfaces, for --surfaces.
const (
	Standard = "standard" // POST /oauth/token (RFC 6749)
	Machine  = "machine"  // POST /v1/oauth/token/machine
	ATM      = "atm"      // POST /auth/token and /auth/.well-known/jwks.json
)

// isJSON reports whether the request says its body is JSON.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// stringMembers decodes a JSON object whose members named in want must be
// strings when present (null counts as absent); other members are ignored.
// Repeated members are an error.
func stringMembers(body []byte, want ...string) (map[string]string, *oauth.Error) {
	members, e := oauth.JSONObjectMembers(body)
	if e != nil {
		return nil, e
	}
	out := map[string]string{}
	for _, name := range want {
		raw, ok := members[name]
		if !ok || string(raw) == "null" {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, oauth.ErrInvalidRequest("%s must be a string", name)
		}
		out[name] = s
	}
	return out, nil
}
