// openid-client 6 (ESM API on oauth4webapi) authenticating with
// private_key_jwt with an RS256 and an Ed25519 key (WebCrypto): discovery(), then
// clientCredentialsGrant() with the library's default assertion (aud: the
// issuer identifier, exp: iat + 60 s, nbf, a random jti).
// allowInsecureRequests only because the test server speaks plain HTTP.
// Usage: M2MAUTH_ADMIN_TOKEN=… node openid-client-6.mjs BASE_URL AUDIENCE SCOPE
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as oidc from 'openid-client-6';
import common from './pkjwt-common.js';

const { registerClient, verifyAccessToken, packageVersion } = common;
const [base, audience, scope] = process.argv.slice(2);

// Node's WebCrypto names an Ed25519 JWK's alg and oauth4webapi's header
// "Ed25519" (RFC 9864), not "EdDSA": both keys run.
const algs = [
  ['RS256', { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }],
  ['Ed25519', { name: 'Ed25519' }],
];

async function run(name, params) {
  const { privateKey, publicKey } = await crypto.subtle.generateKey(params, false, ['sign', 'verify']);
  const kid = 'oc6-' + randomUUID();
  const publicJwk = { ...(await crypto.subtle.exportKey('jwk', publicKey)), kid, use: 'sig' };
  delete publicJwk.key_ops;
  delete publicJwk.ext;

  const clientId = await registerClient(base, 'openid-client-6 ' + name, publicJwk, audience, [scope]);
  const discover = (auth) => oidc.discovery(new URL(base), clientId, undefined, auth, { execute: [oidc.allowInsecureRequests] });

  const config = await discover(oidc.PrivateKeyJwt({ key: privateKey, kid }));
  const server = config.serverMetadata();
  assert.ok(server.token_endpoint_auth_methods_supported.includes('private_key_jwt'));

  const want = { issuer: server.issuer, jwksUri: server.jwks_uri, audience, clientId, scope };
  const first = await oidc.clientCredentialsGrant(config);
  const a = await verifyAccessToken(first.access_token, want);
  // A second request signs a new assertion (fresh jti): it must work too.
  const second = await oidc.clientCredentialsGrant(config);
  const b = await verifyAccessToken(second.access_token, want);
  assert.notEqual(a.jti, b.jti);

  // The same jti twice: the second assertion is a replay, answered with
  // the error object alone (no Basic challenge for an assertion), which
  // openid-client 6 reports as a ResponseBodyError naming invalid_client.
  const jti = randomUUID();
  const fixed = await discover(oidc.PrivateKeyJwt({ key: privateKey, kid }, { [oidc.modifyAssertion]: (_h, p) => { p.jti = jti; } }));
  await oidc.clientCredentialsGrant(fixed);
  const replay = await oidc.clientCredentialsGrant(fixed).then(() => assert.fail('a replayed assertion was accepted'), (e) => e);
  assert.ok(replay instanceof oidc.ResponseBodyError, String(replay));
  assert.equal(replay.status, 401, String(replay));
  assert.equal(replay.error, 'invalid_client', String(replay));
}

try {
  for (const [name, params] of algs) {
    await run(name, params);
  }
  console.log(`openid-client ${packageVersion('openid-client-6')} private_key_jwt RS256 and Ed25519 (aud = issuer): 2 tokens each verified with the JWKS, replayed jti refused with invalid_client`);
} catch (e) {
  console.error('openid-client 6 failed:', e);
  process.exit(1);
}
