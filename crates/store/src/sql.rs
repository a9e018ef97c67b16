//! The store's queries, written once for every backend.
//!
//! Portable SQL only: `$n` placeholders (SQLite accepts them, a placeholder may repeat),
//! BIGINT millis, JSON as TEXT, booleans as BIGINT 0/1, `INSERT … ON CONFLICT … DO UPDATE`
//! (SQLite ≥ 3.24 and PostgreSQL), no backend-specific functions. SQLite and PostgreSQL
//! run these very strings (`database.rs`); the one exception is named as such.

// ---- environments ----

pub(crate) const ENV_GET: &str =
    "SELECT name, revision, created_at, history_from FROM environments WHERE name = $1";

pub(crate) const ENV_LIST: &str =
    "SELECT name, revision, created_at, history_from FROM environments ORDER BY name";

/// The current revision and the oldest one whose state can be rebuilt.
pub(crate) const ENV_HISTORY: &str =
    "SELECT revision, history_from FROM environments WHERE name = $1";

/// [`ENV_HISTORY`], the row locked until the transaction ends (PostgreSQL; SQLite's write
/// transactions hold the whole database).
pub(crate) const ENV_HISTORY_LOCKED: &str =
    "SELECT revision, history_from FROM environments WHERE name = $1 FOR UPDATE";

pub(crate) const ENV_SET_HISTORY_FROM: &str =
    "UPDATE environments SET history_from = $2 WHERE name = $1";

pub(crate) const ENV_INSERT: &str =
    "INSERT INTO environments (name, revision, created_at) VALUES ($1, 0, $2)";

pub(crate) const ENV_SET_REVISION: &str =
    "UPDATE environments SET revision = $2 WHERE name = $1 AND revision = $3";

// ---- entities ----

/// The stored state of one entity (live or tombstone), for planning a change.
pub(crate) const ENTITY_STATE: &str = "SELECT version, deleted, digest, template_digest FROM entities \
     WHERE env = $1 AND kind = $2 AND name = $3";

pub(crate) const ENTITY_UPSERT: &str = "INSERT INTO entities \
     (env, kind, name, version, revision, deleted, digest, manifest, labels, template, \
     template_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (env, kind, name) DO UPDATE SET \
     version = excluded.version, revision = excluded.revision, deleted = excluded.deleted, \
     digest = excluded.digest, manifest = excluded.manifest, labels = excluded.labels, \
     template = excluded.template, template_digest = excluded.template_digest";

pub(crate) const HISTORY_INSERT: &str = "INSERT INTO entity_history \
     (env, kind, name, version, revision, deleted, digest, manifest, labels, template, \
     template_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Live entities now.
pub(crate) const ENTITIES_LIVE: &str = "SELECT kind, name, version, revision, deleted, digest, \
     manifest, labels, template, template_digest FROM entities WHERE env = $1 AND deleted = 0 ORDER BY kind, name";

/// Live entities as they were at revision `$2`: per entity, the latest history row with
/// revision <= $2, unless that row is a tombstone.
pub(crate) const ENTITIES_AT: &str = "SELECT h.kind, h.name, h.version, h.revision, \
     h.deleted, h.digest, h.manifest, h.labels, h.template, h.template_digest \
     FROM entity_history h \
     JOIN (SELECT kind, name, MAX(version) AS version FROM entity_history \
           WHERE env = $1 AND revision <= $2 GROUP BY kind, name) m \
       ON h.kind = m.kind AND h.name = m.name AND h.version = m.version \
     WHERE h.env = $1 AND h.deleted = 0 \
     ORDER BY h.kind, h.name";

/// The latest version of every entity changed after revision `$2`, tombstones included.
/// The `entities` row is by construction the latest version of each entity.
pub(crate) const ENTITIES_CHANGED_SINCE: &str = "SELECT kind, name, version, revision, \
     deleted, digest, manifest, labels, template, template_digest FROM entities \
     WHERE env = $1 AND revision > $2 ORDER BY kind, name";

// ---- revisions ----

pub(crate) const REVISION_INSERT: &str = "INSERT INTO revisions \
     (env, revision, committed_at, actor, operation, changes, expected_workers) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const REVISION_GET: &str = "SELECT env, revision, committed_at, actor, operation, \
     changes FROM revisions WHERE env = $1 AND revision = $2";

pub(crate) const REVISION_LIST: &str = "SELECT env, revision, committed_at, actor, operation, \
     changes FROM revisions WHERE env = $1 ORDER BY revision DESC LIMIT $2";

/// The oldest revision committed at or after `$2` (unix milliseconds); NULL when none was.
pub(crate) const REVISION_OLDEST_SINCE: &str =
    "SELECT MIN(revision) FROM revisions WHERE env = $1 AND committed_at >= $2";

