package admin

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 description of the admin API.
//
//go:embed openapi.json
var OpenAPI []byte

// ServeOpenAPI serves the OpenAPI document. It needs no token: it describes
// the API and holds no data.
func ServeOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(OpenAPI)
}
