package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/verify"
)

func runVerify(ctx context.Context, e *env, args []string) error {
	var issuer, audience, jwksURL string
	var out output
	f := newFlags(e, "verify", "TOKEN", "Validates an access token the way a resource server does (package verify): signature\nagainst the issuer's JWKS (found by discovery), typ, iss, aud, exp, nbf, iat. Prints the\nclaims, or the reason the token is refused (exit status 1). TOKEN '-' reads standard input.")
	f.StringVar(&issuer, "issuer", "", "the issuer URL (required)")
	f.StringVar(&audience, "audience", "", "the audience this API is (required)")
	f.StringVar(&jwksURL, "jwks-url", "", "the JWKS URL (default: from the issuer's discovery document)")
	out.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if issuer == "" || audience == "" {
		return fmt.Errorf("--issuer and --audience are required")
	}
	token := pos[0]
	if token == "-" {
		b, err := readAllLimited(os.Stdin, verify.MaxTokenSize+1)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	v, err := verify.New(verify.Config{Issuer: issuer, Audience: audience, JWKSURL: jwksURL})
	if err != nil {
		return err
	}
	// A diagnosis, not an API: a sender-constrained token is shown with its
	// cnf (whose binding only the API it is presented to can check).
	claims, err := v.VerifyBound(ctx, token)
	if err != nil {
		return fmt.Errorf("token refused: %w", err)
	}
	if out.json {
		return printJSON(e.stdout, claims.Raw)
	}
	fmt.Fprintf(e.stdout, "valid token\n  subject:   %s\n  client_id: %s\n  audience:  %s\n  scopes:    %s\n  issued:    %s\n  expires:   %s (in %s)\n",
		claims.Subject, claims.ClientID, strings.Join(claims.Audience, " "), strings.Join(claims.Scopes, " "),
		claims.IssuedAt.UTC().Format(time.RFC3339), claims.ExpiresAt.UTC().Format(time.RFC3339), time.Until(claims.ExpiresAt).Round(time.Second))
	var extra []string
	for k := range claims.Raw {
		switch k {
		case "iss", "sub", "client_id", "aud", "iat", "nbf", "exp", "jti", "scope":
		default:
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		b, _ := json.Marshal(claims.Raw[k])
		fmt.Fprintf(e.stdout, "  %s: %s\n", k, b)
	}
	return nil
}
