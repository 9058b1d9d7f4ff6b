package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/verify"
)

// MaxBodyBytes caps an admin request body.
const MaxBodyBytes = 1 << 20

// tokenVerifier validates admin bearer tokens.
type tokenVerifier interface {
	Verify(ctx context.Context, token string) (*verify.Claims, error)
}

// Handler serves the admin API.
type Handler struct {
	svc      *Service
	verifier tokenVerifier
	log      *slog.Logger
}

// NewHandler returns a Handler; verifier must accept only tokens for the
// admin audience.
func NewHandler(svc *Service, v tokenVerifier, log *slog.Logger) *Handler {
	return &Handler{svc: svc, verifier: v, log: log}
}

// Route is one admin route.
type Route struct {
	Pattern string
	Handle  func(w http.ResponseWriter, r *http.Request) error
}

// Routes returns the admin routes (patterns in net/http ServeMux syntax).
func (h *Handler) Routes() []Route {
	return []Route{
		{"GET /admin/v1/apis", h.listAPIs},
		{"POST /admin/v1/apis", h.createAPI},
		{"GET /admin/v1/apis/{identifier}", h.getAPI},
		{"DELETE /admin/v1/apis/{identifier}", h.deleteAPI},
		{"GET /admin/v1/clients", h.listClients},
		{"POST /admin/v1/clients", h.createClient},
		{"GET /admin/v1/clients/{id}", h.getClient},
		{"DELETE /admin/v1/clients/{id}", h.deleteClient},
	}
}

// Serve wraps an admin handler with authentication and error rendering.
func (h *Handler) Serve(fn func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if err := h.authenticate(w, r); err != nil {
			h.writeError(w, r, err)
			return
		}
		if err := fn(w, r); err != nil {
			h.writeError(w, r, err)
		}
	}
}

// authError is an RFC 6750 §3 bearer-token failure.
type authError struct {
	status int
	code   string // "" when no credentials were sent
	detail string
}

func (e *authError) Error() string { return e.detail }

func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) error {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return &authError{http.StatusUnauthorized, "", "a bearer token for the admin API is required"}
	}
	claims, err := h.verifier.Verify(r.Context(), strings.TrimSpace(token))
	if err != nil {
		return &authError{http.StatusUnauthorized, "invalid_token", "the bearer token is not valid for the admin API"}
	}
	if !claims.HasScope(AdminScope) {
		return &authError{http.StatusForbidden, "insufficient_scope", "the token lacks the admin scope"}
	}
	return nil
}

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

// writeError renders err as problem+json: the one place admin errors are
// written. Unexpected errors are logged and shown only as a generic 500.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	p := problem{Type: "about:blank"}
	var ae *authError
	var ve *ValidationError
	var syn *requestError
	var ce *ConflictError
	switch {
	case errors.As(err, &ae):
		p.Status, p.Detail = ae.status, ae.detail
		v := `Bearer realm="m2mauth-admin"`
		if ae.code != "" {
			v += `, error="` + ae.code + `"`
		}
		if ae.code == "insufficient_scope" {
			v += `, scope="` + AdminScope + `"`
		}
		w.Header().Set("WWW-Authenticate", v)
	case errors.As(err, &ve):
		p.Status, p.Detail, p.Errors = http.StatusBadRequest, "the request has invalid fields", ve.Fields
	case errors.As(err, &syn):
		p.Status, p.Detail = syn.status, syn.detail
	case errors.Is(err, store.ErrNotFound):
		p.Status, p.Detail = http.StatusNotFound, "no such resource"
	case errors.As(err, &ce):
		p.Status, p.Detail = http.StatusConflict, ce.Detail
	case errors.Is(err, store.ErrConflict):
		p.Status, p.Detail = http.StatusConflict, "the change conflicts with the current state; reload and retry"
	default:
		h.log.ErrorContext(r.Context(), "admin request failed", "error", err)
		p.Status, p.Detail = http.StatusInternalServerError, "internal server error"
	}
	p.Title = http.StatusText(p.Status)
	writeJSON(w, p.Status, "application/problem+json", p)
}

// requestError is a malformed request.
type requestError struct {
	status int
	detail string
}

func (e *requestError) Error() string { return e.detail }

// decode reads a strict JSON body into v.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return &requestError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &requestError{http.StatusRequestEntityTooLarge, "the request body is too large"}
		}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return &ValidationError{Fields: []FieldError{{typeErr.Field, "has the wrong type"}}}
		}
		if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &ValidationError{Fields: []FieldError{{strings.Trim(msg, `"`), "is not a known field"}}}
		}
		return &requestError{http.StatusBadRequest, "the body is not valid JSON"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &requestError{http.StatusBadRequest, "the body must hold exactly one JSON object"}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"title":"Internal Server Error","status":500}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// ---- resources ----

