// node-oidc-provider 9 set up like m2mauth's bench-load server, for a
// side-by-side run (scripts/bench/README.md): one client, the
// client-credentials grant with client_secret_basic, and JWT access tokens
// (RFC 9068, via resource indicators) for one API, signed with RS256 or
// ES256.
//
//   npm install && ALG=RS256 node server.mjs     # or ALG=ES256
//
// Settings: PORT (default 18115), ALG (RS256 or ES256), CLIENT_ID (bench),
// CLIENT_SECRET (bench-secret), AUDIENCE (https://bench.example.com).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 18115);
const alg = process.env.ALG || 'RS256';
const audience = process.env.AUDIENCE || 'https://bench.example.com';
const scope = 'bench:read';

const keyOptions = {
  RS256: ['rsa', { modulusLength: 2048 }],
  ES256: ['ec', { namedCurve: 'P-256' }],
}[alg];
if (!keyOptions) {
  console.error(`ALG=${alg}: RS256 or ES256`);
  process.exit(2);
}
const jwk = generateKeyPairSync(...keyOptions).privateKey.export({ format: 'jwk' });
Object.assign(jwk, { kid: `bench-${alg.toLowerCase()}`, alg, use: 'sig' });

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: process.env.CLIENT_ID || 'bench',
    client_secret: process.env.CLIENT_SECRET || 'bench-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    // Its default (RS256) must match a key of the JWKS, which holds one.
    id_token_signed_response_alg: alg,
    scope,
  }],
  jwks: { keys: [jwk] },
  scopes: [scope],
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No resource parameter needed: every token is for the one API, like
      // an m2mauth client's default audience.
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope,
        audience,
        accessTokenTTL: 900,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg } },
      }),
    },
  },
});

provider.listen(port, '127.0.0.1');
console.log(`node-oidc-provider ${alg} on http://127.0.0.1:${port} (pid ${process.pid}): token endpoint /token, JWKS /jwks`);
