package admin

import (
	"net/http"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/store"
)

// ConsoleLinkResponse is a one-time sign-in link of the console.
type ConsoleLinkResponse struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// createConsoleLink makes a link that signs its opener in to the console
// as the calling admin client, once, for a few minutes. The link is a
// credential: it is in the answer only, never in the log.
func (h *Handler) createConsoleLink(w http.ResponseWriter, r *http.Request) error {
	if h.links == nil {
		return &requestError{http.StatusNotFound, "the console is off on this server (serve --console=false, or an issuer with a path: the server log says which)"}
	}
	ctx := r.Context()
	caller := CallerFromContext(ctx)
	// The caller's home is known from how it authenticated: a deployment
	// admin is a client of the default environment; any other admin, of
	// the request's.
	home := store.DefaultEnv
	if e := env.FromContext(ctx); e != nil && !DeploymentCallerFromContext(ctx) {
		home = e.Name
	}
	url, exp, err := h.links.NewLinkIn(ctx, caller, home)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "console sign-in link created", "client_id", caller, "expires_at", exp)
	h.svc.RecordConsole(ctx, "console.link.create", home, caller, "", r.RemoteAddr)
	writeJSON(w, http.StatusCreated, "application/json", ConsoleLinkResponse{URL: url, ExpiresAt: exp})
	return nil
}
