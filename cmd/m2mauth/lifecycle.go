package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// kvFlag collects repeated KEY=VALUE values.
type kvFlag map[string]string

func (m *kvFlag) String() string { return "" }

func (m *kvFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	if *m == nil {
		*m = kvFlag{}
	}
	(*m)[k] = val
	return nil
}

// setFlags reports which flags were given on the command line.
func setFlags(f *flags) map[string]bool {
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

func printClient(e *env, out output, c admin.ClientResource) error {
	if out.json {
		return printJSON(e.stdout, c)
	}
	printClients(e.stdout, []admin.ClientResource{c})
	return nil
}

// ---- client update / disable / enable ----

func clientUpdate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var name, desc, audience, scopes, defAud, ifMatch string
	var grants grantFlag
	var claims, meta kvFlag
	var life time.Duration
	var clearClaims, clearMeta, refresh bool
	var introspect string
	f := newFlags(e, "client update", "CLIENT_ID", "Changes the given fields of a client; the others stay as they are.\n--audience/--scopes/--grant replace the client's grants as a whole.")
	f.StringVar(&name, "name", "", "display name")
	f.StringVar(&desc, "description", "", "description")
	f.StringVar(&audience, "audience", "", "API identifier to grant (replaces the grants; with --scopes)")
	f.StringVar(&scopes, "scopes", "", "space-separated scopes of --audience")
	f.Var(&grants, "grant", `grant AUDIENCE="SCOPE SCOPE…" (repeatable; replaces the grants)`)
	f.StringVar(&defAud, "default-audience", "", `default audience ("" for none)`)
	f.DurationVar(&life, "token-lifetime", 0, "lifetime of this client's tokens (0: the API's or the server's)")
	f.Var(&claims, "claim", "static custom claim KEY=VALUE added to every token (repeatable; replaces the claims)")
	f.BoolVar(&clearClaims, "clear-claims", false, "remove every custom claim")
	f.Var(&meta, "metadata", "metadata KEY=VALUE (repeatable; replaces the metadata)")
	f.BoolVar(&clearMeta, "clear-metadata", false, "remove all metadata")
	f.BoolVar(&refresh, "refresh-tokens", false, "issue refresh tokens to this client (--refresh-tokens=false to stop)")
	f.StringVar(&introspect, "introspect", "", `APIs whose tokens this client may introspect (space-separated; "*": all; "" : none)`)
	f.StringVar(&ifMatch, "if-match", "", "only change the client if its ETag is still this (from client show --json)")
	conn.register(f)
	out.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	set := setFlags(f)
	patch := map[string]any{}
	if set["name"] {
		patch["name"] = name
	}
	if set["description"] {
		patch["description"] = desc
	}
	if set["audience"] || set["grant"] {
		gs := []admin.GrantInput{}
		if audience != "" {
			gs = append(gs, admin.GrantInput{Audience: audience, Scopes: strings.Fields(scopes)})
		}
		patch["grants"] = append(gs, grants...)
	} else if set["scopes"] {
		return errors.New("--scopes needs --audience")
	}
	if set["default-audience"] {
		patch["default_audience"] = defAud
	}
	if set["refresh-tokens"] {
		patch["refresh_tokens"] = refresh
	}
	if set["introspect"] {
		patch["introspect"] = append([]string{}, strings.Fields(introspect)...)
	}
	if set["token-lifetime"] {
		patch["token_lifetime_seconds"] = int64(life / time.Second)
	}
	if set["claim"] || clearClaims {
		m := map[string]any{}
		for k, v := range claims {
			m[k] = v
		}
		patch["custom_claims"] = m
	}
	if set["metadata"] || clearMeta {
		patch["metadata"] = map[string]string(meta)
		if meta == nil {
			patch["metadata"] = map[string]string{}
		}
	}
	if len(patch) == 0 {
		return errors.New("nothing to change: give at least one field flag (see --help)")
	}
	return patchClient(ctx, e, conn, out, pos[0], ifMatch, patch)
}

func patchClient(ctx context.Context, e *env, conn connFlags, out output, id, ifMatch string, patch map[string]any) error {
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	var c admin.ClientResource
	if err := ac.doIfMatch(ctx, http.MethodPatch, "/admin/v1/clients/"+url.PathEscape(id), ifMatch, patch, &c); err != nil {
		return err
	}
	return printClient(e, out, c)
}

