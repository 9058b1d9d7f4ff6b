-- Environments: many isolated authorization servers in one database. Every
-- per-environment table gains an env column that references environments
-- (deleting an environment deletes everything it holds), and the keys a
-- user chooses (client ids, API identifiers, trust policy names, assertion
-- ids) become unique per environment. What was here belongs to the default
-- environment.
--
-- A grant's reference to its API becomes NO ACTION (checked at the end of
-- the statement) instead of RESTRICT: deleting an environment deletes its
-- grants and APIs in one cascade, whose order is not defined. Deleting an
-- API that still has grants is still refused.
--
-- SQLite cannot change a table's keys in place, so each table is rebuilt
-- (the runner applies this with foreign keys off and checks them before
-- committing).

CREATE TABLE environments (
    name            TEXT PRIMARY KEY,
    display_name    TEXT NOT NULL DEFAULT '',
    signing_alg     TEXT NOT NULL DEFAULT '',
    key_rotation_ms BIGINT NOT NULL DEFAULT 0,
    key_work_at     BIGINT NOT NULL DEFAULT 0,
    version         BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX environments_key_work ON environments (key_work_at);
INSERT INTO environments (name, display_name, created_at, updated_at)
    VALUES ('default', 'Default', CAST(strftime('%s', 'now') AS INTEGER) * 1000000, CAST(strftime('%s', 'now') AS INTEGER) * 1000000);

CREATE TABLE new_apis (
    env                TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    id                 TEXT NOT NULL,
    identifier         TEXT NOT NULL,
    name               TEXT NOT NULL,
    scopes             TEXT NOT NULL,
    token_lifetime_ms  INTEGER NOT NULL DEFAULT 0,
    builtin            TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    version            INTEGER NOT NULL DEFAULT 1,
    discoverable       INTEGER NOT NULL DEFAULT 0,
    scope_descriptions TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (env, id),
    UNIQUE (env, identifier),
    UNIQUE (env, builtin)
);
INSERT INTO new_apis (id, identifier, name, scopes, token_lifetime_ms, builtin, created_at, updated_at, version, discoverable, scope_descriptions)
    SELECT id, identifier, name, scopes, token_lifetime_ms, builtin, created_at, updated_at, version, discoverable, scope_descriptions FROM apis;

CREATE TABLE new_clients (
    env                            TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    id                             TEXT NOT NULL,
    name                           TEXT NOT NULL,
    description                    TEXT NOT NULL DEFAULT '',
    default_audience               TEXT NOT NULL DEFAULT '',
    token_lifetime_ms              INTEGER NOT NULL DEFAULT 0,
    created_at                     INTEGER NOT NULL,
    updated_at                     INTEGER NOT NULL,
    disabled                       INTEGER NOT NULL DEFAULT 0,
    custom_claims                  TEXT NOT NULL DEFAULT '{}',
    metadata                       TEXT NOT NULL DEFAULT '{}',
    version                        INTEGER NOT NULL DEFAULT 1,
    refresh_tokens                 INTEGER NOT NULL DEFAULT 0,
    introspect                     TEXT NOT NULL DEFAULT '',
    tokens_revoked_before          INTEGER NOT NULL DEFAULT 0,
    auth_method                    TEXT NOT NULL DEFAULT 'client_secret_basic',
    jwks                           TEXT NOT NULL DEFAULT '',
    jwks_uri                       TEXT NOT NULL DEFAULT '',
    accept_secrets                 INTEGER NOT NULL DEFAULT 0,
    accept_token_endpoint_audience INTEGER NOT NULL DEFAULT 0,
    federation                     TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (env, id)
);
INSERT INTO new_clients (id, name, description, default_audience, token_lifetime_ms, created_at, updated_at, disabled, custom_claims, metadata, version,
        refresh_tokens, introspect, tokens_revoked_before, auth_method, jwks, jwks_uri, accept_secrets, accept_token_endpoint_audience, federation)
    SELECT id, name, description, default_audience, token_lifetime_ms, created_at, updated_at, disabled, custom_claims, metadata, version,
        refresh_tokens, introspect, tokens_revoked_before, auth_method, jwks, jwks_uri, accept_secrets, accept_token_endpoint_audience, federation FROM clients;

CREATE TABLE new_client_grants (
    env            TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    client_id      TEXT NOT NULL,
    api_identifier TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    PRIMARY KEY (env, client_id, api_identifier),
    FOREIGN KEY (env, client_id) REFERENCES clients (env, id) ON DELETE CASCADE,
    FOREIGN KEY (env, api_identifier) REFERENCES apis (env, identifier) ON UPDATE CASCADE
);
INSERT INTO new_client_grants (client_id, api_identifier, scopes) SELECT client_id, api_identifier, scopes FROM client_grants;

CREATE TABLE new_client_secrets (
    env          TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    id           TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    hint         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL DEFAULT 0,
    last_used_at INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (env, client_id) REFERENCES clients (env, id) ON DELETE CASCADE
);
INSERT INTO new_client_secrets (id, client_id, hash, hint, created_at, expires_at, last_used_at)
    SELECT id, client_id, hash, hint, created_at, expires_at, last_used_at FROM client_secrets;

CREATE TABLE new_client_tombstones (
    env        TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    deleted_at INTEGER NOT NULL,
    PRIMARY KEY (env, id)
);
INSERT INTO new_client_tombstones (id, deleted_at) SELECT id, deleted_at FROM client_tombstones;

CREATE TABLE new_signing_keys (
    env           TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL,
    state         TEXT NOT NULL,
    private_key   BLOB NOT NULL,
    public_jwk    TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    activated_at  INTEGER NOT NULL DEFAULT 0,
    retired_at    INTEGER NOT NULL DEFAULT 0,
    activate_at   INTEGER NOT NULL DEFAULT 0,
    remove_at     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO new_signing_keys (kid, alg, state, private_key, public_jwk, master_key_id, created_at, activated_at, retired_at, activate_at, remove_at)
    SELECT kid, alg, state, private_key, public_jwk, master_key_id, created_at, activated_at, retired_at, activate_at, remove_at FROM signing_keys;

CREATE TABLE new_refresh_tokens (
    env        TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    hash       TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    audience   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER NOT NULL DEFAULT 0,
    revoked_at INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (env, client_id) REFERENCES clients (env, id) ON DELETE CASCADE
);
INSERT INTO new_refresh_tokens (hash, family_id, client_id, audience, scopes, created_at, expires_at, used_at, revoked_at)
    SELECT hash, family_id, client_id, audience, scopes, created_at, expires_at, used_at, revoked_at FROM refresh_tokens;

CREATE TABLE new_revocations (
    env        TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    jti        TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL,
    PRIMARY KEY (env, jti)
);
INSERT INTO new_revocations (jti, client_id, expires_at, revoked_at) SELECT jti, client_id, expires_at, revoked_at FROM revocations;

CREATE TABLE new_trust_policies (
    env                   TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    kind                  TEXT NOT NULL,
    issuer                TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    jwks_uri              TEXT NOT NULL DEFAULT '',
    discovery             INTEGER NOT NULL DEFAULT 0,
    jwks                  TEXT NOT NULL DEFAULT '',
    algorithms            TEXT NOT NULL,
    audience              TEXT NOT NULL,
    max_token_age_ms      BIGINT NOT NULL,
    max_token_lifetime_ms BIGINT NOT NULL,
    single_use            INTEGER NOT NULL,
    require_jti           INTEGER NOT NULL,
    version               BIGINT NOT NULL DEFAULT 1,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    PRIMARY KEY (env, name),
    UNIQUE (env, issuer)
);
INSERT INTO new_trust_policies (name, kind, issuer, description, jwks_uri, discovery, jwks, algorithms, audience, max_token_age_ms, max_token_lifetime_ms,
        single_use, require_jti, version, created_at, updated_at)
    SELECT name, kind, issuer, description, jwks_uri, discovery, jwks, algorithms, audience, max_token_age_ms, max_token_lifetime_ms,
        single_use, require_jti, version, created_at, updated_at FROM trust_policies;

CREATE TABLE new_assertion_ids (
    env        TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (env, key)
);
INSERT INTO new_assertion_ids (key, expires_at) SELECT key, expires_at FROM assertion_ids;

CREATE TABLE new_token_usage (
    env       TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    hour      BIGINT NOT NULL,
    tokens    BIGINT NOT NULL,
    PRIMARY KEY (env, client_id, hour)
);
INSERT INTO new_token_usage (client_id, hour, tokens) SELECT client_id, hour, tokens FROM token_usage;

CREATE TABLE new_console_sessions (
    env          TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    id_hash      TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    viewing      TEXT NOT NULL DEFAULT ''
);
INSERT INTO new_console_sessions (id_hash, client_id, created_at, last_seen_at, expires_at)
    SELECT id_hash, client_id, created_at, last_seen_at, expires_at FROM console_sessions;

CREATE TABLE new_console_links (
    env        TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE,
    hash       TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    viewing    TEXT NOT NULL DEFAULT ''
);
INSERT INTO new_console_links (hash, client_id, expires_at) SELECT hash, client_id, expires_at FROM console_links;

DROP TABLE client_grants;
DROP TABLE client_secrets;
DROP TABLE refresh_tokens;
DROP TABLE client_tombstones;
DROP TABLE clients;
DROP TABLE apis;
DROP TABLE signing_keys;
DROP TABLE revocations;
DROP TABLE trust_policies;
DROP TABLE assertion_ids;
DROP TABLE token_usage;
DROP TABLE console_sessions;
DROP TABLE console_links;

ALTER TABLE new_apis RENAME TO apis;
ALTER TABLE new_clients RENAME TO clients;
ALTER TABLE new_client_grants RENAME TO client_grants;
ALTER TABLE new_client_secrets RENAME TO client_secrets;
ALTER TABLE new_client_tombstones RENAME TO client_tombstones;
ALTER TABLE new_signing_keys RENAME TO signing_keys;
ALTER TABLE new_refresh_tokens RENAME TO refresh_tokens;
ALTER TABLE new_revocations RENAME TO revocations;
ALTER TABLE new_trust_policies RENAME TO trust_policies;
ALTER TABLE new_assertion_ids RENAME TO assertion_ids;
ALTER TABLE new_token_usage RENAME TO token_usage;
ALTER TABLE new_console_sessions RENAME TO console_sessions;
ALTER TABLE new_console_links RENAME TO console_links;

CREATE INDEX clients_name ON clients (env, name);
CREATE INDEX clients_auth_method ON clients (env, auth_method);
CREATE INDEX client_grants_api ON client_grants (env, api_identifier);
CREATE INDEX client_secrets_client ON client_secrets (env, client_id);
CREATE INDEX client_secrets_expires ON client_secrets (env, expires_at);
CREATE INDEX signing_keys_env ON signing_keys (env);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (env, state) WHERE state = 'active';
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_client ON refresh_tokens (env, client_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
CREATE INDEX revocations_expires ON revocations (expires_at);
CREATE INDEX assertion_ids_expires ON assertion_ids (expires_at);
CREATE INDEX token_usage_hour ON token_usage (env, hour);
CREATE INDEX token_usage_expire ON token_usage (hour);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
CREATE INDEX console_links_expires ON console_links (expires_at);
CREATE INDEX console_sessions_env ON console_sessions (env);
CREATE INDEX console_links_env ON console_links (env);

-- The bootstrap admin client becomes a deployment admin: the default
-- environment's admin API gains the scope "deployment" (acting in every
-- environment and managing environments), and the bootstrap client is
-- granted it.
UPDATE apis SET scopes = scopes || ' deployment' WHERE env = 'default' AND builtin = 'admin';
UPDATE client_grants SET scopes = scopes || ' deployment'
    WHERE env = 'default'
      AND client_id IN (SELECT v FROM meta WHERE k = 'bootstrap_admin_client')
      AND api_identifier IN (SELECT identifier FROM apis WHERE env = 'default' AND builtin = 'admin');
