package admin

import (
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// TrustPolicyResource is a trust policy as the admin API shows it.
type TrustPolicyResource struct {
	Name                    string          `json:"name"`
	Kind                    string          `json:"kind"`
	Issuer                  string          `json:"issuer"`
	Description             string          `json:"description"`
	JWKSURI                 string          `json:"jwks_uri"`
	Discovery               bool            `json:"discovery"`
	JWKS                    json.RawMessage `json:"jwks"`
	Algorithms              []string        `json:"algorithms"`
	Audience                string          `json:"audience"`
	MaxTokenAgeSeconds      int64           `json:"max_token_age_seconds"`
	MaxTokenLifetimeSeconds int64           `json:"max_token_lifetime_seconds"`
	SingleUse               bool            `json:"single_use"`
	RequireJTI              bool            `json:"require_jti"`
	Version                 int64           `json:"version"`
	CreatedAt               time.Time       `json:"created_at"`
	UpdatedAt               time.Time       `json:"updated_at"`
}

func trustResource(p store.TrustPolicy) TrustPolicyResource {
	out := TrustPolicyResource{
		Name: p.Name, Kind: p.Kind, Issuer: p.Issuer, Description: p.Description, JWKSURI: p.JWKSURI, Discovery: p.Discovery,
		Algorithms: p.Algorithms, Audience: p.Audience, MaxTokenAgeSeconds: int64(p.MaxTokenAge / time.Second),
		MaxTokenLifetimeSeconds: int64(p.MaxTokenLifetime / time.Second), SingleUse: p.SingleUse, RequireJTI: p.RequireJTI,
		Version: p.Version, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
	if len(p.JWKS) > 0 {
		out.JWKS = json.RawMessage(p.JWKS)
	}
	if out.Algorithms == nil {
		out.Algorithms = []string{}
	}
	return out
}

func (h *Handler) listTrustPolicies(w http.ResponseWriter, r *http.Request) error {
	ps, err := h.svc.ListTrustPolicies(r.Context())
	if err != nil {
		return err
	}
	out := ListResponse[TrustPolicyResource]{Items: make([]TrustPolicyResource, 0, len(ps))}
	for _, p := range ps {
		out.Items = append(out.Items, trustResource(p))
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

func (h *Handler) createTrustPolicy(w http.ResponseWriter, r *http.Request) error {
	var in TrustPolicyInput
	if err := decode(r, &in); err != nil {
		return err
	}
	p, err := h.svc.CreateTrustPolicy(r.Context(), in)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "trust policy created", "policy", p.Name, "issuer", p.Issuer)
	w.Header().Set("Location", "/admin/v1/trust-policies/"+url.PathEscape(p.Name))
	h.writeResource(w, http.StatusCreated, p.Version, trustResource(p))
	return nil
}

func (h *Handler) getTrustPolicy(w http.ResponseWriter, r *http.Request) error {
	p, err := h.svc.GetTrustPolicy(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	h.writeResource(w, http.StatusOK, p.Version, trustResource(p))
	return nil
}

func (h *Handler) putTrustPolicy(w http.ResponseWriter, r *http.Request) error {
	var in TrustPolicyInput
	if err := decode(r, &in); err != nil {
		return err
	}
	p, err := h.svc.UpdateTrustPolicy(r.Context(), r.PathValue("name"), r.Header.Get("If-Match"), in)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "trust policy updated", "policy", p.Name, "version", p.Version)
	h.writeResource(w, http.StatusOK, p.Version, trustResource(p))
	return nil
}

func (h *Handler) deleteTrustPolicy(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := h.svc.DeleteTrustPolicy(r.Context(), name, r.Header.Get("If-Match")); err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "trust policy deleted", "policy", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