func clientSetDisabled(disabled bool, name, summary string) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		var conn connFlags
		var out output
		f := newFlags(e, "client "+name, "CLIENT_ID", summary)
		conn.register(f)
		out.register(f)
		pos, err := f.parse(args, 1, 1)
		if err != nil {
			return err
		}
		return patchClient(ctx, e, conn, out, pos[0], "", map[string]any{"disabled": disabled})
	}
}

var (
	clientDisable = clientSetDisabled(true, "disable", "Disables a client: its token requests are refused (invalid_client) from the next request on,\non every replica within a second. Tokens it already holds stay valid until they expire.")
	clientEnable  = clientSetDisabled(false, "enable", "Enables a disabled client.")
)

// ---- secrets ----

func clientRotateSecret(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var grace time.Duration
	var ifMatch string
	f := newFlags(e, "client rotate-secret", "CLIENT_ID", "Creates a new secret and prints it (shown only this once). The previous secret keeps\nworking for --grace, then stops; 0 stops it at once. A client has at most two live\nsecrets: while one is in its grace period, rotating again is refused.")
	f.DurationVar(&grace, "grace", admin.DefaultGrace, "how long the previous secret keeps working")
	f.StringVar(&ifMatch, "if-match", "", "only rotate if the client's ETag is still this")
	conn.register(f)
	out.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if grace < 0 {
		return errors.New("--grace must not be negative")
	}
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	secs := int64(grace / time.Second)
	var c admin.ClientResource
	if err := ac.doIfMatch(ctx, http.MethodPost, "/admin/v1/clients/"+url.PathEscape(pos[0])+"/secrets", ifMatch,
		admin.RotateRequest{GraceSeconds: &secs}, &c); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, c)
	}
	fmt.Fprintf(e.stdout, "client_id:     %s\nclient_secret: %s\nsecret_id:     %s\n\nStore the secret now: it is not shown again. The previous secret stops working %s.\n",
		c.ClientID, c.ClientSecret, c.SecretID, graceText(grace))
	return nil
}

func graceText(grace time.Duration) string {
	if grace == 0 {
		return "now"
	}
	return "in " + grace.String()
}

func clientRevokeSecret(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "client revoke-secret", "CLIENT_ID SECRET_ID", "Revokes one secret at once (secret ids are in 'client show').")
	conn.register(f)
	out.register(f)
	ac, pos, err := conn.parseConnect(ctx, f, args, 2, 2)
	if err != nil {
		return err
	}
	var c admin.ClientResource
	if err := ac.do(ctx, http.MethodDelete, "/admin/v1/clients/"+url.PathEscape(pos[0])+"/secrets/"+url.PathEscape(pos[1]), nil, &c); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, c)
	}
	fmt.Fprintf(e.stdout, "revoked secret %s of client %s\n", pos[1], pos[0])
	return nil
}

// ---- import ----

func clientImport(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var in admin.ClientInput
	var secretFile, audience, scopes string
	var grants grantFlag
	var life time.Duration
	f := newFlags(e, "client import", "", "Creates a client with an existing client id and secret, for clients moving from another\nserver with their current credentials. The secret (at least 32 characters) is stored\nhashed like any other. Admin credentials come from --admin-client-id/--admin-client-secret,\ntheir variables, or admin.json.")
	f.StringVar(&in.ClientID, "client-id", "", "the existing client id")
	f.StringVar(&in.ClientSecret, "client-secret", "", "the existing secret; prefer --client-secret-file or the environment variable")
	f.StringVar(&secretFile, "client-secret-file", "", "file holding the existing secret")
	f.StringVar(&in.Name, "name", "", "display name")
	f.StringVar(&in.Description, "description", "", "description")
	f.StringVar(&audience, "audience", "", "API identifier to grant; also the default audience")
	f.StringVar(&scopes, "scopes", "", "space-separated scopes of --audience")
	f.Var(&grants, "grant", `additional grant AUDIENCE="SCOPE SCOPE…" (repeatable)`)
	f.DurationVar(&life, "token-lifetime", 0, "lifetime of this client's tokens")
	f.setEnv("client-id", "M2MAUTH_IMPORT_CLIENT_ID")
	f.setEnv("client-secret", "M2MAUTH_IMPORT_CLIENT_SECRET")
	conn.registerAs(f, "admin-")
	out.register(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if secretFile != "" {
		if in.ClientSecret != "" {
			return errors.New("give the secret with --client-secret or --client-secret-file, not both")
		}
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return err
		}
		in.ClientSecret = strings.TrimSpace(string(b))
	}
	if in.ClientID == "" || in.ClientSecret == "" {
		return errors.New("--client-id and --client-secret (or --client-secret-file) are required")
	}
	if audience != "" {
		in.Grants = append(in.Grants, admin.GrantInput{Audience: audience, Scopes: strings.Fields(scopes)})
		in.DefaultAudience = audience
	}
	in.Grants = append(in.Grants, grants...)
	in.TokenLifetimeSeconds = int64(life / time.Second)
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
	fmt.Fprintf(e.stdout, "imported client %s; it authenticates with its existing secret\n", c.ClientID)
	return nil
}

