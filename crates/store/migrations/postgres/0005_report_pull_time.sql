-- When the Worker had read the revision from the Manager, before compiling it (unix
-- milliseconds, Worker clock): the "pull" of a revision's timeline. NULL for Workers that do
-- not say (and for every report made before this migration).
ALTER TABLE worker_reports ADD COLUMN pulled_at BIGINT;
