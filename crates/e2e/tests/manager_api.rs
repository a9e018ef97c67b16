#![allow(clippy::unwrap_used)]
//! The Manager's admin API end to end: roles and scopes, optimistic concurrency, the audit
//! trail as a precondition of every change, validation errors with positions, secrets
//! that never leak, idempotent applies, and a last-known-good cache that is never served
//! when corrupt. A real Manager (SQLite in a temp dir) and real Workers, on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderName};
use http::{HeaderValue, Method};
use serde_json::{Value, json};
use switchyard_api::Transport;
use switchyard_api::sync::ServedFrom;
use switchyard_e2e::cluster::{ManagedWorker, RunningManager, api};
use switchyard_e2e::{DEADLINE, Harness, payments_manifest};

// ---- helpers ----

/// A request with a chosen Authorization header (or none): (status, JSON body).
async fn call_with_auth(
    m: &RunningManager,
    auth: Option<&str>,
    method: Method,
    path: &str,
) -> (u16, Value) {
    let transport = Transport::builder(&m.url(), "")
        .unwrap()
        .tls(&m.tls)
        .unwrap()
        .build();
    let extra: Vec<(HeaderName, HeaderValue)> = auth
        .map(|a| (AUTHORIZATION, HeaderValue::from_str(a).unwrap()))
        .into_iter()
        .collect();
    let reply = transport
        .send_with(method, path, None::<&()>, &extra)
        .await
        .unwrap();
    (
        reply.status.as_u16(),
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

async fn create_env(m: &RunningManager, env: &str) {
    let (s, b) = m
        .call(Method::POST, "/v1/envs", Some(json!({ "name": env })))
        .await;
    assert_eq!(s, 201, "{b}");
}

async fn apply_as(
    m: &RunningManager,
    token: &str,
    env: &str,
    manifests: &[String],
    expected_revision: Option<u64>,
) -> (u16, Value) {
    let mut body = json!({ "manifests": manifests });
    if let Some(r) = expected_revision {
        body["expected_revision"] = json!(r);
    }
    let path = format!("/v1/envs/{env}/apply");
    api(m, token, Method::POST, &path, Some(body)).await
}

async fn get(m: &RunningManager, path: &str) -> Value {
    let (s, b) = m.call(Method::GET, path, None).await;
    assert_eq!(s, 200, "GET {path}: {b}");
    b
}

async fn revision(m: &RunningManager, env: &str) -> u64 {
    get(m, &format!("/v1/envs/{env}")).await["revision"]
        .as_u64()
        .unwrap()
}

async fn audit(m: &RunningManager, env: &str) -> Vec<Value> {
    let b = get(m, &format!("/v1/audit?env={env}&limit=1000")).await;
    b.as_array().unwrap().clone()
}

fn applies(records: &[Value]) -> usize {
    records.iter().filter(|r| r["operation"] == "apply").count()
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
}

/// Waits (bounded) until the Manager lists `id` as connected to `env`'s event stream.
async fn wait_connected(m: &RunningManager, env: &str, id: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let workers = get(m, &format!("/v1/envs/{env}/workers")).await;
        let connected = workers
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == id && w["connected"] == true);
        if connected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker {id} never connected: {workers}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks that `cond` holds throughout `window` (a negative property: "never happens").
async fn holds_for(what: &str, window: Duration, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        assert!(cond(), "stopped holding: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(cond(), "stopped holding: {what}");
}

fn worker_manager_revision(w: &ManagedWorker) -> Option<u64> {
    w.handle.status().sync.unwrap().manager_revision
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployer_for_dev_cannot_change_prod() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    create_env(&m, "dev").await;
    let prod_worker = m.env_with_worker_token("prod").await;
    let deployer = m.token("deployer", &["dev"]).await;
    let blue = payments_manifest("blue", h.addr(0), "");
    let green = payments_manifest("green", h.addr(0), "");

    let (s, b) = apply_as(&m, &deployer, "dev", std::slice::from_ref(&blue), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["revision"], 1);

    let (s, b) = apply_as(&m, &deployer, "prod", std::slice::from_ref(&blue), None).await;
    assert_error(s, &b, 403, "forbidden");
    assert_eq!(revision(&m, "prod").await, 0);
    let revisions = get(&m, "/v1/envs/prod/revisions").await;
    assert_eq!(revisions, json!([]), "{revisions}");
    let trail = audit(&m, "prod").await;
    assert_eq!(applies(&trail), 0, "{trail:?}");

    // With prod deployed (by an admin) and a Worker serving it, a refused apply moves
    // nothing: not the Manager, not the Worker.
    let (s, b) = m.apply("prod", std::slice::from_ref(&blue)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["revision"], 1);
    let cache = data.path().join("cache-prod");
    let opts = ManagedWorker::options(&m, "prod", &prod_worker, "p1", &cache);
    let mut w = ManagedWorker::start(opts).await.unwrap();
    w.wait_for_revision(1).await;
    wait_connected(&m, "prod", "p1").await;
    // The Worker has compared its revision with the Manager's since connecting (its
    // catch-up right after the stream opened) before "stays at 1" is watched.
    switchyard_e2e::eventually("the prod worker has seen the Manager at revision 1", || {
        worker_manager_revision(&w) == Some(1)
    })
    .await;

    let (s, b) = apply_as(&m, &deployer, "prod", &[green], None).await;
    assert_error(s, &b, 403, "forbidden");
    assert_eq!(revision(&m, "prod").await, 1);
    holds_for(
        "prod worker stays at revision 1",
        Duration::from_secs(1),
        || w.handle.revision() == 1 && worker_manager_revision(&w) == Some(1),
    )
    .await;
    let trail = audit(&m, "prod").await;
    assert_eq!(applies(&trail), 1, "only the admin's apply: {trail:?}");
    assert_eq!(
        get(&m, "/v1/envs/prod/revisions")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_tokens_are_enforced() {
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    let dev_worker = m.env_with_worker_token("dev").await;
    create_env(&m, "prod").await;
    let viewer = m.token("viewer", &[]).await;
    let deployer = m.token("deployer", &["dev"]).await;
    let manifest = payments_manifest("blue", "127.0.0.1:9".parse().unwrap(), "");

    let (s, b) = call_with_auth(&m, None, Method::GET, "/v1/envs/dev").await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = call_with_auth(&m, Some("Basic abc"), Method::GET, "/v1/envs/dev").await;
    assert_error(s, &b, 401, "unauthorized");
    let (s, b) = api(&m, "sy_garbage", Method::GET, "/v1/envs/dev", None).await;
    assert_error(s, &b, 401, "unauthorized");

    let (s, b) = api(&m, &viewer, Method::GET, "/v1/envs/dev", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["name"], "dev");
    let (s, b) = apply_as(&m, &viewer, "dev", std::slice::from_ref(&manifest), None).await;
    assert_error(s, &b, 403, "forbidden");

    let (s, b) = apply_as(
        &m,
        &dev_worker,
        "dev",
        std::slice::from_ref(&manifest),
        None,
    )
    .await;
    assert_error(s, &b, 403, "forbidden");
    let (s, b) = api(&m, &dev_worker, Method::GET, "/v1/envs/prod/sync", None).await;
    assert_error(s, &b, 403, "forbidden");
    let (s, b) = api(
        &m,
        &dev_worker,
        Method::GET,
        "/v1/envs/dev/sync?since=0",
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["env"], "dev");

    let new_token = json!({ "name": "x", "role": "viewer", "envs": [] });
    let (s, b) = api(&m, &deployer, Method::POST, "/v1/tokens", Some(new_token)).await;
    assert_error(s, &b, 403, "forbidden");
    let new_env = json!({ "name": "qa" });
    let (s, b) = api(&m, &deployer, Method::POST, "/v1/envs", Some(new_env)).await;
    assert_error(s, &b, 403, "forbidden");
    assert_eq!(get(&m, "/v1/envs").await.as_array().unwrap().len(), 2);

    for envs in [json!([]), json!(["dev", "prod"])] {
        let body = json!({ "name": "w", "role": "worker", "envs": envs });
        let (s, b) = m.call(Method::POST, "/v1/tokens", Some(body)).await;
        assert_error(s, &b, 400, "bad_request");
        assert!(
            b["message"].as_str().unwrap().contains("exactly one"),
            "{b}"
        );
    }
    let body = json!({ "name": "r", "role": "superuser", "envs": [] });
    let (s, b) = m.call(Method::POST, "/v1/tokens", Some(body)).await;
    assert_error(s, &b, 400, "bad_request");
    assert!(
        b["message"].as_str().unwrap().contains("unknown role"),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_planned_against_an_old_revision_is_refused() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    create_env(&m, "dev").await;
    let token = m.admin_token.clone();
    for (i, release) in ["blue", "green"].iter().enumerate() {
        let (s, b) = m
            .apply("dev", &[payments_manifest(release, h.addr(0), "")])
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["revision"], i + 1);
    }
    let before = get(&m, "/v1/envs/dev/entities").await;
    assert_eq!(before[0]["version"], 2, "{before}");

    let red = payments_manifest("red", h.addr(0), "");
    let (s, b) = apply_as(&m, &token, "dev", std::slice::from_ref(&red), Some(1)).await;
    assert_error(s, &b, 409, "revision_conflict");
    assert!(b["message"].as_str().unwrap().contains("re-plan"), "{b}");
    assert_eq!(revision(&m, "dev").await, 2);
    assert_eq!(get(&m, "/v1/envs/dev/entities").await, before);

    let (s, b) = apply_as(&m, &token, "dev", &[red], Some(2)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["revision"], 3);
    assert_eq!(b["previous_revision"], 2);
    let after = get(&m, "/v1/envs/dev/entities").await;
    assert_eq!(after[0]["version"], 3, "{after}");
    assert_ne!(after[0]["digest"], before[0]["digest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_failure_refuses_the_change() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    let (s, b) = m
        .apply("dev", &[payments_manifest("blue", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["revision"], 1);

    let cache = data.path().join("cache");
    let opts = ManagedWorker::options(&m, "dev", &token, "w1", &cache);
    let mut w = ManagedWorker::start(opts).await.unwrap();
    w.wait_for_revision(1).await;
    wait_connected(&m, "dev", "w1").await;
    switchyard_e2e::eventually("the worker has seen the Manager at revision 1", || {
        worker_manager_revision(&w) == Some(1)
    })
    .await;
    // Its ACK is stored before the fault is injected (a report writes an audit record too).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while get(&m, "/v1/envs/dev/workers").await[0]["revision"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ACK for revision 1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = get(&m, "/v1/envs/dev/entities").await;
    let audit_before = audit(&m, "dev").await;

    sqlx::query(
        "CREATE TRIGGER fail_audit BEFORE INSERT ON audit \
         BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END;",
    )
    .execute(m.store.pool())
    .await
    .unwrap();

    let green = [payments_manifest("green", h.addr(0), "")];
    let (s, b) = m.apply("dev", &green).await;
    assert_error(s, &b, 503, "audit_failed");
    assert!(
        b["message"].as_str().unwrap().contains("audit unavailable"),
        "{b}"
    );
    assert_eq!(revision(&m, "dev").await, 1);
    assert_eq!(get(&m, "/v1/envs/dev/entities").await, before);
    assert_eq!(
        get(&m, "/v1/envs/dev/revisions")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(audit(&m, "dev").await, audit_before);
    // The Worker keeps checking (every 300 ms) and never hears of a revision 2.
    holds_for("worker stays at revision 1", Duration::from_secs(1), || {
        w.handle.revision() == 1 && worker_manager_revision(&w) == Some(1)
    })
    .await;

    sqlx::query("DROP TRIGGER fail_audit")
        .execute(m.store.pool())
        .await
        .unwrap();
    let (s, b) = m.apply("dev", &green).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["revision"], 2);
    assert_eq!(b["previous_revision"], 1);
    let revs: Vec<u64> = get(&m, "/v1/envs/dev/revisions")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revs, vec![2, 1]);
    w.wait_for_revision(2).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_refused_with_positions() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    create_env(&m, "dev").await;
    let good = payments_manifest("blue", h.addr(0), "");
    let (s, b) = m.apply("dev", std::slice::from_ref(&good)).await;
    assert_eq!(s, 200, "{b}");
    let entities = get(&m, "/v1/envs/dev/entities").await;

    let bad = payments_manifest("green", h.addr(0), "    timeouts: { connect: 2 s }");
    let (s, b) = m.apply("dev", &[bad]).await;
    assert_error(s, &b, 422, "invalid_config");
    let details: Vec<&str> = b["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let detail = details
        .iter()
        .find(|d| d.contains("spec.upstream.timeouts.connect: invalid duration \"2 s\""))
        .unwrap_or_else(|| panic!("no duration error in {details:?}"));
    // `manifests[0]:LINE:COL: proxy "payments": …`
    let position: Vec<&str> = detail
        .strip_prefix("manifests[0]:")
        .unwrap_or_else(|| panic!("no file name in {detail}"))
        .splitn(3, ':')
        .collect();
    assert!(
        position.len() == 3
            && position[..2]
                .iter()
                .all(|n| n.parse::<u32>().is_ok_and(|n| n > 0)),
        "no line:col in {detail}"
    );

    let billing = good.replace("name: payments", "name: billing");
    let (s, b) = m
        .apply("dev", &[good.replace("blue", "green"), billing])
        .await;
    assert_error(s, &b, 422, "invalid_config");
    assert!(b.to_string().contains("route conflict"), "{b}");

    assert_eq!(revision(&m, "dev").await, 1);
    assert_eq!(get(&m, "/v1/envs/dev/entities").await, entities);
    let (s, b) = m.apply("nowhere", &[good]).await;
    assert_error(s, &b, 404, "unknown_environment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_shown() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("manager");
    let m = RunningManager::start(&dir).await;
    let worker = m.env_with_worker_token("dev").await;
    let secrets = vec![
        m.admin_token.clone(),
        worker.clone(),
        m.token("deployer", &["dev"]).await,
        m.token("viewer", &[]).await,
        m.token("admin", &[]).await,
    ];
    // A low-entropy secret and a certificate's private key.
    const WEAK: &str = "hunter2";
    let weak = format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: weak }}\nspec:\n  type: secret\n  value: \"{WEAK}\"\n"
    );
    let issued = switchyard_e2e::tls::TestCa::new().issue(&["api.example.com"]);
    let certificate = switchyard_e2e::tls::certificate_manifest("api", &issued, false);
    let (s, b) = m
        .apply(
            "dev",
            &[
                payments_manifest("blue", h.addr(0), ""),
                weak.clone(),
                certificate,
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let cache = data.path().join("cache");
    let opts = ManagedWorker::options(&m, "dev", &worker, "w1", &cache);
    let mut w = ManagedWorker::start(opts).await.unwrap();
    // The Worker verified the keyed digests and ACKed the state they make.
    w.wait_for_revision(1).await;
    let view = m.wait_reports("dev", 1, &["w1"]).await;
    assert!(
        view.reports.iter().all(|r| r.error.is_none()),
        "{:?}",
        view.reports
    );

    // The secret's digest is keyed: not the SHA-256 of its content, which anyone could
    // compute for every likely password and compare.
    let plain = switchyard_config::parse_str("weak.yaml".into(), &weak).unwrap();
    let entities = get(&m, "/v1/envs/dev/entities").await;
    let shown = entities
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "weak")
        .unwrap_or_else(|| panic!("{entities}"));
    let digest = shown["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{shown}");
    assert_ne!(
        digest, plain[0].digest,
        "a plain SHA-256 digest of a secret"
    );

    let tokens = get(&m, "/v1/tokens").await;
    assert_eq!(tokens.as_array().unwrap().len(), secrets.len(), "{tokens}");
    let mut places = vec![
        (
            "GET /v1/tokens".to_string(),
            tokens.to_string().into_bytes(),
        ),
        (
            "GET /v1/audit".to_string(),
            get(&m, "/v1/audit?limit=1000")
                .await
                .to_string()
                .into_bytes(),
        ),
    ];
    for file in ["switchyard.db", "switchyard.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(file)) {
            places.push((file.to_string(), bytes));
        }
    }
    assert!(places.len() >= 3, "no database file found");
    let lkg = cache.join("dev.lkg.json");
    places.push(("worker cache".into(), std::fs::read(&lkg).unwrap()));
    places.push((
        "GET /v1/envs/dev/entities".to_string(),
        entities.to_string().into_bytes(),
    ));
    // The certificate's private key (its base64 body, a line of it) and the weak secret
    // appear nowhere either.
    let key_line = issued
        .key_pem
        .lines()
        .find(|l| !l.starts_with("-----"))
        .unwrap()
        .to_string();
    for needle in [key_line.as_str(), WEAK] {
        for (place, bytes) in &places {
            let found = bytes
                .windows(needle.len())
                .any(|win| win == needle.as_bytes());
            assert!(
                !found,
                "a secret ({} bytes) appears in {place}",
                needle.len()
            );
        }
    }
    for secret in &secrets {
        assert!(secret.starts_with("sy_") && secret.len() > 20, "{secret}");
        // The public id reuses the first 10 hex digits; the rest must appear nowhere.
        let tail = &secret[13..];
        for (place, bytes) in &places {
            let found = bytes.windows(tail.len()).any(|win| win == tail.as_bytes());
            assert!(!found, "a token secret appears in {place}");
        }
    }
    let mode = std::fs::metadata(dir.join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin.token mode {mode:o}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_apply_creates_no_revision_or_audit_noise() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    create_env(&m, "dev").await;
    let manifest = [payments_manifest("blue", h.addr(0), "")];
    let (s, first) = m.apply("dev", &manifest).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["changed"], true);
    assert_eq!(first["revision"], 1);
    let trail = audit(&m, "dev").await.len();
    let (s, second) = m.apply("dev", &manifest).await;
    assert_eq!(s, 200, "{second}");
    assert_eq!(second["changed"], false, "{second}");
    assert_eq!(second["revision"], 1);
    assert_eq!(second["changes"], json!([]));
    assert_eq!(revision(&m, "dev").await, 1);
    assert_eq!(audit(&m, "dev").await.len(), trail);
    assert_eq!(
        get(&m, "/v1/envs/dev/revisions")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_is_not_served() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let mut m = RunningManager::start(&data.path().join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    let (s, b) = m
        .apply("dev", &[payments_manifest("blue", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    let cache = data.path().join("cache");
    let opts = ManagedWorker::options(&m, "dev", &token, "w1", &cache);
    let mut w = ManagedWorker::start(opts).await.unwrap();
    w.wait_for_revision(1).await;
    w.stop().await;
    m.stop().await;

    let lkg = cache.join("dev.lkg.json");
    let intact = std::fs::read_to_string(&lkg).unwrap();
    assert!(intact.contains("blue"), "{intact}");
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dead_url = format!("http://{dead}");

    // A flipped byte inside the cached manifest text.
    std::fs::write(&lkg, intact.replacen("blue", "blux", 1)).unwrap();
    let opts = ManagedWorker::options_at(&m, &dead_url, "dev", &token, "w2", &cache);
    let err = match ManagedWorker::start(opts).await {
        Ok(mut w) => {
            w.stop().await;
            panic!("a Worker started from a corrupt cache");
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("corrupt"), "{err}");

    std::fs::write(&lkg, &intact).unwrap();
    let opts = ManagedWorker::options_at(&m, &dead_url, "dev", &token, "w3", &cache);
    let mut w = ManagedWorker::start(opts).await.unwrap();
    assert_eq!(w.handle.revision(), 1);
    assert_eq!(
        w.handle.status().sync.unwrap().served_from,
        ServedFrom::Cache
    );
    w.stop().await;
}

/// Concurrent applies of proxies that all claim the same route: each is validated against
/// the exact revision it commits on, so exactly one wins and the rest are refused —
/// the environment never ends up holding a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_conflicting_applies_never_leave_the_environment_invalid() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = std::sync::Arc::new(RunningManager::start(data.path()).await);
    create_env(&m, "dev").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let m = m.clone();
        let text = payments_manifest("blue", h.addr(0), "")
            .replace("name: payments", &format!("name: p{i}"));
        tasks.push(tokio::spawn(async move { m.apply("dev", &[text]).await }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            422 => assert!(body.to_string().contains("route conflict"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one apply may claim the route");
    assert_eq!(revision(&m, "dev").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes_are_checked_and_honoured() {
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(data.path()).await;
    create_env(&m, "dev").await;
    create_env(&m, "prod").await;
    let (s, b) = m
        .call(
            Method::POST,
            "/v1/tokens",
            Some(json!({ "name": "a", "role": "admin", "envs": ["dev"] })),
        )
        .await;
    assert_error(s, &b, 400, "bad_request");
    let viewer = m.token("viewer", &["dev"]).await;
    let (s, _) = api(&m, &viewer, Method::GET, "/v1/envs/dev", None).await;
    assert_eq!(s, 200);
    let (s, b) = api(&m, &viewer, Method::GET, "/v1/envs/prod", None).await;
    assert_error(s, &b, 403, "forbidden");
    // Its audit trail: its environment's, never every environment's.
    let (s, b) = api(&m, &viewer, Method::GET, "/v1/audit?env=dev", None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api(&m, &viewer, Method::GET, "/v1/audit", None).await;
    assert_error(s, &b, 403, "forbidden");
    let (s, b) = api(&m, &viewer, Method::GET, "/v1/audit?env=prod", None).await;
    assert_error(s, &b, 403, "forbidden");
    // The paging cursor is an audit id: at most 2^63-1, as the OpenAPI document says.
    let (s, b) = api(
        &m,
        &viewer,
        Method::GET,
        "/v1/audit?env=dev&before=9223372036854775807",
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api(
        &m,
        &viewer,
        Method::GET,
        "/v1/audit?env=dev&before=9223372036854775808",
        None,
    )
    .await;
    assert_error(s, &b, 400, "bad_request");
    assert!(
        b["message"].as_str().unwrap().contains("out of range"),
        "{b}"
    );
}

/// Credentials: sealed in the Manager's store and in the Worker's cache, redacted in every
/// answer, in clear only on the Worker pull (worker tokens), and idempotent to re-apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_sealed_at_rest_and_never_shown() {
    const SECRET: &str = "sk-live-5f1d2b9c0a7e44d1";
    const API_KEY: &str = "acme-key-0123456789";
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("m")).await;
    let worker_token = m.env_with_worker_token("dev").await;
    let creds = format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: llm-provider-key }}\nspec:\n  type: secret\n  value: \"{SECRET}\"\n---\napiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: chat-clients }}\nspec:\n  type: api-keys\n  keys:\n    - {{ consumer: acme, key: \"{API_KEY}\" }}\n"
    );
    let proxy = payments_manifest("blue", h.addr(0), "");
    let (s, b) = m.apply("dev", &[creds.clone(), proxy.clone()]).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = m.apply("dev", &[creds.clone(), proxy]).await;
    assert_eq!(
        (s, &b["changed"]),
        (200, &json!(false)),
        "re-applying a secret is a no-op: {b}"
    );

    let w = ManagedWorker::start(ManagedWorker::options(
        &m,
        "dev",
        &worker_token,
        "w1",
        &data.path().join("c"),
    ))
    .await
    .unwrap();
    w.wait_for_revision(1).await;

    // Redacted for people, whatever their role.
    let entities = get(&m, "/v1/envs/dev/entities").await.to_string();
    assert!(entities.contains("<redacted>"), "{entities}");
    let audit = get(&m, "/v1/audit?limit=1000").await.to_string();
    let viewer = m.token("viewer", &[]).await;
    let (s, _) = api(&m, &viewer, Method::GET, "/v1/envs/dev/sync?since=0", None).await;
    assert_eq!(s, 403, "only Workers pull secrets");
    // In clear only on the Worker's pull.
    let (s, pulled) = api(
        &m,
        &worker_token,
        Method::GET,
        "/v1/envs/dev/sync?since=0",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(pulled.to_string().contains(SECRET));

    let db = std::fs::read(data.path().join("m/switchyard.db")).unwrap();
    let wal = std::fs::read(data.path().join("m/switchyard.db-wal")).unwrap_or_default();
    let cache = std::fs::read_to_string(data.path().join("c/dev.lkg.json")).unwrap();
    for secret in [SECRET, API_KEY] {
        assert!(!entities.contains(secret), "entities view leaks {secret}");
        assert!(!audit.contains(secret), "audit leaks {secret}");
        assert!(!cache.contains(secret), "worker cache leaks {secret}");
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "store file leaks {secret}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_are_planned_committed_audited_and_propagated() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(data.path()).await;
    let worker_token = m.env_with_worker_token("dev").await;
    let orders = "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: { name: orders }\nspec:\n  routes:\n    - pathPrefix: /orders\n  upstream:\n    targets:\n      - url: http://ADDR\n".replace("ADDR", &h.addr(0).to_string());
    let (s, b) = m
        .apply("dev", &[payments_manifest("r1", h.addr(0), ""), orders])
        .await;
    assert_eq!(s, 200, "{b}");
    let cache = tempfile::tempdir().unwrap();
    let mut w = ManagedWorker::start(ManagedWorker::options(
        &m,
        "dev",
        &worker_token,
        "w1",
        cache.path(),
    ))
    .await
    .unwrap();
    w.wait_for_revision(1).await;
    assert_eq!(
        switchyard_e2e::get_once(w.addr, "/orders/1").await.status,
        200
    );

    let path = "/v1/envs/dev/apply";
    let delete = json!([{ "kind": "Proxy", "name": "orders" }]);
    // A dry run plans the deletion and changes nothing.
    let (s, b) = m
        .call(
            Method::POST,
            path,
            Some(json!({ "manifests": [], "delete": delete, "dry_run": true })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["changed"], true, "{b}");
    assert_eq!(b["changes"][0]["name"], "orders", "{b}");
    assert_eq!(b["changes"][0]["new_version"], Value::Null, "{b}");
    assert_eq!(revision(&m, "dev").await, 1);

    // Bad deletions name the problem and change nothing.
    let (s, b) = m
        .call(
            Method::POST,
            path,
            Some(json!({ "manifests": [], "delete": [{ "kind": "Proxi", "name": "orders" }] })),
        )
        .await;
    assert_error(s, &b, 422, "invalid_config");
    assert!(
        b["details"][0]
            .as_str()
            .unwrap()
            .contains("unknown kind \"Proxi\""),
        "{b}"
    );
    let (s, b) = m
        .call(
            Method::POST,
            path,
            Some(json!({ "manifests": [payments_manifest("r2", h.addr(0), "")], "delete": [{ "kind": "Proxy", "name": "payments" }] })),
        )
        .await;
    assert_error(s, &b, 422, "invalid_config");
    assert!(
        b["details"][0]
            .as_str()
            .unwrap()
            .contains("also in the manifests"),
        "{b}"
    );
    let (s, b) = m
        .call(Method::POST, path, Some(json!({ "manifests": [] })))
        .await;
    assert_error(s, &b, 400, "bad_request");
    assert_eq!(revision(&m, "dev").await, 1);

    // The deletion: one revision, one audit record, the Worker stops routing /orders.
    let (s, b) = m
        .call(
            Method::POST,
            path,
            Some(json!({ "manifests": [], "delete": delete })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["revision"], 2, "{b}");
    w.wait_for_revision(2).await;
    assert_eq!(
        switchyard_e2e::get_once(w.addr, "/orders/1").await.status,
        404
    );
    assert_eq!(
        switchyard_e2e::get_once(w.addr, "/payments/1").await.status,
        200
    );
    let records = audit(&m, "dev").await;
    let deletion = records
        .iter()
        .find(|r| r["revision"] == 2 && r["entity_kind"] == "Proxy" && r["entity_name"] == "orders")
        .unwrap_or_else(|| panic!("no audit record for the deletion: {records:?}"));
    assert_eq!(deletion["old_version"], 1, "{deletion}");
    assert_eq!(deletion["new_version"], Value::Null, "{deletion}");
    assert_eq!(deletion["operation"], "apply", "{deletion}");

    // Deleting what no longer exists is a no-op: no revision, no audit noise.
    let (s, b) = m
        .call(
            Method::POST,
            path,
            Some(json!({ "manifests": [], "delete": delete })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["changed"], false, "{b}");
    // (Worker ACKs are audited too and may still arrive; count the changes only.)
    let changes = |r: &[Value]| r.iter().filter(|r| r["operation"] != "report").count();
    assert_eq!(changes(&audit(&m, "dev").await), changes(&records));
    w.stop().await;
}

/// A secret stored before digests were keyed (its digest a plain SHA-256) is no change when
/// re-applied unchanged, and gets a keyed digest with its next change; Workers follow both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_stored_with_a_plain_digest_keeps_it_until_it_changes() {
    use switchyard_config::secretbox::SecretBox;
    use switchyard_store::{Change, CommitRequest, Store};
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("manager");
    let m = RunningManager::start(&dir).await;
    let worker = m.env_with_worker_token("dev").await;
    let secret = |value: &str| {
        format!(
            "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: llm }}\nspec:\n  type: secret\n  value: \"{value}\"\n"
        )
    };
    // What an older Manager stored: the sealed canonical form and its plain SHA-256.
    let old = switchyard_config::parse_str("old.yaml".into(), &secret("s3cret-1")).unwrap();
    let key = SecretBox::load_or_create(&dir.join("secret.key")).unwrap();
    let json = old[0].value.canonical_json();
    m.store
        .commit(CommitRequest {
            env: "dev".into(),
            actor: "test (an older Manager)".into(),
            operation: switchyard_api::records::Operation::Apply,
            expected_revision: None,
            changes: vec![Change::Upsert {
                kind: switchyard_config::Kind::Credential,
                name: "llm".into(),
                digest: old[0].digest.clone(),
                manifest: SecretBox::new(&key).seal(&json).unwrap(),
                labels: Default::default(),
                template: None,
                template_digest: None,
            }],
            detail: None,
            canary: Default::default(),
        })
        .await
        .unwrap();
    let digest_of = async |m: &RunningManager| {
        let all = get(m, "/v1/envs/dev/entities").await;
        all.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "llm")
            .map(|e| e["digest"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(digest_of(&m).await, old[0].digest);

    // Unchanged: no change, the plain digest stays; a Worker verifies and ACKs it.
    let (s, b) = m
        .apply(
            "dev",
            &[payments_manifest("blue", h.addr(0), ""), secret("s3cret-1")],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["changes"].as_array().unwrap().len(),
        1,
        "only the proxy: {b}"
    );
    assert_eq!(digest_of(&m).await, old[0].digest);
    let cache = data.path().join("cache");
    let mut w = ManagedWorker::start(ManagedWorker::options(&m, "dev", &worker, "w1", &cache))
        .await
        .unwrap();
    w.wait_for_revision(2).await;

    // Changed: keyed from now on, and the Worker follows.
    let (s, b) = m.apply("dev", &[secret("s3cret-2")]).await;
    assert_eq!(s, 200, "{b}");
    let new = switchyard_config::parse_str("new.yaml".into(), &secret("s3cret-2")).unwrap();
    let keyed = digest_of(&m).await;
    assert_ne!(keyed, new[0].digest, "still a plain digest after a change");
    w.wait_for_revision(3).await;
    let view = m.wait_reports("dev", 3, &["w1"]).await;
    assert!(
        view.reports.iter().all(|r| r.error.is_none()),
        "{:?}",
        view.reports
    );
    w.stop().await;
}
