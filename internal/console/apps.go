package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/m2mauth/m2mauth/internal/report"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/jws"
	"github.com/m2mauth/m2mauth/internal/store"
)

// The Applications section: the clients, listed with search and paging,
// created (a secret is shown once, on the page the POST answers with:
// never stored, never in a redirect), shown with their secrets, edited,
// rotated, disabled and enabled, their tokens revoked, deleted.

// appPageSize is how many applications a list page shows.
const appPageSize = 25

// maxQuery bounds the search text (runes).
const maxQuery = 200

// Binding rows of the workload identity form: every filled row and an
// empty one, at least minFedRows, at most maxFedRows (the service's cap).
const (
	minFedRows = 2
	maxFedRows = 20
)

// secretSoon: a secret expiring sooner than this is flagged in the list.
const secretSoon = 7 * 24 * time.Hour

// authLabels name the authentication methods for people.
var authLabels = map[string]string{
	admin.AuthSecretBasic:   "Client Credentials (secret)",
	admin.AuthSecretPost:    "Client Credentials (secret in the request body)",
	admin.AuthPrivateKeyJWT: "Key (private_key_jwt)",
	admin.AuthFederated:     "Workload identity",
	// RFC 8705 §2.1 and §2.2.
	admin.AuthTLSClient:           "Certificate (tls_client_auth)",
	admin.AuthSelfSignedTLSClient: "Self-signed certificate (self_signed_tls_client_auth)",
}

// tlsSubjectKind is one kind of certificate subject a tls_client_auth
// application registers, as the form offers it.
type tlsSubjectKind struct{ Kind, Label, Example string }

// tlsSubjectKinds follow admin.TLSSubjectParams.
var tlsSubjectKinds = []tlsSubjectKind{
	{store.TLSSubjectDN, "Subject distinguished name", "CN=payments,O=Acme,C=DE"},
	{store.TLSSubjectDNS, "DNS name (subjectAltName)", "payments.example.com"},
	{store.TLSSubjectURI, "URI (subjectAltName), e.g. a SPIFFE ID", "spiffe://example.org/payments"},
	{store.TLSSubjectIP, "IP address (subjectAltName)", "192.0.2.7"},
	{store.TLSSubjectEmail, "Email address (subjectAltName)", "payments@example.com"},
}

// tlsSubjectLabel names a subject's kind for people.
func tlsSubjectLabel(kind string) string {
	for _, k := range tlsSubjectKinds {
		if k.Kind == kind {
			return k.Label
		}
	}
	return kind
}

func authLabel(method string) string {
	if l, ok := authLabels[method]; ok {
		return l
	}
	return method
}

// graceChoice is one choice of how long a rotated-out secret keeps
// working.
type graceChoice struct {
	Value, Label string
	Grace        time.Duration
	Default      bool
}

var graceChoices = []graceChoice{
	{"0", "None: the current secret stops working at once", 0, false},
	{"3600", "1 hour", time.Hour, false},
	{"86400", "24 hours", 24 * time.Hour, true},
	{"604800", "7 days", 7 * 24 * time.Hour, false},
}

// lifetimeChoice is one choice of how long a new secret lives.
type lifetimeChoice struct {
	Value, Label string
	Lifetime     time.Duration
}

// secretLifetimes are the lifetimes a new secret may be given.
var secretLifetimes = []lifetimeChoice{
	{"", "Never", 0},
	{"90d", "90 days", 90 * 24 * time.Hour},
	{"180d", "180 days", 180 * 24 * time.Hour},
	{"1y", "1 year", 365 * 24 * time.Hour},
	{"2y", "2 years", 2 * 365 * 24 * time.Hour},
}

func secretLifetimeOf(value string) (time.Duration, bool) {
	for _, l := range secretLifetimes {
		if l.Value == value {
			return l.Lifetime, true
		}
	}
	return 0, false
}

func graceOf(value string) (time.Duration, bool) {
	for _, g := range graceChoices {
		if g.Value == value {
			return g.Grace, true
		}
	}
	return 0, false
}

// ---- list ----

// appRow is one application in the list.
type appRow struct {
	ID, Name, Method string
	Disabled, Admin  bool
	Grants           []string // "API: scope scope"
	MoreGrants       int
	// Secret tells when its secrets stop working; SecretClass is its
	// badge ("", "warn", "bad").
	Secret, SecretClass string
}

type appListData struct {
	Q     string
	Rows  []appRow
	Pager pager
	Found bool // an exact client id matched the search
	// Caching is the report of applications that never cache tokens
	// (first page, no search; nil if it failed).
	Caching *report.Report
}

