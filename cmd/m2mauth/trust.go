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
	"github.com/m2mauth/m2mauth/internal/jws"
)

func trustCommands() []command {
	return []command{
		{"create", "trust an external issuer of workload identities (Kubernetes, SPIFFE, CI)", trustCreate},
		{"list", "list trust policies", trustList},
		{"show", "show one trust policy", trustShow},
		{"update", "change the given fields of a trust policy", trustUpdate},
		{"delete", "delete a trust policy no client is bound to", trustDelete},
	}
}

// trustFlags are the flags of a trust policy's fields.
type trustFlags struct {
	name, kind, issuer, desc, jwksURI, jwksFile, algs, audience string
	discovery, singleUse, requireJTI                            bool
	maxAge, maxLifetime                                         time.Duration
}

func (t *trustFlags) register(f *flags, create bool) {
	if create {
		f.StringVar(&t.name, "name", "", "the policy's name (a-z, 0-9, '.', '_', '-'); clients bind to it; cannot change")
		f.StringVar(&t.kind, "kind", "jwt", `"jwt" (an OpenID-style issuer: Kubernetes, GitHub Actions) or "spiffe" (a trust domain's JWT-SVIDs); cannot change`)
	}
	f.StringVar(&t.issuer, "issuer", "", "the tokens' iss (https URL; http only on loopback); for spiffe the trust domain, spiffe://example.org")
	f.StringVar(&t.desc, "description", "", "description")
	f.StringVar(&t.jwksFile, "jwks-file", "", "the issuer's public keys: a JWK Set file (a SPIFFE trust bundle is one), one public JWK, or PEM public keys")
	f.StringVar(&t.jwksURI, "jwks-uri", "", "URL of the issuer's JWK Set (SPIFFE: the bundle endpoint), fetched and cached")
	f.BoolVar(&t.discovery, "discovery", false, "find the keys through the issuer's /.well-known/openid-configuration (jwt only)")
	f.StringVar(&t.algs, "algorithms", "", `accepted signature algorithms, e.g. "RS256 ES256" (default: RS256 PS256 ES256 EdDSA)`)
	f.StringVar(&t.audience, "audience", "", "audience the tokens must carry: this server's issuer (the default) or a URL under it")
	f.DurationVar(&t.maxAge, "max-token-age", 0, "refuse tokens issued longer ago than this (default 10m)")
	f.DurationVar(&t.maxLifetime, "max-token-lifetime", 0, "refuse tokens whose exp - iat is longer (default 1h)")
	f.BoolVar(&t.singleUse, "single-use", true, "accept a token with a jti only once (--single-use=false for tokens a workload reuses, e.g. Kubernetes projected tokens)")
	f.BoolVar(&t.requireJTI, "require-jti", false, "refuse tokens without a jti (needs --single-use)")
	// Not M2MAUTH_ISSUER, M2MAUTH_MAX_TOKEN_LIFETIME …: those configure
	// the server itself.
	for _, n := range append([]string{"name", "kind"}, trustFieldFlags...) {
		f.setEnv(n, "M2MAUTH_TRUST_"+strings.ToUpper(strings.ReplaceAll(n, "-", "_")))
	}
}

// apply sets the fields of in whose flags were given, or all of them for a
// new policy (all). The key-source flags (--jwks-file, --jwks-uri,
// --discovery) replace the policy's key source as a whole. A zero duration
// or an empty --audience or --algorithms is the server's default.
func (t *trustFlags) apply(in *admin.TrustPolicyInput, set map[string]bool, all bool) error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"max-token-age", t.maxAge}, {"max-token-lifetime", t.maxLifetime}} {
		if d.v < 0 || d.v%time.Second != 0 {
			return fmt.Errorf("--%s %s: want whole seconds (0: the default)", d.name, d.v)
		}
	}
	if all {
		set = map[string]bool{}
		t.VisitFields(func(name string) { set[name] = true })
	}
	if set["issuer"] {
		in.Issuer = t.issuer
	}
	if set["description"] {
		in.Description = t.desc
	}
	if set["jwks-file"] || set["jwks-uri"] || set["discovery"] {
		in.JWKS, in.JWKSURI, in.Discovery = nil, t.jwksURI, t.discovery
		if t.jwksFile != "" {
			jwks, err := readJWKSFile(t.jwksFile)
			if err != nil {
				return err
			}
			in.JWKS = jwks
		}
	}
	if set["algorithms"] {
		in.Algorithms = strings.FieldsFunc(t.algs, func(r rune) bool { return r == ',' || r == ' ' })
	}
	if set["audience"] {
		in.Audience = t.audience
	}
	if set["max-token-age"] {
		in.MaxTokenAgeSeconds = int64(t.maxAge / time.Second)
	}
	if set["max-token-lifetime"] {
		in.MaxTokenLifetimeSeconds = int64(t.maxLifetime / time.Second)
	}
	if set["single-use"] {
		in.SingleUse = &t.singleUse
	}
	if set["require-jti"] {
		in.RequireJTI = t.requireJTI
	}
	return nil
}

