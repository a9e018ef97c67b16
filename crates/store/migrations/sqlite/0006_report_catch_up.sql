-- A Worker that jumped several revisions at once ACKs each one it skipped with the revision
-- it swapped in instead (whose state contains the skipped one's changes). NULL: the Worker
-- swapped this revision in on its own (and for every report made before this migration).
ALTER TABLE worker_reports ADD COLUMN caught_up_to BIGINT;
