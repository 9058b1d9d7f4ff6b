-- Opt-in refresh tokens (off by default: RFC 6749 §4.4.3).
ALTER TABLE clients ADD COLUMN refresh_tokens INTEGER NOT NULL DEFAULT 0;

-- Refresh tokens, stored only as a keyed hash. Tokens issued from one
-- another form a family that shares the audience, scopes and absolute expiry.
CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    audience   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER NOT NULL DEFAULT 0,
    revoked_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_client ON refresh_tokens (client_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