// trustFieldFlags are the flags apply reads.
var trustFieldFlags = []string{"issuer", "description", "jwks-file", "jwks-uri", "discovery", "algorithms", "audience",
	"max-token-age", "max-token-lifetime", "single-use", "require-jti"}

// VisitFields calls fn with the name of every field flag.
func (t *trustFlags) VisitFields(fn func(name string)) {
	for _, n := range trustFieldFlags {
		fn(n)
	}
}

func trustCreate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var t trustFlags
	f := newFlags(e, "trust create", "", `Creates a trust policy: an external issuer whose tokens authenticate the clients bound
to it (client create --auth-method federated --federation 'policy=NAME,subject=…').
Give one source of the issuer's keys: --jwks-file, --jwks-uri or --discovery.`)
	t.register(f, true)
	conn.register(f)
	out.register(f)
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	in := admin.TrustPolicyInput{Name: t.name, Kind: t.kind}
	if err := t.apply(&in, nil, true); err != nil {
		return err
	}
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	var p admin.TrustPolicyResource
	if err := ac.do(ctx, http.MethodPost, "/admin/v1/trust-policies", in, &p); err != nil {
		return err
	}
	return printTrustPolicies(e.stdout, out, p)
}

// keySource describes where a policy's keys come from.
func keySource(p admin.TrustPolicyResource) string {
	switch {
	case hasKeys(p.JWKS):
		return "jwks (" + kidList(p.JWKS) + ")"
	case p.JWKSURI != "":
		return p.JWKSURI
	case p.Discovery:
		return "discovery"
	}
	return "-"
}

func printTrustPolicies(w io.Writer, out output, ps ...admin.TrustPolicyResource) error {
	if out.json {
		if len(ps) == 1 {
			return printJSON(w, ps[0])
		}
		return printJSON(w, ps)
	}
	rows := make([][]string, 0, len(ps))
	for _, p := range ps {
		rows = append(rows, []string{p.Name, p.Kind, p.Issuer, keySource(p), lifetime(p.MaxTokenAgeSeconds), yesNo(p.SingleUse), yesNo(p.RequireJTI)})
	}
	table(w, "NAME\tKIND\tISSUER\tKEYS\tMAX AGE\tSINGLE USE\tJTI REQUIRED", rows)
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func trustList(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "trust list", "", "Lists every trust policy.")
	conn.register(f)
	out.register(f)
	ac, _, err := conn.parseConnect(ctx, f, args, 0, 0)
	if err != nil {
		return err
	}
	var l admin.ListResponse[admin.TrustPolicyResource]
	if err := ac.do(ctx, http.MethodGet, "/admin/v1/trust-policies", nil, &l); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, l.Items)
	}
	return printTrustPolicies(e.stdout, out, l.Items...)
}

func trustShow(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "trust show", "NAME", "Shows one trust policy.")
	conn.register(f)
	out.register(f)
	ac, pos, err := conn.parseConnect(ctx, f, args, 1, 1)
	if err != nil {
		return err
	}
	var p admin.TrustPolicyResource
	if err := ac.do(ctx, http.MethodGet, "/admin/v1/trust-policies/"+url.PathEscape(pos[0]), nil, &p); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, p)
	}
	fmt.Fprintf(e.stdout, "name:               %s\nkind:               %s\nissuer:             %s\ndescription:        %s\nkeys:               %s\nalgorithms:         %s\naudience:           %s\nmax token age:      %s\nmax token lifetime: %s\nsingle use:         %s\njti required:       %s\nversion (ETag):     %d\ncreated:            %s\n",
		p.Name, p.Kind, p.Issuer, p.Description, keySource(p), strings.Join(p.Algorithms, " "), p.Audience,
		lifetime(p.MaxTokenAgeSeconds), lifetime(p.MaxTokenLifetimeSeconds), yesNo(p.SingleUse), yesNo(p.RequireJTI), p.Version, p.CreatedAt.Format(time.RFC3339))
	return nil
}

