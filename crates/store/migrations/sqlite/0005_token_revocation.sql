-- When a token was revoked (unix milliseconds; NULL while it is not), for `token list`.
-- Tokens revoked before this migration keep NULL: their revocation time is not known.
ALTER TABLE tokens ADD COLUMN revoked_at BIGINT;