// ---- history retention ----

/// What a pruning deletes, in this order, each statement bound to the environment (`$1`)
/// and the oldest revision kept (`$2`, the new `history_from`):
pub(crate) const HISTORY_PRUNE: [(&str, &str); 6] = [
    // the revision records before it, and the Workers each expected;
    (
        "DELETE FROM revisions WHERE env = $1 AND revision < $2",
        "prune history: revisions",
    ),
    (
        "DELETE FROM revision_workers WHERE env = $1 AND revision < $2",
        "prune history: expected Workers",
    ),
    // every entity version superseded at it (a later version at or before it exists): what
    // is left of each entity at or before it is its state at that revision;
    (
        "DELETE FROM entity_history WHERE env = $1 AND revision < $2 AND EXISTS ( \
           SELECT 1 FROM entity_history n \
           WHERE n.env = entity_history.env AND n.kind = entity_history.kind \
             AND n.name = entity_history.name AND n.version > entity_history.version \
             AND n.revision <= $2)",
        "prune history: superseded entity versions",
    ),
    // tombstones before it (after the statement above, each is the last of its entity at
    // or before it: the entity is absent at that revision either way);
    (
        "DELETE FROM entity_history WHERE env = $1 AND revision < $2 AND deleted = 1",
        "prune history: tombstones",
    ),
    // the entity rows that are such a tombstone (never re-created: nothing of them is left);
    (
        "DELETE FROM entities WHERE env = $1 AND revision < $2 AND deleted = 1",
        "prune history: deleted entities",
    ),
    // Worker reports on revisions before it, unless it is the Worker's latest report or
    // its latest ACK (what the Workers view shows): i.e. those with a later ACK.
    (
        "DELETE FROM worker_reports WHERE env = $1 AND revision < $2 AND EXISTS ( \
           SELECT 1 FROM worker_reports o \
           WHERE o.env = worker_reports.env AND o.worker_id = worker_reports.worker_id \
             AND o.revision > worker_reports.revision AND o.status = 'ack')",
        "prune history: Worker reports",
    ),
];

/// Audit records written before `$1` (unix milliseconds).
pub(crate) const AUDIT_PRUNE: &str = "DELETE FROM audit WHERE at < $1";

// ---- audit ----

pub(crate) const AUDIT_INSERT: &str = "INSERT INTO audit \
     (at, actor, env, entity_kind, entity_name, old_version, new_version, digest, operation, \
     revision, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// The start of an audit query; filters are appended with `AND …` by a query builder.
pub(crate) const AUDIT_SELECT: &str = "SELECT id, at, actor, env, entity_kind, entity_name, \
     old_version, new_version, digest, operation, revision, detail FROM audit WHERE 1 = 1";

// ---- worker reports ----

pub(crate) const REPORT_UPSERT: &str = "INSERT INTO worker_reports \
     (env, worker_id, revision, status, error, applied_at, received_at, address, detail, \
      caught_up_to, pulled_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (env, worker_id, revision) DO UPDATE SET \
     status = excluded.status, error = excluded.error, applied_at = excluded.applied_at, \
     received_at = excluded.received_at, address = excluded.address, detail = excluded.detail, \
     caught_up_to = excluded.caught_up_to, pulled_at = excluded.pulled_at";

pub(crate) const REPORTS_FOR: &str = "SELECT env, worker_id, revision, status, error, \
     applied_at, received_at, address, detail, caught_up_to, pulled_at FROM worker_reports \
     WHERE env = $1 AND revision = $2 ORDER BY worker_id";

/// Per Worker, the report with the highest revision (ties: the latest received).
pub(crate) const REPORTS_LATEST: &str = "SELECT r.env, r.worker_id, r.revision, r.status, \
     r.error, r.applied_at, r.received_at, r.address, r.detail, r.caught_up_to, r.pulled_at \
     FROM worker_reports r \
     WHERE r.env = $1 AND NOT EXISTS ( \
       SELECT 1 FROM worker_reports o \
       WHERE o.env = r.env AND o.worker_id = r.worker_id \
         AND (o.revision > r.revision \
              OR (o.revision = r.revision AND o.received_at > r.received_at))) \
     ORDER BY r.worker_id";

/// Per Worker, the highest revision it ACKed (the one it serves, even after later NACKs).
pub(crate) const REPORTS_ACKED: &str = "SELECT worker_id, MAX(revision) AS revision \
     FROM worker_reports WHERE env = $1 AND status = 'ack' GROUP BY worker_id \
     ORDER BY worker_id";

