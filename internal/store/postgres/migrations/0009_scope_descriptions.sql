-- Human-readable descriptions of an API's scopes: a JSON object from scope
-- to description, holding only scopes the API defines.
ALTER TABLE apis ADD COLUMN scope_descriptions TEXT NOT NULL DEFAULT '{}';
