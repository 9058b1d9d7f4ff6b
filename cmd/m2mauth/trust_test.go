package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	neturl "net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// testIssuer plays an external issuer of workload tokens (a CI's OIDC
// provider) whose public keys are given to the server as a file.
type testIssuer struct {
	url string
	key *rsa.PrivateKey
	kid string
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &testIssuer{url: "https://ci.example.com", key: key, kid: "ci-key-1"}
}

// jwksFile writes the issuer's JWK Set as a SPIFFE-style bundle would
// hold it, with members beyond keys.
func (i *testIssuer) jwksFile(t *testing.T) string {
	t.Helper()
	set := map[string]any{"keys": []jose.JSONWebKey{{Key: i.key.Public(), KeyID: i.kid, Use: "sig", Algorithm: "RS256"}}, "spiffe_sequence": 1}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return writeTestFile(t, "ci-jwks.json", b)
}

// token signs a workload token with the given claims over defaults for
// audience aud: iss, iat now, exp in 5 min and a random jti.
func (i *testIssuer) token(t *testing.T, aud string, claims map[string]any) string {
	t.Helper()
	now := time.Now()
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	c := map[string]any{"iss": i.url, "aud": aud, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": base64.RawURLEncoding.EncodeToString(jti[:])}
	for k, v := range claims {
		c[k] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: i.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", i.kid))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// subjectOf returns the sub claim of an access token, unverified (the
// server issued it in this test).
func subjectOf(t *testing.T, token string) string {
	t.Helper()
	tok, err := jwt.ParseSigned(strings.TrimSpace(token), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("not a token: %q: %v", token, err)
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		t.Fatal(err)
	}
	return c.Subject
}

// The whole flow of clients without a secret, through the CLI against a
// real server: a trust policy from a key file, a federated client bound
// to it, a private_key_jwt client registered with a PEM public key, and
// tokens for both; then the policy's update, and its delete refused while
// a client is bound to it.
func TestCLITrustAndClientsWithoutSecret(t *testing.T) {
	dir := t.TempDir()
	url := startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	must := mustCLI(t, vars)
	must("api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read orders:write")
	ci := newTestIssuer(t)

	// trust create with a key file; list, show, --json.
	r := must("trust", "create", "--name", "ci", "--issuer", ci.url, "--jwks-file", ci.jwksFile(t), "--require-jti", "--max-token-age", "5m",
		"--algorithms", "RS256", "--description", "GitHub Actions")
	if !strings.Contains(r.stdout, "NAME") || !strings.Contains(r.stdout, "jwks (kid ci-key-1)") || !strings.Contains(r.stdout, "5m0s") {
		t.Fatalf("trust create:\n%s", r.stdout)
	}
	if r := must("trust", "list"); !strings.Contains(r.stdout, ci.url) {
		t.Fatalf("trust list:\n%s", r.stdout)
	}
	r = must("trust", "show", "ci")
	for _, want := range []string{"issuer:             " + ci.url, "keys:               jwks (kid ci-key-1)", "audience:           " + url,
		"max token age:      5m0s", "max token lifetime: 1h0m0s", "single use:         yes", "jti required:       yes", "algorithms:         RS256"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("trust show lacks %q:\n%s", want, r.stdout)
		}
	}
	var p admin.TrustPolicyResource
	if err := json.Unmarshal([]byte(must("trust", "show", "ci", "--json").stdout), &p); err != nil || p.Version != 1 || !p.RequireJTI || p.MaxTokenAgeSeconds != 300 {
		t.Fatalf("trust show --json: %+v %v", p, err)
	}

	// A federated client: no secret, --env prints only the id.
	r = must("client", "create", "--name", "deployer", "--audience", "https://api.example.com", "--scopes", "orders:read",
		"--auth-method", "federated", "--federation", "policy=ci,subject=repo:acme/shop:ref:refs/heads/main,claim.repository_owner=acme", "--env")
	if !strings.HasPrefix(r.stdout, "export M2MAUTH_CLIENT_ID='m2mc_") || strings.Count(r.stdout, "\n") != 1 || strings.Contains(r.stdout, "SECRET") {
		t.Fatalf("client create --env of a federated client: %+v", r)
	}
	deployer := strings.Split(r.stdout, "'")[1]
	r = must("client", "show", deployer)
	for _, want := range []string{"auth method:      federated", "accept secrets:   no", "TRUST POLICY", "repo:acme/shop:ref:refs/heads/main", "repository_owner=acme"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("client show lacks %q:\n%s", want, r.stdout)
		}
	}

	// Its workload token gets an access token, once (the policy is single use).
	assertion := writeTestFile(t, "ci.jwt", []byte(ci.token(t, url, map[string]any{"sub": "repo:acme/shop:ref:refs/heads/main", "repository_owner": "acme"})))
	r = cli(t, nil, "token", "--server", url, "--assertion-file", assertion)
	if r.code != 0 || subjectOf(t, r.stdout) != deployer {
		t.Fatalf("token --assertion-file: %+v", r)
	}
	if r := cli(t, nil, "token", "--server", url, "--assertion-file", assertion); r.code != 1 || !strings.Contains(r.stderr, "invalid_client") {
		t.Fatalf("a replayed workload token: %+v", r)
	}
	other := writeTestFile(t, "other.jwt", []byte(ci.token(t, url, map[string]any{"sub": "repo:acme/shop:ref:refs/heads/main", "repository_owner": "evil"})))
	if r := cli(t, nil, "token", "--server", url, "--assertion-file", other); r.code != 1 || !strings.Contains(r.stderr, "invalid_client") {
		t.Fatalf("a token its claim condition refuses: %+v", r)
	}

	// A private_key_jwt client registered with a PEM public key: no
	// secret line; m2mauth token --private-key gets a token (the kid is
	// the key's thumbprint on both sides).
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	privFile := writeTestFile(t, "billing.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	pubDER, _ := x509.MarshalPKIXPublicKey(ec.Public())
	pubFile := writeTestFile(t, "billing.pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	r = must("client", "create", "--name", "billing", "--audience", "https://api.example.com", "--scopes", "orders:read",
		"--auth-method", "private_key_jwt", "--jwks-file", pubFile)
	if !strings.HasPrefix(r.stdout, "client_id:     m2mc_") || strings.Contains(r.stdout, "client_secret") || !strings.Contains(r.stdout, "It has no secret") {
		t.Fatalf("client create of a private_key_jwt client:\n%s", r.stdout)
	}
	billing := strings.Fields(r.stdout)[1]
	r = cli(t, nil, "token", "--server", url, "--client-id", billing, "--private-key", privFile)
	if r.code != 0 || subjectOf(t, r.stdout) != billing {
		t.Fatalf("token --private-key: %+v", r)
	}
	tp, _ := (&jose.JSONWebKey{Key: ec.Public()}).Thumbprint(crypto.SHA256)
	r = must("client", "show", billing)
	for _, want := range []string{"auth method:      private_key_jwt", "keys:             jwks (kid " + base64.RawURLEncoding.EncodeToString(tp) + ")", "assertion aud:    the issuer\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("client show lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := must("client", "list"); !strings.Contains(r.stdout, "private_key_jwt") || !strings.Contains(r.stdout, "federated") {
		t.Fatalf("client list lacks the auth methods:\n%s", r.stdout)
	}
	// A library that sends the token endpoint URL as aud: refused until
	// the client accepts it.
	viaEndpoint := []string{"token", "--server", url, "--client-id", billing, "--private-key", privFile, "--assertion-audience", url + "/oauth/token"}
	if r := cli(t, nil, viaEndpoint...); r.code != 1 || !strings.Contains(r.stderr, "invalid_client") {
		t.Fatalf("the token endpoint as aud: %+v", r)
	}
	r = must("client", "update", billing, "--accept-token-endpoint-audience")
	if r := cli(t, nil, viaEndpoint...); r.code != 0 {
		t.Fatalf("the token endpoint as aud, accepted: %+v", r)
	}
	if r := must("client", "show", billing); !strings.Contains(r.stdout, "assertion aud:    the issuer or the token endpoint URL") {
		t.Fatalf("client show:\n%s", r.stdout)
	}

	// trust update changes only the given fields, conditionally.
	r = must("trust", "update", "ci", "--description", "CI", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.Description != "CI" || p.MaxTokenAgeSeconds != 300 || !p.RequireJTI || len(p.JWKS) == 0 || p.Version != 2 {
		t.Fatalf("trust update --description: %+v %v", p, err)
	}
	if r := cli(t, vars, "trust", "update", "ci", "--single-use=false"); r.code != 1 || !strings.Contains(r.stderr, "require_jti: requires single_use") {
		t.Fatalf("single use off while a jti is required: %+v", r)
	}
	if r := cli(t, vars, "trust", "update", "ci", "--description", "x", "--if-match", "1"); r.code != 1 || !strings.Contains(r.stderr, "Precondition Failed") {
		t.Fatalf("trust update with a stale --if-match: %+v", r)
	}
	if r := cli(t, vars, "trust", "update", "ci"); r.code != 1 || !strings.Contains(r.stderr, "nothing to change") {
		t.Fatalf("trust update without fields: %+v", r)
	}
	r = must("trust", "update", "ci", "--single-use=false", "--require-jti=false", "--jwks-uri", "https://ci.example.com/jwks", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.SingleUse || p.RequireJTI || hasKeys(p.JWKS) || p.JWKSURI != "https://ci.example.com/jwks" || p.Description != "CI" {
		t.Fatalf("trust update of the key source: %+v %v", p, err)
	}

	// delete of a policy in use prints the server's 409 detail.
	r = cli(t, vars, "trust", "delete", "ci")
	if r.code != 1 || !strings.Contains(r.stderr, "Conflict: clients bound to trust policy ci: ") || !strings.Contains(r.stderr, "unbind them first") {
		t.Fatalf("trust delete of a bound policy: %+v", r)
	}
	// --federation replaces the bindings; --clear-federation removes them.
	must("client", "update", deployer, "--auth-method", "private_key_jwt", "--jwks-file", pubFile, "--clear-federation")
	if r := must("client", "show", deployer, "--json"); strings.Contains(r.stdout, `"policy"`) {
		t.Fatalf("bindings left:\n%s", r.stdout)
	}
	if r := must("trust", "delete", "ci"); r.stdout != "deleted trust policy ci\n" {
		t.Fatalf("trust delete: %+v", r)
	}
	if r := cli(t, vars, "trust", "show", "ci"); r.code != 1 || !strings.Contains(r.stderr, "Not Found") {
		t.Fatalf("trust show of a deleted policy: %+v", r)
	}
	if r := cli(t, vars, "trust", "create", "--name", "bad", "--kind", "spiffe", "--issuer", "https://x.example.com"); r.code != 1 ||
		!strings.Contains(r.stderr, "issuer:") || !strings.Contains(r.stderr, "jwks_uri:") {
		t.Fatalf("an invalid policy: %+v", r)
	}
}

// A client moves from a secret to a key: the key is registered while the
// secret is still accepted, then the secret is revoked and no longer
// accepted.
func TestCLIMigrateSecretToKey(t *testing.T) {
	dir := t.TempDir()
	url := startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	must := mustCLI(t, vars)
	must("api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read")
	var c admin.ClientResource
	if err := json.Unmarshal([]byte(must("client", "create", "--name", "billing", "--audience", "https://api.example.com", "--json").stdout), &c); err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: ed, KeyID: "billing-2025"})
	privFile := writeTestFile(t, "billing.jwk", jwk)
	pub, _ := json.Marshal(jose.JSONWebKey{Key: ed.Public(), KeyID: "billing-2025"})
	pubFile := writeTestFile(t, "billing.pub.jwk", pub) // one public JWK, not a set
	withSecret := func() int {
		return cli(t, nil, "token", "--server", url, "--client-id", c.ClientID, "--client-secret", c.ClientSecret).code
	}
	withKey := func() int {
		return cli(t, nil, "token", "--server", url, "--client-id", c.ClientID, "--private-key", privFile).code
	}

	if r := cli(t, vars, "client", "update", c.ClientID, "--auth-method", "private_key_jwt", "--jwks-file", pubFile); r.code != 1 || !strings.Contains(r.stderr, "accept_secrets") {
		t.Fatalf("a switch that would strand the live secret: %+v", r)
	}
	r := must("client", "update", c.ClientID, "--auth-method", "private_key_jwt", "--jwks-file", pubFile, "--accept-secrets")
	if !strings.Contains(r.stdout, "private_key_jwt") || withSecret() != 0 || withKey() != 0 {
		t.Fatalf("during the migration both should work: %s", r.stdout)
	}
	if r := must("client", "show", c.ClientID); !strings.Contains(r.stdout, "accept secrets:   yes") || !strings.Contains(r.stdout, "jwks (kid billing-2025)") {
		t.Fatalf("client show:\n%s", r.stdout)
	}
	if r := cli(t, vars, "client", "update", c.ClientID, "--accept-secrets=false"); r.code != 1 || !strings.Contains(r.stderr, "live secrets") {
		t.Fatalf("accept-secrets off with a live secret: %+v", r)
	}
	must("client", "revoke-secret", c.ClientID, c.Secrets[0].ID)
	must("client", "update", c.ClientID, "--accept-secrets=false")
	if withSecret() != 1 || withKey() != 0 {
		t.Fatal("after the migration only the key should work")
	}
}

func TestFederationFlag(t *testing.T) {
	tests := []struct {
		in      []string
		want    []admin.FederatedIdentityInput
		wantErr string
	}{
		{in: []string{"policy=k8s,subject=system:serviceaccount:payments:api"},
			want: []admin.FederatedIdentityInput{{Policy: "k8s", Subject: "system:serviceaccount:payments:api"}}},
		{in: []string{"subject=repo:acme/*,policy=gh,claim.repository_owner=acme,claim.kubernetes.io.namespace=a=b", "policy=k8s,subject=x"},
			want: []admin.FederatedIdentityInput{
				{Policy: "gh", Subject: "repo:acme/*", Claims: map[string]string{"repository_owner": "acme", "kubernetes.io.namespace": "a=b"}},
				{Policy: "k8s", Subject: "x"}}},
		{in: []string{"policy=k8s"}, wantErr: "want 'policy=NAME,subject=PATTERN"},
		{in: []string{"policy=k8s,subject=a,subject=b"}, wantErr: `"subject": want policy=, subject= (each once)`},
		{in: []string{"policy=k8s,subject=a,owner=x"}, wantErr: `"owner"`},
		{in: []string{"policy=k8s,subject=a,claim.=x"}, wantErr: `"claim."`},
		{in: []string{"policy=k8s,subject=a,claim.x=1,claim.x=2"}, wantErr: "claim.x is given twice"},
		{in: []string{"policy=k8s,subject=a,b"}, wantErr: `"b": want KEY=VALUE parts`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.in, " "), func(t *testing.T) {
			var f federationFlag
			var err error
			for _, v := range tc.in {
				if err = f.Set(v); err != nil {
					break
				}
			}
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want ~ %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			default:
				got, _ := json.Marshal([]admin.FederatedIdentityInput(f))
				want, _ := json.Marshal(tc.want)
				if string(got) != string(want) {
					t.Fatalf("got %s, want %s", got, want)
				}
			}
		})
	}
}

func TestReadJWKSFile(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})
	privDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	pubJWK, _ := json.Marshal(jose.JSONWebKey{Key: rsaKey.Public(), KeyID: "r1"})
	privJWK, _ := json.Marshal(jose.JSONWebKey{Key: rsaKey, KeyID: "r1"})
	tp, _ := (&jose.JSONWebKey{Key: rsaKey.Public()}).Thumbprint(crypto.SHA256)
	thumb := base64.RawURLEncoding.EncodeToString(tp)
	tests := []struct {
		name     string
		content  []byte
		wantKids string
		wantErr  string
	}{
		{"a JWK Set, as it is", []byte(`{"keys":[` + string(pubJWK) + `],"spiffe_refresh_hint":300}`), "kid r1", ""},
		{"one public JWK", pubJWK, "kid r1", ""},
		{"a PEM public key: its thumbprint as kid", pubPEM, "kid " + thumb, ""},
		{"two PEM public keys, PKCS#1 too", append(append([]byte{}, pubPEM...), pkcs1...), "kid " + thumb + ", kid " + thumb, ""},
		{"a PEM private key", privPEM, "", "it is a private key: give the public key only"},
		{"a private JWK", privJWK, "", `holds private key material (member "d")`},
		{"a set holding a private key", []byte(`{"keys":[` + string(pubJWK) + `,` + string(privJWK) + `]}`), "", "key 1 holds private key material"},
		{"neither", []byte("hello"), "", "no public key"},
		{"a JSON object that is no key", []byte(`{"a":1}`), "", "neither a JWK Set (with keys) nor a JWK (with kty)"},
		{"broken JSON", []byte(`{"keys":`), "", "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTestFile(t, "keys", tc.content)
			got, err := readJWKSFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err %v, want ~ %q naming the file", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), string(tc.content)) {
					t.Fatalf("the error quotes the file: %v", err)
				}
				return
			}
			if err != nil || kidList(got) != tc.wantKids || !json.Valid(got) {
				t.Fatalf("got %s (%s), %v; want kids %s", got, kidList(got), err, tc.wantKids)
			}
		})
	}
	if _, err := readJWKSFile(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("a missing file is read")
	}
}

