package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// view is what every page template gets.
type view struct {
	Title   string
	Section string // the navigation entry to highlight
	Caller  string // the signed-in admin client ("" on public pages)
	CSRF    string
	// Env is the environment the page acts in (signed-in pages): every
	// form sends its name back (the "csrf" template).
	Env envHeader
	// Flash is a success message, Alert an error message, shown on top.
	Flash, Alert string
	// Errors are messages by form field; Form the values to refill.
	Errors map[string]string
	Form   url.Values
	Data   any
}

// Field returns a submitted value to refill a form with.
func (v *view) Field(name string) string { return v.Form.Get(name) }

// Checked reports whether a checkbox field holds value.
func (v *view) Checked(name, value string) bool { return slices.Contains(v.Form[name], value) }

// Err returns the error of a field ("" if none).
func (v *view) Err(name string) string { return v.Errors[name] }

// for a signed-in page: the caller and the CSRF token.
func (v *view) signedIn(s *session) *view {
	if s != nil {
		v.Caller, v.CSRF, v.Env = s.clientID, s.csrf, s.header
		if v.Alert == "" {
			v.Alert = s.notice
		}
	}
	return v
}

// show renders a signed-in page.
func (c *Console) show(w http.ResponseWriter, r *http.Request, s *session, status int, page string, v *view) error {
	c.render(w, r, status, page, v.signedIn(s))
	return nil
}

// render executes a page into a buffer first, so that a template failure
// becomes a clean 500 instead of half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v *view) {
	t, ok := c.pages[page]
	if !ok {
		c.log.ErrorContext(r.Context(), "console: no such template", "page", page)
		WriteError(w, http.StatusInternalServerError, serverErrorText)
		return
	}
	if v.Flash == "" {
		v.Flash = doneText[r.URL.Query().Get("done")]
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		c.log.ErrorContext(r.Context(), "console: render", "page", page, "error", err)
		WriteError(w, http.StatusInternalServerError, serverErrorText)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// done redirects after a successful POST (POST-redirect-GET) to path,
// which shows the success message of code.
func done(w http.ResponseWriter, r *http.Request, path, code string) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	http.Redirect(w, r, path+sep+"done="+url.QueryEscape(code), http.StatusSeeOther)
	return nil
}

// doneText are the success messages, by code (the page never shows text
// from the query).
var doneText = map[string]string{
	"api-created":     "The API was created.",
	"api-updated":     "The API was saved.",
	"api-deleted":     "The API was deleted.",
	"app-updated":     "The application was saved.",
	"app-deleted":     "The application was deleted.",
	"app-disabled":    "The application was disabled: it can no longer get tokens, and the tokens it holds were revoked.",
	"app-enabled":     "The application was enabled.",
	"tokens-revoked":  "Every token the application held was revoked.",
	"secret-revoked":  "The secret was revoked.",
	"key-rotated":     "A new signing key was scheduled.",
	"key-revoked":     "The signing key was revoked.",
	"token-revoked":   "The token was revoked.",
	"token-not-live":  "That token was not live (expired, already revoked, or not issued by this server): nothing to revoke.",
	"nothing-changed": "Nothing changed.",
	"env-switched":    "You switched environments: the console now acts in the environment shown at the top.",
	"env-created":     "The environment was created.",
	"env-deleted":     "The environment was deleted, with everything in it.",

	// An active key revoked: another key signs at once.
	"key-revoked-replaced": "The signing key was revoked; its replacement signs from now on. Applications must get new tokens.",
}

// pathEscape escapes a value for one path segment (an API identifier's
// slashes become %2F).
func pathEscape(s string) string { return url.PathEscape(s) }

func funcs(now func() time.Time) template.FuncMap {
	return template.FuncMap{
		"pathEscape": pathEscape,
		"when":       func(t time.Time) string { return when(t) },
		"short":      func(t time.Time) string { return short(t, now()) },
		"ago":        func(t time.Time) string { return relative(t, now()) },
		"duration":   humanDuration,
		"add":        func(a, b int) int { return a + b },
		"plural":     plural,
		"noun":       noun,
		"quota":      quotaSummary,
	}
}

// when formats an instant for people ("" for the zero time).
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// short formats an instant compactly for tables: "Nov 28 06:49", with
// the year only when it is not the current one (the full form goes in a
// title).
func short(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	if t.Year() != now.UTC().Year() {
		return t.Format("Jan 2 2006 15:04")
	}
	return t.Format("Jan 2 15:04")
}

// relative says how far t is from now: "3 minutes ago", "in 2 days".
func relative(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := t.Sub(now)
	if d > -time.Minute && d < time.Minute {
		return "just now"
	}
	if d < 0 {
		return humanDuration(-d) + " ago"
	}
	return "in " + humanDuration(d)
}

// humanDuration rounds a duration to its largest unit: "3 minutes",
// "2 days".
func humanDuration(d time.Duration) string {
	// Rounded to the nearest unit: a grace of 24 hours, a moment after
	// it began, is "in 24 hours", not "in 23 hours".
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d < time.Minute:
		return unit(int64(d.Round(time.Second)/time.Second), "second")
	case d < time.Hour:
		return unit(int64(d.Round(time.Minute)/time.Minute), "minute")
	case d < 48*time.Hour:
		return unit(int64(d.Round(time.Hour)/time.Hour), "hour")
	}
	return unit(int64(d.Round(24*time.Hour)/(24*time.Hour)), "day")
}

// plural is "1 application", "2 applications": n and the noun, with an s
// unless n is 1.
func plural(n any, noun string) string {
	s := fmt.Sprint(n)
	if s == "1" {
		return s + " " + noun
	}
	return s + " " + noun + "s"
}

// noun is the noun alone, plural unless n is 1 (for a number shown apart).
func noun(n any, word string) string {
	if fmt.Sprint(n) == "1" {
		return word
	}
	return word + "s"
}

// pager links the pages of a listing: First when not on the first page,
// Next when another page follows (URLs; "" for none).
type pager struct{ First, Next string }

// pageLinks builds the pager of a listing at path, whose query keeps q and
// whose cursor goes in "after".
func pageLinks(path string, q url.Values, paged bool, next string) pager {
	at := func(after string) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Del("after")
		if after != "" {
			v.Set("after", after)
		}
		if len(v) == 0 {
			return path
		}
		return path + "?" + v.Encode()
	}
	var p pager
	if paged {
		p.First = at("")
	}
	if next != "" {
		p.Next = at(next)
	}
	return p
}
