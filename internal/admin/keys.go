package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
)

// keyManager runs the signing key lifecycle.
type keyManager interface {
	List(ctx context.Context, maxTokenLifetime time.Duration) ([]keys.KeyInfo, error)
	Rotate(ctx context.Context, alg string) (store.SigningKey, error)
	Revoke(ctx context.Context, kid string) (string, error)
}

// KeyResource is a signing key as the admin API shows it (never the
// private key).
type KeyResource struct {
	KID             string     `json:"kid"`
	Alg             string     `json:"alg"`
	State           string     `json:"state"` // next, active, retired
	CreatedAt       time.Time  `json:"created_at"`
	ActivateAt      *time.Time `json:"activate_at"`
	ActivatedAt     *time.Time `json:"activated_at"`
	RetiredAt       *time.Time `json:"retired_at"`
	RemoveAt        *time.Time `json:"remove_at"`
	TokensLiveUntil *time.Time `json:"tokens_live_until"`
}

func keyResource(k keys.KeyInfo) KeyResource {
	return KeyResource{KID: k.KID, Alg: k.Alg, State: k.State, CreatedAt: k.CreatedAt,
		ActivateAt: optTime(k.ActivateAt), ActivatedAt: optTime(k.ActivatedAt), RetiredAt: optTime(k.RetiredAt),
		RemoveAt: optTime(k.RemoveAt), TokensLiveUntil: optTime(k.TokensLiveUntil)}
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) error {
	infos, err := h.keysFor(r.Context()).List(r.Context(), h.maxToken)
	if err != nil {
		return err
	}
	out := ListResponse[KeyResource]{Items: make([]KeyResource, 0, len(infos))}
	for _, k := range infos {
		out.Items = append(out.Items, keyResource(k))
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

// RotateKeyRequest is the optional body of a key rotation.
type RotateKeyRequest struct {
	Alg string `json:"alg"` // default: the configured algorithm
}

func (h *Handler) rotateKey(w http.ResponseWriter, r *http.Request) error {
	var in RotateKeyRequest
	if err := decodeOptional(r, &in); err != nil {
		return err
	}
	if in.Alg != "" && !keys.ValidAlg(in.Alg) {
		return &ValidationError{Fields: []FieldError{{"alg", "must be one of " + strings.Join(keys.Algorithms, ", ")}}}
	}
	k, err := h.keysFor(r.Context()).Rotate(r.Context(), in.Alg)
	if errors.Is(err, keys.ErrRotationScheduled) {
		return &ConflictError{err.Error()}
	}
	if err != nil {
		return h.keyError(r, err)
	}
	h.log.InfoContext(r.Context(), "signing key rotation scheduled", "kid", k.KID, "alg", k.Alg, "activate_at", k.ActivateAt)
	writeJSON(w, http.StatusAccepted, "application/json", keyResource(keys.KeyInfo{KID: k.KID, Alg: k.Alg, State: k.State,
		CreatedAt: k.CreatedAt, ActivateAt: k.ActivateAt}))
	return nil
}

// RevokeKeyResponse tells which key replaced a revoked active key.
type RevokeKeyResponse struct {
	Revoked     string `json:"revoked"`
	Replacement string `json:"replacement,omitempty"`
}

func (h *Handler) revokeKey(w http.ResponseWriter, r *http.Request) error {
	kid := r.PathValue("kid")
	repl, err := h.keysFor(r.Context()).Revoke(r.Context(), kid)
	if err != nil {
		return h.keyError(r, err)
	}
	h.log.WarnContext(r.Context(), "signing key revoked", "kid", kid, "replacement", repl)
	writeJSON(w, http.StatusOK, "application/json", RevokeKeyResponse{Revoked: kid, Replacement: repl})
	return nil
}

// keyError turns the failure of a key operation into the answer's error. A
// server whose master key no longer matches the stored keys (re-sealed by
// key rewrap while it ran) cannot change them: the operator learns why,
// from the answer and the log, not from a bare 500.
func (h *Handler) keyError(r *http.Request, err error) error {
	if errors.Is(err, keys.ErrMasterKeyMismatch) {
		h.log.ErrorContext(r.Context(), "signing key operation refused: the stored keys are sealed under another master key", "error", err)
		return &ConflictError{err.Error()}
	}
	return err
}
