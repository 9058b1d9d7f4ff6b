package admin

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// revoker revokes any live token of this server.
type revoker interface {
	RevokeAny(ctx context.Context, token string) (bool, error)
}

// RevocationResource is a revoked access token (by jti; never the token).
type RevocationResource struct {
	JTI       string    `json:"jti"`
	ClientID  string    `json:"client_id"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at"`
}

func (h *Handler) revokeClientTokens(w http.ResponseWriter, r *http.Request) error {
	c, err := h.svc.RevokeClientTokens(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "all tokens of a client revoked", "client_id", c.ID, "before", c.TokensRevokedBefore)
	h.writeResource(w, http.StatusOK, c.Version, clientResource(c, h.svc.now()))
	return nil
}

func (h *Handler) listRevocations(w http.ResponseWriter, r *http.Request) error {
	opts, err := listOptions(r)
	if err != nil {
		return err
	}
	// The cursor is the last entry's revocation time and jti: the listing
	// is newest first.
	var after *store.Revocation
	if opts.After != "" {
		at, jti, ok := strings.Cut(opts.After, ":")
		micros, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil || jti == "" {
			return &ValidationError{Fields: []FieldError{{"cursor", "is not a cursor this server returned"}}}
		}
		after = &store.Revocation{RevokedAt: time.UnixMicro(micros), JTI: jti}
	}
	page, err := h.svc.ListRevocations(r.Context(), after, opts.Limit)
	if err != nil {
		return err
	}
	out := ListResponse[RevocationResource]{Items: make([]RevocationResource, 0, len(page.Items))}
	if page.NextCursor != "" {
		out.NextCursor = cursor(page.NextCursor)
	}
	for _, rv := range page.Items {
		out.Items = append(out.Items, RevocationResource{JTI: rv.JTI, ClientID: rv.ClientID, ExpiresAt: rv.ExpiresAt, RevokedAt: rv.RevokedAt})
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

// RevokeRequest names a token to revoke.
type RevokeRequest struct {
	Token string `json:"token"`
}

// RevokeResponse tells whether a live token was revoked.
type RevokeResponse struct {
	Revoked bool `json:"revoked"`
}

func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request) error {
	var in RevokeRequest
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Token == "" {
		return &ValidationError{Fields: []FieldError{{"token", "is required"}}}
	}
	done, err := h.revoker.RevokeAny(r.Context(), in.Token)
	if err != nil {
		return err
	}
	h.log.InfoContext(r.Context(), "token revoked by an administrator", "revoked", done)
	writeJSON(w, http.StatusOK, "application/json", RevokeResponse{Revoked: done})
	return nil
}

// ListRevocations returns a page of the live revocations, newest first,
// after the entry after (nil: from the newest). The page's cursor is
// "<revoked at, Unix µs>:<jti>".
func (s *Service) ListRevocations(ctx context.Context, after *store.Revocation, limit int) (Page[store.Revocation], error) {
	limit = clampLimit(limit)
	revs, err := s.st(ctx).ListRevocations(ctx, s.now(), after, limit+1)
	if err != nil {
		return Page[store.Revocation]{}, err
	}
	return pageOf(revs, limit, func(rv store.Revocation) string {
		return strconv.FormatInt(rv.RevokedAt.UnixMicro(), 10) + ":" + rv.JTI
	}), nil
}
