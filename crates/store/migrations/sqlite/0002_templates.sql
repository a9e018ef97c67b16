-- The manifest as written, with `${NAME}` variables unresolved (NULL when it uses none),
-- kept so a promotion can resolve it with the target environment's variables; and the
-- SHA-256 of its clear text (a credential's template is stored sealed), so an apply that
-- changes only the template (introducing a variable that resolves to the same value) is
-- still recorded.
ALTER TABLE entities ADD COLUMN template TEXT;
ALTER TABLE entities ADD COLUMN template_digest TEXT;
ALTER TABLE entity_history ADD COLUMN template TEXT;
ALTER TABLE entity_history ADD COLUMN template_digest TEXT;
