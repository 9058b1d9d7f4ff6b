package console

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/verify"
)

// revocationPageSize is how many revocations a page lists.
const revocationPageSize = 50

// revocationsPage is the data of the revocation list.
type revocationsPage struct {
	Items []store.Revocation
	Pager pager
}

// revocationList lists the live revocations, newest first, a page at a
// time (cursor "<revoked at, Unix µs>:<jti>", as the admin API's).
func (c *Console) revocationList(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showRevocations(w, r, s, http.StatusOK, &view{})
}

func (c *Console) showRevocations(w http.ResponseWriter, r *http.Request, s *session, status int, v *view) error {
	var after *store.Revocation
	cursor := r.URL.Query().Get("after")
	if cursor != "" {
		at, jti, ok := strings.Cut(cursor, ":")
		micros, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil || jti == "" {
			return &pageError{http.StatusBadRequest, "That page link is not one this console made. Open the revocations from the menu."}
		}
		after = &store.Revocation{RevokedAt: time.UnixMicro(micros), JTI: jti}
	}
	page, err := c.svc.ListRevocations(r.Context(), after, revocationPageSize)
	if err != nil {
		return err
	}
	v.Title, v.Section = "Revocations", "revocations"
	v.Data = &revocationsPage{Items: page.Items, Pager: pageLinks("/console/revocations", nil, after != nil, page.NextCursor)}
	return c.show(w, r, s, status, "revocations", v)
}

// revocationAdd revokes a pasted token, whoever it was issued to. The
// token is never logged nor shown again.
func (c *Console) revocationAdd(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	token := strings.TrimSpace(r.PostForm.Get("token"))
	switch {
	case token == "":
		return c.showRevocations(w, r, s, http.StatusBadRequest, &view{Errors: map[string]string{"token": "Paste the access token or refresh token to revoke."}})
	case len(token) > verify.MaxTokenSize:
		return c.showRevocations(w, r, s, http.StatusBadRequest, &view{Errors: map[string]string{"token": "This is longer than any token this server issues (at most 16 KiB). Check what was pasted."}})
	}
	revoked, err := c.cfg.Revoker.RevokeAny(ctx, token)
	if err != nil {
		return err
	}
	c.log.InfoContext(ctx, "token revoked by an administrator", "revoked", revoked)
	if !revoked {
		return done(w, r, "/console/revocations", "token-not-live")
	}
	return done(w, r, "/console/revocations", "token-revoked")
}
