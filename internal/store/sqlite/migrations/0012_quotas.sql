-- Per-client issuance quotas. A client's limits per minute, hour and day:
-- 0 is the server's default, -1 unlimited, n > 0 at most n tokens in each
-- fixed UTC window. quota_counters holds the windows' counts, shared by
-- every replica: one row per client, one start and count per window
-- (starts in Unix microseconds), and the last reservation's grant.
ALTER TABLE clients ADD COLUMN quota_per_minute INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN quota_per_hour INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN quota_per_day INTEGER NOT NULL DEFAULT 0;

CREATE TABLE quota_counters (
    env          TEXT NOT NULL REFERENCES environments (name) ON DELETE CASCADE,
    client_id    TEXT NOT NULL,
    minute_start INTEGER NOT NULL,
    minute_used  INTEGER NOT NULL,
    hour_start   INTEGER NOT NULL,
    hour_used    INTEGER NOT NULL,
    day_start    INTEGER NOT NULL,
    day_used     INTEGER NOT NULL,
    granted      INTEGER NOT NULL,
    PRIMARY KEY (env, client_id),
    FOREIGN KEY (env, client_id) REFERENCES clients (env, id) ON DELETE CASCADE
);
