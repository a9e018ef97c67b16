#![allow(clippy::unwrap_used)]
//! History retention through the Manager: a Worker whose revision is older than the
//! retained history gets a full pull of the complete state (no error, no gap — and never a
//! delta cached before the pruning); views and rollbacks of a pruned revision say so by
//! name; the background task prunes by itself.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_api::admin::{ApplyRequest, CreateToken, EntityKey, RollbackRequest};
use switchyard_api::records::Operation;
use switchyard_api::sync::SyncPayload;
use switchyard_api::{AdminClient, ClientError, ErrorCode, ManagerTls, SyncClient};
use switchyard_config::Kind;
use switchyard_manager::retention::{self, Retention};
use switchyard_manager::{AppState, Manager, ManagerOptions};
use switchyard_store::{HistoryRetention, SqlStore};

fn proxy(name: &str, release: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{name: {name}}}\nspec:\n  routes: [{{pathPrefix: /{name}}}]\n  upstream: {{targets: [{{url: \"http://127.0.0.1:1\"}}]}}\n  policies:\n    - type: headers\n      response: {{set: {{x-release: {release}}}}}\n"
    )
}

fn apply(manifests: Vec<String>, delete: Vec<EntityKey>) -> ApplyRequest {
    ApplyRequest {
        manifests,
        delete,
        ..ApplyRequest::default()
    }
}

/// A Manager on an in-memory store with `retention`, serving on a port of its own: its
/// state (to prune at a moment of the test's choosing), an admin client, and what a Worker
/// client needs.
struct Running {
    dir: tempfile::TempDir,
    base: String,
    state: AppState,
    admin: AdminClient,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    async fn start(retention: Retention) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut options = ManagerOptions::new(dir.path());
        options.retention = retention;
        let store = SqlStore::open_in_memory().await.unwrap();
        let manager = Manager::with_store(Arc::new(store), &options)
            .await
            .unwrap();
        let state = manager.state().clone();
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(manager.serve(listener, async move {
            let _ = stopped.await;
        }));
        let admin = AdminClient::with_tls(&base, &token, &tls(&dir)).unwrap();
        Running {
            dir,
            base,
            state,
            admin,
            _stop: stop,
        }
    }

    /// A Worker's client of `env`, with a worker token of its own.
    async fn worker(&self, env: &str) -> SyncClient {
        let token = self
            .admin
            .create_token(&CreateToken {
                name: "edge".into(),
                role: "worker".into(),
                envs: vec![env.into()],
                ..CreateToken::default()
            })
            .await
            .unwrap()
            .token;
        SyncClient::new(&self.base, &token, env, "edge-1", None, &tls(&self.dir)).unwrap()
    }
}

fn tls(dir: &tempfile::TempDir) -> ManagerTls {
    ManagerTls::ca_file(&dir.path().join("ca.pem")).unwrap()
}

fn keep_last(n: u64, interval: Duration) -> Retention {
    Retention {
        history: HistoryRetention {
            revisions: NonZeroU64::new(n),
            max_age: None,
        },
        audit: None,
        interval,
    }
}

/// `(kind, name, version, digest)` of each entity of a pull, sorted.
fn content(p: &SyncPayload) -> Vec<(Kind, String, u64, String, bool)> {
    let mut v: Vec<_> = p
        .entities
        .iter()
        .map(|e| {
            (
                e.kind,
                e.name.clone(),
                e.version,
                e.digest.clone(),
                e.deleted,
            )
        })
        .collect();
    v.sort();
    v
}

fn code(e: &ClientError) -> (u16, ErrorCode, String) {
    match e {
        ClientError::Api(f) => (f.status, f.body.code.clone(), f.body.message.clone()),
        other => panic!("not an answer of the Manager's: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_behind_the_retained_history_gets_the_full_state() {
    // The task prunes at start (nothing yet), then not before the test does.
    let retention = keep_last(2, Duration::from_secs(3600));
    let m = Running::start(retention).await;
    let c = &m.admin;
    c.create_env("dev").await.unwrap();
    // r1: a, b. r2: b deleted, a changed. r3: a changed. r4: c added.
    c.apply(
        "dev",
        &apply(vec![proxy("a", "1"), proxy("b", "1")], vec![]),
    )
    .await
    .unwrap();
    let worker = m.worker("dev").await;
    let at_r1 = worker.pull(0).await.unwrap();
    assert_eq!((at_r1.revision, at_r1.full), (1, true));
    c.apply(
        "dev",
        &apply(
            vec![proxy("a", "2")],
            vec![EntityKey::new(Kind::Proxy, "b")],
        ),
    )
    .await
    .unwrap();
    c.apply("dev", &apply(vec![proxy("a", "3")], vec![]))
        .await
        .unwrap();
    c.apply("dev", &apply(vec![proxy("c", "1")], vec![]))
        .await
        .unwrap();

    // Before the pruning, from r1: a delta that deletes b (and is now in the pull cache).
    let delta = worker.pull(1).await.unwrap();
    assert_eq!((delta.revision, delta.full, delta.since), (4, false, 1));
    assert!(
        delta.entities.iter().any(|e| e.name == "b" && e.deleted),
        "the delta carries b's deletion"
    );

    retention::prune(&m.state, &retention).await;
    let env = c.env("dev").await.unwrap();
    assert_eq!((env.revision, env.history_from), (4, 3));

    // The Worker at r1 (older than the retained history) asks again: the whole state at
    // r4, as a pull from nothing gives it — not the delta cached before the pruning,
    // whose deletions a pruned store could no longer tell.
    let behind = worker.pull(1).await.unwrap();
    let everything = worker.pull(0).await.unwrap();
    assert!(behind.full, "full: true");
    assert_eq!((behind.revision, behind.since), (4, 0));
    assert_eq!(content(&behind), content(&everything));
    assert_eq!(behind.state_digest, everything.state_digest);
    assert_eq!(behind.store_id, at_r1.store_id, "the same store: no resync");
    let names: Vec<(String, u64)> = behind
        .entities
        .iter()
        .map(|e| (e.name.clone(), e.version))
        .collect();
    assert_eq!(names, [("a".to_string(), 3), ("c".to_string(), 1)]);
    assert!(behind.entities.iter().all(|e| !e.deleted));
    let live: Vec<(String, u64)> = c
        .entities("dev")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.version))
        .collect();
    assert_eq!(names, live, "the complete current state");

    // A Worker within the retained history still gets a delta.
    let within = worker.pull(3).await.unwrap();
    assert_eq!((within.full, within.since), (false, 3));
    assert_eq!(
        within
            .entities
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );

    // People asking for a pruned revision are told so, by name.
    let (status, code_, message) = code(&c.revision("dev", 2).await.unwrap_err());
    assert_eq!((status, code_), (404, ErrorCode::HistoryPruned));
    assert!(
        message.contains("revision 2") && message.contains("older than the retained history"),
        "{message}"
    );
    assert_eq!(c.revision("dev", 3).await.unwrap().record.revision, 3);
    // A revision's diff needs the state before it: r3's is pruned, r4's is there.
    let (status, code_, message) = code(&c.revision_diff("dev", 3).await.unwrap_err());
    assert_eq!((status, code_), (404, ErrorCode::HistoryPruned));
    assert!(message.contains("revision 2"), "{message}");
    let diff = c.revision_diff("dev", 4).await.unwrap();
    assert_eq!(diff.previous_revision, 3);
    assert!(!diff.changes.is_empty());
    let back = |to| RollbackRequest {
        to_revision: to,
        expected_revision: None,
        dry_run: true,
    };
    let (status, code_, message) = code(&c.rollback("dev", &back(1)).await.unwrap_err());
    assert_eq!((status, code_), (422, ErrorCode::HistoryPruned));
    assert!(message.contains("starts at revision 3"), "{message}");
    assert!(c.rollback("dev", &back(3)).await.unwrap().changed);
    // An apply planned against a pruned revision is stale: 409, as any stale one.
    let stale = ApplyRequest {
        expected_revision: Some(1),
        ..apply(vec![proxy("a", "9")], vec![])
    };
    let (status, code_, _) = code(&c.apply("dev", &stale).await.unwrap_err());
    assert_eq!((status, code_), (409, ErrorCode::RevisionConflict));

    // The revisions listed are the retained ones; the pruning is in the audit trail.
    let listed: Vec<u64> = c
        .revisions("dev", 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.revision)
        .collect();
    assert_eq!(listed, [4, 3]);
    let audit = c
        .audit(&switchyard_api::admin::AuditParams {
            env: Some("dev".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit[0].operation, Operation::PruneHistory);
    assert_eq!(audit[0].actor, "manager");
    assert!(
        audit.iter().any(|r| r.operation == Operation::CreateEnv),
        "older audit records are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_task_prunes_by_itself() {
    let m = Running::start(keep_last(1, Duration::from_millis(20))).await;
    let c = &m.admin;
    c.create_env("dev").await.unwrap();
    for release in ["1", "2", "3"] {
        c.apply("dev", &apply(vec![proxy("a", release)], vec![]))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let env = c.env("dev").await.unwrap();
        if env.history_from == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history never pruned: starts at {}",
            env.history_from
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pull = m.worker("dev").await.pull(1).await.unwrap();
    assert!(pull.full);
    assert_eq!(pull.revision, 3);
}
