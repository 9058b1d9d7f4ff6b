-- Per-client issuance quotas. A client's limits per minute, hour and day:
-- 0 is the server's default, -1 unlimited, n > 0 at most n tokens in each
-- fixed UTC window. quota_counters holds the windows' counts, shared by
-- every replica: one row per client, one start and count per window
-- (starts in Unix microseconds), and the last reservation's grant.
ALTER TABLE clients ADD COLUMN quota_per_minute BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN quota_per_hour BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN quota_per_day BIGINT NOT NULL DEFAULT 0;

CREATE TABLE quota_counters (
    env          TEXT NOT NULL REFERENCES environments (name) ON DELETE CASCADE,
    client_id    TEXT NOT NULL,
    minute_start BIGINT NOT NULL,
    minute_used  BIGINT NOT NULL,
    hour_start   BIGINT NOT NULL,
    hour_used    BIGINT NOT NULL,
    day_start    BIGINT NOT NULL,
    day_used     BIGINT NOT NULL,
    granted      BIGINT NOT NULL,
    PRIMARY KEY (env, client_id),
    FOREIGN KEY (env, client_id) REFERENCES clients (env, id) ON DELETE CASCADE
);
