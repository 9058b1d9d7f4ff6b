package surface

import (
	"log/slog"
	"net/http"

	"github.com/m2mauth/m2mauth/internal/oauth"
)

// MachineHandler serves POST /v1/oauth/token/machine: a JSON body
// {"apiKey","secretKey"} (client id and secret), answered
// {"data":{"token","expires"}} or {"errors":[{"i18N","error","type"}]}.
// The client's default audience and scopes apply; there is no refresh.
type MachineHandler struct {
	svc     *oauth.Service
	limiter *oauth.FailureLimiter
	log     *slog.Logger
}

// NewMachineHandler returns a MachineHandler; limiter may be nil.
func NewMachineHandler(svc *oauth.Service, limiter *oauth.FailureLimiter, log *slog.Logger) *MachineHandler {
	return &MachineHandler{svc: svc, limiter: limiter, log: log}
}

type machineData struct {
	Token   string `json:"token"`
	Expires string `json:"expires"`
}

type machineError struct {
	I18N  string `json:"i18N"`
	Error string `json:"error"`
	Type  string `json:"type"`
}

// expiresFormat is RFC 3339 in UTC with milliseconds and Z, as the
// service documents ("2025-09-05T13:31:23.174Z").
const expiresFormat = "2006-01-02T15:04:05.000Z"

// ServeHTTP implements http.Handler.
func (h *MachineHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	oauth.NoStore(w)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, r, &oauth.Error{Status: http.StatusMethodNotAllowed, Code: oauth.CodeInvalidRequest, Description: "only POST"}, "")
		return
	}
	if h.limiter.Blocked(r) {
		h.fail(w, r, oauth.ErrTooManyRequests(), "")
		return
	}
	if !isJSON(r) {
		h.fail(w, r, &oauth.Error{Status: http.StatusUnsupportedMediaType, Code: oauth.CodeInvalidRequest, Description: "Content-Type must be application/json"}, "")
		return
	}
	body, e := oauth.ReadBody(r)
	if e != nil {
		h.fail(w, r, e, "")
		return
	}
	m, e := stringMembers(body, "apiKey", "secretKey")
	if e != nil {
		h.fail(w, r, e, "")
		return
	}
	if m["apiKey"] == "" || m["secretKey"] == "" {
		h.fail(w, r, oauth.ErrInvalidRequest("apiKey and secretKey are required"), "")
		return
	}
	resp, e := h.svc.Token(r.Context(), &oauth.TokenRequest{GrantType: oauth.GrantClientCredentials, ClientID: m["apiKey"], ClientSecret: m["secretKey"]})
	if e != nil {
		h.limiter.Record(r, e)
		h.fail(w, r, e, m["apiKey"])
		return
	}
	h.log.DebugContext(r.Context(), "token issued", "surface", Machine, "client_id", resp.ClientID)
	oauth.WriteJSON(w, http.StatusOK, struct {
		Data machineData `json:"data"`
	}{machineData{Token: resp.AccessToken, Expires: resp.ExpiresAt.UTC().Format(expiresFormat)}})
}

// fail renders e in the machine envelope: the one place this surface's
// errors are written. The client sees a fixed text per status, never the
// cause.
func (h *MachineHandler) fail(w http.ResponseWriter, r *http.Request, e *oauth.Error, clientID string) {
	oauth.LogError(h.log, r, e, Machine, clientID)
	status := e.Status
	var me machineError
	switch {
	case e.Code == oauth.CodeInvalidClient:
		status, me = http.StatusUnauthorized, machineError{"INVALID_CREDENTIALS", "Invalid API key or secret key", "Unauthorized"}
	case status == http.StatusMethodNotAllowed:
		me = machineError{"METHOD_NOT_ALLOWED", "Method not allowed - use POST", "MethodNotAllowed"}
	case status == http.StatusUnsupportedMediaType:
		me = machineError{"UNSUPPORTED_MEDIA_TYPE", "Unsupported media type - use application/json", "UnsupportedMediaType"}
	case status == http.StatusRequestEntityTooLarge:
		me = machineError{"PAYLOAD_TOO_LARGE", "Request body too large", "PayloadTooLarge"}
	case status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		me = machineError{"TOO_MANY_REQUESTS", "Too many requests - retry later", "TooManyRequests"}
	case status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		me = machineError{"SERVICE_UNAVAILABLE", "Service temporarily unavailable - retry shortly", "ServiceUnavailable"}
	case status >= 500:
		status, me = http.StatusInternalServerError, machineError{"SERVER_ERROR", "Internal server error", "ServerError"}
	case e.Code == oauth.CodeInvalidTarget || e.Code == oauth.CodeInvalidScope:
		// The client's defaults cannot make a token (e.g. several APIs and
		// no default audience): a configuration problem of the client.
		status, me = http.StatusBadRequest, machineError{"CLIENT_NOT_CONFIGURED", "Bad request - the API key has no default API to issue a token for", "BadRequest"}
	default:
		status, me = http.StatusBadRequest, machineError{"INVALID_REQUEST", "Bad request - invalid input", "BadRequest"}
	}
	oauth.WriteJSON(w, status, struct {
		Errors []machineError `json:"errors"`
	}{[]machineError{me}})
}
