package console

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/audit"
)

// auditPageSize is how many events a page of the audit trail lists.
const auditPageSize = 50

// auditPage is the data of the audit trail page.
type auditPage struct {
	Items  []auditRow
	Kinds  []string
	Filter url.Values // client, action, kind, actor, since, until
	Any    bool       // a filter is set
	Pager  pager
}

// auditRow is one event as the page shows it.
type auditRow struct {
	audit.Entry
	Changed []string // the fields a change changed
}

// auditFilters are the query parameters the page filters by.
var auditFilters = []string{"client", "action", "kind", "actor", "since", "until"}

// auditList lists the environment's audit trail, newest first, filtered
// as the admin API filters it. The pager's cursor ("after", as on the
// other pages) is the last event's id.
func (c *Console) auditList(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	filter := url.Values{}
	for _, k := range auditFilters {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			filter.Set(k, v)
		}
	}
	get := func(k string) string {
		switch k {
		case "cursor":
			return q.Get("after")
		case "after", "limit":
			return ""
		}
		return filter.Get(k)
	}
	v := &view{Title: "Audit trail", Section: "audit", Form: filter}
	f, err := admin.ParseAuditFilter(get, c.now())
	var ve *admin.ValidationError
	if errors.As(err, &ve) {
		v.Errors = map[string]string{}
		for _, fe := range ve.Fields {
			if fe.Field == "cursor" {
				return &pageError{http.StatusBadRequest, "That page link is not one this console made. Open the audit trail from the menu."}
			}
			v.Errors[fe.Field] = "This " + fe.Field + " " + fe.Message + "."
		}
		v.Data = &auditPage{Kinds: audit.Kinds, Filter: filter, Any: true}
		return c.show(w, r, s, http.StatusBadRequest, "audit", v)
	}
	if err != nil {
		return err
	}
	f.Limit = auditPageSize
	page, err := c.svc.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	d := &auditPage{Kinds: audit.Kinds, Filter: filter, Any: len(filter) > 0,
		Pager: pageLinks("/console/audit", filter, f.Before != "", page.NextCursor)}
	for _, e := range page.Items {
		row := auditRow{Entry: audit.EntryOf(e)}
		var diff map[string]json.RawMessage
		if json.Unmarshal(e.Diff, &diff) == nil {
			row.Changed = slices.Sorted(maps.Keys(diff))
		}
		d.Items = append(d.Items, row)
	}
	v.Data = d
	return c.show(w, r, s, http.StatusOK, "audit", v)
}
