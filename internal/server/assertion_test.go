package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/tokensource"
)

// testKey is a signing key with its public JWK.
type testKey struct {
	alg  jose.SignatureAlgorithm
	kid  string
	priv crypto.Signer
}

func newTestKey(t testing.TB, alg jose.SignatureAlgorithm, kid string) testKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256, jose.PS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return testKey{alg: alg, kid: kid, priv: priv}
}

// jwk is the public JWK of k.
func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// set is a JWK Set of the keys' public halves, as JSON.
func jwkSet(t testing.TB, keys ...testKey) json.RawMessage {
	t.Helper()
	var s jose.JSONWebKeySet
	for _, k := range keys {
		s.Keys = append(s.Keys, k.jwk())
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign signs claims with k, with extra header members.
func (k testKey) sign(t testing.TB, claims map[string]any, headers map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("client-authentication+jwt")
	if k.kid != "" {
		opts = opts.WithHeader("kid", k.kid)
	}
	for h, v := range headers {
		opts = opts.WithHeader(h, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// assertionClaims are the claims of a valid private_key_jwt assertion of
// client id for a server with issuer iss, at now.
func assertionClaims(id, iss string, now time.Time) map[string]any {
	return map[string]any{"iss": id, "sub": id, "aud": iss, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString([]byte(now.String() + id + randomString()))}
}

func randomString() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// assertionForm posts a client_assertion to path, with extra parameters.
func (ts *testServer) assertionForm(path, typ, assertion string, extra url.Values) (int, map[string]any) {
	ts.t.Helper()
	form := url.Values{"client_assertion_type": {typ}, "client_assertion": {assertion}}
	if path == "/oauth/token" {
		form.Set("grant_type", "client_credentials")
	}
	for k, v := range extra {
		form[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, b := ts.do(req)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func unsignedJWT(header, claims map[string]any, sig string) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." + sig
}

// private_key_jwt (RFC 7523 §2.2 as draft-ietf-oauth-rfc7523bis profiles
// it): a client authenticates with an assertion signed by a key it
// registered, on the token, introspection and revocation endpoints; every
// attack of the table is refused with invalid_client.
func TestPrivateKeyJWT(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	cfg.AuthFailureRate = 0 // the attack table is long
	ts := startServer(t, cfg)
	ts.createAPI(ordersAPI, 0, "orders:read")
	iss := ts.cfg.Issuer
	key := newTestKey(t, jose.ES256, "k1")
	rsaKey := newTestKey(t, jose.RS256, "r1")
	other := newTestKey(t, jose.EdDSA, "o1")
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "keyed", Name: "keyed", Grants: grants,
		TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKS: jwkSet(t, key, rsaKey), Introspect: []string{ordersAPI}})
	if resp.StatusCode != 201 || strings.Contains(string(b), `"client_secret"`) {
		t.Fatalf("create a key client: %d %s", resp.StatusCode, b)
	}
	ts.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "other", Name: "other", Grants: grants,
		TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKS: jwkSet(t, other)})
	ts.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "compat", Name: "compat", Grants: grants,
		TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKS: jwkSet(t, key), AcceptTokenEndpointAudience: true})
	secretClient, secret := ts.createClient(admin.ClientInput{Grants: grants})

	now := time.Now()
	good := func() map[string]any { return assertionClaims("keyed", iss, now) }
	for _, k := range []testKey{key, rsaKey} {
		st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, k.sign(t, good(), nil), nil)
		if st != 200 || m["access_token"] == nil {
			t.Fatalf("%s assertion: %d %v", k.alg, st, m)
		}
		if sub := ts.verifyToken(m["access_token"].(string)).claims["sub"]; sub != "keyed" {
			t.Errorf("sub %v", sub)
		}
	}
	// client_id may accompany the assertion, and JSON bodies work too.
	if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, key.sign(t, good(), nil), url.Values{"client_id": {"keyed"}}); st != 200 {
		t.Errorf("with client_id: %d %v", st, m)
	}
	jb, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_assertion_type": oauth.AssertionJWTBearer,
		"client_assertion": key.sign(t, good(), nil)})
	if resp, b := ts.post("/oauth/token", "application/json", string(jb)); resp.StatusCode != 200 {
		t.Errorf("JSON body: %d %s", resp.StatusCode, b)
	}
	// Introspection and revocation authenticate the same way.
	tokStatus, tm := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, key.sign(t, good(), nil), nil)
	tok, _ := tm["access_token"].(string)
	if st, m := ts.assertionForm("/oauth/introspect", oauth.AssertionJWTBearer, key.sign(t, good(), nil), url.Values{"token": {tok}}); tokStatus != 200 || st != 200 || m["active"] != true {
		t.Errorf("introspection with an assertion: %d %v", st, m)
	}
	if st, m := ts.assertionForm("/oauth/revoke", oauth.AssertionJWTBearer, key.sign(t, good(), nil), url.Values{"token": {tok}}); st != 200 {
		t.Errorf("revocation with an assertion: %d %v", st, m)
	}
	// The compatibility switch accepts the token endpoint URL as aud.
	compat := assertionClaims("compat", iss, now)
	compat["aud"] = iss + "/oauth/token"
	if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, key.sign(t, compat, nil), nil); st != 200 {
		t.Errorf("compat client, aud = token endpoint: %d %v", st, m)
	}

	with := func(change func(c map[string]any)) map[string]any {
		c := good()
		change(c)
		return c
	}
	replayed := key.sign(t, good(), nil)
	if st, _ := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, replayed, nil); st != 200 {
		t.Fatalf("first use of the replayed assertion: %d", st)
	}
	noneAlg := unsignedJWT(map[string]any{"alg": "none", "typ": "JWT"}, good(), "")
	hmacKey := testKey{alg: jose.HS256}
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(strings.Repeat("k", 32))}, nil)
	payload, _ := json.Marshal(good())
	hsObj, _ := hs.Sign(payload)
	hsJWT, _ := hsObj.CompactSerialize()
	_ = hmacKey
	pub := key.jwk()
	attacks := []struct {
		name      string
		assertion string
		extra     url.Values
	}{
		{"aud as an array", key.sign(t, with(func(c map[string]any) { c["aud"] = []string{iss} }), nil), nil},
		{"aud = token endpoint URL, switch off", key.sign(t, with(func(c map[string]any) { c["aud"] = iss + "/oauth/token" }), nil), nil},
		{"aud = another server", key.sign(t, with(func(c map[string]any) { c["aud"] = "https://elsewhere.example" }), nil), nil},
		{"replayed jti", replayed, nil},
		{"expired", key.sign(t, with(func(c map[string]any) {
			c["exp"] = now.Add(-2 * time.Minute).Unix()
			c["iat"] = now.Add(-3 * time.Minute).Unix()
		}), nil), nil},
		{"exp too far after iat", key.sign(t, with(func(c map[string]any) { c["exp"] = now.Add(10 * time.Minute).Unix() }), nil), nil},
		{"no exp", key.sign(t, with(func(c map[string]any) { delete(c, "exp") }), nil), nil},
		{"no jti", key.sign(t, with(func(c map[string]any) { delete(c, "jti") }), nil), nil},
		{"issued in the future", key.sign(t, with(func(c map[string]any) {
			c["iat"] = now.Add(5 * time.Minute).Unix()
			c["exp"] = now.Add(6 * time.Minute).Unix()
		}), nil), nil},
		{"alg none", noneAlg, nil},
		{"alg HS256", hsJWT, nil},
		{"iss is not sub", key.sign(t, with(func(c map[string]any) { c["iss"] = "other" }), nil), nil},
		{"sub of another client", key.sign(t, with(func(c map[string]any) { c["iss"], c["sub"] = "other", "other" }), nil), nil},
		{"signed with another client's key", other.sign(t, good(), nil), nil},
		{"unknown kid", newTestKey(t, jose.ES256, "k9").sign(t, good(), nil), nil},
		{"right kid, wrong key", newTestKey(t, jose.ES256, "k1").sign(t, good(), nil), nil},
		{"embedded jwk", key.sign(t, good(), map[jose.HeaderKey]any{"jwk": pub}), nil},
		{"jku", key.sign(t, good(), map[jose.HeaderKey]any{"jku": "https://attacker.example/jwks"}), nil},
		{"typ of an access token", func() string {
			s, _ := jose.NewSigner(jose.SigningKey{Algorithm: key.alg, Key: key.priv}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", key.kid))
			o, _ := s.Sign(payload)
			r, _ := o.CompactSerialize()
			return r
		}(), nil},
		{"oversize", key.sign(t, with(func(c map[string]any) { c["pad"] = strings.Repeat("x", 20<<10) }), nil), nil},
		{"client_id of another client", key.sign(t, good(), nil), url.Values{"client_id": {"other"}}},
		{"garbage", "not.a.jwt", nil},
	}
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, tc.assertion, tc.extra)
			if st != 401 || m["error"] != "invalid_client" {
				t.Errorf("%d %v, want 401 invalid_client", st, m)
			}
		})
	}
	// A secret is never accepted for a key client, and an assertion never
	// with a secret.
	if st, code := ts.tokenStatus("keyed", secret, url.Values{}); st != 401 || code != "invalid_client" {
		t.Errorf("a secret for a key client: %d %s", st, code)
	}
	if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, key.sign(t, good(), nil), url.Values{"client_secret": {secret}}); st != 400 || m["error"] != "invalid_request" {
		t.Errorf("an assertion with a secret: %d %v", st, m)
	}
	if st, code := ts.tokenStatus(secretClient, secret, url.Values{}); st != 200 {
		t.Errorf("the secret client itself: %d %s", st, code)
	}
	// An unknown assertion type is a malformed request.
	if st, m := ts.assertionForm("/oauth/token", "urn:example:other", key.sign(t, good(), nil), nil); st != 400 {
		t.Errorf("unknown assertion type: %d %v", st, m)
	}
}

