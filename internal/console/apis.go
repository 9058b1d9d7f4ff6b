package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/store"
)

// apiPageSize is how many APIs a page of the list shows.
const apiPageSize = 50

// apiRow is an API as the pages show it.
type apiRow struct{ store.API }

// Lifetime describes the API's token lifetime for people.
func (a apiRow) Lifetime() string {
	if a.TokenLifetime == 0 {
		return "server default"
	}
	return fmt.Sprintf("%s (%s)", humanDuration(a.TokenLifetime), shortDuration(a.TokenLifetime))
}

func apiRows(apis []store.API) []apiRow {
	out := make([]apiRow, len(apis))
	for i, a := range apis {
		out[i] = apiRow{a}
	}
	return out
}

// apisPage is the data of the API list.
type apisPage struct {
	Items []apiRow
	Pager pager
}

// apiFormPage is the data of the API form: a new API (API nil) or an
// existing one, shown with its details and the applications that hold a
// grant for it.
type apiFormPage struct {
	API     *apiRow
	Holders holderSet
}

// apiDeletePage is the data of the deletion confirmation.
type apiDeletePage struct {
	API     apiRow
	Holders holderSet
}

// maxHolders is how many of the applications holding a grant for an API
// its pages name; the others are counted.
const maxHolders = 100

// holderSet is the applications holding a grant for an API: the first
// maxHolders of them, how many there are, and a fingerprint of the whole
// set, which the deletion confirmation carries instead of every id.
type holderSet struct {
	Shown       []store.Client
	Total       int
	Fingerprint string
}

// More is how many holders are not shown.
func (h holderSet) More() int { return h.Total - len(h.Shown) }

func (c *Console) apiList(w http.ResponseWriter, r *http.Request, s *session) error {
	after := r.URL.Query().Get("after")
	page, err := c.svc.ListAPIs(r.Context(), store.ListOptions{Limit: apiPageSize, After: after})
	if err != nil {
		return err
	}
	return c.show(w, r, s, http.StatusOK, "api_list", &view{Title: "APIs", Section: "apis",
		Data: &apisPage{Items: apiRows(page.Items), Pager: pageLinks("/console/apis", nil, after != "", page.NextCursor)}})
}

func (c *Console) apiNew(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.show(w, r, s, http.StatusOK, "api_form", &view{Title: "New API", Section: "apis", Data: &apiFormPage{}})
}

// apiForm is a submitted API form, read into the service's terms.
type apiForm struct {
	identifier, name string
	scopes           []string
	descriptions     map[string]string
	lifetimeSeconds  int64
	discoverable     bool
}

// readAPIForm reads the form; errors it finds itself (the lifetime's
// syntax, read as on the application form) are added to errs under the
// form's field names.
func readAPIForm(f url.Values, errs map[string]string) apiForm {
	in := apiForm{identifier: strings.TrimSpace(f.Get("identifier")), name: strings.TrimSpace(f.Get("name")),
		discoverable: f.Get("discoverable") == "on"}
	in.scopes, in.descriptions = parseScopes(f.Get("scopes"))
	secs, problem := lifetimeSeconds(f.Get("token_lifetime"))
	if problem != "" {
		errs["token_lifetime"] = problem
	}
	in.lifetimeSeconds = secs
	return in
}

// parseScopes reads the scopes textarea: one scope a line, optionally
// followed by whitespace and its description; blank lines are ignored.
func parseScopes(text string) ([]string, map[string]string) {
	scopes, descs := []string{}, map[string]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		sc, desc := line, ""
		if i := strings.IndexFunc(line, unicode.IsSpace); i >= 0 {
			sc, desc = line[:i], strings.TrimSpace(line[i:])
		}
		scopes = append(scopes, sc)
		if desc != "" {
			descs[sc] = desc
		}
	}
	return scopes, descs
}

// scopesText is an API's scopes as the textarea shows them, each with its
// description.
func scopesText(a store.API) string {
	lines := make([]string, len(a.Scopes))
	for i, sc := range a.Scopes {
		lines[i] = strings.TrimSpace(sc + " " + a.ScopeDescriptions[sc])
	}
	return strings.Join(lines, "\n")
}

