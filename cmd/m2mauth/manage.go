package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// output prints results as a table or, with --json, as JSON.
type output struct{ json bool }

func (o *output) register(f *flags) {
	f.BoolVar(&o.json, "json", false, "print JSON instead of a table")
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func lifetime(seconds int64) string {
	if seconds == 0 {
		return "default"
	}
	return (time.Duration(seconds) * time.Second).String()
}

// ---- api ----

func apiCommands() []command {
	return []command{
		{"create", "create an API", apiCreate},
		{"list", "list APIs", apiList},
		{"show", "show one API", apiShow},
		{"update", "change an API's name, scopes or token lifetime", apiUpdate},
		{"delete", "delete an API (--force also removes the grants for it)", apiDelete},
	}
}

func apiCreate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var in admin.APIInput
	var scopes string
	var life time.Duration
	f := newFlags(e, "api create", "", "Creates an API (a resource server). Its identifier becomes the aud claim of tokens for it.")
	f.StringVar(&in.Identifier, "identifier", "", "the API's identifier, the tokens' aud (e.g. https://api.example.com)")
	f.StringVar(&in.Name, "name", "", "display name")
	f.StringVar(&scopes, "scopes", "", `space-separated scopes the API defines (e.g. "orders:read orders:write")`)
	f.DurationVar(&life, "token-lifetime", 0, "lifetime of tokens for this API (default: the server's)")
	f.BoolVar(&in.Discoverable, "discoverable", false, "list the API's scopes in the discovery documents' scopes_supported")
	conn.register(f)
	out.register(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	in.Scopes = strings.Fields(scopes)
	in.TokenLifetimeSeconds = int64(life / time.Second)
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	var a admin.APIResource
	if err := ac.do(ctx, http.MethodPost, "/admin/v1/apis", in, &a); err != nil {
		return err
	}
	return printAPIs(e.stdout, out, a)
}

func printAPIs(w io.Writer, out output, apis ...admin.APIResource) error {
	if out.json {
		if len(apis) == 1 {
			return printJSON(w, apis[0])
		}
		return printJSON(w, apis)
	}
	rows := make([][]string, 0, len(apis))
	for _, a := range apis {
		rows = append(rows, []string{a.Identifier, a.Name, strings.Join(a.Scopes, " "), lifetime(a.TokenLifetimeSeconds)})
	}
	table(w, "IDENTIFIER\tNAME\tSCOPES\tTOKEN LIFETIME", rows)
	return nil
}

func apiList(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var name string
	f := newFlags(e, "api list", "", "Lists every API (all pages).")
	f.StringVar(&name, "name", "", "only APIs whose name contains this (any case)")
	conn.register(f)
	out.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	items, err := listAll[admin.APIResource](ctx, ac, "/admin/v1/apis", url.Values{"name": {name}})
	if err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, items)
	}
	return printAPIs(e.stdout, out, items...)
}

// listAll follows next_cursor through every page of a listing.
func listAll[T any](ctx context.Context, ac *adminClient, path string, q url.Values) ([]T, error) {
	items := []T{}
	for k, v := range q {
		if len(v) == 0 || v[0] == "" {
			delete(q, k)
		}
	}
	q.Set("limit", "1000")
	for {
		var page admin.ListResponse[T]
		if err := ac.do(ctx, http.MethodGet, path+"?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.NextCursor == "" {
			return items, nil
		}
		q.Set("cursor", page.NextCursor)
	}
}

func apiShow(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "api show", "IDENTIFIER", "Shows one API.")
	conn.register(f)
	out.register(f)
	ac, pos, err := conn.parseConnect(ctx, f, args, 1, 1)
	if err != nil {
		return err
	}
	var a admin.APIResource
	if err := ac.do(ctx, http.MethodGet, "/admin/v1/apis/"+url.PathEscape(pos[0]), nil, &a); err != nil {
		return err
	}
	return printAPIs(e.stdout, out, a)
}