func (c *Console) appList(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if utf8.RuneCountInString(q) > maxQuery {
		q = string([]rune(q)[:maxQuery])
	}
	after := r.URL.Query().Get("after")
	page, err := c.svc.ListClients(ctx, store.ListOptions{Limit: appPageSize, After: after, NameContains: q})
	if err != nil {
		return err
	}
	items := page.Items
	d := &appListData{Q: q}
	// The search also finds an application by its exact id (on the
	// first page), since people paste ids from logs.
	if q != "" && after == "" && !slices.ContainsFunc(items, func(cl store.Client) bool { return cl.ID == q }) {
		cl, err := c.svc.GetClient(ctx, q)
		switch {
		case err == nil:
			items = append([]store.Client{cl}, items...)
			d.Found = true
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	e := env.FromContext(ctx)
	now := c.now()
	for _, cl := range items {
		d.Rows = append(d.Rows, appRowOf(cl, e.AdminAudience(), now))
	}
	var query url.Values
	if q != "" {
		query = url.Values{"q": {q}}
	}
	d.Pager = pageLinks("/console/apps", query, after != "", page.NextCursor)
	if q == "" && after == "" {
		if c.cfg.Flush != nil {
			if err := c.cfg.Flush(ctx); err != nil {
				c.log.WarnContext(ctx, "console: flush usage", "error", err)
			}
		}
		if rep, err := c.svc.TokenCachingReport(ctx); err != nil {
			c.log.WarnContext(ctx, "console: token caching report", "error", err)
		} else {
			d.Caching = &rep
		}
	}
	return c.show(w, r, s, http.StatusOK, "app_list", &view{Title: "Applications", Section: "apps", Data: d})
}

func appRowOf(cl store.Client, adminAudience string, now time.Time) appRow {
	row := appRow{ID: cl.ID, Name: cl.Name, Method: authLabel(cl.Method()), Disabled: cl.Disabled, Admin: admin.IsAdmin(cl, adminAudience)}
	const shown = 3
	for i, g := range cl.Grants {
		if i == shown {
			row.MoreGrants = len(cl.Grants) - shown
			break
		}
		text := g.Audience
		if len(g.Scopes) > 0 {
			text += ": " + strings.Join(g.Scopes, " ")
		}
		row.Grants = append(row.Grants, text)
	}
	row.Secret, row.SecretClass = secretSummary(cl, now)
	return row
}

// secretSummary tells when a client's secrets stop working: never, at
// the latest expiry of its live secrets, or not at all (no live secret).
func secretSummary(cl store.Client, now time.Time) (string, string) {
	if !admin.IsSecretMethod(cl.AuthMethod) && !cl.AcceptSecrets {
		return "no secrets (" + authLabel(cl.Method()) + ")", ""
	}
	var last time.Time
	live := 0
	for _, sec := range cl.Secrets {
		if !sec.Live(now) {
			continue
		}
		live++
		if sec.ExpiresAt.IsZero() {
			return "never", ""
		}
		if sec.ExpiresAt.After(last) {
			last = sec.ExpiresAt
		}
	}
	if live == 0 {
		return "no live secret", "bad"
	}
	class := ""
	if last.Sub(now) < secretSoon {
		class = "warn"
	}
	return relative(last, now) + " (" + when(last) + ")", class
}

// ---- the form (create and edit) ----

// apiChoice is an API the form can grant.
type apiChoice struct {
	Identifier, Name string
	Scopes           []string
	Descriptions     map[string]string // by scope
	// Admin marks the built-in admin API: its admin scope makes an
	// administrator.
	Admin bool
}

type appFormData struct {
	Edit    bool
	ID      string
	Version int64
	Action  string
	APIs    []apiChoice
	// Policies are the trust policies a workload identity can bind to.
	Policies []store.TrustPolicy
	// Rows are the indexes of the binding rows shown.
	Rows       []int
	AdminScope string
	// SecretLifetimes are the choices of a new secret's lifetime.
	SecretLifetimes []lifetimeChoice
	// QuotaWindows are the fields of the token quota.
	QuotaWindows []quotaWindow
	// TLSSubjectKinds are the kinds of certificate subject.
	TLSSubjectKinds []tlsSubjectKind
	// Truncated tells that the server has more APIs than the form lists
	// (MaxAPIs); an edited application's own APIs are listed still.
	Truncated bool
	MaxAPIs   int
}

// HasPolicy reports whether a trust policy of this name exists.
func (d *appFormData) HasPolicy(name string) bool {
	return slices.ContainsFunc(d.Policies, func(p store.TrustPolicy) bool { return p.Name == name })
}

// known reports whether the form shows the error of key next to a field.
func (d *appFormData) known(key string) bool {
	switch key {
	case "name", "description", "auth_method", "jwks", "jwks_uri", "accept_secrets", "accept_endpoint_aud",
		"federation", "grants", "default_audience", "token_lifetime", "introspect", "claims", "secret_lifetime",
		"tls_subject", "cert_bound", "dpop_bound":
		return true
	}
	if aud, ok := strings.CutPrefix(key, "grant:"); ok {
		return slices.ContainsFunc(d.APIs, func(a apiChoice) bool { return a.Identifier == aud })
	}
	for _, p := range []string{"fed_policy_", "fed_subject_", "fed_claims_"} {
		if n, ok := strings.CutPrefix(key, p); ok {
			i, err := strconv.Atoi(n)
			return err == nil && slices.Contains(d.Rows, i)
		}
	}
	return false
}

// formAPIPages bounds the API listing of the form: at most this many
// pages of admin.DefaultPageSize.
const formAPIPages = 20

// apiChoiceOf is an API as the form offers it.
func apiChoiceOf(a store.API, adminAud string) apiChoice {
	return apiChoice{Identifier: a.Identifier, Name: a.Name, Scopes: a.Scopes, Descriptions: a.ScopeDescriptions,
		Admin: a.Builtin != "" || a.Identifier == adminAud}
}

// addAPI adds an API to the form's: the built-in admin API last.
func (d *appFormData) addAPI(ch apiChoice) {
	if ch.Admin {
		d.APIs = append(d.APIs, ch)
		return
	}
	i := slices.IndexFunc(d.APIs, func(a apiChoice) bool { return a.Admin })
	if i < 0 {
		i = len(d.APIs)
	}
	d.APIs = slices.Insert(d.APIs, i, ch)
}

// formData loads what the form offers: the APIs (the built-in admin API
// last; at most formAPIPages pages of them) and the trust policies.
func (c *Console) formData(r *http.Request) (*appFormData, error) {
	ctx := r.Context()
	adminAud := env.FromContext(ctx).AdminAudience()
	d := &appFormData{AdminScope: admin.AdminScope, SecretLifetimes: secretLifetimes, QuotaWindows: quotaWindows, TLSSubjectKinds: tlsSubjectKinds,
		MaxAPIs: formAPIPages * admin.DefaultPageSize}
	var builtin []apiChoice
	after := ""
	for range formAPIPages {
		page, err := c.svc.ListAPIs(ctx, store.ListOptions{Limit: admin.DefaultPageSize, After: after})
		if err != nil {
			return nil, err
		}
		for _, a := range page.Items {
			ch := apiChoiceOf(a, adminAud)
			if ch.Admin {
				builtin = append(builtin, ch)
			} else {
				d.APIs = append(d.APIs, ch)
			}
		}
		if after = page.NextCursor; after == "" {
			break
		}
	}
	d.Truncated = after != ""
	d.APIs = append(d.APIs, builtin...)
	policies, err := c.svc.ListTrustPolicies(ctx)
	if err != nil {
		return nil, err
	}
	d.Policies = policies
	return d, nil
}

// addClientAPIs adds the APIs an edited client holds a grant for or may
// introspect tokens of that the form's listing left out (past its bound):
// without their boxes, saving the form would drop them.
func (c *Console) addClientAPIs(r *http.Request, d *appFormData, cl store.Client) error {
	ctx := r.Context()
	adminAud := env.FromContext(ctx).AdminAudience()
	names := make([]string, 0, len(cl.Grants)+len(cl.Introspect))
	for _, g := range cl.Grants {
		names = append(names, g.Audience)
	}
	names = append(names, cl.Introspect...)
	for _, id := range names {
		if id == "*" || slices.ContainsFunc(d.APIs, func(a apiChoice) bool { return a.Identifier == id }) {
			continue
		}
		a, err := c.svc.GetAPI(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue // deleted meanwhile: the service names it on save
		case err != nil:
			return err
		}
		d.addAPI(apiChoiceOf(a, adminAud))
	}
	return nil
}

// setRows shows the binding rows up to the last filled one, one empty row
// more, at least minFedRows.
func (d *appFormData) setRows(lastFilled int) {
	n := min(max(lastFilled+2, minFedRows), maxFedRows)
	d.Rows = make([]int, n)
	for i := range d.Rows {
		d.Rows[i] = i
	}
}

func fedKey(part string, row int) string { return "fed_" + part + "_" + strconv.Itoa(row) }

// appForm is the form read into a client input, with what it takes to map
// the service's errors back onto the form's fields.
type appForm struct {
	in admin.ClientInput
	// grantAud is the API of each of in.Grants; fedRow the form row of
	// each of in.Federation.
	grantAud []string
	fedRow   []int
	// errs are problems found in the form itself (unreadable JSON, a bad
	// duration), by form field.
	errs map[string]string
}

// readAppForm reads the application form. create: the default audience
// may be inferred from a single grant.
func readAppForm(f url.Values, d *appFormData, create bool) *appForm {
	af := &appForm{errs: map[string]string{}}
	in := &af.in
	in.Name = strings.TrimSpace(f.Get("name"))
	in.Description = strings.TrimSpace(f.Get("description"))
	// The service requires a name too; checked here as well so that a
	// form stopped by one of the problems below does not look as if the
	// missing name were fine.
	if in.Name == "" {
		af.errs["name"] = "The name is required."
	}

	in.TokenEndpointAuthMethod = f.Get("auth_method")
	if in.TokenEndpointAuthMethod == "" {
		in.TokenEndpointAuthMethod = admin.AuthSecretBasic
	}
	if !slices.Contains(admin.AuthMethods, in.TokenEndpointAuthMethod) {
		af.errs["auth_method"] = "Choose how the application authenticates."
	}
	if text := strings.TrimSpace(f.Get("jwks")); text != "" {
		set, err := jws.PublicKeySet([]byte(text))
		if err != nil {
			af.errs["jwks"] = "The public keys could not be read: " + err.Error() + "."
		}
		in.JWKS = set
	}
	in.JWKSURI = strings.TrimSpace(f.Get("jwks_uri"))
	in.AcceptSecrets = f.Get("accept_secrets") != ""
	in.AcceptTokenEndpointAudience = f.Get("accept_endpoint_aud") != ""
	// The subject belongs to tls_client_auth alone: with another method
	// its fields are hidden, and what they still hold is dropped (the
	// service refuses a subject on another method).
	if in.TokenEndpointAuthMethod == admin.AuthTLSClient {
		subject := store.TLSSubject{Kind: f.Get("tls_subject_kind"), Value: strings.TrimSpace(f.Get("tls_subject"))}
		if subject.Value == "" {
			subject.Kind = ""
		}
		if !in.SetTLSSubject(subject) {
			af.errs["tls_subject"] = "Choose what the certificate must name."
		}
	}
	in.TLSClientCertificateBoundAccessTokens = f.Get("cert_bound") != ""
	in.DPoPBoundAccessTokens = f.Get("dpop_bound") != ""

	rows, _ := strconv.Atoi(f.Get("fed_rows"))
	rows = min(max(rows, 0), maxFedRows)
	lastFilled := -1
	for i := range rows {
		policy := strings.TrimSpace(f.Get(fedKey("policy", i)))
		subject := strings.TrimSpace(f.Get(fedKey("subject", i)))
		claimsText := strings.TrimSpace(f.Get(fedKey("claims", i)))
		if policy == "" && subject == "" && claimsText == "" {
			continue
		}
		lastFilled = i
		if policy == "" {
			af.errs[fedKey("policy", i)] = "Choose the trust policy whose tokens this binding accepts."
		}
		claims, problem := claimConditions(claimsText)
		if problem != "" {
			af.errs[fedKey("claims", i)] = problem
		}
		in.Federation = append(in.Federation, admin.FederatedIdentityInput{Policy: policy, Subject: subject, Claims: claims})
		af.fedRow = append(af.fedRow, i)
	}
	d.setRows(lastFilled)

	granted := f["grant"]
	for _, a := range d.APIs {
		scopes := f["scope:"+a.Identifier]
		if !slices.Contains(granted, a.Identifier) {
			if len(scopes) > 0 {
				af.errs["grant:"+a.Identifier] = "Tick “Grant access to " + a.Name + "” to grant these scopes, or untick them."
			}
			continue
		}
		in.Grants = append(in.Grants, admin.GrantInput{Audience: a.Identifier, Scopes: scopes})
		af.grantAud = append(af.grantAud, a.Identifier)
	}
	// A grant of an API the form does not list (deleted meanwhile) goes
	// to the service, which names it.
	for _, aud := range granted {
		if !slices.Contains(af.grantAud, aud) {
			in.Grants = append(in.Grants, admin.GrantInput{Audience: aud, Scopes: f["scope:"+aud]})
			af.grantAud = append(af.grantAud, aud)
		}
	}
	if in.Grants == nil {
		in.Grants = []admin.GrantInput{}
	}
	in.DefaultAudience = f.Get("default_audience")
	if create && in.DefaultAudience == "" && len(in.Grants) == 1 {
		in.DefaultAudience = in.Grants[0].Audience
	}

	secs, problem := lifetimeSeconds(f.Get("token_lifetime"))
	if problem != "" {
		af.errs["token_lifetime"] = problem
	}
	in.TokenLifetimeSeconds = secs
	if create && admin.IsSecretMethod(in.TokenEndpointAuthMethod) {
		life, ok := secretLifetimeOf(f.Get("secret_lifetime"))
		if !ok {
			af.errs["secret_lifetime"] = "Choose one of the listed lifetimes."
		}
		in.SecretLifetimeSeconds = int64(life / time.Second)
	}
	in.RefreshTokens = f.Get("refresh") != ""
	for _, q := range []struct {
		field string
		dst   *int64
	}{{"quota_per_minute", &in.Quota.PerMinute}, {"quota_per_hour", &in.Quota.PerHour}, {"quota_per_day", &in.Quota.PerDay}} {
		n, problem := quotaLimit(f.Get(q.field))
		if problem != "" {
			af.errs[q.field] = problem
		}
		*q.dst = n
	}
	if v := strings.TrimSpace(f.Get("token_reuse")); v != "" {
		reuse, err := strconv.ParseFloat(v, 64)
		if err != nil || !(reuse >= 0 && reuse < 1) {
			af.errs["token_reuse"] = "A fraction such as 0.5 (at least 0, under 1), or empty for off."
		}
		in.TokenReuseMinRemaining = reuse
	}
	in.Introspect = f["introspect"]
	claims, problem := customClaims(f.Get("claims"))
	if problem != "" {
		af.errs["claims"] = problem
	}
	in.CustomClaims = claims
	return af
}

// The form's own readers return a problem as a sentence for the person
// ("" when there is none).

// quotaWindow is one field of the token quota on the application form.
type quotaWindow struct{ Field, Name string }

var quotaWindows = []quotaWindow{{"quota_per_minute", "minute"}, {"quota_per_hour", "hour"}, {"quota_per_day", "day"}}

// quotaLimit reads one limit of a token quota: empty or 0 for the
// server's default, "unlimited" or -1 for none, or a number of tokens.
func quotaLimit(text string) (int64, string) {
	text = strings.TrimSpace(text)
	switch strings.ToLower(text) {
	case "", "0", "default":
		return 0, ""
	case "-1", "unlimited":
		return store.QuotaUnlimited, ""
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n < 1 || n > admin.MaxQuota {
		return 0, fmt.Sprintf("Enter a number of tokens from 1 to %d, “unlimited”, or nothing for the server’s default.", admin.MaxQuota)
	}
	return n, ""
}

// quotaSummary describes a client's quota for the application page.
func quotaSummary(q store.Quota) string { return strings.Join(q.Describe(" per "), ", ") }

// lifetimeSeconds reads a token lifetime, on the application and the API
// forms alike: a Go duration (15m, 1h30m), plain seconds, or empty for the
// default.
func lifetimeSeconds(text string) (int64, string) {
	text = strings.TrimSpace(text)
	if text == "" {
		return 0, ""
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		if n < 0 {
			return 0, "The token lifetime cannot be negative."
		}
		return n, ""
	}
	d, err := time.ParseDuration(text)
	if err != nil || d < 0 {
		return 0, "Give the token lifetime as a duration such as 15m, 1h or 2h30m, or leave it empty for the default."
	}
	if d%time.Second != 0 {
		return 0, "Give the token lifetime in whole seconds, such as 90s or 15m."
	}
	return int64(d / time.Second), ""
}

// customClaims reads the custom claims: a JSON object, or empty.
func customClaims(text string) (map[string]any, string) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, ""
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber() // large integers stay exact
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || dec.More() || claims == nil {
		return nil, `Custom claims must be a JSON object, like {"tenant": "acme", "tier": 2}.`
	}
	return claims, ""
}

// claimConditions reads a binding's claim conditions: one NAME=VALUE per
// line.
func claimConditions(text string) (map[string]string, string) {
	if text == "" {
		return nil, ""
	}
	out := map[string]string{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if !ok || name == "" {
			return nil, fmt.Sprintf("Line %d: write each condition as NAME=VALUE, e.g. kubernetes.io.namespace=payments.", n+1)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Sprintf("Line %d: the claim %s is given twice.", n+1, name)
		}
		out[name] = val
	}
	return out, ""
}

var (
	grantField = regexp.MustCompile(`^grants\[(\d+)\]\.`)
	fedField   = regexp.MustCompile(`^federation\[(\d+)\]\.(policy|subject|claims)$`)
)

// fieldKey maps a service field (JSON name) onto the form's field ("" if
// the form has none).
func (af *appForm) fieldKey(field string) string {
	switch field {
	case "name", "description", "default_audience", "introspect", "jwks", "jwks_uri", "accept_secrets", "federation", "grants":
		return field
	case "token_lifetime_seconds":
		return "token_lifetime"
	case "secret_lifetime_seconds":
		return "secret_lifetime"
	case "custom_claims":
		return "claims"
	case "token_endpoint_auth_method":
		return "auth_method"
	case "accept_token_endpoint_audience":
		return "accept_endpoint_aud"
	case "tls_client_certificate_bound_access_tokens":
		return "cert_bound"
	case "dpop_bound_access_tokens":
		return "dpop_bound"
	}
	if slices.ContainsFunc(admin.TLSSubjectParams, func(p struct{ Kind, Name string }) bool { return p.Name == field }) {
		return "tls_subject"
	}
	if m := grantField.FindStringSubmatch(field); m != nil {
		if i, err := strconv.Atoi(m[1]); err == nil && i < len(af.grantAud) {
			return "grant:" + af.grantAud[i]
		}
	}
	if m := fedField.FindStringSubmatch(field); m != nil {
		if i, err := strconv.Atoi(m[1]); err == nil && i < len(af.fedRow) {
			return fedKey(m[2], af.fedRow[i])
		}
	}
	return ""
}

// fieldLabels name the form's fields in messages.
var fieldLabels = map[string]string{
	"name": "The name", "description": "The description", "default_audience": "The default audience",
	"token_lifetime": "The token lifetime", "claims": "The custom claims", "jwks": "The key set",
	"jwks_uri": "The key set URL", "introspect": "The introspection permission", "grants": "The grants",
	"auth_method": "The authentication method", "federation": "The bindings", "tls_subject": "The certificate subject",
}

// sentence makes a service message read as a sentence next to its field.
func sentence(key, msg string) string {
	if key == "token_lifetime" && strings.HasPrefix(msg, "must be 0") {
		return "Give a lifetime between 1 minute and 7 days (e.g. 15m, 1h, 168h), or leave it empty for the default."
	}
	if label, ok := fieldLabels[key]; ok && (strings.HasPrefix(msg, "is ") || strings.HasPrefix(msg, "must ") || strings.HasPrefix(msg, "holds ")) {
		msg = label + " " + msg
	}
	r, n := utf8.DecodeRuneInString(msg)
	msg = string(unicode.ToUpper(r)) + msg[n:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

// showErrors puts validation errors next to their fields, and the rest
// (and conflicts) on top, for the form to be shown again.
func (af *appForm) showErrors(v *view, d *appFormData, err error) bool {
	var ve *admin.ValidationError
	var ce *admin.ConflictError
	switch {
	case errors.As(err, &ve):
		var other []string
		for _, fe := range ve.Fields {
			key := af.fieldKey(fe.Field)
			msg := sentence(key, fe.Message)
			if key == "" || !d.known(key) {
				other = append(other, fe.Field+": "+fe.Message)
				continue
			}
			if prev := v.Errors[key]; prev != "" {
				msg = prev + " " + msg
			}
			v.Errors[key] = msg
		}
		if len(other) > 0 {
			v.Alert = "Some settings were refused: " + strings.Join(other, "; ") + "."
		} else {
			v.Alert = "Some settings need your attention: see the messages below."
		}
		return true
	case errors.As(err, &ce):
		v.Alert = sentence("", ce.Detail)
		return true
	}
	return false
}

// appFormView is the form's view, with the errors found in the form.
func appFormView(title string, f url.Values, d *appFormData, errs map[string]string) *view {
	if errs == nil {
		errs = map[string]string{}
	}
	return &view{Title: title, Section: "apps", Form: f, Data: d, Errors: errs}
}

func (c *Console) appNew(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := c.formData(r)
	if err != nil {
		return err
	}
	d.Action = "/console/apps"
	d.setRows(-1)
	f := url.Values{"auth_method": {admin.AuthSecretBasic}, "nonce": {newFormNonce()}}
	return c.show(w, r, s, http.StatusOK, "app_form", appFormView("New application", f, d, nil))
}

func (c *Console) appCreate(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	d, err := c.formData(r)
	if err != nil {
		return err
	}
	d.Action = "/console/apps"
	f := r.PostForm
	nonce := f.Get("nonce")
	// A form shown again is a new form: it gets a nonce of its own.
	f.Set("nonce", newFormNonce())
	af := readAppForm(f, d, true)
	v := appFormView("New application", f, d, af.errs)
	if len(af.errs) > 0 {
		v.Alert = "Some settings need your attention: see the messages below."
		return c.show(w, r, s, http.StatusBadRequest, "app_form", v)
	}
	first, err := c.claimFormNonce(ctx, nonce)
	if err != nil {
		return err
	}
	if !first {
		// The nonce is claimed before the creation, which may then have
		// failed: the refusal cannot tell whether it exists.
		v.Alert = "This form was already submitted (a second click, or the page reloaded): the application may have been created — check the list of applications before submitting again."
		return c.show(w, r, s, http.StatusConflict, "app_form", v)
	}
	cl, plain, err := c.svc.CreateClient(ctx, af.in)
	if af.showErrors(v, d, err) {
		return c.show(w, r, s, statusOf(err), "app_form", v)
	}
	if err != nil {
		return err
	}
	c.log.InfoContext(ctx, "client created", "client_id", cl.ID,
		"auth_method", cl.Method(), "grants", len(cl.Grants))
	return c.secretPage(w, r, s, http.StatusCreated, cl, plain, false, 0)
}

// statusOf is the status a form shown again answers with.
func statusOf(err error) int {
	var ce *admin.ConflictError
	if errors.As(err, &ce) || errors.Is(err, admin.ErrPreconditionFailed) {
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

// appFormValues fills the form from a client.
func appFormValues(cl store.Client) url.Values {
	f := url.Values{
		"name": {cl.Name}, "description": {cl.Description}, "auth_method": {cl.Method()},
		"default_audience": {cl.DefaultAudience}, "jwks_uri": {cl.JWKSURI},
	}
	if cl.TokenLifetime > 0 {
		f.Set("token_lifetime", shortDuration(cl.TokenLifetime))
	}
	if cl.RefreshTokens {
		f.Set("refresh", "1")
	}
	for field, n := range map[string]int64{"quota_per_minute": cl.Quota.PerMinute, "quota_per_hour": cl.Quota.PerHour, "quota_per_day": cl.Quota.PerDay} {
		switch {
		case n > 0:
			f.Set(field, strconv.FormatInt(n, 10))
		case n < 0:
			f.Set(field, "unlimited")
		}
	}
	if cl.TokenReuse > 0 {
		f.Set("token_reuse", strconv.FormatFloat(cl.TokenReuse, 'g', -1, 64))
	}
	if cl.AcceptSecrets {
		f.Set("accept_secrets", "1")
	}
	if cl.AcceptTokenEndpointAudience {
		f.Set("accept_endpoint_aud", "1")
	}
	if cl.TLSSubject.Kind != "" {
		f.Set("tls_subject_kind", cl.TLSSubject.Kind)
		f.Set("tls_subject", cl.TLSSubject.Value)
	}
	if cl.CertBoundTokens {
		f.Set("cert_bound", "1")
	}
	if cl.DPoPBoundTokens {
		f.Set("dpop_bound", "1")
	}
	f["introspect"] = slices.Clone(cl.Introspect)
	for _, g := range cl.Grants {
		f.Add("grant", g.Audience)
		f["scope:"+g.Audience] = slices.Clone(g.Scopes)
	}
	if len(cl.CustomClaims) > 0 {
		b, _ := json.MarshalIndent(cl.CustomClaims, "", "  ")
		f.Set("claims", string(b))
	}
	if len(cl.JWKS) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, cl.JWKS, "", "  ") == nil {
			f.Set("jwks", buf.String())
		} else {
			f.Set("jwks", string(cl.JWKS))
		}
	}
	for i, b := range cl.Federation {
		f.Set(fedKey("policy", i), b.Policy)
		f.Set(fedKey("subject", i), b.Subject)
		f.Set(fedKey("claims", i), claimLines(b.Claims))
	}
	return f
}

// claimLines writes claim conditions one NAME=VALUE per line, sorted.
func claimLines(claims map[string]string) string {
	lines := make([]string, 0, len(claims))
	for k, v := range claims {
		lines = append(lines, k+"="+v)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// shortDuration writes a whole-second lifetime the way the forms read it:
// 15m, 1h30m, 90s; "" for 0 (the default).
func shortDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (c *Console) appEdit(w http.ResponseWriter, r *http.Request, s *session) error {
	cl, err := c.svc.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d, err := c.formData(r)
	if err != nil {
		return err
	}
	if err := c.addClientAPIs(r, d, cl); err != nil {
		return err
	}
	d.Edit, d.ID, d.Version = true, cl.ID, cl.Version
	d.Action = "/console/app/" + pathEscape(cl.ID) + "/edit"
	d.setRows(len(cl.Federation) - 1)
	return c.show(w, r, s, http.StatusOK, "app_form", appFormView("Edit "+cl.Name, appFormValues(cl), d, nil))
}

func (c *Console) appUpdate(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	cur, err := c.svc.GetClient(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	d, err := c.formData(r)
	if err != nil {
		return err
	}
	if err := c.addClientAPIs(r, d, cur); err != nil {
		return err
	}
	d.Edit, d.ID = true, cur.ID
	d.Action = "/console/app/" + pathEscape(cur.ID) + "/edit"
	f := r.PostForm
	version, err := formVersion(f)
	if err != nil {
		return err
	}
	d.Version = version
	af := readAppForm(f, d, false)
	v := appFormView("Edit "+cur.Name, f, d, af.errs)
	if len(af.errs) > 0 {
		v.Alert = "Some settings need your attention: see the messages below."
		return c.show(w, r, s, http.StatusBadRequest, "app_form", v)
	}
	in := af.in
	// Both secret methods authenticate with the secret; the form offers
	// one, so a client registered with the other keeps it.
	if in.TokenEndpointAuthMethod == admin.AuthSecretBasic && cur.Method() == admin.AuthSecretPost {
		in.TokenEndpointAuthMethod = admin.AuthSecretPost
	}
	// What the form shows, and nothing else (metadata and the disabled
	// flag are kept).
	p := admin.ClientPatch{
		Name: &in.Name, Description: &in.Description, Grants: &in.Grants, DefaultAudience: &in.DefaultAudience,
		TokenLifetimeSeconds: &in.TokenLifetimeSeconds, CustomClaims: &in.CustomClaims, RefreshTokens: &in.RefreshTokens,
		Quota:                  &admin.QuotaPatch{PerMinute: &in.Quota.PerMinute, PerHour: &in.Quota.PerHour, PerDay: &in.Quota.PerDay},
		TokenReuseMinRemaining: &in.TokenReuseMinRemaining, Introspect: &in.Introspect, TokenEndpointAuthMethod: &in.TokenEndpointAuthMethod, JWKS: &in.JWKS, JWKSURI: &in.JWKSURI,
		AcceptSecrets: &in.AcceptSecrets, AcceptTokenEndpointAudience: &in.AcceptTokenEndpointAudience, Federation: &in.Federation,
		TLSClientAuthSubjectDN: &in.TLSClientAuthSubjectDN, TLSClientAuthSANDNS: &in.TLSClientAuthSANDNS, TLSClientAuthSANURI: &in.TLSClientAuthSANURI,
		TLSClientAuthSANIP: &in.TLSClientAuthSANIP, TLSClientAuthSANEmail: &in.TLSClientAuthSANEmail,
		TLSClientCertificateBoundAccessTokens: &in.TLSClientCertificateBoundAccessTokens, DPoPBoundAccessTokens: &in.DPoPBoundAccessTokens,
	}
	cl, err := c.svc.UpdateClient(ctx, cur.ID, admin.ETag(version), p)
	if errors.Is(err, admin.ErrPreconditionFailed) {
		// Keep what was typed; the next save applies it over the
		// current version, knowingly.
		if now, gerr := c.svc.GetClient(ctx, cur.ID); gerr == nil {
			d.Version = now.Version
		}
		v.Alert = "Someone else changed this application while you were editing it. Your changes are below, not saved yet: compare them with the application's current settings (open it in another tab), then save again to apply them."
		return c.show(w, r, s, http.StatusConflict, "app_form", v)
	}
	if af.showErrors(v, d, err) {
		return c.show(w, r, s, statusOf(err), "app_form", v)
	}
	if err != nil {
		return err
	}
	c.log.InfoContext(ctx, "client updated", "client_id", cl.ID, "version", cl.Version)
	return done(w, r, "/console/app/"+pathEscape(cl.ID), "app-updated")
}

// ---- the secret, shown once ----

type appSecretData struct {
	ID, Name  string
	Method    string // the method's label
	Key, Fed  bool   // a key or workload identity client (no secret)
	Secret    string // "" when the client has none
	Rotated   bool
	OldUntil  time.Time // when the rotated-out secrets stop ("" none left)
	OldAtOnce bool
	Issuer    string
	TokenURL  string
	Audience  string
	Curl, Env string
	Admin     bool
}

// secretPage answers a creation or rotation with the new credentials:
// rendered by the POST itself (never a redirect: the secret must not land
// in a URL, the history or a log) with no-store.
func (c *Console) secretPage(w http.ResponseWriter, r *http.Request, s *session, status int, cl store.Client, plain string, rotated bool, grace time.Duration) error {
	e := env.FromContext(r.Context())
	d := &appSecretData{
		ID: cl.ID, Name: cl.Name, Method: authLabel(cl.Method()), Secret: plain, Rotated: rotated,
		Key: cl.Method() == admin.AuthPrivateKeyJWT, Fed: cl.Method() == admin.AuthFederated,
		Issuer: e.Issuer, TokenURL: e.Issuer + "/oauth/token", Audience: cl.DefaultAudience,
		Admin: admin.IsAdmin(cl, e.AdminAudience()),
	}
	if d.Audience == "" && len(cl.Grants) > 0 {
		d.Audience = cl.Grants[0].Audience
	}
	if rotated {
		now := c.now()
		for _, sec := range cl.Secrets {
			if sec.Live(now) && !sec.ExpiresAt.IsZero() && sec.ExpiresAt.After(d.OldUntil) {
				d.OldUntil = sec.ExpiresAt
			}
		}
		d.OldAtOnce = grace == 0
	}
	d.Curl, d.Env = connectionText(d)
	w.Header().Set("Cache-Control", "no-store")
	title := "Application created"
	if rotated {
		title = "New secret"
	}
	return c.show(w, r, s, status, "app_secret", &view{Title: title, Section: "apps", Data: d})
}

// connectionText writes the curl command and the environment lines for a
// client's credentials.
func connectionText(d *appSecretData) (curl, envLines string) {
	var b, e strings.Builder
	fmt.Fprintf(&b, "curl -s %s \\\n", shellQuote(d.TokenURL))
	fmt.Fprintf(&e, "M2MAUTH_SERVER=%s\nM2MAUTH_TOKEN_URL=%s\nM2MAUTH_CLIENT_ID=%s\n", shellQuote(d.Issuer), shellQuote(d.TokenURL), shellQuote(d.ID))
	switch {
	case d.Secret != "":
		fmt.Fprintf(&b, "  -u %s \\\n", shellQuote(d.ID+":"+d.Secret))
		fmt.Fprintf(&e, "M2MAUTH_CLIENT_SECRET=%s\n", shellQuote(d.Secret))
	case d.Key:
		fmt.Fprintf(&b, "  -d client_id=%s \\\n", shellQuote(d.ID))
		b.WriteString("  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \\\n")
		b.WriteString("  --data-urlencode \"client_assertion=$ASSERTION\" \\\n")
		e.WriteString("M2MAUTH_PRIVATE_KEY_FILE=/path/to/private-key.pem\n")
	case d.Fed:
		fmt.Fprintf(&b, "  -d client_id=%s \\\n", shellQuote(d.ID))
		b.WriteString("  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \\\n")
		b.WriteString("  --data-urlencode \"client_assertion=$(cat /path/to/workload-token)\" \\\n")
	}
	if d.Audience != "" {
		fmt.Fprintf(&b, "  --data-urlencode %s \\\n", shellQuote("audience="+d.Audience))
		fmt.Fprintf(&e, "M2MAUTH_AUDIENCE=%s\n", shellQuote(d.Audience))
	}
	b.WriteString("  -d grant_type=client_credentials")
	return b.String(), strings.TrimSuffix(e.String(), "\n")
}

// shellQuote quotes s for a POSIX shell (and a .env file) unless it is
// made of characters that need none.
func shellQuote(s string) string {
	safe := s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.,:/@%+=", r)))
	})
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ---- detail ----

type secretRow struct {
	ID, Hint, Status                 string
	CreatedAt, ExpiresAt, LastUsedAt time.Time
}

// keyRow is one key of a key client's inline JWK Set.
type keyRow struct {
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	Alg string `json:"alg"`
}

type appShowData struct {
	Client store.Client
	Method string
	// SubjectKind names the kind of the client's certificate subject.
	SubjectKind string
	Admin, Self bool
	UsesSecrets bool
	Secrets     []secretRow
	LiveSecrets int
	// APIs are the granted APIs' names by identifier.
	APIs     map[string]string
	Claims   string
	Metadata []string
	Keys     []keyRow
	KeysBad  bool // the stored set could not be read
	Graces   []graceChoice
	// SecretLifetimes are the choices of the new secret's lifetime.
	SecretLifetimes []lifetimeChoice
	TokenURL        string
}

func (c *Console) appShow(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showApp(w, r, s, http.StatusOK, "")
}

// showApp renders the detail page (status and alert for an action that
// was refused on it).
func (c *Console) showApp(w http.ResponseWriter, r *http.Request, s *session, status int, alert string) error {
	ctx := r.Context()
	// Last-used times are recorded in memory and flushed in batches: write
	// them first so the page shows them current.
	if c.cfg.Flush != nil {
		if err := c.cfg.Flush(ctx); err != nil {
			c.log.WarnContext(ctx, "console: flush usage", "error", err)
		}
	}
	cl, err := c.svc.GetClient(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	e := env.FromContext(ctx)
	now := c.now()
	d := &appShowData{
		Client: cl, Method: authLabel(cl.Method()), SubjectKind: tlsSubjectLabel(cl.TLSSubject.Kind), Admin: admin.IsAdmin(cl, e.AdminAudience()), Self: cl.ID == s.clientID,
		UsesSecrets: admin.IsSecretMethod(cl.AuthMethod) || cl.AcceptSecrets, APIs: map[string]string{},
		Graces: graceChoices, SecretLifetimes: secretLifetimes, TokenURL: e.Issuer + "/oauth/token",
	}
	for _, sec := range cl.Secrets {
		status := "active"
		switch {
		case !sec.Live(now):
			status = "expired"
		case !sec.ExpiresAt.IsZero():
			status = "expiring"
		}
		if sec.Live(now) {
			d.LiveSecrets++
		}
		d.Secrets = append(d.Secrets, secretRow{ID: sec.ID, Hint: sec.Hint, Status: status, CreatedAt: sec.CreatedAt, ExpiresAt: sec.ExpiresAt, LastUsedAt: sec.LastUsedAt})
	}
	for _, g := range cl.Grants {
		if a, err := c.svc.GetAPI(ctx, g.Audience); err == nil {
			d.APIs[g.Audience] = a.Name
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if len(cl.CustomClaims) > 0 {
		b, _ := json.MarshalIndent(cl.CustomClaims, "", "  ")
		d.Claims = string(b)
	}
	for k, val := range cl.Metadata {
		d.Metadata = append(d.Metadata, k+" = "+val)
	}
	slices.Sort(d.Metadata)
	if len(cl.JWKS) > 0 {
		var set struct {
			Keys []keyRow `json:"keys"`
		}
		if json.Unmarshal(cl.JWKS, &set) != nil {
			d.KeysBad = true
		}
		d.Keys = set.Keys
	}
	return c.show(w, r, s, status, "app_show", &view{Title: cl.Name, Section: "apps", Alert: alert, Data: d})
}

// refused shows the detail page again when an action on it was refused
// for a reason the person can act on; other errors are returned.
func (c *Console) refused(w http.ResponseWriter, r *http.Request, s *session, err error) error {
	var ve *admin.ValidationError
	var ce *admin.ConflictError
	switch {
	case errors.As(err, &ce):
		return c.showApp(w, r, s, http.StatusConflict, sentence("", ce.Detail))
	case errors.Is(err, admin.ErrPreconditionFailed):
		return c.showApp(w, r, s, http.StatusConflict, "The application changed since this page was loaded (another change, or a second click). Check it below and try again.")
	case errors.As(err, &ve):
		msgs := make([]string, len(ve.Fields))
		for i, f := range ve.Fields {
			msgs[i] = f.Field + ": " + f.Message
		}
		return c.showApp(w, r, s, http.StatusBadRequest, "The change was refused because the application's settings are not valid now ("+strings.Join(msgs, "; ")+"). Edit the application to fix them.")
	}
	return err
}

// formVersion reads the version an edit form was made from (every form
// that changes an API or an application carries it).
func formVersion(f url.Values) (int64, error) {
	v, err := strconv.ParseInt(f.Get("version"), 10, 64)
	if err != nil || v < 1 {
		return 0, &pageError{http.StatusBadRequest, "The form is missing the version it was made from. Reload the page and try again."}
	}
	return v, nil
}

func (c *Console) appRotateSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	id := r.PathValue("id")
	grace, ok := graceOf(r.PostForm.Get("grace"))
	if !ok {
		return c.showApp(w, r, s, http.StatusBadRequest, "Choose how long the current secret keeps working after the rotation.")
	}
	version, err := formVersion(r.PostForm)
	if err != nil {
		return err
	}
	life, ok := secretLifetimeOf(r.PostForm.Get("secret_lifetime"))
	if !ok {
		return c.showApp(w, r, s, http.StatusBadRequest, "Choose one of the listed lifetimes for the new secret.")
	}
	cl, added, plain, err := c.svc.RotateSecret(ctx, id, admin.ETag(version), grace, life)
	if err != nil {
		return c.refused(w, r, s, err)
	}
	c.log.InfoContext(ctx, "client secret rotated", "client_id", cl.ID,
		"secret_id", added.ID, "grace", grace.String())
	return c.secretPage(w, r, s, http.StatusCreated, cl, plain, true, grace)
}

func (c *Console) appRevokeSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	id, secretID := r.PathValue("id"), r.PathValue("secret")
	cl, err := c.svc.RevokeSecret(ctx, id, "", secretID)
	if err != nil {
		return c.refused(w, r, s, err)
	}
	c.log.InfoContext(ctx, "client secret revoked", "client_id", cl.ID, "secret_id", secretID)
	return done(w, r, "/console/app/"+pathEscape(cl.ID), "secret-revoked")
}

func (c *Console) appDisable(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.setDisabled(w, r, s, true)
}

func (c *Console) appEnable(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.setDisabled(w, r, s, false)
}

// setDisabled disables (which revokes its tokens) or enables a client.
func (c *Console) setDisabled(w http.ResponseWriter, r *http.Request, s *session, disabled bool) error {
	ctx := r.Context()
	cl, err := c.svc.UpdateClient(ctx, r.PathValue("id"), "", admin.ClientPatch{Disabled: &disabled})
	if err != nil {
		return c.refused(w, r, s, err)
	}
	c.log.InfoContext(ctx, "client updated", "client_id", cl.ID, "version", cl.Version, "disabled", cl.Disabled)
	code := "app-enabled"
	if disabled {
		code = "app-disabled"
	}
	return done(w, r, "/console/app/"+pathEscape(cl.ID), code)
}

func (c *Console) appRevokeTokens(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	cl, err := c.svc.RevokeClientTokens(ctx, r.PathValue("id"))
	if err != nil {
		return c.refused(w, r, s, err)
	}
	c.log.InfoContext(ctx, "client tokens revoked", "client_id", cl.ID,
		"revoked_before", cl.TokensRevokedBefore)
	return done(w, r, "/console/app/"+pathEscape(cl.ID), "tokens-revoked")
}

// ---- delete ----

type appDeleteData struct {
	Client      store.Client
	Admin, Self bool
	Secrets     int
}

func (c *Console) appDeleteConfirm(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showDeleteConfirm(w, r, s, http.StatusOK, "")
}

// showDeleteConfirm shows what deleting the application means, for the
// version the deletion will be checked against.
func (c *Console) showDeleteConfirm(w http.ResponseWriter, r *http.Request, s *session, status int, alert string) error {
	ctx := r.Context()
	cl, err := c.svc.GetClient(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	e := env.FromContext(ctx)
	d := &appDeleteData{Client: cl, Admin: admin.IsAdmin(cl, e.AdminAudience()), Self: cl.ID == s.clientID}
	for _, sec := range cl.Secrets {
		if sec.Live(c.now()) {
			d.Secrets++
		}
	}
	return c.show(w, r, s, status, "app_delete", &view{Title: "Delete " + cl.Name, Section: "apps", Alert: alert, Data: d})
}

// appDelete deletes the version the confirmation showed: if the
// application changed since (a grant, a secret, made an admin), the
// confirmation is shown again with what deleting it now means.
func (c *Console) appDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	id := r.PathValue("id")
	version, err := formVersion(r.PostForm)
	if err != nil {
		return err
	}
	err = c.svc.DeleteClient(ctx, id, admin.ETag(version))
	if errors.Is(err, admin.ErrPreconditionFailed) {
		return c.showDeleteConfirm(w, r, s, http.StatusConflict,
			"The application changed since this page was shown. Check what deleting it now means, then confirm again.")
	}
	if err != nil {
		return err
	}
	c.log.InfoContext(ctx, "client deleted", "client_id", id)
	return done(w, r, "/console/apps", "app-deleted")
}
