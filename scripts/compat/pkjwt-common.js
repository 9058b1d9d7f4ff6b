// Shared by the private_key_jwt clients (openid-client 5 and 6): register
// a client with the admin API, and check an access token the way a
// resource server would (jsonwebtoken + jwks-rsa, as resource-server.js).
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const jwt = require('jsonwebtoken');
const jwksRsa = require('jwks-rsa');

// registerClient creates a private_key_jwt client holding publicJwk and
// returns its client_id. The admin token comes from M2MAUTH_ADMIN_TOKEN.
async function registerClient(base, name, publicJwk, audience, scopes) {
  const token = process.env.M2MAUTH_ADMIN_TOKEN;
  assert.ok(token, 'M2MAUTH_ADMIN_TOKEN is not set');
  const response = await fetch(base + '/admin/v1/clients', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      name,
      grants: [{ audience, scopes }],
      default_audience: audience,
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [publicJwk] },
    }),
  });
  const body = await response.json();
  assert.equal(response.status, 201, `POST /admin/v1/clients: ${response.status} ${JSON.stringify(body)}`);
  assert.equal(body.token_endpoint_auth_method, 'private_key_jwt');
  assert.equal(body.client_secret, undefined, 'a private_key_jwt client got a secret');
  return body.client_id;
}

// verifyAccessToken checks the signature with the server's JWKS and the
// RFC 9068 claims; it returns the claims.
async function verifyAccessToken(accessToken, { issuer, jwksUri, audience, clientId, scope }) {
  const keys = jwksRsa({ jwksUri, cache: false });
  const claims = await new Promise((resolve, reject) => {
    jwt.verify(accessToken, (header, cb) => {
      keys.getSigningKey(header.kid).then((k) => cb(null, k.getPublicKey()), cb);
    }, { issuer, audience, algorithms: ['RS256', 'PS256', 'ES256'], complete: true }, (err, t) => (err ? reject(err) : resolve(t)));
  });
  assert.equal(claims.header.typ, 'at+jwt');
  assert.equal(claims.payload.sub, clientId);
  assert.equal(claims.payload.client_id, clientId);
  assert.equal(claims.payload.scope, scope);
  assert.equal(typeof claims.payload.jti, 'string');
  return claims.payload;
}

// packageVersion is the installed version of a dependency (the packages'
// exports maps hide their package.json from require).
function packageVersion(name) {
  return JSON.parse(fs.readFileSync(path.join(__dirname, 'node_modules', name, 'package.json'), 'utf8')).version;
}

module.exports = { registerClient, verifyAccessToken, packageVersion };
