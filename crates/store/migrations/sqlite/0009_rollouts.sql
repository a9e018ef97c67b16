-- Each environment's latest rollout as the Manager driving it last wrote it (JSON), so any
-- Manager on the database — and a restarted one — can show it.
CREATE TABLE rollouts (
    env        TEXT   NOT NULL PRIMARY KEY,
    status     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