// apiFieldErrors puts the service's validation errors next to the form's
// fields, in words; it reports whether every error found a field.
func apiFieldErrors(err error, errs map[string]string) bool {
	var ve *admin.ValidationError
	if !errors.As(err, &ve) {
		return false
	}
	for _, f := range ve.Fields {
		field, msg := f.Field, f.Message
		switch {
		case field == "token_lifetime_seconds":
			field, msg = "token_lifetime", "Enter a lifetime from 1m to 168h (7 days), or leave it empty for the server's default."
		case field == "identifier":
			if rest, ok := strings.CutPrefix(msg, "is required: "); ok {
				msg = "Use " + rest + "."
			} else {
				msg = "The identifier " + msg + "."
			}
		case field == "name":
			msg = "The name " + msg + "."
		case field == "scopes" || strings.HasPrefix(field, "scopes["):
			field = "scopes"
			if strings.HasPrefix(msg, "at most") {
				msg = "Enter " + msg + "."
			}
		case strings.HasPrefix(field, "scope_descriptions."):
			field, msg = "scopes", "The description of "+strings.TrimPrefix(field, "scope_descriptions.")+" "+msg+"."
		case field == "scope_descriptions":
			field = "scopes"
		default:
			return false
		}
		if errs[field] == "" {
			errs[field] = msg
		} else {
			errs[field] += " " + msg
		}
	}
	return true
}

func (c *Console) apiCreate(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	v := &view{Title: "New API", Section: "apis", Form: r.PostForm, Errors: map[string]string{}, Data: &apiFormPage{}}
	in := readAPIForm(r.PostForm, v.Errors)
	if len(v.Errors) > 0 {
		return c.show(w, r, s, http.StatusBadRequest, "api_form", v)
	}
	a, err := c.svc.CreateAPI(ctx, admin.APIInput{Identifier: in.identifier, Name: in.name, Scopes: in.scopes,
		ScopeDescriptions: in.descriptions, TokenLifetimeSeconds: in.lifetimeSeconds, Discoverable: in.discoverable})
	var ce *admin.ConflictError
	switch {
	case errors.As(err, &ce):
		v.Errors["identifier"] = "An API with this identifier already exists. Choose another, or edit that one."
		return c.show(w, r, s, http.StatusConflict, "api_form", v)
	case apiFieldErrors(err, v.Errors):
		return c.show(w, r, s, http.StatusBadRequest, "api_form", v)
	case err != nil:
		return err
	}
	c.log.InfoContext(ctx, "api created", "identifier", a.Identifier)
	return done(w, r, "/console/api/"+pathEscape(a.Identifier), "api-created")
}

func (c *Console) apiShow(w http.ResponseWriter, r *http.Request, s *session) error {
	a, err := c.svc.GetAPI(r.Context(), r.PathValue("identifier"))
	if err != nil {
		return err
	}
	return c.showAPI(w, r, s, http.StatusOK, a, &view{Form: apiValues(a)})
}

// apiValues fills the edit form with a's fields.
func apiValues(a store.API) url.Values {
	f := url.Values{"name": {a.Name}, "scopes": {scopesText(a)}, "token_lifetime": {shortDuration(a.TokenLifetime)},
		"version": {strconv.FormatInt(a.Version, 10)}}
	if a.Discoverable {
		f.Set("discoverable", "on")
	}
	return f
}

// showAPI renders an API's page: its details, the applications that hold a
// grant for it, and the edit form filled from v.Form.
func (c *Console) showAPI(w http.ResponseWriter, r *http.Request, s *session, status int, a store.API, v *view) error {
	holders, err := c.grantHolders(r.Context(), a.Identifier)
	if err != nil {
		return err
	}
	v.Title, v.Section, v.Data = a.Name, "apis", &apiFormPage{API: &apiRow{a}, Holders: holders}
	if v.Title == "" {
		v.Title = a.Identifier
	}
	return c.show(w, r, s, status, "api_form", v)
}

// grantHolders reads the applications holding a grant for the API: the
// first maxHolders of them, and the ids of all (streamed, not loaded).
func (c *Console) grantHolders(ctx context.Context, identifier string) (holderSet, error) {
	var h holderSet
	page, err := c.svc.ListClients(ctx, store.ListOptions{Audience: identifier, Limit: maxHolders})
	if err != nil {
		return holderSet{}, err
	}
	h.Shown = page.Items
	var ids []string
	if err := c.svc.GrantHolderIDs(ctx, identifier, func(id string) { ids = append(ids, id) }); err != nil {
		return holderSet{}, err
	}
	h.Total, h.Fingerprint = len(ids), holdersFingerprint(ids)
	return h, nil
}

