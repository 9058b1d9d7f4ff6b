package admin

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// EnvironmentResource is an environment as the admin API shows it.
type EnvironmentResource struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	// SigningAlg and KeyRotationPeriodSeconds: "" and 0 mean the
	// deployment's settings.
	SigningAlg               string `json:"signing_alg"`
	KeyRotationPeriodSeconds int64  `json:"key_rotation_period"`
	Default                  bool   `json:"default"`
	// Issuer is its issuer URL; AdminAudience the audience of its admin
	// API's tokens.
	Issuer        string    `json:"issuer"`
	AdminAudience string    `json:"admin_audience"`
	Version       int64     `json:"version"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func (h *Handler) environmentResource(e store.Environment) EnvironmentResource {
	iss := h.svc.EnvIssuer(e.Name)
	return EnvironmentResource{
		Name: e.Name, DisplayName: e.DisplayName, SigningAlg: e.SigningAlg,
		KeyRotationPeriodSeconds: int64(e.KeyRotationPeriod / time.Second), Default: e.Name == store.DefaultEnv,
		Issuer: iss, AdminAudience: iss + "/admin", Version: e.Version, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
}

// EnvironmentDeletionResponse is the confirmation an environment's
// deletion needs, and what the deletion would remove.
type EnvironmentDeletionResponse struct {
	Confirmation string              `json:"confirmation"`
	ExpiresAt    time.Time           `json:"expires_at"`
	Environment  EnvironmentResource `json:"environment"`
	WillDelete   EnvironmentContents `json:"will_delete"`
}

// environmentsOn answers the environment routes of a server that cannot
// manage environments.
func (h *Handler) environmentsOn() error {
	if h.svc.EnvIssuer(store.DefaultEnv) == "" {
		return &requestError{http.StatusNotFound, ErrEnvironmentsOff.Error()}
	}
	return nil
}

// changedEnv tells the server an environment changed.
func (h *Handler) changedEnv(name string) {
	if h.envChanged != nil {
		h.envChanged(name)
	}
}

func (h *Handler) listEnvironments(w http.ResponseWriter, r *http.Request) error {
	if err := h.environmentsOn(); err != nil {
		return err
	}
	opts, err := listOptions(r)
	if err != nil {
		return err
	}
	if opts.Audience != "" {
		return &ValidationError{Fields: []FieldError{{"audience", "does not filter environments"}}}
	}
	if q := r.URL.Query().Get("q"); q != "" {
		opts.NameContains = q
	}
	page, err := h.svc.ListEnvironments(r.Context(), opts)
	if err != nil {
		return err
	}
	out := ListResponse[EnvironmentResource]{Items: make([]EnvironmentResource, 0, len(page.Items)), NextCursor: cursor(page.NextCursor)}
	for _, e := range page.Items {
		out.Items = append(out.Items, h.environmentResource(e))
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

func (h *Handler) createEnvironment(w http.ResponseWriter, r *http.Request) error {
	var in EnvironmentInput
	if err := decode(r, &in); err != nil {
		return err
	}
	if err := h.environmentsOn(); err != nil {
		return err
	}
	e, err := h.svc.CreateEnvironment(r.Context(), in)
	if err != nil {
		return err
	}
	h.changedEnv(e.Name)
	h.log.InfoContext(r.Context(), "environment created", "environment", e.Name)
	w.Header().Set("Location", "/admin/v1/environments/"+url.PathEscape(e.Name))
	h.writeResource(w, http.StatusCreated, e.Version, h.environmentResource(e))
	return nil
}

func (h *Handler) getEnvironment(w http.ResponseWriter, r *http.Request) error {
	if err := h.environmentsOn(); err != nil {
		return err
	}
	e, err := h.svc.GetEnvironment(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	h.writeResource(w, http.StatusOK, e.Version, h.environmentResource(e))
	return nil
}

var environmentEmpties = map[string]string{"display_name": `""`, "signing_alg": `""`, "key_rotation_period": `0`}

func (h *Handler) patchEnvironment(w http.ResponseWriter, r *http.Request) error {
	var p EnvironmentPatch
	if err := decodePatch(r, &p, environmentEmpties); err != nil {
		return err
	}
	if err := h.environmentsOn(); err != nil {
		return err
	}
	e, err := h.svc.UpdateEnvironment(r.Context(), r.PathValue("name"), r.Header.Get("If-Match"), p)
	if err != nil {
		return err
	}
	h.changedEnv(e.Name)
	h.log.InfoContext(r.Context(), "environment updated", "environment", e.Name, "version", e.Version)
	h.writeResource(w, http.StatusOK, e.Version, h.environmentResource(e))
	return nil
}

func (h *Handler) prepareEnvironmentDeletion(w http.ResponseWriter, r *http.Request) error {
	if err := decodeOptional(r, &struct{}{}); err != nil {
		return err
	}
	if err := h.environmentsOn(); err != nil {
		return err
	}
	d, err := h.svc.PrepareEnvironmentDeletion(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	// The confirmation is no secret of value (it only lets a deployment
	// admin do what it may do anyway), yet it stays out of the log.
	h.log.InfoContext(r.Context(), "environment deletion prepared", "environment", d.Environment.Name, "version", d.Environment.Version,
		"apis", d.WillDelete.APIs, "clients", d.WillDelete.Clients, "expires_at", d.ExpiresAt)
	writeJSON(w, http.StatusOK, "application/json", EnvironmentDeletionResponse{
		Confirmation: d.Confirmation, ExpiresAt: d.ExpiresAt, Environment: h.environmentResource(d.Environment), WillDelete: d.WillDelete,
	})
	return nil
}

func (h *Handler) deleteEnvironment(w http.ResponseWriter, r *http.Request) error {
	if err := h.environmentsOn(); err != nil {
		return err
	}
	name := r.PathValue("name")
	q := r.URL.Query()
	if len(q["confirmation"]) > 1 {
		return &ValidationError{Fields: []FieldError{{"confirmation", "must be given once"}}}
	}
	err := h.svc.DeleteEnvironment(r.Context(), name, q.Get("confirmation"))
	if errors.Is(err, store.ErrNotFound) {
		return &requestError{http.StatusNotFound, "no such environment"}
	}
	if err != nil {
		return err
	}
	h.changedEnv(name)
	h.log.WarnContext(r.Context(), "environment deleted, with everything in it", "environment", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
