-- Introspection permission: the audiences whose tokens a client may
-- introspect (space-separated), "*" for all.
ALTER TABLE clients ADD COLUMN introspect TEXT NOT NULL DEFAULT '';
-- Tokens of a client issued before this instant are revoked (0: none).
ALTER TABLE clients ADD COLUMN tokens_revoked_before INTEGER NOT NULL DEFAULT 0;

-- Revoked access tokens, by jti (never the token), until they expire.
CREATE TABLE revocations (
    jti        TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL
);
CREATE INDEX revocations_expires ON revocations (expires_at);
