-- An API whose scopes the discovery documents list in scopes_supported
-- (off by default: a scope name can say more than an operator wants said).
ALTER TABLE apis ADD COLUMN discoverable INTEGER NOT NULL DEFAULT 0;
