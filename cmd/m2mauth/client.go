package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/store"
)

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
		{"report", "clients that never cache tokens: far more tokens than their lifetime needs", clientReport},
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

// federationFlag collects repeated --federation values.
type federationFlag []admin.FederatedIdentityInput

// federationHelp documents --federation's syntax.
const federationHelp = `bind to a trust policy's tokens: 'policy=NAME,subject=PATTERN[,claim.NAME=VALUE…]'
      (repeatable). PATTERN is the tokens' sub, where '*' matches any run of characters;
      each claim.NAME=VALUE must also hold: NAME is a claim, or a dotted path into one
      (claim.kubernetes.io.namespace=payments), VALUE its string, number or boolean.
      Commas separate the parts: a value cannot hold one`

func (fl *federationFlag) String() string { return "" }

func (fl *federationFlag) Set(v string) error {
	var b admin.FederatedIdentityInput
	for part := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(part, "=")
		switch name, isClaim := strings.CutPrefix(k, "claim."); {
		case !ok:
			return fmt.Errorf("%q: want KEY=VALUE parts, separated by commas", part)
		case k == "policy" && b.Policy == "":
			b.Policy = val
		case k == "subject" && b.Subject == "":
			b.Subject = val
		case isClaim && name != "":
			if b.Claims == nil {
				b.Claims = map[string]string{}
			}
			if _, dup := b.Claims[name]; dup {
				return fmt.Errorf("claim.%s is given twice", name)
			}
			b.Claims[name] = val
		default:
			return fmt.Errorf("%q: want policy=, subject= (each once) or claim.NAME=", k)
		}
	}
	if b.Policy == "" || b.Subject == "" {
		return fmt.Errorf("want 'policy=NAME,subject=PATTERN[,claim.NAME=VALUE…]', got %q", v)
	}
	*fl = append(*fl, b)
	return nil
}

// authFlags are a client's authentication settings.
type authFlags struct {
	method, jwksFile, jwksURI        string
	acceptSecrets, acceptEndpointAud bool
	federation                       federationFlag
	clearFederation                  bool
	// tlsSubject holds the subject flags' values, in the order of
	// tlsSubjectFlags (and of admin.TLSSubjectParams).
	tlsSubject           [5]string
	certBound, dpopBound bool
}

// tlsSubjectFlags name the flags of a tls_client_auth client's certificate
// subject, one per admin.TLSSubjectParams entry.
var tlsSubjectFlags = [5]struct{ flag, help string }{
	{"tls-subject-dn", "tls_client_auth: the certificate's subject DN, an RFC 4514 string (CN=payments,O=Acme,C=DE)"},
	{"tls-san-dns", "tls_client_auth: a DNS name the certificate's subjectAltName holds"},
	{"tls-san-uri", "tls_client_auth: a URI the certificate's subjectAltName holds (a SPIFFE ID: spiffe://example.org/payments)"},
	{"tls-san-ip", "tls_client_auth: an IP address the certificate's subjectAltName holds"},
	{"tls-san-email", "tls_client_auth: an email address the certificate's subjectAltName holds"},
}

