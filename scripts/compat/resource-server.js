// The developer-auth platform's resource server (seed 003): Express with
// jsonwebtoken and jwks-rsa, validating tokens against /keys, plus the
// issuer and audience checks the guide lists.
// Usage: node resource-server.js PORT ISSUER AUDIENCE
'use strict';
const express = require('express');
const jwt = require('jsonwebtoken');
const jwksClient = require('jwks-rsa');

const [port, issuer, audience] = process.argv.slice(2);
const app = express();

const client = jwksClient({ jwksUri: `${issuer}/keys`, cache: true });

function getKey(header, callback) {
  client.getSigningKey(header.kid, function (err, key) {
    if (err) return callback(err);
    const signingKey = key.publicKey || key.rsaPublicKey;
    callback(null, signingKey);
  });
}

function validateJwt(req, res, next) {
  const authHeader = req.headers.authorization;
  if (!authHeader || !authHeader.startsWith('Bearer ')) {
    return res.status(401).json({ error: 'Missing authorization token' });
  }
  const token = authHeader.split(' ')[1];
  jwt.verify(token, getKey, { algorithms: ['RS256'], issuer, audience }, (err, decoded) => {
    if (err) {
      return res.status(401).json({ error: 'Invalid token', details: err.message });
    }
    req.user = decoded;
    next();
  });
}

app.use('/api', validateJwt);
app.get('/api/data', (req, res) => {
  res.json({ message: 'Authenticated successfully', userId: req.user.sub });
});
app.listen(Number(port), '127.0.0.1', () => console.log(`resource-server listening on ${port}`));
