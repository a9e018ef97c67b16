#![allow(clippy::unwrap_used)]
//! A rollback goes through the one write path: its dry run plans versions exactly as the
//! commit numbers them (an entity deleted since comes back after its tombstone), and the
//! commit restores the stored entities as they were.

use std::sync::Arc;

use switchyard_api::AdminClient;
use switchyard_api::admin::{ApplyRequest, EntityKey, RollbackRequest};
use switchyard_config::Kind;
use switchyard_manager::{Manager, ManagerOptions};
use switchyard_store::SqlStore;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_dry_run_plans_what_its_commit_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_in_memory().await.unwrap();
    let manager = Manager::with_store(Arc::new(store), &ManagerOptions::new(dir.path()))
        .await
        .unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(manager.serve(listener, async move {
        let _ = stopped.await;
    }));
    let tls = switchyard_api::ManagerTls::ca_file(&dir.path().join("ca.pem")).unwrap();
    let c = AdminClient::with_tls(&format!("https://{addr}"), &token, &tls).unwrap();
    c.create_env("dev").await.unwrap();

    // r1: a, b. r2: b deleted (tombstone v2), a changed. r3: a changed again.
    c.apply(
        "dev",
        &apply(vec![proxy("a", "one"), proxy("b", "one")], vec![]),
    )
    .await
    .unwrap();
    c.apply(
        "dev",
        &apply(
            vec![proxy("a", "two")],
            vec![EntityKey::new(Kind::Proxy, "b")],
        ),
    )
    .await
    .unwrap();
    c.apply("dev", &apply(vec![proxy("a", "three")], vec![]))
        .await
        .unwrap();

    let to_r1 = |dry_run| RollbackRequest {
        to_revision: 1,
        expected_revision: None,
        dry_run,
    };
    let planned = c.rollback("dev", &to_r1(true)).await.unwrap();
    assert!(planned.dry_run && planned.changed);
    assert_eq!(planned.revision, 3, "a dry run writes nothing");
    let versions = |r: &switchyard_api::admin::BatchResponse| {
        let mut v: Vec<(String, Option<u64>, Option<u64>)> = r
            .changes
            .iter()
            .map(|c| {
                (
                    c.change.name.clone(),
                    c.change.old_version,
                    c.change.new_version,
                )
            })
            .collect();
        v.sort();
        v
    };
    let want = vec![
        ("a".to_string(), Some(3), Some(4)),
        ("b".to_string(), None, Some(3)),
    ];
    assert_eq!(
        versions(&planned),
        want,
        "b comes back after its v2 tombstone"
    );
    assert!(
        planned.changes.iter().all(|c| c.diff.is_empty()),
        "a rollback restores whole stored versions: no field diff"
    );

    let done = c.rollback("dev", &to_r1(false)).await.unwrap();
    assert_eq!((done.revision, done.previous_revision), (4, 3));
    assert_eq!(
        versions(&done),
        want,
        "the commit did what the dry run said"
    );
    let r1 = c.revision("dev", 1).await.unwrap().record.changes;
    let now = c.entities("dev").await.unwrap();
    for change in r1 {
        let e = now.iter().find(|e| e.name == change.name).unwrap();
        assert_eq!(e.digest, change.digest, "{} has r1's content", e.name);
    }
    assert_eq!(
        c.revisions("dev", 1).await.unwrap()[0].operation.as_str(),
        "rollback"
    );

    // Again: nothing to do, nothing written.
    let again = c.rollback("dev", &to_r1(false)).await.unwrap();
    assert!(!again.changed);
    assert_eq!(again.revision, 4);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