// A private_key_jwt client whose keys are at a jwks_uri: fetched through
// the JWKS cache, once, and a key added there later is found by its kid.
func TestPrivateKeyJWTWithJWKSURI(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	ts := startServer(t, cfg)
	ts.createAPI(ordersAPI, 0, "orders:read")
	k1, k2 := newTestKey(t, jose.ES256, "k1"), newTestKey(t, jose.EdDSA, "k2")
	published := jwkSet(t, k1)
	fetches := 0
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches++
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(published)
	}))
	defer keys.Close()
	if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "remote", Name: "remote",
		Grants: []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}, TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT,
		JWKSURI: keys.URL}); resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	for range 3 {
		if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, k1.sign(t, assertionClaims("remote", ts.cfg.Issuer, time.Now()), nil), nil); st != 200 {
			t.Fatalf("%d %v", st, m)
		}
	}
	if fetches != 1 {
		t.Errorf("%d fetches for 3 assertions, want 1", fetches)
	}
	published = jwkSet(t, k1, k2) // the client adds a key: an unknown kid refetches
	if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, k2.sign(t, assertionClaims("remote", ts.cfg.Issuer, time.Now()), nil), nil); st != 200 {
		t.Errorf("a key added to the jwks_uri: %d %v", st, m)
	}
	// Without a kid, keys at a URI are not tried one by one.
	noKid := testKey{alg: k1.alg, priv: k1.priv}
	if st, _ := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, noKid.sign(t, assertionClaims("remote", ts.cfg.Issuer, time.Now()), nil), nil); st != 401 {
		t.Errorf("an assertion without kid for jwks_uri keys: %d", st)
	}
}