// ---- commits, as other Managers hear of them (PostgreSQL only) ----

/// The channel commits are announced on.
pub(crate) const COMMIT_CHANNEL: &str = "switchyard_commits";

/// Announces a commit (`$1`: [`crate::CommitNotice::payload`]); delivered when the
/// transaction commits.
pub(crate) const NOTIFY_COMMIT: &str = "SELECT pg_notify('switchyard_commits', $1)";

// ---- the store's identity ----

pub(crate) const IDENTITY_GET: &str = "SELECT id FROM store_identity WHERE one = 1";

pub(crate) const IDENTITY_SET: &str =
    "UPDATE store_identity SET id = $1, created_at = $2 WHERE one = 1";

/// How far the audit log has got: every write of the store appends to it, and its ids
/// only grow (`AUTOINCREMENT`), so a database restored from an older backup is behind.
pub(crate) const AUDIT_SEQUENCE: &str = "SELECT COALESCE(MAX(id), 0) FROM audit";

// ---- tokens ----

pub(crate) const TOKEN_INSERT: &str = "INSERT INTO tokens \
     (id, name, hash, role, envs, created_at, revoked, revoked_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(crate) const TOKEN_BY_HASH: &str = "SELECT id, name, hash, role, envs, created_at, revoked, \
     revoked_at, expires_at FROM tokens WHERE hash = $1";

pub(crate) const TOKEN_BY_ID: &str = "SELECT id, name, hash, role, envs, created_at, revoked, \
     revoked_at, expires_at FROM tokens WHERE id = $1";

pub(crate) const TOKEN_LIST: &str = "SELECT id, name, hash, role, envs, created_at, revoked, \
     revoked_at, expires_at FROM tokens ORDER BY created_at, id";

pub(crate) const TOKEN_REVOKE: &str =
    "UPDATE tokens SET revoked = 1, revoked_at = $2 WHERE id = $1 AND revoked = 0";

// ---- deleting an environment (its audit records stay: the audit table has no foreign key) ----

pub(crate) const ENV_COUNT_LIVE: &str =
    "SELECT COUNT(*) FROM entities WHERE env = $1 AND deleted = 0";

pub(crate) const ENV_COUNT_REVISIONS: &str = "SELECT COUNT(*) FROM revisions WHERE env = $1";

// ---- presence ----

pub(crate) const CONNECTION_UPSERT: &str = "INSERT INTO worker_connections \
     (env, worker_id, manager, session, address, version, connected_at, last_seen) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (env, worker_id, manager) DO UPDATE SET \
     session = excluded.session, address = excluded.address, version = excluded.version, \
     connected_at = excluded.connected_at, last_seen = excluded.last_seen";

pub(crate) const CONNECTION_DELETE: &str = "DELETE FROM worker_connections \
     WHERE env = $1 AND worker_id = $2 AND manager = $3 AND session = $4";

pub(crate) const CONNECTIONS_OF_MANAGER_DELETE: &str =
    "DELETE FROM worker_connections WHERE manager = $1";

/// Rows no Manager has refreshed for long (`$1`: the cutoff).
pub(crate) const CONNECTIONS_ABANDONED_DELETE: &str =
    "DELETE FROM worker_connections WHERE last_seen < $1";

/// Live streams of an environment (refreshed since `$2`), latest first per Worker.
pub(crate) const CONNECTIONS_LIVE: &str = "SELECT env, worker_id, manager, session, address, \
     version, connected_at, last_seen FROM worker_connections \
     WHERE env = $1 AND last_seen >= $2 ORDER BY worker_id, connected_at DESC";

/// The Workers expected for revision `$2`: those with a live stream (refreshed since `$3`).
pub(crate) const REVISION_WORKERS_INSERT: &str = "INSERT INTO revision_workers \
     (env, revision, worker_id) SELECT DISTINCT env, $2, worker_id FROM worker_connections \
     WHERE env = $1 AND last_seen >= $3";

pub(crate) const REVISION_WORKERS: &str =
    "SELECT worker_id FROM revision_workers WHERE env = $1 AND revision = $2 ORDER BY worker_id";

pub(crate) const REVISION_EXPECTED: &str = "SELECT committed_at, expected_workers, completed_at \
     FROM revisions WHERE env = $1 AND revision = $2";

/// Expected Workers of revision `$2` that ACKed it: how many, and the latest swap.
pub(crate) const REVISION_ACKED: &str = "SELECT COUNT(*), MAX(r.applied_at) \
     FROM revision_workers w JOIN worker_reports r \
       ON r.env = w.env AND r.revision = w.revision AND r.worker_id = w.worker_id \
     WHERE w.env = $1 AND w.revision = $2 AND r.status = 'ack'";

