-- The store's identity: a random id created with the database (or, for a database made
-- before this migration, when it is upgraded). It is carried with every revision the
-- Manager sends, so a Worker can tell "the same history, further on" from "another
-- history with the same revision numbers" (a restored backup). A restore gives the store a
-- new id (see `SqliteStore::open`: the database is checked against the witness file kept
-- beside it). Exactly one row.
CREATE TABLE store_identity (
    one        BIGINT NOT NULL PRIMARY KEY CHECK (one = 1),
    id         TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO store_identity (one, id, created_at)
VALUES (1, 'st_' || lower(hex(randomblob(16))),
        CAST((julianday('now') - 2440587.5) * 86400000 AS BIGINT));

-- What a Worker says about how it came to serve a revision (e.g. that it resynchronised
-- with a full pull because the store's id changed). NULL for a plain ACK or NACK.
ALTER TABLE worker_reports ADD COLUMN detail TEXT;
