package surface

import (
	"net/http"

	"github.com/m2mauth/m2mauth/internal/oauth"
)

// MachineCodec is the envelope of POST /v1/oauth/token/machine: a JSON
// body {"apiKey","secretKey"} (client id and secret), answered
// {"data":{"token","expires"}} or {"errors":[{"i18N","error","type"}]}.
// The client's default audience and scopes apply; there is no refresh.
type MachineCodec struct{}

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

// Parse implements oauth.Codec.
func (MachineCodec) Parse(r *http.Request) (*oauth.Request, *oauth.Error) {
	if !isJSON(r) {
		return nil, &oauth.Error{Status: http.StatusUnsupportedMediaType, Code: oauth.CodeInvalidRequest, Description: "Content-Type must be application/json"}
	}
	body, e := oauth.ReadBody(r)
	if e != nil {
		return nil, e
	}
	m, e := stringMembers(body, "apiKey", "secretKey")
	if e != nil {
		return nil, e
	}
	if m["apiKey"] == "" || m["secretKey"] == "" {
		return nil, oauth.ErrInvalidRequest("apiKey and secretKey are required")
	}
	return &oauth.Request{GrantType: oauth.GrantClientCredentials, Credentials: oauth.Credentials{
		Method: oauth.AuthSecretPost, ClientID: m["apiKey"], Secret: m["secretKey"]}}, nil
}

// WriteToken implements oauth.Codec.
func (MachineCodec) WriteToken(w http.ResponseWriter, t *oauth.TokenResponse) {
	oauth.WriteJSON(w, http.StatusOK, struct {
		Data machineData `json:"data"`
	}{machineData{Token: t.AccessToken, Expires: t.ExpiresAt.UTC().Format(expiresFormat)}})
}

// WriteError implements oauth.Codec: the one place this surface's errors
// are written. The client sees a fixed text per status, never the cause.
func (MachineCodec) WriteError(w http.ResponseWriter, e *oauth.Error) {
	status := e.Status
	var me machineError
	switch {
	case e.Code == oauth.CodeInvalidClient:
		status, me = http.StatusUnauthorized, machineError{"INVALID_CREDENTIALS", "Invalid API key or secret key", "Unauthorized"}
	case status == http.StatusMethodNotAllowed:
		me = machineError{"METHOD_NOT_ALLOWED", "Method not allowed - use POST", "MethodNotAllowed"}
	case status == http.StatusUnsupportedMediaType:
		me = machineError{"UNSUPPORTED_MEDIA_TYPE", "Unsupported media type - use application/json", "UnsupportedMediaType"}
	case status == http.StatusRequestTimeout:
		me = machineError{"REQUEST_TIMEOUT", "Request timeout - the body did not arrive in time", "RequestTimeout"}
	case status == http.StatusRequestEntityTooLarge:
		me = machineError{"PAYLOAD_TOO_LARGE", "Request body too large", "PayloadTooLarge"}
	case status == http.StatusTooManyRequests:
		oauth.SetRetryAfter(w.Header(), e)
		me = machineError{"TOO_MANY_REQUESTS", "Too many requests - retry later", "TooManyRequests"}
	case status == http.StatusServiceUnavailable:
		oauth.SetRetryAfter(w.Header(), e)
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