// holdersFingerprint is the hex SHA-256 of a set of client ids (sorted,
// each length-prefixed): equal for the same set, whatever its order.
func holdersFingerprint(ids []string) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	sum := sha256.New()
	for _, id := range ids {
		fmt.Fprintf(sum, "%d:%s\n", len(id), id)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

func (c *Console) apiUpdate(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	id := r.PathValue("identifier")
	version, err := formVersion(r.PostForm)
	if err != nil {
		return err
	}
	current, err := c.svc.GetAPI(ctx, id)
	if err != nil {
		return err
	}
	v := &view{Form: r.PostForm, Errors: map[string]string{}}
	if current.Builtin != "" {
		v.Form, v.Alert = apiValues(current), "The "+current.Builtin+" API is built in: it cannot be changed."
		return c.showAPI(w, r, s, http.StatusConflict, current, v)
	}
	in := readAPIForm(r.PostForm, v.Errors)
	if len(v.Errors) > 0 {
		return c.showAPI(w, r, s, http.StatusBadRequest, current, v)
	}
	a, err := c.svc.UpdateAPI(ctx, id, admin.ETag(version), admin.APIPatch{Name: &in.name, Scopes: &in.scopes,
		ScopeDescriptions: &in.descriptions, TokenLifetimeSeconds: &in.lifetimeSeconds, Discoverable: &in.discoverable})
	var ce *admin.ConflictError
	switch {
	case errors.Is(err, admin.ErrPreconditionFailed):
		// Keep the edits, on top of the current version: saving again
		// overwrites the other change knowingly.
		if current, err = c.svc.GetAPI(ctx, id); err != nil {
			return err
		}
		v.Form.Set("version", strconv.FormatInt(current.Version, 10))
		v.Alert = "Someone else changed this API while you were editing it: the details above are the current ones. " +
			"Your edits are still in the form: save again to replace their change, or reload the page to discard yours."
		return c.showAPI(w, r, s, http.StatusConflict, current, v)
	case errors.As(err, &ce):
		v.Alert = ce.Detail
		return c.showAPI(w, r, s, http.StatusConflict, current, v)
	case apiFieldErrors(err, v.Errors):
		return c.showAPI(w, r, s, http.StatusBadRequest, current, v)
	case err != nil:
		return err
	}
	c.log.InfoContext(ctx, "api updated", "identifier", a.Identifier, "version", a.Version)
	return done(w, r, "/console/api/"+pathEscape(a.Identifier), "api-updated")
}

func (c *Console) apiDeleteConfirm(w http.ResponseWriter, r *http.Request, s *session) error {
	a, err := c.svc.GetAPI(r.Context(), r.PathValue("identifier"))
	if err != nil {
		return err
	}
	if a.Builtin != "" {
		return &pageError{http.StatusConflict, "The " + a.Builtin + " API is built in: it cannot be deleted."}
	}
	return c.showAPIDelete(w, r, s, http.StatusOK, a, &view{})
}

func (c *Console) showAPIDelete(w http.ResponseWriter, r *http.Request, s *session, status int, a store.API, v *view) error {
	holders, err := c.grantHolders(r.Context(), a.Identifier)
	if err != nil {
		return err
	}
	v.Title, v.Section, v.Data = "Delete API", "apis", &apiDeletePage{API: apiRow{a}, Holders: holders}
	return c.show(w, r, s, status, "api_delete", v)
}

// apiDelete deletes an API with the grants of the applications the
// confirmation counted (force). If the set of applications holding a
// grant changed since, it asks again rather than take access
// unannounced.
func (c *Console) apiDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	id := r.PathValue("identifier")
	version, err := formVersion(r.PostForm)
	if err != nil {
		return err
	}
	a, err := c.svc.GetAPI(ctx, id)
	if err != nil {
		return err
	}
	if a.Builtin != "" {
		return &pageError{http.StatusConflict, "The " + a.Builtin + " API is built in: it cannot be deleted."}
	}
	holders, err := c.grantHolders(ctx, id)
	if err != nil {
		return err
	}
	// The confirmation carries the count and fingerprint of the holders
	// it named: any change (one more, one less, another) asks again.
	if r.PostForm.Get("holders") != strconv.Itoa(holders.Total) || r.PostForm.Get("holders_fingerprint") != holders.Fingerprint {
		return c.showAPIDelete(w, r, s, http.StatusConflict, a, &view{
			Alert: "The applications that hold a grant for this API changed since the confirmation was shown. Check the list below, then confirm again."})
	}
	if a.Version != version {
		return c.showAPIDelete(w, r, s, http.StatusConflict, a, &view{
			Alert: "Someone else changed this API since the confirmation was shown. Check it below, then confirm again."})
	}
	err = c.svc.DeleteAPI(ctx, id, admin.ETag(version), true)
	if errors.Is(err, admin.ErrPreconditionFailed) {
		return c.showAPIDelete(w, r, s, http.StatusConflict, a, &view{
			Alert: "Someone else changed this API since the confirmation was shown. Check it below, then confirm again."})
	}
	if err != nil {
		return err
	}
	c.log.InfoContext(ctx, "api deleted", "identifier", id, "force", true, "grants_removed", holders.Total)
	return done(w, r, "/console/apis", "api-deleted")
}
