-- Token reuse (off at 0): while the last token issued to the client for
-- the same audience and scopes has more than this fraction of its
-- lifetime left, the token endpoint returns it again.
ALTER TABLE clients ADD COLUMN token_reuse REAL NOT NULL DEFAULT 0;

-- Access tokens issued per client per minute (the start of the minute,
-- Unix microseconds), added to by every replica and kept for about two
-- hours: the report of clients that never cache tokens reads them.
CREATE TABLE token_usage_minutes (
    env       TEXT NOT NULL REFERENCES environments (name) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    minute    BIGINT NOT NULL,
    tokens    BIGINT NOT NULL,
    PRIMARY KEY (env, client_id, minute)
);
CREATE INDEX token_usage_minutes_minute ON token_usage_minutes (minute);
