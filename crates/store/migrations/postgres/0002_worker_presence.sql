-- Worker presence, stored so that every Manager on the database (and a restarted one)
-- gives the same answers about who is connected and who was expected to pick up each
-- revision.

-- One row per (Worker, Manager) event stream, written by the Manager that holds it and
-- refreshed by it periodically (`last_seen`): a row not refreshed for the presence TTL is a
-- Manager that went away, and no longer counts.
CREATE TABLE worker_connections (
    env          TEXT    NOT NULL,
    worker_id    TEXT    NOT NULL,
    manager      TEXT    NOT NULL,
    session      TEXT    NOT NULL,
    address      TEXT,
    version      TEXT,
    connected_at BIGINT  NOT NULL,
    last_seen    BIGINT  NOT NULL,
    PRIMARY KEY (env, worker_id, manager)
);

-- The Workers connected (to any Manager) when a revision was committed: the denominator
-- of its audit completeness.
CREATE TABLE revision_workers (
    env       TEXT    NOT NULL,
    revision  BIGINT  NOT NULL,
    worker_id TEXT    NOT NULL,
    PRIMARY KEY (env, revision, worker_id)
);

-- How many Workers were expected (NULL: committed before presence was stored, unknown),
-- and when the last of them ACKed (NULL: not yet).
ALTER TABLE revisions ADD COLUMN expected_workers BIGINT;
ALTER TABLE revisions ADD COLUMN completed_at BIGINT;