func apiDelete(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var force bool
	f := newFlags(e, "api delete", "IDENTIFIER", "Deletes an API. Refused while a client holds a grant for it, unless --force, which removes those grants.")
	f.BoolVar(&force, "force", false, "also remove every client's grant for the API")
	conn.register(f)
	ac, pos, err := conn.parseConnect(ctx, f, args, 1, 1)
	if err != nil {
		return err
	}
	path := "/admin/v1/apis/" + url.PathEscape(pos[0])
	if force {
		path += "?force=true"
	}
	if err := ac.do(ctx, http.MethodDelete, path, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted API %s\n", pos[0])
	return nil
}

// ---- client ----

func clientCommands() []command {
	return []command{
		{"create", "create a client and print its secret (shown only once)", clientCreate},
		{"list", "list clients", clientList},
		{"show", "show one client", clientShow},
		{"update", "change a client's name, grants, lifetime, claims or metadata", clientUpdate},
		{"disable", "refuse the client's token requests until enabled", clientDisable},
		{"enable", "accept the client's token requests again", clientEnable},
		{"rotate-secret", "create a new secret; the old one expires after --grace", clientRotateSecret},
		{"revoke-secret", "revoke one secret at once", clientRevokeSecret},
		{"import", "create a client with an existing client id and secret", clientImport},
		{"revoke-tokens", "revoke every token the client holds now", clientRevokeTokens},
		{"delete", "delete a client and its secrets", clientDelete},
	}
}

// grantFlag collects repeated --grant AUDIENCE=SCOPES values.
type grantFlag []admin.GrantInput

func (g *grantFlag) String() string { return "" }

func (g *grantFlag) Set(v string) error {
	aud, scopes, ok := strings.Cut(v, "=")
	if !ok || aud == "" {
		return fmt.Errorf(`want AUDIENCE="SCOPE SCOPE…", got %q`, v)
	}
	*g = append(*g, admin.GrantInput{Audience: aud, Scopes: strings.Fields(scopes)})
	return nil
}

func clientCreate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var in admin.ClientInput
	var audience, scopes string
	var grants grantFlag
	var life time.Duration
	var asEnv bool
	f := newFlags(e, "client create", "", "Creates a client (an application using the client-credentials grant) and prints its\nclient_id and client_secret. The secret is shown only this once.")
	f.StringVar(&in.Name, "name", "", "display name")
	f.StringVar(&in.Description, "description", "", "description")
	f.StringVar(&audience, "audience", "", "API identifier to grant; also the client's default audience")
	f.StringVar(&scopes, "scopes", "", "space-separated scopes of --audience to grant")
	f.Var(&grants, "grant", `additional grant AUDIENCE="SCOPE SCOPE…" (repeatable)`)
	f.DurationVar(&life, "token-lifetime", 0, "lifetime of this client's tokens (default: the API's or the server's)")
	f.BoolVar(&in.RefreshTokens, "refresh-tokens", false, "also issue refresh tokens to this client (off by default, RFC 6749 §4.4.3)")
	var introspect string
	f.StringVar(&introspect, "introspect", "", `let this client introspect tokens for these APIs (space-separated; "*": all)`)
	f.BoolVar(&asEnv, "env", false, `print "export M2MAUTH_CLIENT_ID=… M2MAUTH_CLIENT_SECRET=…" lines for eval in a shell`)
	conn.register(f)
	out.register(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if audience != "" {
		in.Grants = append(in.Grants, admin.GrantInput{Audience: audience, Scopes: strings.Fields(scopes)})
		in.DefaultAudience = audience
	} else if scopes != "" {
		return fmt.Errorf("--scopes needs --audience")
	}
	in.Grants = append(in.Grants, grants...)
	in.TokenLifetimeSeconds = int64(life / time.Second)
	in.Introspect = strings.Fields(introspect)
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	var c admin.ClientResource
	if err := ac.do(ctx, http.MethodPost, "/admin/v1/clients", in, &c); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, c)
	}
	if asEnv {
		// Ids and secrets are base32/base64url: safe inside single quotes.
		fmt.Fprintf(e.stdout, "export M2MAUTH_CLIENT_ID='%s'\nexport M2MAUTH_CLIENT_SECRET='%s'\n", c.ClientID, c.ClientSecret)
		return nil
	}
	fmt.Fprintf(e.stdout, "client_id:     %s\nclient_secret: %s\n\nStore the secret now: it is not shown again.\n", c.ClientID, c.ClientSecret)
	return nil
}

func printClients(w io.Writer, clients []admin.ClientResource) {
	rows := make([][]string, 0, len(clients))
	for _, c := range clients {
		var gs []string
		for _, g := range c.Grants {
			gs = append(gs, g.Audience+"="+strings.Join(g.Scopes, " "))
		}
		status := "enabled"
		if c.Disabled {
			status = "disabled"
		}
		rows = append(rows, []string{c.ClientID, c.Name, status, strings.Join(gs, "; "), fmt.Sprint(len(c.Secrets)), c.CreatedAt.Format(time.RFC3339)})
	}
	table(w, "CLIENT ID\tNAME\tSTATUS\tGRANTS\tSECRETS\tCREATED", rows)
}

