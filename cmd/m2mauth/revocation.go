package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
)

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