func (a *authFlags) register(f *flags, update bool) {
	f.StringVar(&a.method, "auth-method", "", strings.Join(admin.AuthMethods, ", ")+`: how the client authenticates
      (default client_secret_basic; private_key_jwt, federated and TLS clients get no secret
      unless --accept-secrets)`)
	f.StringVar(&a.jwksFile, "jwks-file", "", "private_key_jwt, self_signed_tls_client_auth: the client's public keys, a JWK Set, one public JWK\n      or PEM public keys (kid: the JWK's, else the key's RFC 7638 thumbprint)")
	f.StringVar(&a.jwksURI, "jwks-uri", "", "private_key_jwt, self_signed_tls_client_auth: URL of the client's JWK Set (https; assertions\n      must name a kid)")
	for i, sf := range tlsSubjectFlags {
		help := sf.help
		if update {
			help += "\n      (replaces the client's subject, whichever kind it was; \"\" removes it)"
		}
		f.StringVar(&a.tlsSubject[i], sf.flag, "", help)
	}
	f.BoolVar(&a.certBound, "cert-bound-tokens", false, "bind the client's access tokens to its TLS client certificate (RFC 8705 §3)"+onOff(update))
	f.BoolVar(&a.dpopBound, "dpop-bound-tokens", false, "require a DPoP proof on every token request of the client (RFC 9449)"+onOff(update))
	f.BoolVar(&a.acceptSecrets, "accept-secrets", false, "also accept the client's secrets while its deployments move to a key or a workload identity")
	f.BoolVar(&a.acceptEndpointAud, "accept-token-endpoint-audience", false, "private_key_jwt: also accept assertions whose aud is the token endpoint URL\n      (for libraries that send it instead of the issuer)")
	f.Var(&a.federation, "federation", federationHelp)
	if update {
		f.BoolVar(&a.clearFederation, "clear-federation", false, "remove every federation binding")
	}
}

// onOff is the note of an update's switch flag: it is given to change it.
func onOff(update bool) string {
	if update {
		return " (=false to turn it off)"
	}
	return ""
}

// oneTLSSubject refuses two subject flags at once: a client registers one.
func (a *authFlags) oneTLSSubject(given func(i int) bool) error {
	var names []string
	for i, sf := range tlsSubjectFlags {
		if given(i) {
			names = append(names, "--"+sf.flag)
		}
	}
	if len(names) > 1 {
		return fmt.Errorf("a client registers one certificate subject: give one of %s", strings.Join(names, ", "))
	}
	return nil
}

// input sets the client input's authentication fields.
func (a *authFlags) input(in *admin.ClientInput) error {
	if a.jwksFile != "" && a.jwksURI != "" {
		return errors.New("give the client's keys one way: --jwks-file or --jwks-uri")
	}
	if err := a.oneTLSSubject(func(i int) bool { return a.tlsSubject[i] != "" }); err != nil {
		return err
	}
	in.TokenEndpointAuthMethod, in.JWKSURI = a.method, a.jwksURI
	in.AcceptSecrets, in.AcceptTokenEndpointAudience = a.acceptSecrets, a.acceptEndpointAud
	in.Federation = a.federation
	in.TLSClientAuthSubjectDN, in.TLSClientAuthSANDNS, in.TLSClientAuthSANURI, in.TLSClientAuthSANIP, in.TLSClientAuthSANEmail =
		a.tlsSubject[0], a.tlsSubject[1], a.tlsSubject[2], a.tlsSubject[3], a.tlsSubject[4]
	in.TLSClientCertificateBoundAccessTokens, in.DPoPBoundAccessTokens = a.certBound, a.dpopBound
	if a.jwksFile != "" {
		jwks, err := readJWKSFile(a.jwksFile)
		if err != nil {
			return err
		}
		in.JWKS = jwks
	}
	return nil
}

