package admin

import (
	"net/http"
	"net/url"
	"time"
)

func (h *Handler) listClients(w http.ResponseWriter, r *http.Request) error {
	opts, err := listOptions(r)
	if err != nil {
		return err
	}
	h.beforeRead(r.Context())
	page, err := h.svc.ListClients(r.Context(), opts)
	if err != nil {
		return err
	}
	now := h.svc.now()
	out := ListResponse[ClientResource]{Items: make([]ClientResource, 0, len(page.Items)), NextCursor: cursor(page.NextCursor)}
	for _, c := range page.Items {
		out.Items = append(out.Items, clientResource(c, now))
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

func (h *Handler) createClient(w http.ResponseWriter, r *http.Request) error {
	var in ClientInput
	if err := decode(r, &in); err != nil {
		return err
	}
	imported := in.ClientSecret != ""
	c, plain, err := h.svc.CreateClient(r.Context(), in)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "client created", "client_id", c.ID, "imported_secret", imported)
	res := clientResource(c, h.svc.now())
	if len(c.Secrets) > 0 {
		if !imported {
			res.ClientSecret = plain // an imported secret is the caller's already
		}
		res.SecretID = c.Secrets[0].ID
	}
	w.Header().Set("Location", "/admin/v1/clients/"+url.PathEscape(c.ID))
	h.writeResource(w, http.StatusCreated, c.Version, res)
	return nil
}

func (h *Handler) getClient(w http.ResponseWriter, r *http.Request) error {
	h.beforeRead(r.Context())
	c, err := h.svc.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	h.writeResource(w, http.StatusOK, c.Version, clientResource(c, h.svc.now()))
	return nil
}

var clientEmpties = map[string]string{"name": `""`, "description": `""`, "grants": `[]`, "default_audience": `""`,
	"token_lifetime_seconds": `0`, "custom_claims": `{}`, "metadata": `{}`, "disabled": `false`, "refresh_tokens": `false`, "introspect": `[]`, "token_reuse_min_remaining": `0`,
	"token_endpoint_auth_method": `""`, "jwks": `""`, "jwks_uri": `""`, "accept_secrets": `false`, "accept_token_endpoint_audience": `false`, "federation": `[]`,
	"tls_client_auth_subject_dn": `""`, "tls_client_auth_san_dns": `""`, "tls_client_auth_san_uri": `""`, "tls_client_auth_san_ip": `""`, "tls_client_auth_san_email": `""`,
	"tls_client_certificate_bound_access_tokens": `false`, "dpop_bound_access_tokens": `false`,
	"quota": `{"per_minute":0,"per_hour":0,"per_day":0}`}

func (h *Handler) patchClient(w http.ResponseWriter, r *http.Request) error {
	var p ClientPatch
	if err := decodePatch(r, &p, clientEmpties); err != nil {
		return err
	}
	return h.updateClient(w, r, p)
}

func (h *Handler) putClient(w http.ResponseWriter, r *http.Request) error {
	var in ClientInput
	if err := decode(r, &in); err != nil {
		return err
	}
	var v ValidationError
	if in.ClientID != "" && in.ClientID != r.PathValue("id") {
		v.add("client_id", "cannot change")
	}
	if in.ClientSecret != "" {
		v.add("client_secret", "cannot be set here; rotate the secret instead")
	}
	if in.SecretLifetimeSeconds != 0 {
		v.add("secret_lifetime_seconds", "applies to a new secret: rotate the secret with it instead")
	}
	if err := v.err(); err != nil {
		return err
	}
	return h.updateClient(w, r, in.Patch())
}

func (h *Handler) updateClient(w http.ResponseWriter, r *http.Request, p ClientPatch) error {
	c, err := h.svc.UpdateClient(r.Context(), r.PathValue("id"), r.Header.Get("If-Match"), p)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "client updated", "client_id", c.ID, "version", c.Version, "disabled", c.Disabled)
	h.writeResource(w, http.StatusOK, c.Version, clientResource(c, h.svc.now()))
	return nil
}

func (h *Handler) deleteClient(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := h.svc.DeleteClient(r.Context(), id, r.Header.Get("If-Match")); err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "client deleted", "client_id", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// RotateRequest is the optional body of a rotation.
type RotateRequest struct {
	// GraceSeconds is how long the previous secret keeps working; absent
	// means the default (24 h), 0 means it stops at once.
	GraceSeconds *int64 `json:"grace_seconds"`
	// SecretLifetimeSeconds makes the new secret expire after that long
	// (absent or 0: never).
	SecretLifetimeSeconds int64 `json:"secret_lifetime_seconds,omitempty"`
}

func (h *Handler) rotateSecret(w http.ResponseWriter, r *http.Request) error {
	var in RotateRequest
	if err := decodeOptional(r, &in); err != nil {
		return err
	}
	grace := DefaultGrace
	if in.GraceSeconds != nil {
		if *in.GraceSeconds < 0 || *in.GraceSeconds > 90*24*3600 {
			return &ValidationError{Fields: []FieldError{{"grace_seconds", "must be between 0 and 90 days"}}}
		}
		grace = time.Duration(*in.GraceSeconds) * time.Second
	}
	c, added, plain, err := h.svc.RotateSecret(r.Context(), r.PathValue("id"), r.Header.Get("If-Match"), grace, time.Duration(in.SecretLifetimeSeconds)*time.Second)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "client secret rotated", "client_id", c.ID, "secret_id", added.ID, "grace", grace.String())
	res := clientResource(c, h.svc.now())
	res.ClientSecret, res.SecretID = plain, added.ID
	h.writeResource(w, http.StatusCreated, c.Version, res)
	return nil
}

func (h *Handler) revokeSecret(w http.ResponseWriter, r *http.Request) error {
	c, err := h.svc.RevokeSecret(r.Context(), r.PathValue("id"), r.Header.Get("If-Match"), r.PathValue("secret_id"))
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "client secret revoked", "client_id", c.ID, "secret_id", r.PathValue("secret_id"))
	h.writeResource(w, http.StatusOK, c.Version, clientResource(c, h.svc.now()))
	return nil
}
