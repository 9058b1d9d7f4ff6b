package console

import "net/http"

// PLACEHOLDER: replaced by the pages of this section.

func (c *Console) apiList(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) apiNew(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) apiCreate(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) apiShow(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) apiUpdate(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) apiDeleteConfirm(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) apiDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}
