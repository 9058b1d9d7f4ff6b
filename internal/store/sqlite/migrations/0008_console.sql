-- Access tokens issued per client per hour (the start of the hour, Unix
-- microseconds), added to by every replica; the console's overview reads
-- them.
CREATE TABLE token_usage (
    client_id TEXT NOT NULL,
    hour      BIGINT NOT NULL,
    tokens    BIGINT NOT NULL,
    PRIMARY KEY (client_id, hour)
);
CREATE INDEX token_usage_hour ON token_usage (hour);

-- Signed-in sessions of the admin console, by a keyed hash of the id in
-- the cookie (never the id itself), shared by every replica.
CREATE TABLE console_sessions (
    id_hash      TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- One-time sign-in links of the console, by a keyed hash of their token.
CREATE TABLE console_links (
    hash       TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The console's overview lists clients whose secrets are about to expire.
CREATE INDEX client_secrets_expires ON client_secrets (expires_at);