// A SPIFFE trust domain's bundle, as `spire-server bundle show -format
// spiffe` writes it (an X.509 authority with its certificate and a JWT
// authority), is a trust policy's key file; a JWT-SVID sent with
// --assertion-type jwt-spiffe gets a token for the client bound to its
// SPIFFE ID.
func TestCLITrustSPIFFEBundle(t *testing.T) {
	dir := t.TempDir()
	url := startServer(t, dir)
	vars := map[string]string{"M2MAUTH_DATA_DIR": dir}
	must := mustCLI(t, vars)
	must("api", "create", "--identifier", "https://api.example.com", "--name", "Orders", "--scopes", "orders:read")
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.org"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*neturl.URL{{Scheme: "spiffe", Host: "example.org"}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x509Entry, _ := json.Marshal(jose.JSONWebKey{Key: caKey.Public(), Certificates: []*x509.Certificate{mustCert(t, der)}})
	var entry map[string]any
	_ = json.Unmarshal(x509Entry, &entry)
	entry["use"] = "x509-svid"
	jwtEntry, _ := json.Marshal(jose.JSONWebKey{Key: jwtKey.Public(), KeyID: "jwt-1"})
	var jwtMap map[string]any
	_ = json.Unmarshal(jwtEntry, &jwtMap)
	jwtMap["use"] = "jwt-svid"
	bundle, _ := json.Marshal(map[string]any{"keys": []any{entry, jwtMap}, "spiffe_sequence": 12, "spiffe_refresh_hint": 300})
	bundleFile := writeTestFile(t, "example.org.json", bundle)

	r := must("trust", "create", "--name", "mesh", "--kind", "spiffe", "--issuer", "spiffe://example.org", "--jwks-file", bundleFile)
	// The X.509 authority is no JWT signer: only the JWT authority is kept.
	if !strings.Contains(r.stdout, "jwks (no kid (use x509-svid: ignored), kid jwt-1)") {
		t.Fatalf("trust create:\n%s", r.stdout)
	}
	r = must("client", "create", "--name", "payments", "--audience", "https://api.example.com", "--auth-method", "federated",
		"--federation", "policy=mesh,subject=spiffe://example.org/ns/payments/sa/api", "--env")
	id := strings.Split(r.stdout, "'")[1]
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jwtKey}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "jwt-1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	svid, _ := jwt.Signed(s).Claims(map[string]any{"sub": "spiffe://example.org/ns/payments/sa/api", "aud": []string{url},
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}).Serialize()
	file := writeTestFile(t, "svid.jwt", []byte(svid+"\n"))
	r = cli(t, nil, "token", "--server", url, "--assertion-file", file, "--assertion-type", "jwt-spiffe")
	if r.code != 0 || subjectOf(t, r.stdout) != id {
		t.Fatalf("token with a JWT-SVID: %+v", r)
	}

	// A JWT-SVID signed by the X.509 authority's key is refused: without a
	// kid, it is the only key of the bundle that fits RS256.
	rs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: caKey}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := jwt.Signed(rs).Claims(map[string]any{"sub": "spiffe://example.org/ns/payments/sa/api", "aud": []string{url},
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "forged"}).Serialize()
	file = writeTestFile(t, "forged.jwt", []byte(forged+"\n"))
	if r := cli(t, nil, "token", "--server", url, "--assertion-file", file, "--assertion-type", "jwt-spiffe"); r.code == 0 {
		t.Fatalf("a JWT-SVID signed by the X.509 authority got a token: %+v", r)
	}
}

func mustCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
