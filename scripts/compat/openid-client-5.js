// openid-client 5 (CommonJS API) authenticating with private_key_jwt and
// an ES256 key: discovery with Issuer.discover, then client credentials
// with the library's default assertion (aud: the issuer identifier,
// exp: iat + 60 s, a random jti).
// Usage: M2MAUTH_ADMIN_TOKEN=… node openid-client-5.js BASE_URL AUDIENCE SCOPE
'use strict';
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Issuer, errors } = require('openid-client-5');
const { registerClient, verifyAccessToken, packageVersion } = require('./pkjwt-common.js');

const [base, audience, scope] = process.argv.slice(2);

async function main() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = 'oc5-' + crypto.randomUUID();
  const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
  const clientId = await registerClient(base, 'openid-client-5', publicJwk, audience, [scope]);

  const issuer = await Issuer.discover(base);
  assert.ok(issuer.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
  const client = new issuer.Client({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt' },
    { keys: [privateJwk] });

  const want = { issuer: issuer.issuer, jwksUri: issuer.jwks_uri, audience, clientId, scope };
  const first = await client.grant({ grant_type: 'client_credentials' });
  const a = await verifyAccessToken(first.access_token, want);
  // A second request signs a new assertion (fresh jti): it must work too.
  const second = await client.grant({ grant_type: 'client_credentials' });
  const b = await verifyAccessToken(second.access_token, want);
  assert.notEqual(a.jti, b.jti);

  // The same jti twice: the second assertion is a replay.
  const jti = crypto.randomUUID();
  await client.grant({ grant_type: 'client_credentials' }, { clientAssertionPayload: { jti } });
  await assert.rejects(client.grant({ grant_type: 'client_credentials' }, { clientAssertionPayload: { jti } }),
    (e) => e instanceof errors.OPError && e.error === 'invalid_client');

  console.log(`openid-client ${packageVersion('openid-client-5')} private_key_jwt ES256 (aud = issuer): 2 tokens verified with the JWKS, replayed jti refused`);
}

main().catch((e) => { console.error('openid-client 5 failed:', e); process.exit(1); });
