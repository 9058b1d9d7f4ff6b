package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

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
