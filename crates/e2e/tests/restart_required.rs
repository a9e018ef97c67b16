#![allow(clippy::unwrap_used)]
//! Changes that cannot be hot: `kind: WorkerSettings` (process settings) is
//! restart-required. `apply` refuses it and changes nothing; `plan` says which fields and
//! why; a Worker that reads it in its files keeps serving what it serves until a successor
//! process takes it; a hot change beside it is not swapped in half-way.

use http::Method;
use serde_json::json;
use switchyard_e2e::cluster::RunningManager;
use switchyard_e2e::{ConfigDir, Harness, RunningWorker, get_once, payments_manifest};
use switchyard_worker::{ReloadOutcome, WorkerOptions};

fn worker_settings(threads: u16, label: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: WorkerSettings\n\
         metadata: {{ name: default, labels: {{ note: {label} }} }}\n\
         spec: {{ threads: {threads}, maxConnections: 1000 }}\n"
    )
}

#[tokio::test]
async fn apply_refuses_a_restart_required_change_and_changes_nothing() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(data.path()).await;
    let (s, b) = m
        .call(Method::POST, "/v1/envs", Some(json!({ "name": "prod" })))
        .await;
    assert_eq!(s, 201, "{b}");
    let proxy = payments_manifest("blue", h.addr(0), "");

    // Created alongside a proxy: refused as a whole, nothing committed.
    let (s, b) = m
        .apply("prod", &[proxy.clone(), worker_settings(2, "x")])
        .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["code"], "restart_required", "{b}");
    let message = b["message"].as_str().unwrap();
    assert!(
        message.contains("switchyard rollout --env prod"),
        "{message}"
    );
    let details = b["details"].to_string();
    assert!(
        details.contains("workersettings/default created"),
        "{details}"
    );
    let (_, env) = m.call(Method::GET, "/v1/envs/prod", None).await;
    assert_eq!(env["revision"], 0, "nothing was committed: {env}");

    // A plan (dry run) shows the class of the change and of each field.
    let (s, plan) = m
        .call(
            Method::POST,
            "/v1/envs/prod/apply",
            Some(json!({ "manifests": [proxy.clone(), worker_settings(2, "x")], "dry_run": true })),
        )
        .await;
    assert_eq!(s, 200, "{plan}");
    let classes: Vec<(String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["hot"]["class"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(classes.contains(&("Proxy".into(), "hot".into())), "{plan}");
    assert!(
        classes.contains(&("WorkerSettings".into(), "restart-required".into())),
        "{plan}"
    );

    // The proxy alone is hot and lands.
    let (s, b) = m.apply("prod", &[proxy]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["changes"][0]["hot"]["class"], "hot", "{b}");
}

#[tokio::test]
async fn a_worker_keeps_serving_what_it_serves_when_its_files_change_process_settings() {
    let h = Harness::upstreams(&["a"]).await;
    let dir = ConfigDir::new();
    dir.write("proxy.yaml", &payments_manifest("blue", h.addr(0), ""));
    dir.write("settings.yaml", &worker_settings(2, "x"));
    let mut options = WorkerOptions::new(dir.path());
    options.source = switchyard_worker::ConfigSource::Files {
        path: dir.path().to_path_buf(),
        watch: false,
    };
    let mut w = RunningWorker::start_with(options).await;
    let before = w.handle.revision();
    assert_eq!(
        get_once(w.addr, "/payments").await.header("x-release"),
        Some("blue")
    );

    // A hot change and a restart-required one together: neither is swapped in.
    dir.write("proxy.yaml", &payments_manifest("green", h.addr(0), ""));
    dir.write("settings.yaml", &worker_settings(4, "x"));
    let outcome = tokio::task::spawn_blocking({
        let handle = w.handle.clone();
        move || handle.reload()
    })
    .await
    .unwrap();
    let ReloadOutcome::RestartRequired { revision, why, .. } = outcome else {
        panic!("expected restart-required, got {outcome:?}");
    };
    assert_eq!(revision, before);
    assert!(why.contains("spec.threads 2 -> 4"), "{why}");
    assert_eq!(w.handle.revision(), before);
    assert_eq!(
        get_once(w.addr, "/payments").await.header("x-release"),
        Some("blue"),
        "never half-old, half-new: the hot change waits with the cold one"
    );
    let status = serde_json::to_value(w.handle.status()).unwrap();
    assert_eq!(
        status["last_reload"]["result"], "restart_required",
        "{status}"
    );

    // Back to the settings the process started with (labels aside): the hot change lands.
    dir.write("settings.yaml", &worker_settings(2, "relabelled"));
    let outcome = tokio::task::spawn_blocking({
        let handle = w.handle.clone();
        move || handle.reload()
    })
    .await
    .unwrap();
    assert!(
        matches!(outcome, ReloadOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        get_once(w.addr, "/payments").await.header("x-release"),
        Some("green")
    );
    w.begin_shutdown();
}

/// A Worker that says (in `x-switchyard-version`) it does not read a kind makes a change of
/// that kind restart-required: its binary must be rolled out first. Kinds it reads stay hot.
#[tokio::test]
async fn a_kind_a_connected_worker_does_not_read_is_restart_required() {
    use http::{HeaderName, HeaderValue};
    use switchyard_api::Transport;
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(data.path()).await;
    let token = m.env_with_worker_token("prod").await;
    // An older Worker's event stream: it reads proxies and credentials only.
    let old = Transport::builder(&m.url(), &token)
        .unwrap()
        .tls(&m.tls)
        .unwrap()
        .header(HeaderName::from_static("x-switchyard-worker"), "old-1")
        .unwrap()
        .header(
            HeaderName::from_static("x-switchyard-version"),
            "0.0.9; schemas=switchyard.dev/v1; kinds=Proxy,Credential",
        )
        .unwrap()
        .build();
    let accept = [(
        http::header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    )];
    let stream = old
        .open(
            Method::GET,
            "/v1/envs/prod/events",
            bytes::Bytes::new(),
            &accept,
        )
        .await
        .unwrap();
    assert!(stream.status().is_success());

    let (s, b) = m
        .apply("prod", &[payments_manifest("blue", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["changes"][0]["hot"]["class"], "hot", "{b}");

    let env = "apiVersion: switchyard.dev/v1\nkind: Environment\nmetadata: { name: prod }\n\
               spec: { variables: { A: b } }\n"
        .to_string();
    let (s, b) = m.apply("prod", &[env]).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["code"], "restart_required", "{b}");
    let details = b["details"].to_string();
    assert!(
        details.contains("old-1 (0.0.9") && details.contains("do not read kind Environment"),
        "{details}"
    );
    drop(stream);
}
