-- History retention (as SQLite's 0008): the oldest revision of an environment whose state
-- can still be rebuilt from the stored history; 0 when nothing was ever pruned.
-- (Migration 0002 is another change's.)
ALTER TABLE environments ADD COLUMN history_from BIGINT NOT NULL DEFAULT 0;