pub(crate) const REVISION_COMPLETE: &str = "UPDATE revisions SET completed_at = $3 \
     WHERE env = $1 AND revision = $2 AND completed_at IS NULL";

// ---- rollouts ----

pub(crate) const ROLLOUT_UPSERT: &str = "INSERT INTO rollouts (env, status, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (env) DO UPDATE SET \
     status = excluded.status, updated_at = excluded.updated_at";

pub(crate) const ROLLOUT_GET: &str = "SELECT status, updated_at FROM rollouts WHERE env = $1";

// ---- canaries ----

pub(crate) const CANARY_INSERT: &str = "INSERT INTO canaries (env, revision, stable_revision, \
     spec, step, state, actor, started_at, step_started_at) \
     VALUES ($1, $2, $3, $4, 0, 'running', $5, $6, $6)";

pub(crate) const CANARY_LATEST: &str = "SELECT env, revision, stable_revision, spec, step, \
     state, actor, started_at, step_started_at, ended_at, reason, rollback_revision \
     FROM canaries WHERE env = $1 ORDER BY revision DESC LIMIT 1";

pub(crate) const CANARY_RUNNING: &str =
    "SELECT revision FROM canaries WHERE env = $1 AND state = 'running'";

/// Moves a running canary from step $3 to $4 (no row: it is no longer there).
pub(crate) const CANARY_STEP: &str = "UPDATE canaries SET step = $4, step_started_at = $5 \
     WHERE env = $1 AND revision = $2 AND step = $3 AND state = 'running'";

/// Ends a running canary.
pub(crate) const CANARY_END: &str = "UPDATE canaries SET state = $3, ended_at = $4, \
     reason = $5, rollback_revision = $6 \
     WHERE env = $1 AND revision = $2 AND state = 'running'";

/// Every row that refers to the environment, children first, then the environment itself.
pub(crate) const ENV_DELETE: [(&str, &str); 9] = [
    (
        "DELETE FROM canaries WHERE env = $1",
        "delete environment: canaries",
    ),
    (
        "DELETE FROM rollouts WHERE env = $1",
        "delete environment: rollout",
    ),
    (
        "DELETE FROM worker_connections WHERE env = $1",
        "delete environment: worker connections",
    ),
    (
        "DELETE FROM revision_workers WHERE env = $1",
        "delete environment: expected workers",
    ),
    (
        "DELETE FROM worker_reports WHERE env = $1",
        "delete environment: reports",
    ),
    (
        "DELETE FROM revisions WHERE env = $1",
        "delete environment: revisions",
    ),
    (
        "DELETE FROM entity_history WHERE env = $1",
        "delete environment: entity history",
    ),
    (
        "DELETE FROM entities WHERE env = $1",
        "delete environment: entities",
    ),
    (
        "DELETE FROM environments WHERE name = $1",
        "delete environment",
    ),
];

/// A value bound to an [`audit_query`] placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// The audit query for `q`: its filters combined with AND, newest first, `limit` rows
/// (0 → [`DEFAULT_LIMIT`]), with `$n` placeholders (both backends read them) and the
/// values to bind to them in order. Values are bound, never spliced into the SQL.
pub(crate) fn audit_query(q: &crate::AuditQuery) -> (String, Vec<Param>) {
    let mut sql = String::from(AUDIT_SELECT);
    let mut params = Vec::new();
    let mut bind = |sql: &mut String, p: Param| {
        params.push(p);
        sql.push_str(&format!("${}", params.len()));
    };
    let text_filters = [
        ("env", &q.env),
        ("entity_kind", &q.entity_kind),
        ("entity_name", &q.entity_name),
        ("actor", &q.actor),
    ];
    for (column, value) in text_filters {
        if let Some(value) = value {
            sql.push_str(" AND ");
            sql.push_str(column);
            sql.push_str(" = ");
            bind(&mut sql, Param::Text(value.clone()));
        }
    }
    let bounds = [
        (" AND at >= ", q.since),
        (" AND at <= ", q.until),
        (" AND id < ", q.before),
    ];
    for (condition, value) in bounds {
        if let Some(value) = value {
            sql.push_str(condition);
            bind(&mut sql, Param::Int(value));
        }
    }
    let limit = if q.limit == 0 {
        DEFAULT_LIMIT
    } else {
        i64::from(q.limit)
    };
    sql.push_str(" ORDER BY id DESC LIMIT ");
    bind(&mut sql, Param::Int(limit));
    (sql, params)
}

/// Rows returned by [`audit_query`] and revision listings when the caller asks for 0.
pub(crate) const DEFAULT_LIMIT: i64 = 100;
