package admin

import (
	"net/http"
	"net/url"
)

func (h *Handler) listAPIs(w http.ResponseWriter, r *http.Request) error {
	opts, err := listOptions(r)
	if err != nil {
		return err
	}
	page, err := h.svc.ListAPIs(r.Context(), opts)
	if err != nil {
		return err
	}
	out := ListResponse[APIResource]{Items: make([]APIResource, 0, len(page.Items)), NextCursor: cursor(page.NextCursor)}
	for _, a := range page.Items {
		out.Items = append(out.Items, apiResource(a))
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

func (h *Handler) createAPI(w http.ResponseWriter, r *http.Request) error {
	var in APIInput
	if err := decode(r, &in); err != nil {
		return err
	}
	a, err := h.svc.CreateAPI(r.Context(), in)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "api created", "identifier", a.Identifier)
	w.Header().Set("Location", "/admin/v1/apis/"+url.PathEscape(a.Identifier))
	h.writeResource(w, http.StatusCreated, a.Version, apiResource(a))
	return nil
}

func (h *Handler) getAPI(w http.ResponseWriter, r *http.Request) error {
	a, err := h.svc.GetAPI(r.Context(), r.PathValue("identifier"))
	if err != nil {
		return err
	}
	h.writeResource(w, http.StatusOK, a.Version, apiResource(a))
	return nil
}

var apiEmpties = map[string]string{"name": `""`, "scopes": `[]`, "scope_descriptions": `{}`, "token_lifetime_seconds": `0`, "discoverable": `false`}

func (h *Handler) patchAPI(w http.ResponseWriter, r *http.Request) error {
	var p APIPatch
	if err := decodePatch(r, &p, apiEmpties); err != nil {
		return err
	}
	return h.updateAPI(w, r, p)
}

func (h *Handler) putAPI(w http.ResponseWriter, r *http.Request) error {
	var in APIInput
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Identifier != "" && in.Identifier != r.PathValue("identifier") {
		return &ValidationError{Fields: []FieldError{{"identifier", "cannot change; create a new API instead"}}}
	}
	scopes := in.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	// PUT replaces the whole API: no descriptions means none.
	descs := in.ScopeDescriptions
	if descs == nil {
		descs = map[string]string{}
	}
	return h.updateAPI(w, r, APIPatch{Name: &in.Name, Scopes: &scopes, ScopeDescriptions: &descs,
		TokenLifetimeSeconds: &in.TokenLifetimeSeconds, Discoverable: &in.Discoverable})
}

func (h *Handler) updateAPI(w http.ResponseWriter, r *http.Request, p APIPatch) error {
	a, err := h.svc.UpdateAPI(r.Context(), r.PathValue("identifier"), r.Header.Get("If-Match"), p)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "api updated", "identifier", a.Identifier, "version", a.Version)
	h.writeResource(w, http.StatusOK, a.Version, apiResource(a))
	return nil
}

func (h *Handler) deleteAPI(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("identifier")
	force := r.URL.Query().Get("force")
	if force != "" && force != "true" && force != "false" {
		return &ValidationError{Fields: []FieldError{{"force", "must be true or false"}}}
	}
	if err := h.svc.DeleteAPI(r.Context(), id, r.Header.Get("If-Match"), force == "true"); err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "api deleted", "identifier", id, "force", force == "true")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
