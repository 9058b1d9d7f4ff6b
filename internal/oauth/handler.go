package oauth

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/m2mauth/m2mauth/internal/secret"
)

// Handler serves the standard token endpoint, POST /oauth/token.
type Handler struct {
	svc     *Service
	limiter *FailureLimiter
	log     *slog.Logger
}

// NewHandler returns a Handler; limiter may be nil.
func NewHandler(svc *Service, limiter *FailureLimiter, log *slog.Logger) *Handler {
	return &Handler{svc: svc, limiter: limiter, log: log}
}

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// Token serves POST /oauth/token.
func (h *Handler) Token(w http.ResponseWriter, r *http.Request) { h.serve(w, r, "") }

// TokenFor returns the same endpoint restricted to one audience: a request
// for another is invalid_target, and one naming none gets this one. It
// serves the admin login, which must work whichever surfaces are on.
func (h *Handler) TokenFor(audience string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, audience) }
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, onlyAudience string) {
	NoStore(w)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, r, newError(http.StatusMethodNotAllowed, CodeInvalidRequest, "the token endpoint accepts only POST"), "")
		return
	}
	if h.limiter.Blocked(r) {
		h.fail(w, r, ErrTooManyRequests(), "")
		return
	}
	req, e := ParseTokenRequest(r)
	if e != nil {
		h.fail(w, r, e, "")
		return
	}
	if onlyAudience != "" {
		if len(req.Resources) == 0 {
			req.Resources = []string{onlyAudience}
		}
		for _, a := range req.Resources {
			if a != onlyAudience {
				h.fail(w, r, newError(http.StatusBadRequest, CodeInvalidTarget, "this endpoint issues tokens for the admin API only"), req.ClientID)
				return
			}
		}
	}
	resp, e := h.svc.Token(r.Context(), req)
	if e != nil {
		h.limiter.Record(r, e)
		h.fail(w, r, e, req.ClientID)
		return
	}
	h.log.DebugContext(r.Context(), "token issued", "surface", "standard", "client_id", resp.ClientID, "grant_type", req.GrantType)
	WriteJSON(w, http.StatusOK, tokenResponse{
		AccessToken: resp.AccessToken, TokenType: "Bearer",
		ExpiresIn: resp.ExpiresIn, Scope: strings.Join(resp.Scopes, " "), RefreshToken: resp.RefreshToken,
	})
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, e *Error, clientID string) {
	LogError(h.log, r, e, "standard", clientID)
	WriteError(w, e)
}

// NoStore sets the RFC 6749 §5.1 cache headers every token response carries.
func NoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// WriteError renders e as an RFC 6749 §5.2 error object. It is the one place
// the standard envelope is written.
func WriteError(w http.ResponseWriter, e *Error) {
	switch e.Status {
	case http.StatusUnauthorized:
		// RFC 6749 §5.2 and RFC 9110 §15.5.2: a 401 names the scheme.
		w.Header().Set("WWW-Authenticate", `Basic realm="m2mauth", charset="UTF-8"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
	}
	WriteJSON(w, e.Status, struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
}

// LogError records a failed token request. Client errors are logged at
// info, server-side failures at error with their cause. Secrets never reach
// the log: only the code, the description, the client id and the cause.
func LogError(log *slog.Logger, r *http.Request, e *Error, surface, clientID string) {
	attrs := []any{"surface", surface, "error", e.Code, "status", e.Status}
	// A caller who swapped id and secret would put the secret here: such
	// values are not logged.
	if clientID != "" && len(clientID) <= 128 && !strings.HasPrefix(clientID, secret.SecretPrefix) {
		attrs = append(attrs, "client_id", clientID)
	}
	if e.Status >= 500 {
		log.ErrorContext(r.Context(), "token request failed", append(attrs, "cause", e.Err)...)
		return
	}
	log.InfoContext(r.Context(), "token request refused", append(attrs, "reason", e.Description)...)
}

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"server_error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