// patch adds the given flags' fields to a merge patch. A key given one way
// removes the other: a client has jwks or jwks_uri.
func (a *authFlags) patch(set map[string]bool, patch map[string]any) error {
	if set["jwks-file"] && set["jwks-uri"] {
		return errors.New("give the client's keys one way: --jwks-file or --jwks-uri")
	}
	if set["federation"] && a.clearFederation {
		return errors.New("--federation replaces the bindings: leave out --clear-federation")
	}
	if set["auth-method"] {
		patch["token_endpoint_auth_method"] = a.method
	}
	if set["jwks-file"] {
		jwks, err := readJWKSFile(a.jwksFile)
		if err != nil {
			return err
		}
		patch["jwks"], patch["jwks_uri"] = jwks, nil
	}
	if set["jwks-uri"] {
		patch["jwks_uri"], patch["jwks"] = a.jwksURI, nil
	}
	if set["accept-secrets"] {
		patch["accept_secrets"] = a.acceptSecrets
	}
	if set["accept-token-endpoint-audience"] {
		patch["accept_token_endpoint_audience"] = a.acceptEndpointAud
	}
	if set["federation"] || a.clearFederation {
		patch["federation"] = append([]admin.FederatedIdentityInput{}, a.federation...)
	}
	if err := a.oneTLSSubject(func(i int) bool { return set[tlsSubjectFlags[i].flag] }); err != nil {
		return err
	}
	for i, sf := range tlsSubjectFlags {
		if !set[sf.flag] {
			continue
		}
		// The subject given replaces the client's, whatever its kind.
		for j, p := range admin.TLSSubjectParams {
			patch[p.Name] = nil
			if j == i && a.tlsSubject[i] != "" {
				patch[p.Name] = a.tlsSubject[i]
			}
		}
	}
	if set["cert-bound-tokens"] {
		patch["tls_client_certificate_bound_access_tokens"] = a.certBound
	}
	if set["dpop-bound-tokens"] {
		patch["dpop_bound_access_tokens"] = a.dpopBound
	}
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
	var auth authFlags
	f := newFlags(e, "client create", "", `Creates a client (an application using the client-credentials grant) and prints its
client_id and client_secret. The secret is shown only this once. A private_key_jwt,
federated or TLS (tls_client_auth, self_signed_tls_client_auth) client has no secret
(unless --accept-secrets): only its client_id is printed.`)
	f.StringVar(&in.Name, "name", "", "display name")
	f.StringVar(&in.Description, "description", "", "description")
	f.StringVar(&audience, "audience", "", "API identifier to grant; also the client's default audience")
	f.StringVar(&scopes, "scopes", "", "space-separated scopes of --audience to grant")
	f.Var(&grants, "grant", `additional grant AUDIENCE="SCOPE SCOPE…" (repeatable)`)
	f.DurationVar(&life, "token-lifetime", 0, "lifetime of this client's tokens (default: the API's or the server's)")
	f.BoolVar(&in.RefreshTokens, "refresh-tokens", false, "also issue refresh tokens to this client (off by default, RFC 6749 §4.4.3)")
	quotaFlags(f, &in.Quota)
	f.Var((*fractionFlag)(&in.TokenReuseMinRemaining), "token-reuse", "hand out the last token again while more than this fraction of its lifetime is left, e.g. 0.5 (0: off)")
	var introspect string
	f.StringVar(&introspect, "introspect", "", `let this client introspect tokens for these APIs (space-separated; "*": all)`)
	f.BoolVar(&asEnv, "export", false, `print "export M2MAUTH_CLIENT_ID=…" and, if it has a secret, "export M2MAUTH_CLIENT_SECRET=…" for eval in a shell
      (a bare --env, its name before environments, still means this)`)
	var secretLife time.Duration
	f.DurationVar(&secretLife, "secret-lifetime", 0, "the secret expires after this long, e.g. 2160h for 90 days (default: never)")
	auth.register(f, false)
	conn.register(f)
	out.register(f)
	if _, err := f.parse(legacyExportFlag(args), 0, 0); err != nil {
		return err
	}
	if err := auth.input(&in); err != nil {
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
	in.SecretLifetimeSeconds = int64(secretLife / time.Second)
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
		fmt.Fprintf(e.stdout, "export M2MAUTH_CLIENT_ID='%s'\n", c.ClientID)
		if c.ClientSecret != "" {
			fmt.Fprintf(e.stdout, "export M2MAUTH_CLIENT_SECRET='%s'\n", c.ClientSecret)
		}
		return nil
	}
	if c.ClientSecret == "" {
		fmt.Fprintf(e.stdout, "client_id:     %s\n\nIt has no secret: it authenticates with %s.\n", c.ClientID, authDescription(c))
		return nil
	}
	fmt.Fprintf(e.stdout, "client_id:     %s\nclient_secret: %s\n\nStore the secret now: it is not shown again.\n", c.ClientID, c.ClientSecret)
	return nil
}

