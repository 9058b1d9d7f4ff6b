-- Sender-constrained tokens (RFC 8705, RFC 9449): the subject a
-- tls_client_auth client's certificate must name (kind: dn, dns, uri, ip,
-- email; '' for none), and whether the client's tokens must be bound to
-- its certificate or to a DPoP key.
ALTER TABLE clients ADD COLUMN tls_subject_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN tls_subject TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN cert_bound_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN dpop_bound_tokens INTEGER NOT NULL DEFAULT 0;
-- A refresh token family begun with a DPoP-bound access token: each
-- refresh must carry a DPoP proof.
ALTER TABLE refresh_tokens ADD COLUMN dpop INTEGER NOT NULL DEFAULT 0;
