-- Canary revisions (`apply --canary`): one row per canary, written in the transaction that
-- commits its revision, so a revision is never live at 100% for want of its canary row.
-- At most one per environment is `running`; the commit that rolls it back (or aborts it)
-- ends it in the same transaction.
CREATE TABLE canaries (
    env               TEXT   NOT NULL,
    revision          BIGINT NOT NULL,
    stable_revision   BIGINT NOT NULL,
    spec              TEXT   NOT NULL,
    step              BIGINT NOT NULL,
    state             TEXT   NOT NULL,
    actor             TEXT   NOT NULL,
    started_at        BIGINT NOT NULL,
    step_started_at   BIGINT NOT NULL,
    ended_at          BIGINT,
    reason            TEXT,
    rollback_revision BIGINT,
    PRIMARY KEY (env, revision)
);