func clientList(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var name, audience string
	f := newFlags(e, "client list", "", "Lists every client (all pages; never their secrets).")
	f.StringVar(&name, "name", "", "only clients whose name contains this (any case)")
	f.StringVar(&audience, "audience", "", "only clients granted this API")
	conn.register(f)
	out.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	items, err := listAll[admin.ClientResource](ctx, ac, "/admin/v1/clients", url.Values{"name": {name}, "audience": {audience}})
	if err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, items)
	}
	printClients(e.stdout, items)
	return nil
}

func clientShow(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "client show", "CLIENT_ID", "Shows one client with its grants and its secrets' ids and hints (never the secrets).")
	conn.register(f)
	out.register(f)
	ac, pos, err := conn.parseConnect(ctx, f, args, 1, 1)
	if err != nil {
		return err
	}
	var c admin.ClientResource
	if err := ac.do(ctx, http.MethodGet, "/admin/v1/clients/"+url.PathEscape(pos[0]), nil, &c); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, c)
	}
	status := "enabled"
	if c.Disabled {
		status = "disabled"
	}
	fmt.Fprintf(e.stdout, "client_id:        %s\nname:             %s\nstatus:           %s\ndescription:      %s\ndefault audience: %s\ntoken lifetime:   %s\nversion (ETag):   %d\ncreated:          %s\n",
		c.ClientID, c.Name, status, c.Description, c.DefaultAudience, lifetime(c.TokenLifetimeSeconds), c.Version, c.CreatedAt.Format(time.RFC3339))
	if len(c.CustomClaims) > 0 {
		b, _ := json.Marshal(c.CustomClaims)
		fmt.Fprintf(e.stdout, "custom claims:    %s\n", b)
	}
	if len(c.Metadata) > 0 {
		b, _ := json.Marshal(c.Metadata)
		fmt.Fprintf(e.stdout, "metadata:         %s\n", b)
	}
	fmt.Fprintln(e.stdout)
	rows := [][]string{}
	for _, g := range c.Grants {
		rows = append(rows, []string{g.Audience, strings.Join(g.Scopes, " ")})
	}
	table(e.stdout, "GRANTED API\tSCOPES", rows)
	fmt.Fprintln(e.stdout)
	rows = rows[:0]
	for _, s := range c.Secrets {
		rows = append(rows, []string{s.ID, s.Hint + "…", s.Status, s.CreatedAt.Format(time.RFC3339), timeOrDash(s.ExpiresAt), timeOrDash(s.LastUsedAt)})
	}
	table(e.stdout, "SECRET ID\tHINT\tSTATUS\tCREATED\tEXPIRES\tLAST USED", rows)
	return nil
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func clientDelete(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	f := newFlags(e, "client delete", "CLIENT_ID", "Deletes a client and its secrets. Tokens it already holds stay valid until they expire.")
	conn.register(f)
	ac, pos, err := conn.parseConnect(ctx, f, args, 1, 1)
	if err != nil {
		return err
	}
	if err := ac.do(ctx, http.MethodDelete, "/admin/v1/clients/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted client %s\n", pos[0])
	return nil
}

// ---- token ----

func runToken(ctx context.Context, e *env, args []string) error {
	var server, id, sec, audience, scopes string
	var out output
	f := newFlags(e, "token", "", "Gets an access token with the client-credentials grant (HTTP Basic client authentication)\nand prints it; --json prints the whole token response.")
	f.StringVar(&server, "server", "", "server base URL (e.g. http://127.0.0.1:8080)")
	f.StringVar(&id, "client-id", "", "client id")
	f.StringVar(&sec, "client-secret", "", "client secret; prefer the environment variable")
	f.StringVar(&audience, "audience", "", "API identifier (default: the client's default audience)")
	f.StringVar(&scopes, "scopes", "", "space-separated scopes (default: all granted)")
	out.register(f)
	f.setEnv("client-id", "M2MAUTH_CLIENT_ID")
	f.setEnv("client-secret", "M2MAUTH_CLIENT_SECRET")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if server == "" || id == "" || sec == "" {
		return fmt.Errorf("--server, --client-id and --client-secret are required")
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if audience != "" {
		form.Set("audience", audience)
	}
	if scopes != "" {
		form.Set("scope", scopes)
	}
	tok, err := requestToken(ctx, strings.TrimRight(server, "/")+"/oauth/token", id, sec, form)
	if err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, tok)
	}
	fmt.Fprintln(e.stdout, tok.AccessToken)
	return nil
}
