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
    VALUES ('default', 'Default', (extract(epoch FROM now()) * 1000000)::bigint, (extract(epoch FROM now()) * 1000000)::bigint);

-- The references between per-environment tables become composite.
ALTER TABLE client_grants DROP CONSTRAINT client_grants_client_id_fkey;
ALTER TABLE client_grants DROP CONSTRAINT client_grants_api_identifier_fkey;
ALTER TABLE client_secrets DROP CONSTRAINT client_secrets_client_id_fkey;
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_client_id_fkey;

ALTER TABLE apis ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE apis DROP CONSTRAINT apis_pkey, ADD PRIMARY KEY (env, id);
ALTER TABLE apis DROP CONSTRAINT apis_identifier_key, ADD CONSTRAINT apis_identifier_key UNIQUE (env, identifier);
ALTER TABLE apis DROP CONSTRAINT apis_builtin_key, ADD CONSTRAINT apis_builtin_key UNIQUE (env, builtin);

ALTER TABLE clients ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE clients DROP CONSTRAINT clients_pkey, ADD PRIMARY KEY (env, id);
DROP INDEX clients_name;
CREATE INDEX clients_name ON clients (env, name);
DROP INDEX clients_auth_method;
CREATE INDEX clients_auth_method ON clients (env, auth_method);

ALTER TABLE client_grants ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE client_grants DROP CONSTRAINT client_grants_pkey, ADD PRIMARY KEY (env, client_id, api_identifier);
ALTER TABLE client_grants ADD FOREIGN KEY (env, client_id) REFERENCES clients (env, id) ON DELETE CASCADE;
ALTER TABLE client_grants ADD FOREIGN KEY (env, api_identifier) REFERENCES apis (env, identifier) ON UPDATE CASCADE;
DROP INDEX client_grants_api;
CREATE INDEX client_grants_api ON client_grants (env, api_identifier);

ALTER TABLE client_secrets ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE client_secrets ADD FOREIGN KEY (env, client_id) REFERENCES clients (env, id) ON DELETE CASCADE;
DROP INDEX client_secrets_client;
CREATE INDEX client_secrets_client ON client_secrets (env, client_id);
DROP INDEX client_secrets_expires;
CREATE INDEX client_secrets_expires ON client_secrets (env, expires_at);

ALTER TABLE client_tombstones ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE client_tombstones DROP CONSTRAINT client_tombstones_pkey, ADD PRIMARY KEY (env, id);

ALTER TABLE signing_keys ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
CREATE INDEX signing_keys_env ON signing_keys (env);
DROP INDEX signing_keys_one_active;
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (env, state) WHERE state = 'active';

ALTER TABLE refresh_tokens ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE refresh_tokens ADD FOREIGN KEY (env, client_id) REFERENCES clients (env, id) ON DELETE CASCADE;
DROP INDEX refresh_tokens_client;
CREATE INDEX refresh_tokens_client ON refresh_tokens (env, client_id);

ALTER TABLE revocations ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE revocations DROP CONSTRAINT revocations_pkey, ADD PRIMARY KEY (env, jti);

ALTER TABLE trust_policies ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE trust_policies DROP CONSTRAINT trust_policies_pkey, ADD PRIMARY KEY (env, name);
ALTER TABLE trust_policies DROP CONSTRAINT trust_policies_issuer_key, ADD CONSTRAINT trust_policies_issuer_key UNIQUE (env, issuer);

ALTER TABLE assertion_ids ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE assertion_ids DROP CONSTRAINT assertion_ids_pkey, ADD PRIMARY KEY (env, key);

ALTER TABLE token_usage ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE token_usage DROP CONSTRAINT token_usage_pkey, ADD PRIMARY KEY (env, client_id, hour);
CREATE INDEX token_usage_env_hour ON token_usage (env, hour);

ALTER TABLE console_sessions ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE console_sessions ADD COLUMN viewing TEXT NOT NULL DEFAULT '';
CREATE INDEX console_sessions_env ON console_sessions (env);

ALTER TABLE console_links ADD COLUMN env TEXT NOT NULL DEFAULT 'default' REFERENCES environments (name) ON DELETE CASCADE;
ALTER TABLE console_links ADD COLUMN viewing TEXT NOT NULL DEFAULT '';
CREATE INDEX console_links_env ON console_links (env);
CREATE INDEX console_links_expires ON console_links (expires_at);

-- The bootstrap admin client becomes a deployment admin: the default
-- environment's admin API gains the scope "deployment" (acting in every
-- environment and managing environments), and the bootstrap client is
-- granted it.
UPDATE apis SET scopes = scopes || ' deployment' WHERE env = 'default' AND builtin = 'admin';
UPDATE client_grants SET scopes = scopes || ' deployment'
    WHERE env = 'default'
      AND client_id IN (SELECT v FROM meta WHERE k = 'bootstrap_admin_client')
      AND api_identifier IN (SELECT identifier FROM apis WHERE env = 'default' AND builtin = 'admin');
