package console

import "net/http"

// PLACEHOLDER: replaced by the pages of this section.

func (c *Console) appList(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appNew(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appCreate(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appShow(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appEdit(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appUpdate(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appRotateSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appRevokeSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appDisable(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appEnable(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appRevokeTokens(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appDeleteConfirm(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}

func (c *Console) appDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	return &pageError{http.StatusNotImplemented, "not built yet"}
}
