package surface

import (
	"net/http"

	"github.com/m2mauth/m2mauth/internal/oauth"
)

// ATMCodec is the envelope of POST /auth/token: a JSON body with clientId
// and clientSecret (client credentials) or clientId and refresh_token
// (refresh; id_token is ignored), the grant type in grant_types or
// grantType, answered {"access_token","exp_access_token"} (+
// "refresh_token" when the client has refresh tokens enabled). Errors are
// RFC 6749 §5.2 objects.
type ATMCodec struct{ oauth.StandardCodec }

type atmResponse struct {
	AccessToken    string `json:"access_token"`
	ExpAccessToken int64  `json:"exp_access_token"`
	RefreshToken   string `json:"refresh_token,omitempty"`
}

// Parse implements oauth.Codec.
func (ATMCodec) Parse(r *http.Request) (*oauth.Request, *oauth.Error) {
	if !isJSON(r) {
		return nil, oauth.ErrInvalidRequest("Content-Type must be application/json")
	}
	body, e := oauth.ReadBody(r)
	if e != nil {
		return nil, e
	}
	m, e := stringMembers(body, "clientId", "clientSecret", "grant_types", "grantType", "refresh_token")
	if e != nil {
		return nil, e
	}
	// The service's documents use both names; either is accepted, and both
	// only when they agree.
	grant := m["grantType"]
	if g := m["grant_types"]; g != "" {
		if grant != "" && grant != g {
			return nil, oauth.ErrInvalidRequest("grant_types and grantType differ")
		}
		grant = g
	}
	if grant == "" {
		return nil, oauth.ErrInvalidRequest("grant_types (or grantType) is required")
	}
	creds := oauth.Credentials{ClientID: m["clientId"], Secret: m["clientSecret"]}
	if creds.ClientID != "" || creds.Secret != "" {
		creds.Method = oauth.AuthSecretPost
	}
	return &oauth.Request{GrantType: grant, Credentials: creds, RefreshToken: m["refresh_token"], PublicRefresh: true}, nil
}

// WriteToken implements oauth.Codec.
func (ATMCodec) WriteToken(w http.ResponseWriter, t *oauth.TokenResponse) {
	oauth.WriteJSON(w, http.StatusOK, atmResponse{AccessToken: t.AccessToken, ExpAccessToken: t.ExpiresIn, RefreshToken: t.RefreshToken})
}
