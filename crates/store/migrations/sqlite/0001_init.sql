-- Switchyard store schema (SQLite flavour).
--
-- Portable conventions, shared with a future PostgreSQL schema so the queries in
-- src/sql.rs work on both: timestamps are BIGINT unix milliseconds, JSON is TEXT,
-- booleans are BIGINT 0/1, versions and revisions are BIGINT.
-- Only the DDL is backend-specific (e.g. the audit id below).

CREATE TABLE environments (
    name       TEXT   NOT NULL PRIMARY KEY,
    revision   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- The latest version of each entity of an environment; deletions stay as tombstones
-- (deleted = 1) so that versions keep counting and changes_since can report them.
CREATE TABLE entities (
    env      TEXT   NOT NULL REFERENCES environments (name),
    kind     TEXT   NOT NULL,
    name     TEXT   NOT NULL,
    version  BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    deleted  BIGINT NOT NULL DEFAULT 0,
    digest   TEXT   NOT NULL,
    manifest TEXT   NOT NULL,
    labels   TEXT   NOT NULL DEFAULT '{}',
    PRIMARY KEY (env, kind, name)
);
CREATE INDEX entities_env_revision ON entities (env, revision);

-- Every version of every entity, tombstones included.
CREATE TABLE entity_history (
    env      TEXT   NOT NULL REFERENCES environments (name),
    kind     TEXT   NOT NULL,
    name     TEXT   NOT NULL,
    version  BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    deleted  BIGINT NOT NULL DEFAULT 0,
    digest   TEXT   NOT NULL,
    manifest TEXT   NOT NULL,
    labels   TEXT   NOT NULL DEFAULT '{}',
    PRIMARY KEY (env, kind, name, version)
);
CREATE INDEX entity_history_env_revision ON entity_history (env, revision);

CREATE TABLE revisions (
    env          TEXT   NOT NULL REFERENCES environments (name),
    revision     BIGINT NOT NULL,
    committed_at BIGINT NOT NULL,
    actor        TEXT   NOT NULL,
    operation    TEXT   NOT NULL,
    -- JSON array of AppliedChange
    changes      TEXT   NOT NULL,
    PRIMARY KEY (env, revision)
);

-- Append-only. No foreign key on env: audit records outlive whatever they describe.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
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

-- Only the SHA-256 of a token's secret is stored, never the secret.
CREATE TABLE tokens (
    id         TEXT   NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    hash       TEXT   NOT NULL UNIQUE,
    role       TEXT   NOT NULL,
    -- JSON array of environment names; [] = all
    envs       TEXT   NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    revoked    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE worker_reports (
    env         TEXT   NOT NULL REFERENCES environments (name),
    worker_id   TEXT   NOT NULL,
    revision    BIGINT NOT NULL,
    status      TEXT   NOT NULL,
    error       TEXT,
    applied_at  BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    address     TEXT,
    PRIMARY KEY (env, worker_id, revision)
);
CREATE INDEX worker_reports_env_revision ON worker_reports (env, revision);
