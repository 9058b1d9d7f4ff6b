// openid-client 6 obtaining sender-constrained tokens, as its own
// documentation shows, and using them at a resource server protected by
// package verify (examples/resource-server):
//   dpop: a client_secret_basic client whose tokens must be DPoP-bound
//         (dpop_bound_access_tokens): getDPoPHandle() with an ES256 key
//         from randomDPoPKeyPair(), clientCredentialsGrant() and
//         fetchProtectedResource() (a proof with ath per request); the
//         server demands nonces (use_dpop_nonce), which the library
//         answers by itself.
//   mtls: a tls_client_auth client (its certificate's URI SAN, a SPIFFE
//         ID) over mutual TLS: TlsClientAuth(), use_mtls_endpoint_aliases and an
//         undici Agent holding the certificate as customFetch; the token
//         carries cnf.x5t#S256 of that certificate.
// Usage:
//   M2MAUTH_ADMIN_TOKEN=… node openid-client-6-sender.mjs dpop BASE RS_URL AUDIENCE SCOPE
//   M2MAUTH_ADMIN_TOKEN=… node openid-client-6-sender.mjs mtls BASE RS_URL AUDIENCE SCOPE CERT KEY CA SAN_URI
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as oidc from 'openid-client-6';
import { Agent, fetch as undiciFetch } from 'undici';

const [mode, base, rsURL, audience, scope, certFile, keyFile, caFile, sanURI] = process.argv.slice(2);

// claims decodes a JWT's payload (the resource server checks the
// signature; this only reads what was bound).
const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());

async function createClient(doFetch, body) {
  const response = await doFetch(base + '/admin/v1/clients', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + process.env.M2MAUTH_ADMIN_TOKEN, 'Content-Type': 'application/json' },
    body: JSON.stringify({ grants: [{ audience, scopes: [scope] }], default_audience: audience, ...body }),
  });
  const created = await response.json();
  assert.equal(response.status, 201, `POST /admin/v1/clients: ${response.status} ${JSON.stringify(created)}`);
  return created;
}

async function dpop() {
  const created = await createClient(fetch, { name: 'openid-client-6 DPoP', dpop_bound_access_tokens: true });
  const execute = [oidc.allowInsecureRequests];
  const config = await oidc.discovery(new URL(base), created.client_id, undefined,
    oidc.ClientSecretBasic(created.client_secret), { execute });
  const server = config.serverMetadata();
  assert.ok(server.dpop_signing_alg_values_supported.includes('ES256'), 'discovery lists no DPoP algorithms');

  // Without a proof the client is refused: its tokens must be bound.
  const unbound = await oidc.clientCredentialsGrant(config).then(() => assert.fail('a token without a DPoP proof'), (e) => e);
  assert.equal(unbound.error, 'invalid_dpop_proof', `without a proof: ${unbound}`);

  const DPoP = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair('ES256'));
  const tokens = await oidc.clientCredentialsGrant(config, { scope }, { DPoP });
  assert.equal(tokens.token_type, 'dpop');
  const jkt = claims(tokens.access_token).cnf?.jkt;
  assert.match(jkt ?? '', /^[A-Za-z0-9_-]{43}$/, 'the token has no cnf.jkt');

  const ok = await oidc.fetchProtectedResource(config, tokens.access_token, new URL(rsURL), 'GET', undefined, undefined, { DPoP });
  assert.equal(ok.status, 200, `the API refused the DPoP-bound token: ${ok.status} ${await ok.text()}`);
  // The same token as a plain bearer token is refused (RFC 9449 §7.2).
  const bearer = await fetch(rsURL, { headers: { Authorization: 'Bearer ' + tokens.access_token } });
  assert.equal(bearer.status, 401, 'the API accepted a DPoP-bound token as Bearer');
  console.log(`openid-client 6: DPoP-bound token (nonce challenge answered, cnf.jkt), accepted by the API with a proof, refused as Bearer`);
}

async function mtls() {
  const ca = readFileSync(caFile);
  const agent = new Agent({ connect: { ca, cert: readFileSync(certFile), key: readFileSync(keyFile) } });
  const doFetch = (url, options) => undiciFetch(url, { ...options, dispatcher: agent });
  const created = await createClient(doFetch, {
    name: 'openid-client-6 mTLS', token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_san_uri: sanURI, tls_client_certificate_bound_access_tokens: true,
  });
  assert.equal(created.client_secret, undefined, 'a tls_client_auth client got a secret');

  const config = await oidc.discovery(new URL(base), created.client_id, { use_mtls_endpoint_aliases: true },
    oidc.TlsClientAuth(), { [oidc.customFetch]: doFetch });
  config[oidc.customFetch] = doFetch;
  const server = config.serverMetadata();
  assert.ok(server.token_endpoint_auth_methods_supported.includes('tls_client_auth'));
  assert.ok(server.mtls_endpoint_aliases?.token_endpoint, 'discovery has no mtls_endpoint_aliases');
  assert.equal(server.tls_client_certificate_bound_access_tokens, true);

  const tokens = await oidc.clientCredentialsGrant(config, { scope });
  assert.equal(tokens.token_type, 'bearer');
  const der = new X509Certificate(readFileSync(certFile)).raw;
  const x5t = createHash('sha256').update(der).digest('base64url');
  assert.equal(claims(tokens.access_token).cnf?.['x5t#S256'], x5t, 'the token is not bound to the certificate');

  const ok = await doFetch(rsURL, { headers: { Authorization: 'Bearer ' + tokens.access_token } });
  assert.equal(ok.status, 200, `the API refused the certificate-bound token: ${ok.status} ${await ok.text()}`);
  // Another connection without the certificate cannot use the token.
  const bare = new Agent({ connect: { ca } });
  const stolen = await undiciFetch(rsURL, { headers: { Authorization: 'Bearer ' + tokens.access_token }, dispatcher: bare });
  assert.equal(stolen.status, 401, 'the API accepted a certificate-bound token without the certificate');
  console.log('openid-client 6 (TlsClientAuth, mtls_endpoint_aliases): certificate-bound token (cnf.x5t#S256), accepted by the API over mutual TLS, refused without the certificate');
}

await (mode === 'dpop' ? dpop() : mtls());