// APIResource is an API as the admin API shows it.
type APIResource struct {
	ID                   string    `json:"id"`
	Identifier           string    `json:"identifier"`
	Name                 string    `json:"name"`
	Scopes               []string  `json:"scopes"`
	TokenLifetimeSeconds int64     `json:"token_lifetime_seconds"`
	Builtin              bool      `json:"builtin"`
	CreatedAt            time.Time `json:"created_at"`
	UpdatedAt            time.Time `json:"updated_at"`
}

func apiResource(a store.API) APIResource {
	return APIResource{
		ID: a.ID, Identifier: a.Identifier, Name: a.Name, Scopes: a.Scopes,
		TokenLifetimeSeconds: int64(a.TokenLifetime / time.Second), Builtin: a.Builtin != "",
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
	}
}

// SecretResource describes a client secret; the secret itself is never shown
// after creation.
type SecretResource struct {
	ID         string     `json:"id"`
	Hint       string     `json:"hint"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// ClientResource is a client as the admin API shows it. ClientSecret is set
// only in the response that created it.
type ClientResource struct {
	ClientID             string           `json:"client_id"`
	ClientSecret         string           `json:"client_secret,omitempty"`
	Name                 string           `json:"name"`
	Description          string           `json:"description"`
	Grants               []GrantInput     `json:"grants"`
	DefaultAudience      string           `json:"default_audience"`
	TokenLifetimeSeconds int64            `json:"token_lifetime_seconds"`
	Secrets              []SecretResource `json:"secrets"`
	CreatedAt            time.Time        `json:"created_at"`
	UpdatedAt            time.Time        `json:"updated_at"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func clientResource(c store.Client) ClientResource {
	out := ClientResource{
		ClientID: c.ID, Name: c.Name, Description: c.Description, DefaultAudience: c.DefaultAudience,
		TokenLifetimeSeconds: int64(c.TokenLifetime / time.Second), CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
		Grants: []GrantInput{}, Secrets: []SecretResource{},
	}
	for _, g := range c.Grants {
		out.Grants = append(out.Grants, GrantInput{Audience: g.Audience, Scopes: g.Scopes})
	}
	for _, s := range c.Secrets {
		out.Secrets = append(out.Secrets, SecretResource{ID: s.ID, Hint: s.Hint, CreatedAt: s.CreatedAt,
			ExpiresAt: optTime(s.ExpiresAt), LastUsedAt: optTime(s.LastUsedAt)})
	}
	return out
}

type list[T any] struct {
	Items []T `json:"items"`
}

// ---- handlers ----

func (h *Handler) listAPIs(w http.ResponseWriter, r *http.Request) error {
	apis, err := h.svc.ListAPIs(r.Context())
	if err != nil {
		return err
	}
	out := list[APIResource]{Items: make([]APIResource, 0, len(apis))}
	for _, a := range apis {
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
	writeJSON(w, http.StatusCreated, "application/json", apiResource(a))
	return nil
}

func (h *Handler) getAPI(w http.ResponseWriter, r *http.Request) error {
	a, err := h.svc.GetAPI(r.Context(), r.PathValue("identifier"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "application/json", apiResource(a))
	return nil
}

func (h *Handler) deleteAPI(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("identifier")
	if err := h.svc.DeleteAPI(r.Context(), id); err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "api deleted", "identifier", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listClients(w http.ResponseWriter, r *http.Request) error {
	clients, err := h.svc.ListClients(r.Context())
	if err != nil {
		return err
	}
	out := list[ClientResource]{Items: make([]ClientResource, 0, len(clients))}
	for _, c := range clients {
		out.Items = append(out.Items, clientResource(c))
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

func (h *Handler) createClient(w http.ResponseWriter, r *http.Request) error {
	var in ClientInput
	if err := decode(r, &in); err != nil {
		return err
	}
	c, plain, err := h.svc.CreateClient(r.Context(), in)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "client created", "client_id", c.ID)
	res := clientResource(c)
	res.ClientSecret = plain
	writeJSON(w, http.StatusCreated, "application/json", res)
	return nil
}

func (h *Handler) getClient(w http.ResponseWriter, r *http.Request) error {
	c, err := h.svc.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "application/json", clientResource(c))
	return nil
}

func (h *Handler) deleteClient(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := h.svc.DeleteClient(r.Context(), id); err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "client deleted", "client_id", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