// Moving a client from a secret to a key: registering the key with live
// secrets needs accept_secrets; while it is set both work; once the secret
// is revoked and the switch is off, only the key does.
func TestMigrationFromSecretToKey(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	ts := startServer(t, cfg)
	id, secret := setupOrders(ts)
	key := newTestKey(t, jose.ES256, "k1")
	patch := func(body map[string]any) (int, []byte) {
		resp, b := ts.adminDo(http.MethodPatch, "/admin/v1/clients/"+id, body)
		return resp.StatusCode, b
	}
	if st, b := patch(map[string]any{"token_endpoint_auth_method": "private_key_jwt", "jwks": jwkSet(t, key)}); st != 400 || !strings.Contains(string(b), "accept_secrets") {
		t.Fatalf("switching with live secrets, without accept_secrets: %d %s", st, b)
	}
	if st, b := patch(map[string]any{"token_endpoint_auth_method": "private_key_jwt", "jwks": jwkSet(t, key), "accept_secrets": true}); st != 200 {
		t.Fatalf("switching with accept_secrets: %d %s", st, b)
	}
	if st, code := ts.tokenStatus(id, secret, url.Values{}); st != 200 {
		t.Errorf("the secret during the migration: %d %s", st, code)
	}
	if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, key.sign(t, assertionClaims(id, ts.cfg.Issuer, time.Now()), nil), nil); st != 200 {
		t.Errorf("the key during the migration: %d %v", st, m)
	}
	c, _ := ts.client(id)
	if resp, b := ts.adminDo(http.MethodDelete, "/admin/v1/clients/"+id+"/secrets/"+c.Secrets[0].ID, nil); resp.StatusCode != 200 {
		t.Fatalf("revoke the secret: %d %s", resp.StatusCode, b)
	}
	if st, b := patch(map[string]any{"accept_secrets": false}); st != 200 {
		t.Fatalf("accept_secrets off: %d %s", st, b)
	}
	if st, _ := ts.tokenStatus(id, secret, url.Values{}); st != 401 {
		t.Errorf("the old secret after the migration: %d", st)
	}
	if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, key.sign(t, assertionClaims(id, ts.cfg.Issuer, time.Now()), nil), nil); st != 200 {
		t.Errorf("the key after the migration: %d %v", st, m)
	}
	if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients/"+id+"/secrets", nil); resp.StatusCode != 409 {
		t.Errorf("rotating the secret of a key client: %d %s", resp.StatusCode, b)
	}
}

