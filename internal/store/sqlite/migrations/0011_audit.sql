-- The audit trail: management changes, token issuances and failed client
-- authentications, per environment. The env column is a plain column, not
-- a reference to environments: an audit trail its subject can erase is no
-- audit trail, so deleting an environment (itself recorded, in the default
-- environment) keeps the record of what was done in it until the
-- retention (--audit-retention) deletes it with every other old event.
--
-- The key is (env, id): listings read one environment's events in id
-- order. id sorts as the events' times do (Unix microseconds first, in fixed-width
-- hex), so listings page newest first by id alone. diff is a JSON object of
-- allow-listed fields only: never a secret, a hash, a token or a key.
-- WITHOUT ROWID: the key is the table, one B-tree less to write per event.
CREATE TABLE audit_events (
    id          TEXT NOT NULL,
    time        BIGINT NOT NULL,
    env         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    source_ip   TEXT NOT NULL DEFAULT '',
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL DEFAULT '',
    target_id   TEXT NOT NULL DEFAULT '',
    diff        TEXT NOT NULL DEFAULT '',
    client_id   TEXT NOT NULL DEFAULT '',
    surface     TEXT NOT NULL DEFAULT '',
    grant_type  TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (env, id)
) WITHOUT ROWID;
CREATE INDEX audit_events_client ON audit_events (env, client_id, id);
CREATE INDEX audit_events_action ON audit_events (env, action, id);
CREATE INDEX audit_events_time ON audit_events (time);
