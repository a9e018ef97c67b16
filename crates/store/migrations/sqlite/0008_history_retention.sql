-- History retention: the oldest revision of an environment whose state can still be rebuilt
-- from the stored history. A pruning (`Store::prune_history`) deletes the revisions before
-- it, the entity versions no retained revision needs and old tombstones, and moves this
-- forward in the same transaction. 0: nothing was ever pruned (every revision is kept).
-- (Migration 0007 is another change's.)
ALTER TABLE environments ADD COLUMN history_from BIGINT NOT NULL DEFAULT 0;
