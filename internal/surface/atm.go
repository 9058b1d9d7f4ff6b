package surface

import (
	"log/slog"
	"net/http"

	"github.com/m2mauth/m2mauth/internal/oauth"
)

// ATMHandler serves POST /auth/token: a JSON body with clientId and
// clientSecret (client credentials) or clientId and refresh_token (refresh;
// id_token is ignored), the grant type in grant_types or grantType,
// answered {"access_token","exp_access_token"} (+ "refresh_token" when the
// client has refresh tokens enabled). Errors are RFC 6749 §5.2 objects.
type ATMHandler struct {
	svc     *oauth.Service
	limiter *oauth.FailureLimiter
	log     *slog.Logger
}

// NewATMHandler returns an ATMHandler; limiter may be nil.
func NewATMHandler(svc *oauth.Service, limiter *oauth.FailureLimiter, log *slog.Logger) *ATMHandler {
	return &ATMHandler{svc: svc, limiter: limiter, log: log}
}

type atmResponse struct {
	AccessToken    string `json:"access_token"`
	ExpAccessToken int64  `json:"exp_access_token"`
	RefreshToken   string `json:"refresh_token,omitempty"`
}

// ServeHTTP implements http.Handler.
func (h *ATMHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	oauth.NoStore(w)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, r, &oauth.Error{Status: http.StatusMethodNotAllowed, Code: oauth.CodeInvalidRequest, Description: "the token endpoint accepts only POST"}, "")
		return
	}
	if h.limiter.Blocked(r) {
		h.fail(w, r, oauth.ErrTooManyRequests(), "")
		return
	}
	if !isJSON(r) {
		h.fail(w, r, oauth.ErrInvalidRequest("Content-Type must be application/json"), "")
		return
	}
	body, e := oauth.ReadBody(r)
	if e != nil {
		h.fail(w, r, e, "")
		return
	}
	m, e := stringMembers(body, "clientId", "clientSecret", "grant_types", "grantType", "refresh_token")
	if e != nil {
		h.fail(w, r, e, "")
		return
	}
	// The service's documents use both names; either is accepted, and both
	// only when they agree.
	grant := m["grantType"]
	if g := m["grant_types"]; g != "" {
		if grant != "" && grant != g {
			h.fail(w, r, oauth.ErrInvalidRequest("grant_types and grantType differ"), "")
			return
		}
		grant = g
	}
	if grant == "" {
		h.fail(w, r, oauth.ErrInvalidRequest("grant_types (or grantType) is required"), "")
		return
	}
	req := &oauth.TokenRequest{GrantType: grant, ClientID: m["clientId"], ClientSecret: m["clientSecret"],
		RefreshToken: m["refresh_token"], PublicRefresh: true}
	resp, e := h.svc.Token(r.Context(), req)
	if e != nil {
		h.limiter.Record(r, e)
		h.fail(w, r, e, req.ClientID)
		return
	}
	h.log.DebugContext(r.Context(), "token issued", "surface", ATM, "client_id", resp.ClientID, "grant_type", grant)
	oauth.WriteJSON(w, http.StatusOK, atmResponse{AccessToken: resp.AccessToken, ExpAccessToken: resp.ExpiresIn, RefreshToken: resp.RefreshToken})
}

// fail renders e as an RFC 6749 §5.2 error: the one place this surface's
// errors are written.
func (h *ATMHandler) fail(w http.ResponseWriter, r *http.Request, e *oauth.Error, clientID string) {
	oauth.LogError(h.log, r, e, ATM, clientID)
	oauth.WriteError(w, e)
}
