-- How each client authenticates (token_endpoint_auth_method): shared
-- secrets (client_secret_basic / client_secret_post), its own keys
-- (private_key_jwt: an inline JWK Set or a jwks_uri), or a token from a
-- trusted external issuer (federated, bound by the JSON list federation).
ALTER TABLE clients ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'client_secret_basic';
ALTER TABLE clients ADD COLUMN jwks TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN jwks_uri TEXT NOT NULL DEFAULT '';
-- A key or federated client whose secrets still authenticate (migration).
ALTER TABLE clients ADD COLUMN accept_secrets BOOLEAN NOT NULL DEFAULT false;
-- Accept client assertions whose aud is the token endpoint URL (RFC 7523
-- section 3's older wording) instead of the issuer.
ALTER TABLE clients ADD COLUMN accept_token_endpoint_audience BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE clients ADD COLUMN federation TEXT NOT NULL DEFAULT '[]';
CREATE INDEX clients_auth_method ON clients (auth_method);

-- Trusted external issuers of workload identities (Kubernetes service
-- accounts, SPIFFE trust domains, CI OIDC providers).
CREATE TABLE trust_policies (
    name                  TEXT PRIMARY KEY,
    kind                  TEXT NOT NULL,
    issuer                TEXT NOT NULL UNIQUE,
    description           TEXT NOT NULL DEFAULT '',
    jwks_uri              TEXT NOT NULL DEFAULT '',
    discovery             BOOLEAN NOT NULL DEFAULT false,
    jwks                  TEXT NOT NULL DEFAULT '',
    algorithms            TEXT NOT NULL,
    audience              TEXT NOT NULL,
    max_token_age_ms      BIGINT NOT NULL,
    max_token_lifetime_ms BIGINT NOT NULL,
    single_use            BOOLEAN NOT NULL,
    require_jti           BOOLEAN NOT NULL,
    version               BIGINT NOT NULL DEFAULT 1,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

-- Client assertion ids already accepted (by a hash of their issuer and
-- jti), until the assertion expires: each is accepted once, on every
-- replica.
CREATE TABLE assertion_ids (
    key        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX assertion_ids_expires ON assertion_ids (expires_at);