// legacyExportFlag reads "--env" without a value, client create's name of
// --export before environments, as --export: --env NAME (the connection
// setting every admin command has) takes a name, which never starts with
// "-", and client create has no positional arguments.
func legacyExportFlag(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		switch {
		case (a == "--env" || a == "-env") && (i+1 == len(args) || strings.HasPrefix(args[i+1], "-")):
			a = "--export"
		case a == "--env=true" || a == "--env=false":
			a = "--export=" + a[len("--env="):]
		}
		out = append(out, a)
	}
	return out
}

// authDescription says how a client without a secret authenticates.
func authDescription(c admin.ClientResource) string {
	switch c.TokenEndpointAuthMethod {
	case admin.AuthPrivateKeyJWT:
		return "private_key_jwt, an assertion signed by one of its registered keys (m2mauth token --private-key)"
	case admin.AuthFederated:
		return "a token of a trusted issuer that its federation bindings match (m2mauth token --assertion-file)"
	case admin.AuthTLSClient:
		return "tls_client_auth, a TLS client certificate from a trusted CA that names " + tlsSubjectText(c)
	case admin.AuthSelfSignedTLSClient:
		return "self_signed_tls_client_auth, a TLS client certificate holding one of its registered keys"
	}
	return c.TokenEndpointAuthMethod
}

// tlsSubjectText names a tls_client_auth client's certificate subject:
// "tls_client_auth_san_dns payments.example.com".
func tlsSubjectText(c admin.ClientResource) string {
	for i, v := range []string{c.TLSClientAuthSubjectDN, c.TLSClientAuthSANDNS, c.TLSClientAuthSANURI, c.TLSClientAuthSANIP, c.TLSClientAuthSANEmail} {
		if v != "" {
			return admin.TLSSubjectParams[i].Name + " " + v
		}
	}
	return "(none)"
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
		rows = append(rows, []string{c.ClientID, c.Name, status, c.TokenEndpointAuthMethod, strings.Join(gs, "; "), fmt.Sprint(len(c.Secrets)), c.CreatedAt.Format(time.RFC3339)})
	}
	table(w, "CLIENT ID\tNAME\tSTATUS\tAUTH\tGRANTS\tSECRETS\tCREATED", rows)
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

// quotaFlags registers the flags of a client's quota.
func quotaFlags(f *flags, q *admin.QuotaInput) {
	const unit = "tokens this client may get per %s (0: the server's default, -1: unlimited)"
	f.Int64Var(&q.PerMinute, "quota-per-minute", 0, fmt.Sprintf(unit, "minute"))
	f.Int64Var(&q.PerHour, "quota-per-hour", 0, fmt.Sprintf(unit, "hour"))
	f.Int64Var(&q.PerDay, "quota-per-day", 0, fmt.Sprintf(unit, "day"))
}

