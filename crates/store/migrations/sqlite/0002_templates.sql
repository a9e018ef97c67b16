-- The manifest as written, with `${NAME}` variables unresolved (NULL when it uses none),
-- kept so a promotion can resolve it with the target environment's variables.
ALTER TABLE entities ADD COLUMN template TEXT;
ALTER TABLE entity_history ADD COLUMN template TEXT;
