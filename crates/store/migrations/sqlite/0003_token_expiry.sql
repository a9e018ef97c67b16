-- Tokens may expire: unix milliseconds after which the Manager refuses the token
-- (401 `token_expired`). NULL = never.
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
