-- Signing key lifecycle: a next key activates at activate_at; a retired key
-- is removed at remove_at (after the last token it signed has expired).
ALTER TABLE signing_keys ADD COLUMN activate_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE signing_keys ADD COLUMN remove_at INTEGER NOT NULL DEFAULT 0;
