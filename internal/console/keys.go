package console

import "net/http"

// PLACEHOLDER: replaced by the pages of this section.

func (c *Console) keyList(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) keyRotate(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) keyRevokeConfirm(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) keyRevoke(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}
