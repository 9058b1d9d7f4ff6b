// The ATM service's documented client (seed 002), written with axios:
// client credentials, then the refresh request exactly as documented, then
// a replay of the spent refresh token, which must fail.
// Usage: node atm-client.js BASE_URL CLIENT_ID CLIENT_SECRET TOKEN_FILE
// (the refreshed access token is written to TOKEN_FILE for the resource
// server's check, never printed)
'use strict';
const axios = require('axios');
const fs = require('node:fs');
const assert = require('node:assert/strict');

const [base, clientId, clientSecret, tokenFile] = process.argv.slice(2);

async function main() {
  var data = JSON.stringify({
    "clientId": clientId,
    "clientSecret": clientSecret,
    "grant_types": "client_credentials"
  });
  var config = {
    method: 'post',
    url: base + '/auth/token',
    headers: { 'Content-Type': 'application/json' },
    data: data
  };
  const first = (await axios(config)).data;
  assert.equal(typeof first.access_token, 'string');
  assert.equal(typeof first.exp_access_token, 'number');
  assert.ok(first.refresh_token, 'refresh_token expected: the client has refresh tokens enabled');

  // "Refresh the access token" payload, as documented (grantType, empty id_token, no secret).
  const refreshed = (await axios({
    method: 'post',
    url: base + '/auth/token',
    headers: { 'Content-Type': 'application/json' },
    data: JSON.stringify({ "clientId": clientId, "refresh_token": first.refresh_token, "id_token": "", "grantType": "refresh_token" })
  })).data;
  assert.ok(refreshed.access_token);
  assert.notEqual(refreshed.refresh_token, first.refresh_token);

  // Replaying the spent refresh token is refused with an OAuth error.
  const replay = await axios({
    method: 'post', url: base + '/auth/token', headers: { 'Content-Type': 'application/json' },
    data: JSON.stringify({ clientId, refresh_token: first.refresh_token, grantType: 'refresh_token' }),
    validateStatus: () => true
  });
  assert.equal(replay.status, 400);
  assert.equal(replay.data.error, 'invalid_grant');
  console.log('atm-client (axios): client credentials, refresh, replay refused: ok');
  fs.writeFileSync(tokenFile, refreshed.access_token, { mode: 0o600 });
}

main().catch((e) => { console.error('atm-client failed:', e.response ? e.response.data : e); process.exit(1); });
