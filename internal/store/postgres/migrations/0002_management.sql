-- Client lifecycle and optimistic concurrency.
ALTER TABLE clients ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE clients ADD COLUMN custom_claims TEXT NOT NULL DEFAULT '{}';
ALTER TABLE clients ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE clients ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE apis ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX clients_name ON clients (name);

-- Ids of deleted clients, so that an id is never used twice.
CREATE TABLE client_tombstones (
    id         TEXT PRIMARY KEY,
    deleted_at BIGINT NOT NULL
);
