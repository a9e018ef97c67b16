//! `GET /v1/envs/{env}/revisions/{rev}/diff` (issue #20): what a committed revision
//! changed, field by field, from the retained history — the same diff a `plan` shows before
//! the commit, secret values redacted — and whether it was hot.

#![allow(clippy::unwrap_used)]

use http::Method;
use serde_json::json;
use switchyard_e2e::cluster::{RunningManager, api};
use switchyard_e2e::payments_manifest;

const OLD_SECRET: &str = "s3cret-old-value-123";
const NEW_SECRET: &str = "s3cret-new-value-456";

fn secret(value: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: provider-key }}\n\
         spec:\n  type: secret\n  value: \"{value}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_shows_its_field_diff_with_secrets_redacted() {
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start_plain(&data.path().join("manager")).await;
    m.env_with_worker_token("dev").await;
    let blue: std::net::SocketAddr = "127.0.0.1:1001".parse().unwrap();
    let green: std::net::SocketAddr = "127.0.0.1:1002".parse().unwrap();
    let (s, b) = m
        .apply(
            "dev",
            &[payments_manifest("blue", blue, ""), secret(OLD_SECRET)],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = m
        .apply(
            "dev",
            &[payments_manifest("green", green, ""), secret(NEW_SECRET)],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["revision"], 2);

    // r2: the proxy's target and release header, and the secret's value (redacted).
    let (s, raw) = m
        .call(Method::GET, "/v1/envs/dev/revisions/2/diff", None)
        .await;
    assert_eq!(s, 200, "{raw}");
    let text = raw.to_string();
    assert!(
        !text.contains(OLD_SECRET) && !text.contains(NEW_SECRET),
        "a secret value in the diff"
    );
    let d = m.client.revision_diff("dev", 2).await.unwrap();
    assert_eq!((d.revision, d.previous_revision), (2, 1));
    assert_eq!(d.class.as_str(), "hot");
    assert_eq!(d.changes.len(), 2, "{raw}");
    let proxy = d
        .changes
        .iter()
        .find(|c| c.change.name == "payments")
        .unwrap();
    assert_eq!(
        (proxy.change.old_version, proxy.change.new_version),
        (Some(1), Some(2))
    );
    assert!(proxy.hot.hot);
    let target = proxy
        .diff
        .iter()
        .find(|f| f.path == "spec.upstream.targets[0].url")
        .unwrap_or_else(|| panic!("no target change in {:?}", proxy.diff));
    assert_eq!(target.old, Some(json!(format!("http://{blue}"))));
    assert_eq!(target.new, Some(json!(format!("http://{green}"))));
    assert!(!target.secret);
    assert!(
        proxy.diff.iter().any(|f| f.path.contains("x-release")
            && f.old == Some(json!("blue"))
            && f.new == Some(json!("green"))),
        "{:?}",
        proxy.diff
    );
    let key = d
        .changes
        .iter()
        .find(|c| c.change.name == "provider-key")
        .unwrap();
    assert_eq!(key.diff.len(), 1, "{:?}", key.diff);
    assert!(key.diff[0].secret, "{:?}", key.diff);
    assert_eq!(key.diff[0].path, "spec.value");
    assert_eq!(key.diff[0].old, key.diff[0].new, "both redacted alike");

    // r1 created both: their top-level fields, only on the new side.
    let d = m.client.revision_diff("dev", 1).await.unwrap();
    assert_eq!(d.previous_revision, 0);
    let created = d
        .changes
        .iter()
        .find(|c| c.change.name == "payments")
        .unwrap();
    assert_eq!(created.change.old_version, None);
    let paths: Vec<&str> = created.diff.iter().map(|f| f.path.as_str()).collect();
    assert!(paths.contains(&"spec"), "{paths:?}");
    assert!(
        created
            .diff
            .iter()
            .all(|f| f.old.is_none() && f.new.is_some())
    );
    let r1 = serde_json::to_string(&d).unwrap();
    assert!(
        !r1.contains(OLD_SECRET),
        "a secret value in a created entity's diff"
    );

    // r3 deletes the proxy: its fields, only on the old side.
    let (s, b) = m
        .call(
            Method::POST,
            "/v1/envs/dev/apply",
            Some(json!({ "manifests": [], "delete": [{ "kind": "Proxy", "name": "payments" }] })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let d = m.client.revision_diff("dev", 3).await.unwrap();
    assert_eq!(d.changes.len(), 1);
    assert_eq!(d.changes[0].change.new_version, None);
    assert!(!d.changes[0].diff.is_empty());
    assert!(
        d.changes[0]
            .diff
            .iter()
            .all(|f| f.new.is_none() && f.old.is_some())
    );

    // No such revision; a token of another environment sees nothing.
    let (s, b) = m
        .call(Method::GET, "/v1/envs/dev/revisions/9/diff", None)
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (404, Some("unknown_revision")),
        "{b}"
    );
    let (s, b) = m
        .call(Method::POST, "/v1/envs", Some(json!({ "name": "other" })))
        .await;
    assert_eq!(s, 201, "{b}");
    let other = m.token("viewer", &["other"]).await;
    let (s, b) = api(
        &m,
        &other,
        Method::GET,
        "/v1/envs/dev/revisions/2/diff",
        None,
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let viewer = m.token("viewer", &["dev"]).await;
    let (s, b) = api(
        &m,
        &viewer,
        Method::GET,
        "/v1/envs/dev/revisions/2/diff",
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
}