// quotaPatch is the merge patch of the quota flags given (nil: none).
func quotaPatch(set map[string]bool, q admin.QuotaInput) map[string]int64 {
	p := map[string]int64{}
	for _, f := range []struct {
		flag, field string
		v           int64
	}{{"quota-per-minute", "per_minute", q.PerMinute}, {"quota-per-hour", "per_hour", q.PerHour}, {"quota-per-day", "per_day", q.PerDay}} {
		if set[f.flag] {
			p[f.field] = f.v
		}
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

// quotaText describes a client's quota: "10/minute, unlimited/hour, …".
func quotaText(q admin.QuotaInput) string {
	parts := store.Quota{PerMinute: q.PerMinute, PerHour: q.PerHour, PerDay: q.PerDay}.Describe("/")
	switch len(parts) {
	case 0:
		return "the server's default"
	case 3:
		return strings.Join(parts, ", ")
	}
	return strings.Join(parts, ", ") + " (others: the server's default)"
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
	fmt.Fprintf(e.stdout, "quota:            %s\n", quotaText(c.Quota))
	if c.TokenReuseMinRemaining > 0 {
		fmt.Fprintf(e.stdout, "token reuse:      while more than %g of a token's lifetime is left\n", c.TokenReuseMinRemaining)
	}
	fmt.Fprintf(e.stdout, "auth method:      %s\n", c.TokenEndpointAuthMethod)
	switch {
	case hasKeys(c.JWKS):
		fmt.Fprintf(e.stdout, "keys:             jwks (%s)\n", kidList(c.JWKS))
	case c.JWKSURI != "":
		fmt.Fprintf(e.stdout, "keys:             jwks_uri %s\n", c.JWKSURI)
	}
	if c.AcceptSecrets || !admin.IsSecretMethod(c.TokenEndpointAuthMethod) {
		fmt.Fprintf(e.stdout, "accept secrets:   %s\n", yesNo(c.AcceptSecrets))
	}
	if c.TokenEndpointAuthMethod == admin.AuthTLSClient {
		fmt.Fprintf(e.stdout, "tls subject:      %s\n", tlsSubjectText(c))
	}
	fmt.Fprintf(e.stdout, "cert-bound:       %s\ndpop-bound:       %s\n", yesNo(c.TLSClientCertificateBoundAccessTokens), yesNo(c.DPoPBoundAccessTokens))
	if c.AcceptTokenEndpointAudience {
		fmt.Fprintf(e.stdout, "assertion aud:    the issuer or the token endpoint URL\n")
	} else if c.TokenEndpointAuthMethod == admin.AuthPrivateKeyJWT {
		fmt.Fprintf(e.stdout, "assertion aud:    the issuer\n")
	}
	fmt.Fprintln(e.stdout)
	if len(c.Federation) > 0 {
		rows := [][]string{}
		for _, b := range c.Federation {
			var conds []string
			for k, v := range b.Claims {
				conds = append(conds, k+"="+v)
			}
			slices.Sort(conds)
			rows = append(rows, []string{b.Policy, b.Subject, strings.Join(conds, ", ")})
		}
		table(e.stdout, "TRUST POLICY\tSUBJECT\tCLAIMS", rows)
		fmt.Fprintln(e.stdout)
	}
	rows := [][]string{}
	for _, g := range c.Grants {
		rows = append(rows, []string{g.Audience, strings.Join(g.Scopes, " ")})
	}
	table(e.stdout, "GRANTED API\tSCOPES", rows)
	if len(c.Secrets) == 0 && !admin.IsSecretMethod(c.TokenEndpointAuthMethod) {
		return nil
	}
	fmt.Fprintln(e.stdout)
	rows = rows[:0]
	for _, s := range c.Secrets {
		rows = append(rows, []string{s.ID, s.Hint + "…", s.Status, s.CreatedAt.Format(time.RFC3339), timeOrDash(s.ExpiresAt), timeOrDash(s.LastUsedAt)})
	}
	table(e.stdout, "SECRET ID\tHINT\tSTATUS\tCREATED\tEXPIRES\tLAST USED", rows)
	return nil
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

func printClient(e *env, out output, c admin.ClientResource) error {
	if out.json {
		return printJSON(e.stdout, c)
	}
	printClients(e.stdout, []admin.ClientResource{c})
	return nil
}

func clientUpdate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var name, desc, audience, scopes, defAud, ifMatch string
	var grants grantFlag
	var claims, meta kvFlag
	var life time.Duration
	var clearClaims, clearMeta, refresh bool
	var reuse float64
	var introspect string
	var auth authFlags
	f := newFlags(e, "client update", "CLIENT_ID", "Changes the given fields of a client; the others stay as they are.\n--audience/--scopes/--grant replace the client's grants as a whole, --federation its bindings.")
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
	var quota admin.QuotaInput
	quotaFlags(f, &quota)
	f.Var((*fractionFlag)(&reuse), "token-reuse", "hand out the last token again while more than this fraction of its lifetime is left (0: off)")
	f.StringVar(&introspect, "introspect", "", `APIs whose tokens this client may introspect (space-separated; "*": all; "" : none)`)
	f.StringVar(&ifMatch, "if-match", "", "only change the client if its ETag is still this (from client show --json)")
	auth.register(f, true)
	conn.register(f)
	out.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	set := setFlags(f)
	patch := map[string]any{}
	if err := auth.patch(set, patch); err != nil {
		return err
	}
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
	if q := quotaPatch(set, quota); q != nil {
		patch["quota"] = q
	}
	if set["token-reuse"] {
		patch["token_reuse_min_remaining"] = reuse
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

func clientRotateSecret(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var grace time.Duration
	var ifMatch string
	f := newFlags(e, "client rotate-secret", "CLIENT_ID", "Creates a new secret and prints it (shown only this once). The previous secret keeps\nworking for --grace, then stops; 0 stops it at once. A client has at most two live\nsecrets: while one is in its grace period, rotating again is refused.")
	f.DurationVar(&grace, "grace", admin.DefaultGrace, "how long the previous secret keeps working")
	var secretLife time.Duration
	f.DurationVar(&secretLife, "secret-lifetime", 0, "the new secret expires after this long, e.g. 2160h for 90 days (default: never)")
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
	if ifMatch == "" {
		// Rotate the version this command saw: two rotations run at once
		// then cannot both win (the other gets 412).
		if err := ac.do(ctx, http.MethodGet, "/admin/v1/clients/"+url.PathEscape(pos[0]), nil, &c); err != nil {
			return err
		}
		ifMatch = admin.ETag(c.Version)
	}
	if err := ac.doIfMatch(ctx, http.MethodPost, "/admin/v1/clients/"+url.PathEscape(pos[0])+"/secrets", ifMatch,
		admin.RotateRequest{GraceSeconds: &secs, SecretLifetimeSeconds: int64(secretLife / time.Second)}, &c); err != nil {
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

func clientReport(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "client report", "", `Lists the clients that never cache tokens: in the last hour, at least the server's
--report-min-tokens tokens and more than --report-tokens-per-lifetime times what a client
caching its tokens would need (per granted API, one per token lifetime). Counts are every
replica's, a few seconds behind.`)
	conn.register(f)
	out.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	var rep admin.TokenCachingReport
	if err := ac.do(ctx, http.MethodGet, "/admin/v1/reports/token-caching", nil, &rep); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, rep)
	}
	if len(rep.Clients) == 0 {
		fmt.Fprintf(e.stdout, "no client was issued more than %g times the tokens its lifetime needs in the last %s\n",
			rep.TokensPerLifetimeLimit, time.Duration(rep.WindowSeconds)*time.Second)
		return nil
	}
	rows := [][]string{}
	for _, c := range rep.Clients {
		rows = append(rows, []string{c.ClientID, c.Name, strconv.FormatInt(c.Tokens, 10), (time.Duration(c.WindowSeconds) * time.Second).String(),
			(time.Duration(c.LifetimeSeconds) * time.Second).String(), strconv.FormatInt(c.CachingTokens, 10), strconv.FormatFloat(c.TokensPerLifetime, 'f', 1, 64)})
	}
	table(e.stdout, "CLIENT ID\tNAME\tTOKENS\tIN\tLIFETIME\tCACHING NEEDS\tTOKENS PER LIFETIME", rows)
	return nil
}

// fractionFlag is a fraction of a token's lifetime: at least 0, under 1.
type fractionFlag float64

func (f *fractionFlag) String() string { return strconv.FormatFloat(float64(*f), 'g', -1, 64) }

func (f *fractionFlag) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0 && v < 1) {
		return errors.New("want a fraction of the lifetime such as 0.5 (at least 0, under 1; 0: off)")
	}
	*f = fractionFlag(v)
	return nil
}
