package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

func apiCommands() []command {
	return []command{
		{"create", "create an API", apiCreate},
		{"list", "list APIs", apiList},
		{"show", "show one API", apiShow},
		{"update", "change an API's name, scopes, scope descriptions or token lifetime", apiUpdate},
		{"delete", "delete an API (--force also removes the grants for it)", apiDelete},
	}
}

func apiCreate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var in admin.APIInput
	var scopes string
	var descs kvFlag
	var life time.Duration
	f := newFlags(e, "api create", "", "Creates an API (a resource server). Its identifier becomes the aud claim of tokens for it.")
	f.StringVar(&in.Identifier, "identifier", "", "the API's identifier, the tokens' aud (e.g. https://api.example.com)")
	f.StringVar(&in.Name, "name", "", "display name")
	f.StringVar(&scopes, "scopes", "", `space-separated scopes the API defines (e.g. "orders:read orders:write")`)
	f.Var(&descs, "scope-description", `a description of one of the scopes, SCOPE=TEXT (repeatable; e.g. "orders:read=Read orders")`)
	f.DurationVar(&life, "token-lifetime", 0, "lifetime of tokens for this API (default: the server's)")
	f.BoolVar(&in.Discoverable, "discoverable", false, "list the API's scopes in the discovery documents' scopes_supported")
	conn.register(f)
	out.register(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	in.Scopes = strings.Fields(scopes)
	in.ScopeDescriptions = descs
	in.TokenLifetimeSeconds = int64(life / time.Second)
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	var a admin.APIResource
	if err := ac.do(ctx, http.MethodPost, "/admin/v1/apis", in, &a); err != nil {
		return err
	}
	return printAPI(e.stdout, out, a)
}

// printAPI prints one API: its row and, when it has any, its scopes with
// their descriptions.
func printAPI(w io.Writer, out output, a admin.APIResource) error {
	if err := printAPIs(w, out, a); err != nil || out.json || len(a.ScopeDescriptions) == 0 {
		return err
	}
	rows := make([][]string, 0, len(a.Scopes))
	for _, sc := range a.Scopes {
		d, ok := a.ScopeDescriptions[sc]
		if !ok {
			d = "-"
		}
		rows = append(rows, []string{sc, strings.ReplaceAll(d, "\t", " ")})
	}
	fmt.Fprintln(w)
	table(w, "SCOPE\tDESCRIPTION", rows)
	return nil
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

func apiShow(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "api show", "IDENTIFIER", "Shows one API, with its scopes' descriptions.")
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
	return printAPI(e.stdout, out, a)
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

func apiUpdate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var name, scopes, ifMatch string
	var life time.Duration
	var descs kvFlag
	var clearDescs bool
	f := newFlags(e, "api update", "IDENTIFIER", "Changes the given fields of an API. --scopes replaces the scope list: a scope removed\nfrom the API is removed from every client's grant, and loses its description.")
	f.StringVar(&name, "name", "", "display name")
	f.StringVar(&scopes, "scopes", "", "space-separated scopes (the whole list)")
	f.Var(&descs, "scope-description", "a description of one of the scopes, SCOPE=TEXT (repeatable; replaces every description)")
	f.BoolVar(&clearDescs, "clear-scope-descriptions", false, "remove every scope description")
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
	switch {
	case set["scope-description"] && clearDescs:
		return errors.New("--scope-description and --clear-scope-descriptions exclude each other")
	case set["scope-description"]:
		patch["scope_descriptions"] = map[string]string(descs)
	case clearDescs:
		patch["scope_descriptions"] = map[string]string{}
	}
	if len(patch) == 0 {
		return errors.New("nothing to change: give --name, --scopes, --scope-description, --clear-scope-descriptions, --token-lifetime or --discoverable")
	}
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	var a admin.APIResource
	if err := ac.doIfMatch(ctx, http.MethodPatch, "/admin/v1/apis/"+url.PathEscape(pos[0]), ifMatch, patch, &a); err != nil {
		return err
	}
	return printAPI(e.stdout, out, a)
}
