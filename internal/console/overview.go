package console

import "net/http"

// PLACEHOLDER: replaced by the pages of this section.

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}
