package console

import "net/http"

// PLACEHOLDER: replaced by the pages of this section.

func (c *Console) revocationList(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) revocationAdd(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}