func trustUpdate(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	var t trustFlags
	var ifMatch string
	f := newFlags(e, "trust update", "NAME", `Changes the given fields of a trust policy; the others stay as they are. A key-source
flag (--jwks-file, --jwks-uri, --discovery) replaces the policy's key source. The
policy is read, changed and written back only if nobody changed it in between.`)
	t.register(f, false)
	f.StringVar(&ifMatch, "if-match", "", "only change the policy if its ETag is still this (from trust show --json: version)")
	conn.register(f)
	out.register(f)
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	set := setFlags(f)
	if !slices.ContainsFunc(trustFieldFlags, func(n string) bool { return set[n] }) {
		return errors.New("nothing to change: give at least one field flag (see --help)")
	}
	ac, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	path := "/admin/v1/trust-policies/" + url.PathEscape(pos[0])
	var cur admin.TrustPolicyResource
	if err := ac.do(ctx, http.MethodGet, path, nil, &cur); err != nil {
		return err
	}
	single := cur.SingleUse
	in := admin.TrustPolicyInput{
		Name: cur.Name, Kind: cur.Kind, Issuer: cur.Issuer, Description: cur.Description, JWKSURI: cur.JWKSURI,
		Discovery: cur.Discovery, Algorithms: cur.Algorithms, Audience: cur.Audience,
		MaxTokenAgeSeconds: cur.MaxTokenAgeSeconds, MaxTokenLifetimeSeconds: cur.MaxTokenLifetimeSeconds,
		SingleUse: &single, RequireJTI: cur.RequireJTI,
	}
	if hasKeys(cur.JWKS) {
		in.JWKS = cur.JWKS
	}
	if err := t.apply(&in, set, false); err != nil {
		return err
	}
	if ifMatch == "" {
		ifMatch = strconv.FormatInt(cur.Version, 10)
	}
	var p admin.TrustPolicyResource
	if err := ac.doIfMatch(ctx, http.MethodPut, path, ifMatch, in, &p); err != nil {
		return err
	}
	return printTrustPolicies(e.stdout, out, p)
}

func trustDelete(ctx context.Context, e *env, args []string) error {
	var conn connFlags
	var out output
	f := newFlags(e, "trust delete", "NAME", "Deletes a trust policy. Refused while a client is bound to it: change those clients' --federation first.")
	conn.register(f)
	out.register(f)
	ac, pos, err := conn.parseConnect(ctx, f, args, 1, 1)
	if err != nil {
		return err
	}
	if err := ac.do(ctx, http.MethodDelete, "/admin/v1/trust-policies/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	if out.json {
		return printJSON(e.stdout, map[string]string{"deleted": pos[0]})
	}
	fmt.Fprintf(e.stdout, "deleted trust policy %s\n", pos[0])
	return nil
}

// maxJWKSFile bounds a key file: a trust bundle of many keys fits.
const maxJWKSFile = 64 << 10

// readJWKSFile reads public keys for the admin API's jwks field: a JWK Set
// (sent as it is: a SPIFFE trust bundle is one), one public JWK, or PEM
// public keys ("PUBLIC KEY", "RSA PUBLIC KEY"), each of the last two made
// into a set whose keys' kid, unless the JWK names one, is the key's RFC 7638
// thumbprint (what tokensource and m2mauth token use by default). Private
// key material is refused before anything is sent.
func readJWKSFile(path string) (json.RawMessage, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxJWKSFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJWKSFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxJWKSFile)
	}
	set, err := jws.PublicKeySet(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return set, nil
}

// hasKeys reports whether a resource's jwks holds a key set (it reads as
// null when it does not).
func hasKeys(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// kidList names the keys of a JWK Set by kid ("no kid" for those without),
// marking those the server never verifies a JWT with (use enc or
// x509-svid).
func kidList(raw json.RawMessage) string {
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
			Use string `json:"use"`
		} `json:"keys"`
	}
	if json.Unmarshal(raw, &set) != nil {
		return "unreadable"
	}
	kids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		name := "kid " + k.Kid
		if k.Kid == "" {
			name = "no kid"
		}
		if k.Use == "enc" || k.Use == "x509-svid" {
			name += " (use " + k.Use + ": ignored)"
		}
		kids = append(kids, name)
	}
	return strings.Join(kids, ", ")
}
