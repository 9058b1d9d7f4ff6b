package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// runConsole prints a one-time sign-in link of the admin console, made for
// the admin client the command connects as.
func runConsole(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "console", "", "Prints a one-time link that signs you in to the admin console (as the admin client\n"+
		"this command connects as). Open it in a browser within a few minutes; it works once.")
	conn.register(f)
	out.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	var res admin.ConsoleLinkResponse
	if err := ac.do(ctx, http.MethodPost, "/admin/v1/console/links", nil, &res); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, res)
	}
	fmt.Fprintln(e.stdout, res.URL)
	fmt.Fprintf(e.stderr, "Open this link in a browser and press Sign in. It works once, for %d minutes (until %s).\n",
		int(time.Until(res.ExpiresAt).Round(time.Minute)/time.Minute), res.ExpiresAt.Local().Format("15:04:05 MST"))
	return nil
}
