// The machine-token service's client (seed 000) with axios: the documented
// request and response, and the documented error envelope.
// Usage: node machine-client.js BASE_URL API_KEY SECRET_KEY
'use strict';
const axios = require('axios');
const assert = require('node:assert/strict');

const [base, apiKey, secretKey] = process.argv.slice(2);

async function main() {
  const response = await axios.post(base + '/v1/oauth/token/machine', { apiKey, secretKey },
    { headers: { 'Content-Type': 'application/json' } });
  const data = response.data.data;
  assert.equal(typeof data.token, 'string');
  assert.match(data.expires, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  // The documented TokenManager: new Date(tokenData.expires) is in the future.
  assert.ok(new Date(data.expires) > new Date());

  const bad = await axios.post(base + '/v1/oauth/token/machine', { apiKey, secretKey: 'wrong' },
    { headers: { 'Content-Type': 'application/json' }, validateStatus: () => true });
  assert.equal(bad.status, 401);
  assert.deepEqual(bad.data, { errors: [{ i18N: 'INVALID_CREDENTIALS', error: 'Invalid API key or secret key', type: 'Unauthorized' }] });

  const malformed = await axios.post(base + '/v1/oauth/token/machine', '{"apiKey":',
    { headers: { 'Content-Type': 'application/json' }, validateStatus: () => true, transformRequest: [(d) => d] });
  assert.equal(malformed.status, 400);
  assert.deepEqual(malformed.data, { errors: [{ i18N: 'INVALID_REQUEST', error: 'Bad request - invalid input', type: 'BadRequest' }] });
  console.log('machine-client (axios): token, 401 and 400 envelopes: ok');
}

main().catch((e) => { console.error('machine-client failed:', e.response ? e.response.data : e); process.exit(1); });
