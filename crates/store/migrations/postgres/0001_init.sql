-- Switchyard store schema (PostgreSQL flavour): the same tables and columns as the SQLite
-- migrations 0001-0006 reach, in one step (a PostgreSQL store starts at this schema).
-- The conventions that let src/sql.rs serve both: timestamps are BIGINT unix
-- milliseconds, JSON is TEXT, booleans are BIGINT 0/1, versions and revisions are BIGINT.

CREATE TABLE environments (
    name       TEXT   NOT NULL PRIMARY KEY,
    revision   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE entities (
    env             TEXT   NOT NULL REFERENCES environments (name),
    kind            TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    version         BIGINT NOT NULL,
    revision        BIGINT NOT NULL,
    deleted         BIGINT NOT NULL DEFAULT 0,
    digest          TEXT   NOT NULL,
    manifest        TEXT   NOT NULL,
    labels          TEXT   NOT NULL DEFAULT '{}',
    template        TEXT,
    template_digest TEXT,
    PRIMARY KEY (env, kind, name)
);
CREATE INDEX entities_env_revision ON entities (env, revision);

CREATE TABLE entity_history (
    env             TEXT   NOT NULL REFERENCES environments (name),
    kind            TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    version         BIGINT NOT NULL,
    revision        BIGINT NOT NULL,
    deleted         BIGINT NOT NULL DEFAULT 0,
    digest          TEXT   NOT NULL,
    manifest        TEXT   NOT NULL,
    labels          TEXT   NOT NULL DEFAULT '{}',
    template        TEXT,
    template_digest TEXT,
    PRIMARY KEY (env, kind, name, version)
);
CREATE INDEX entity_history_env_revision ON entity_history (env, revision);

CREATE TABLE revisions (
    env          TEXT   NOT NULL REFERENCES environments (name),
    revision     BIGINT NOT NULL,
    committed_at BIGINT NOT NULL,
    actor        TEXT   NOT NULL,
    operation    TEXT   NOT NULL,
    changes      TEXT   NOT NULL,
    PRIMARY KEY (env, revision)
);

-- Append-only; ids only grow.
CREATE TABLE audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    env         TEXT,
    entity_kind TEXT   NOT NULL,
    entity_name TEXT   NOT NULL,
    old_version BIGINT,
    new_version BIGINT,
    digest      TEXT,
    operation   TEXT   NOT NULL,
    revision    BIGINT,
    detail      TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_env ON audit (env, id);
CREATE INDEX audit_entity ON audit (entity_kind, entity_name, id);
CREATE INDEX audit_actor ON audit (actor, id);

CREATE TABLE tokens (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    hash       TEXT   NOT NULL UNIQUE,
    role       TEXT   NOT NULL,
    envs       TEXT   NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    revoked    BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE worker_reports (
    env          TEXT   NOT NULL REFERENCES environments (name),
    worker_id    TEXT   NOT NULL,
    revision     BIGINT NOT NULL,
    status       TEXT   NOT NULL,
    error        TEXT,
    applied_at   BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    address      TEXT,
    detail       TEXT,
    caught_up_to BIGINT,
    PRIMARY KEY (env, worker_id, revision)
);
CREATE INDEX worker_reports_env_revision ON worker_reports (env, revision);

CREATE TABLE store_identity (
    one        BIGINT NOT NULL PRIMARY KEY CHECK (one = 1),
    id         TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO store_identity (one, id, created_at)
VALUES (1, 'st_' || md5(random()::text || clock_timestamp()::text),
        (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