// ---- api update ----

func apiUpdate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var name, scopes, ifMatch string
	var life time.Duration
	f := newFlags(e, "api update", "IDENTIFIER", "Changes the given fields of an API. --scopes replaces the scope list: a scope removed\nfrom the API is removed from every client's grant.")
	f.StringVar(&name, "name", "", "display name")
	f.StringVar(&scopes, "scopes", "", "space-separated scopes (the whole list)")
	f.DurationVar(&life, "token-lifetime", 0, "lifetime of tokens for this API (0: the server's)")
	var discoverable bool
	f.BoolVar(&discoverable, "discoverable", false, "list the API's scopes in the discovery documents (--discoverable=false: not)")
	f.StringVar(&ifMatch, "if-match", "", "only change the API if its ETag is still this")
	conn.register(f)
	out.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	set := setFlags(f)
	patch := map[string]any{}
	if set["name"] {
		patch["name"] = name
	}
	if set["scopes"] {
		patch["scopes"] = append([]string{}, strings.Fields(scopes)...)
	}
	if set["token-lifetime"] {
		patch["token_lifetime_seconds"] = int64(life / time.Second)
	}
	if set["discoverable"] {
		patch["discoverable"] = discoverable
	}
	if len(patch) == 0 {
		return errors.New("nothing to change: give --name, --scopes, --token-lifetime or --discoverable")
	}
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	var a admin.APIResource
	if err := ac.doIfMatch(ctx, http.MethodPatch, "/admin/v1/apis/"+url.PathEscape(pos[0]), ifMatch, patch, &a); err != nil {
		return err
	}
	return printAPIs(e.stdout, out, a)
}

func clientRevokeTokens(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "client revoke-tokens", "CLIENT_ID", "Revokes every token the client holds now: its access tokens (introspection answers\ninactive; resource servers that only check signatures accept them until they expire)\nand its refresh tokens. It can get new tokens as before; disable it to stop that.")
	conn.register(f)
	out.register(f)
	ac, pos, err := conn.parseConnect(ctx, f, args, 1, 1)
	if err != nil {
		return err
	}
	var c admin.ClientResource
	if err := ac.do(ctx, http.MethodPost, "/admin/v1/clients/"+url.PathEscape(pos[0])+"/revoke-tokens", nil, &c); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, c)
	}
	fmt.Fprintf(e.stdout, "revoked every token of %s issued before %s\n", c.ClientID, timeOrDash(c.TokensRevokedBefore))
	return nil
}

func revocationCommands() []command {
	return []command{
		{"add", "revoke one access or refresh token", revocationAdd},
		{"list", "list revoked access tokens that have not expired", revocationList},
	}
}

func revocationAdd(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	f := newFlags(e, "revocation add", "TOKEN", "Revokes a token of this server, whoever holds it. TOKEN '-' reads standard input.")
	conn.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	token := pos[0]
	if token == "-" {
		b, err := readAllLimited(os.Stdin, 64<<10)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	var res admin.RevokeResponse
	if err := ac.do(ctx, http.MethodPost, "/admin/v1/revocations", admin.RevokeRequest{Token: token}, &res); err != nil {
		return err
	}
	if res.Revoked {
		fmt.Fprintln(e.stdout, "revoked")
	} else {
		fmt.Fprintln(e.stdout, "nothing to revoke: the token is not live (expired, already revoked, or not of this server)")
	}
	return nil
}

func revocationList(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "revocation list", "", "Lists revoked access tokens (by jti) that have not expired yet.")
	conn.register(f)
	out.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	var l admin.ListResponse[admin.RevocationResource]
	if err := ac.do(ctx, http.MethodGet, "/admin/v1/revocations?limit=1000", nil, &l); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, l.Items)
	}
	rows := [][]string{}
	for _, r := range l.Items {
		rows = append(rows, []string{r.JTI, r.ClientID, r.RevokedAt.Format(time.RFC3339), r.ExpiresAt.Format(time.RFC3339)})
	}
	table(e.stdout, "JTI\tCLIENT ID\tREVOKED\tEXPIRES", rows)
	return nil
}
