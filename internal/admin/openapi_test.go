package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	"github.com/pb33f/libopenapi-validator/schema_validation"
)

// The committed document is a valid OpenAPI 3.1 document.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, err := libopenapi.NewDocument(OpenAPI)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Fatalf("version %s, want 3.1.0", v)
	}
	ok, errs := schema_validation.ValidateOpenAPIDocument(doc)
	for _, e := range errs {
		t.Errorf("%s: %s", e.Message, e.Reason)
		for _, se := range e.SchemaValidationErrors {
			t.Errorf("  %s at %s", se.Reason, se.Location)
		}
	}
	if !ok {
		t.Fatal("the OpenAPI document does not validate")
	}
	if _, errs := doc.BuildV3Model(); errs != nil {
		t.Fatalf("build model: %v", errs)
	}
}

// Every admin route is in the document, with its method, and the document
// describes no route the server lacks.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	routes := []string{"GET /admin/v1/openapi.json", "POST /admin/v1/token"}
	for _, r := range (&Handler{}).Routes() {
		routes = append(routes, r.Pattern)
	}
	for _, r := range routes {
		if !documented[r] {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("openapi.json documents %s, which the server does not serve", d)
		}
	}
}

func TestServeOpenAPI(t *testing.T) {
	w := httptest.NewRecorder()
	ServeOpenAPI(w, httptest.NewRequest(http.MethodGet, "/admin/v1/openapi.json", nil))
	if w.Code != 200 || w.Body.String() != string(OpenAPI) || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", w.Code, w.Header())
	}
}
