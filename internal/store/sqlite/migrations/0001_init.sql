-- Times are unix microseconds; 0 means unset. Scopes are space-delimited
-- (RFC 6749 §3.3 scope tokens cannot contain spaces).
CREATE TABLE apis (
    id                TEXT PRIMARY KEY,
    identifier        TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    scopes            TEXT NOT NULL,
    token_lifetime_ms INTEGER NOT NULL DEFAULT 0,
    builtin           TEXT UNIQUE,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE clients (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    default_audience  TEXT NOT NULL DEFAULT '',
    token_lifetime_ms INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE client_grants (
    client_id      TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    api_identifier TEXT NOT NULL REFERENCES apis (identifier) ON UPDATE CASCADE ON DELETE RESTRICT,
    scopes         TEXT NOT NULL,
    PRIMARY KEY (client_id, api_identifier)
);
CREATE INDEX client_grants_api ON client_grants (api_identifier);

CREATE TABLE client_secrets (
    id           TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    hash         TEXT NOT NULL,
    hint         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL DEFAULT 0,
    last_used_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX client_secrets_client ON client_secrets (client_id);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL,
    state         TEXT NOT NULL,
    private_key   BLOB NOT NULL,
    public_jwk    TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    activated_at  INTEGER NOT NULL DEFAULT 0,
    retired_at    INTEGER NOT NULL DEFAULT 0
);
-- At most one key signs at a time.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

CREATE TABLE meta (
    k TEXT PRIMARY KEY,
    v TEXT NOT NULL
);
