package surface

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/oauth"
)

// Server-side failures render a fixed text: never the cause.
func TestMachineServerErrorsHideTheirCause(t *testing.T) {
	cause := errors.New(`dial tcp 10.0.0.5:5432: password authentication failed for user "m2m" (password=hunter2)`)
	tests := []struct {
		e      *oauth.Error
		status int
		want   string
	}{
		{oauth.ErrServer(cause), 500, `{"errors":[{"i18N":"SERVER_ERROR","error":"Internal server error","type":"ServerError"}]}`},
		{oauth.ErrUnavailable(cause), 503, `{"errors":[{"i18N":"SERVICE_UNAVAILABLE","error":"Service temporarily unavailable - retry shortly","type":"ServiceUnavailable"}]}`},
	}
	for _, tc := range tests {
		w := httptest.NewRecorder()
		MachineCodec{}.WriteError(w, tc.e)
		if w.Code != tc.status || strings.TrimSpace(w.Body.String()) != tc.want {
			t.Errorf("%d %s, want %d %s", w.Code, w.Body, tc.status, tc.want)
		}
		if strings.Contains(w.Body.String(), "hunter2") || strings.Contains(w.Body.String(), "10.0.0.5") {
			t.Error("the body leaks the cause")
		}
		if tc.status == 503 && w.Header().Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
}