// tokensource, the client library, against the real server: a key, and a
// workload token file.
func TestTokensourceWithoutSecret(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogLevel = "error"
	ts := startServer(t, cfg)
	ts.createAPI(ordersAPI, 0, "orders:read")
	key := newTestKey(t, jose.ES256, "k1")
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	ts.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "keyed", Name: "keyed", Grants: grants,
		TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKS: jwkSet(t, key)})
	src, err := tokensource.New(tokensource.Config{Issuer: ts.cfg.Issuer, TokenURL: ts.URL + "/oauth/token", ClientID: "keyed", PrivateKey: key.priv, KeyID: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(context.Background())
	if err != nil || ts.verifyToken(tok.AccessToken).claims["sub"] != "keyed" {
		t.Fatalf("private_key_jwt through tokensource: %v", err)
	}

	cluster := newTestKey(t, jose.RS256, "cluster")
	f := false
	ts.adminDo(http.MethodPost, "/admin/v1/trust-policies", admin.TrustPolicyInput{Name: "k8s", Kind: "jwt", Issuer: "https://k8s.example",
		JWKS: jwkSet(t, cluster), SingleUse: &f})
	ts.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "pod", Name: "pod", Grants: grants, TokenEndpointAuthMethod: admin.AuthFederated,
		Federation: []admin.FederatedIdentityInput{{Policy: "k8s", Subject: "system:serviceaccount:payments:api"}}})
	file := filepath.Join(t.TempDir(), "token")
	now := time.Now()
	if err := os.WriteFile(file, []byte(cluster.sign(t, map[string]any{"iss": "https://k8s.example", "sub": "system:serviceaccount:payments:api",
		"aud": []string{ts.cfg.Issuer}, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}, nil)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err = tokensource.New(tokensource.Config{Issuer: ts.cfg.Issuer, TokenURL: ts.URL + "/oauth/token", AssertionFile: file})
	if err != nil {
		t.Fatal(err)
	}
	tok, err = src.Token(context.Background())
	if err != nil || ts.verifyToken(tok.AccessToken).claims["sub"] != "pod" {
		t.Fatalf("a projected token through tokensource: %v", err)
	}
}

// Node's WebCrypto exports an Ed25519 key with "alg":"Ed25519" and
// oauth4webapi signs with that name (RFC 9864): it is EdDSA with Ed25519,
// and works whichever name the key and the assertion carry.
func TestPrivateKeyJWTEd25519AlgorithmName(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"Ed25519","kid":"n1","x":%q}]}`, base64.RawURLEncoding.EncodeToString(pub))
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "node", Name: "node", Grants: grants,
		TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKS: json.RawMessage(jwk)}); resp.StatusCode != 201 {
		t.Fatalf("register a JWK with alg Ed25519: %d %s", resp.StatusCode, b)
	}
	sign := func(alg string) string {
		h, _ := json.Marshal(map[string]string{"alg": alg, "kid": "n1", "typ": "JWT"})
		c, _ := json.Marshal(assertionClaims("node", ts.cfg.Issuer, time.Now()))
		input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
		return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(input)))
	}
	for _, alg := range []string{"Ed25519", "EdDSA"} {
		if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, sign(alg), nil); st != 200 {
			t.Errorf("assertion with alg %s: %d %v", alg, st, m)
		}
	}
	if st, _ := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, sign("Ed448"), nil); st != 401 {
		t.Errorf("assertion with alg Ed448: %d, want 401", st)
	}
}

// Every refused assertion gets the same answer, but the log says which
// check refused it, so that an operator can tell a client's misconfigured
// audience from a replay.
func TestAssertionRefusalReasonsAreLogged(t *testing.T) {
	ts := startServer(t, testConfig(t))
	ts.createAPI(ordersAPI, 0, "orders:read")
	key := newTestKey(t, jose.ES256, "k1")
	grants := []admin.GrantInput{{Audience: ordersAPI, Scopes: []string{"orders:read"}}}
	if resp, b := ts.adminDo(http.MethodPost, "/admin/v1/clients", admin.ClientInput{ClientID: "keyed", Name: "keyed", Grants: grants,
		TokenEndpointAuthMethod: admin.AuthPrivateKeyJWT, JWKS: jwkSet(t, key)}); resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	used := key.sign(t, assertionClaims("keyed", ts.cfg.Issuer, time.Now()), nil)
	if st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, used, nil); st != 200 {
		t.Fatalf("first use: %d %v", st, m)
	}
	endpoint := assertionClaims("keyed", ts.cfg.Issuer, time.Now())
	endpoint["aud"] = ts.cfg.Issuer + "/oauth/token"
	other := newTestKey(t, jose.ES256, "k1")
	for _, tc := range []struct{ assertion, reason string }{
		{used, "private_key_jwt: jti already used (a replay)"},
		{key.sign(t, endpoint, nil), "private_key_jwt: aud does not name this server"},
		{other.sign(t, assertionClaims("keyed", ts.cfg.Issuer, time.Now()), nil), "private_key_jwt: bad signature"},
		{"a.b.c", "assertion: not a well-formed signed JWT with the required claims"},
	} {
		st, m := ts.assertionForm("/oauth/token", oauth.AssertionJWTBearer, tc.assertion, nil)
		if st != 401 || m["error"] != "invalid_client" || m["error_description"] != "client authentication failed" {
			t.Errorf("%s: %d %v, want the one invalid_client answer", tc.reason, st, m)
		}
		if !strings.Contains(ts.logs.String(), `"reason":"`+tc.reason+`"`) {
			t.Errorf("the log does not say %q", tc.reason)
		}
	}
}
