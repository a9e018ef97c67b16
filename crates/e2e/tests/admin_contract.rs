#![allow(clippy::unwrap_used)]
//! The admin API's contract against a real Manager on a real socket: every refusal is JSON
//! with a stable code (axum's own rejections included) and a 401 names its scheme; limits
//! are enforced, not clamped; a revoked token is refused at once on every path; an
//! environment is deleted only without Workers unless forced, keeping its audit trail; and
//! wrong tokens are counted, and slowed down per peer without slowing other peers.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use switchyard_e2e::cluster::{ManagedWorker, RunningManager, api};
use switchyard_e2e::send::{TestBody, send, send_from};
use switchyard_e2e::{Answer, DEADLINE, payments_manifest};

/// A Manager serving plain HTTP on loopback: these tests write requests byte by byte (the
/// contract is HTTP's; TLS below it is proven in `control_plane_tls.rs`).
async fn start() -> (tempfile::TempDir, RunningManager) {
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start_plain(&data.path().join("manager")).await;
    (data, m)
}

/// One request with the admin token and these headers and body.
async fn admin(
    m: &RunningManager,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Answer {
    let auth = format!("Bearer {}", m.admin_token);
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    send(m.addr, method, path, &all, body).await.unwrap()
}

/// The answer is a JSON error with `status` and `code`; returns its message.
fn refused(a: &Answer, status: u16, code: &str) -> String {
    let body = String::from_utf8_lossy(&a.body).into_owned();
    assert_eq!(a.status, status, "{body}");
    assert!(
        a.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "not JSON: {:?} {body}",
        a.header("content-type")
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], code, "{body}");
    let message = v["message"].as_str().unwrap().to_string();
    assert!(!message.is_empty(), "{body}");
    message
}

/// A Worker `id` following `env` with `token`, serving revision 1.
async fn follower(
    m: &RunningManager,
    env: &str,
    token: &str,
    id: &str,
    dir: &Path,
) -> ManagedWorker {
    let cache = dir.join(format!("cache-{id}"));
    let w = ManagedWorker::start(ManagedWorker::options(m, env, token, id, &cache))
        .await
        .unwrap();
    w.wait_for_revision(1).await;
    w
}

/// `(s, b)` is the JSON error `status` with `code`.
fn error_is(s: u16, b: &Value, status: u16, code: &str) {
    assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{b}");
}

/// `GET /v1/envs` with `authorization` (the whole header), from `from` (default: 127.0.0.1).
async fn envs_as(m: &RunningManager, from: Option<IpAddr>, authorization: &str) -> Answer {
    let headers = [("authorization", authorization)];
    send_from(
        from,
        m.addr,
        Method::GET,
        "/v1/envs",
        &headers,
        TestBody::Empty,
    )
    .await
    .unwrap()
}

fn json_body(v: Value) -> TestBody {
    TestBody::Whole(Bytes::from(v.to_string()))
}

async fn metric(m: &RunningManager, series: &str) -> u64 {
    let a = send(m.addr, Method::GET, "/metrics", &[], TestBody::Empty)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&a.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json_with_a_stable_code() {
    let (_data, m) = start().await;
    m.env_with_worker_token("dev").await;
    let ct = ("content-type", "application/json");

    // axum's own rejections: not JSON, no or another content type, too large, wrong fields.
    let a = admin(
        &m,
        Method::POST,
        "/v1/envs",
        &[ct],
        TestBody::Whole(Bytes::from_static(b"{\"name\": ")),
    )
    .await;
    refused(&a, 400, "bad_request");
    let a = admin(
        &m,
        Method::POST,
        "/v1/envs",
        &[("content-type", "text/plain")],
        json_body(json!({"name": "qa"})),
    )
    .await;
    let message = refused(&a, 415, "unsupported_media_type");
    assert!(
        message.contains("Content-Type: application/json"),
        "{message}"
    );
    let a = admin(
        &m,
        Method::POST,
        "/v1/envs",
        &[],
        json_body(json!({"name": "qa"})),
    )
    .await;
    refused(&a, 415, "unsupported_media_type");
    let a = admin(
        &m,
        Method::POST,
        "/v1/envs",
        &[ct],
        json_body(json!({"name": "qa", "colour": "red"})),
    )
    .await;
    let message = refused(&a, 422, "invalid_body");
    assert!(message.contains("colour"), "names the field: {message}");
    let a = admin(
        &m,
        Method::POST,
        "/v1/envs/dev/rollback",
        &[ct],
        json_body(json!({"to_revision": 1.5})),
    )
    .await;
    refused(&a, 422, "invalid_body");
    let big = format!("{{\"manifests\": [\"{}\"]}}", "x".repeat(9 * 1024 * 1024));
    let a = admin(
        &m,
        Method::POST,
        "/v1/envs/dev/apply",
        &[ct],
        TestBody::Whole(Bytes::from(big)),
    )
    .await;
    let message = refused(&a, 413, "payload_too_large");
    assert!(message.contains("8 MiB"), "{message}");
    // Nothing of it was created.
    assert_eq!(
        api(&m, &m.admin_token, Method::GET, "/v1/envs/qa", None)
            .await
            .0,
        404
    );

    // Query and path parameters that do not parse, limits out of range: refused, not served.
    for path in [
        "/v1/envs/dev/revisions?limit=abc",
        "/v1/envs/dev/revisions?limit=-1",
        "/v1/envs/dev/revisions/abc",
        "/v1/envs/dev/sync?since=x",
    ] {
        let a = admin(&m, Method::GET, path, &[], TestBody::Empty).await;
        refused(&a, 400, "bad_request");
    }
    for path in [
        "/v1/envs/dev/revisions?limit=1001",
        "/v1/envs/dev/revisions?limit=0",
        "/v1/audit?limit=5000",
    ] {
        let a = admin(&m, Method::GET, path, &[], TestBody::Empty).await;
        let message = refused(&a, 400, "bad_request");
        assert!(message.contains("give 1 to 1000"), "{path}: {message}");
    }
    let a = admin(
        &m,
        Method::GET,
        "/v1/envs/dev/revisions?limit=1000",
        &[],
        TestBody::Empty,
    )
    .await;
    assert_eq!(a.status, 200);
    let a = admin(
        &m,
        Method::GET,
        "/v1/audit?since=1h30m",
        &[],
        TestBody::Empty,
    )
    .await;
    refused(&a, 400, "bad_request");

    // A method the route does not have, a route that does not exist.
    let a = admin(&m, Method::PATCH, "/v1/envs/dev", &[], TestBody::Empty).await;
    let message = refused(&a, 405, "method_not_allowed");
    let allow = a.header("allow").unwrap();
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    assert!(message.contains("PATCH"), "{message}");
    let a = admin(&m, Method::GET, "/v2/nothing", &[], TestBody::Empty).await;
    refused(&a, 404, "not_found");

    // A 401 names the scheme (RFC 9110 §11.6.1), whatever was wrong with the token.
    for auth in [None, Some("Basic abc"), Some("Bearer sy_wrong")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let a = send(m.addr, Method::GET, "/v1/envs", &headers, TestBody::Empty)
            .await
            .unwrap();
        refused(&a, 401, "unauthorized");
        assert!(
            a.header("www-authenticate").unwrap().starts_with("Bearer"),
            "{auth:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_at_once_on_every_path() {
    let (data, m) = start().await;
    let worker = m.env_with_worker_token("dev").await;
    let deployer = m.token("deployer", &["dev"]).await;
    let manifest = payments_manifest("blue", "127.0.0.1:9".parse().unwrap(), "");
    let listed = m.client.tokens().await.unwrap();
    let id_of = |role: &str| {
        listed
            .iter()
            .find(|t| t.role.as_str() == role && t.name == format!("test-{role}"))
            .unwrap()
            .id
            .clone()
    };
    let (deployer_id, worker_id) = (id_of("deployer"), id_of("worker"));

    // Both work, and are now in the Manager's verification cache.
    let apply = json!({ "manifests": [manifest] });
    let (s, b) = api(
        &m,
        &deployer,
        Method::POST,
        "/v1/envs/dev/apply",
        Some(apply.clone()),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api(&m, &worker, Method::GET, "/v1/envs/dev/sync?since=0", None).await;
    assert_eq!(s, 200, "{b}");
    let mut w = follower(&m, "dev", &worker, "w1", data.path()).await;

    for id in [&deployer_id, &worker_id] {
        let (s, b) = m
            .call(Method::DELETE, &format!("/v1/tokens/{id}"), None)
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["revoked"], true, "{b}");
        assert!(b["revoked_at"].as_i64().is_some(), "{b}");
        assert!(b.get("hash").is_none(), "{b}");
    }

    // At once, within the cache's lifetime: every path refuses them.
    let (s, b) = api(
        &m,
        &deployer,
        Method::POST,
        "/v1/envs/dev/apply",
        Some(apply),
    )
    .await;
    error_is(s, &b, 401, "unauthorized");
    let (s, _) = api(&m, &deployer, Method::GET, "/v1/envs/dev", None).await;
    assert_eq!(s, 401);
    for path in [
        "/v1/envs/dev/sync?since=0",
        "/v1/envs/dev/events",
        "/v1/envs/dev",
    ] {
        let (s, b) = api(&m, &worker, Method::GET, path, None).await;
        assert_eq!(s, 401, "{path}: {b}");
    }
    let report =
        json!({"revision": 1, "status": "ack", "error": null, "applied_at": 1, "address": null});
    let (s, _) = api(
        &m,
        &worker,
        Method::POST,
        "/v1/envs/dev/reports",
        Some(report),
    )
    .await;
    assert_eq!(s, 401);

    // Listed as revoked; audited once; revoking again changes nothing.
    let tokens = m.client.tokens().await.unwrap();
    let d = tokens.iter().find(|t| t.id == deployer_id).unwrap();
    assert!(d.revoked && d.revoked_at.is_some());
    let again = m.client.revoke_token(&deployer_id).await.unwrap();
    assert_eq!(again.revoked_at, d.revoked_at);
    let trail = m
        .client
        .audit(&switchyard_api::admin::AuditParams {
            entity: Some(format!("token/{deployer_id}")),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let revocations: Vec<_> = trail
        .iter()
        .filter(|r| r.operation.as_str() == "revoke-token")
        .collect();
    assert_eq!(revocations.len(), 1, "{trail:?}");
    assert!(
        revocations[0].actor.starts_with("bootstrap-admin (tok_"),
        "{:?}",
        revocations[0]
    );

    // An unknown id, the token revoking itself, a token that is not an admin's.
    let (s, b) = m.call(Method::DELETE, "/v1/tokens/tok_nope", None).await;
    error_is(s, &b, 404, "unknown_token");
    let own = tokens
        .iter()
        .find(|t| t.name == "bootstrap-admin")
        .unwrap()
        .id
        .clone();
    let (s, b) = m
        .call(Method::DELETE, &format!("/v1/tokens/{own}"), None)
        .await;
    error_is(s, &b, 409, "revoking_own_token");
    let viewer = m.token("viewer", &[]).await;
    let (s, _) = api(
        &m,
        &viewer,
        Method::DELETE,
        &format!("/v1/tokens/{own}"),
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert!(
        !m.client
            .tokens()
            .await
            .unwrap()
            .iter()
            .find(|t| t.id == own)
            .unwrap()
            .revoked
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_is_deleted_only_without_workers_unless_forced() {
    let (data, m) = start().await;
    let worker = m.env_with_worker_token("qa").await;
    let (s, b) = m
        .apply(
            "qa",
            &[payments_manifest(
                "blue",
                "127.0.0.1:9".parse().unwrap(),
                "",
            )],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, old) = m.call(Method::GET, "/v1/envs/qa/sync?since=0", None).await;
    assert_eq!(s, 200, "{old}");
    let mut w = follower(&m, "qa", &worker, "qa-1", data.path()).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !m
        .client
        .workers("qa")
        .await
        .unwrap()
        .iter()
        .any(|w| w.connected)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Worker never connected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // Refused while a Worker is connected, naming it and the way to force; nothing deleted.
    let (s, b) = m.call(Method::DELETE, "/v1/envs/qa", None).await;
    error_is(s, &b, 409, "workers_connected");
    assert_eq!(b["details"], json!(["qa-1"]), "{b}");
    assert!(b["message"].as_str().unwrap().contains("force"), "{b}");
    assert_eq!(m.client.env("qa").await.unwrap().revision, 1);
    let viewer = m.token("viewer", &[]).await;
    let (s, _) = api(&m, &viewer, Method::DELETE, "/v1/envs/qa?force=true", None).await;
    assert_eq!(s, 403);

    let deleted = m.client.delete_env("qa", true).await.unwrap();
    assert_eq!(
        (deleted.revision, deleted.entities, deleted.revisions),
        (1, 1, 1)
    );
    assert_eq!(deleted.connected_workers, ["qa-1"]);
    let (s, b) = m.call(Method::GET, "/v1/envs/qa", None).await;
    error_is(s, &b, 404, "unknown_environment");
    // The Worker keeps serving what it had.
    assert_eq!(w.handle.revision(), 1);

    // The audit trail stays, the deletion on top, with who and that it was forced.
    let trail = m
        .client
        .audit(&switchyard_api::admin::AuditParams {
            env: Some("qa".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let last = &trail[0];
    assert_eq!(last.operation.as_str(), "delete-env");
    assert_eq!(
        (last.entity_kind.as_str(), last.revision),
        ("Environment", Some(1))
    );
    assert!(last.detail.as_deref().unwrap().contains("qa-1"), "{last:?}");
    assert!(
        trail.iter().any(|r| r.operation.as_str() == "apply"),
        "{trail:?}"
    );
    // An environment that never existed is an error, not an empty trail.
    let (s, b) = m.call(Method::GET, "/v1/audit?env=never", None).await;
    error_is(s, &b, 404, "unknown_environment");

    // The name starts afresh: nothing the Manager kept for the old one is served.
    w.stop().await;
    m.call(Method::POST, "/v1/envs", Some(json!({"name": "qa"})))
        .await;
    assert_eq!(m.client.env("qa").await.unwrap().revision, 0);
    let (s, b) = m
        .apply(
            "qa",
            &[payments_manifest(
                "green",
                "127.0.0.1:9".parse().unwrap(),
                "",
            )],
        )
        .await;
    assert_eq!((s, b["revision"].as_u64()), (200, Some(1)), "{b}");
    let (s, new) = m.call(Method::GET, "/v1/envs/qa/sync?since=0", None).await;
    assert_eq!(s, 200, "{new}");
    assert_ne!(
        new["state_digest"], old["state_digest"],
        "served the deleted environment's pull"
    );
    assert!(
        new["entities"][0]["manifest"]
            .as_str()
            .unwrap()
            .contains("green"),
        "{new}"
    );
    let (s, b) = m.call(Method::DELETE, "/v1/envs/never", None).await;
    error_is(s, &b, 404, "unknown_environment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_counted_and_slowed_down_per_peer() {
    use switchyard_manager::auth::throttle::{FREE_FAILURES, MAX_WAITING};
    let (_data, m) = start().await;
    m.env_with_worker_token("dev").await;
    let unknown = "switchyard_manager_auth_failures_total{reason=\"unknown\"}";
    let throttled = "switchyard_manager_auth_failures_total{reason=\"throttled\"}";
    let wrong = |n: u32| format!("Bearer sy_wrong_{n}");

    // Counted, by reason; the first few are answered at once (no delay to wait out).
    for n in 0..FREE_FAILURES + 5 {
        let auth = wrong(n);
        let a = envs_as(&m, None, &auth).await;
        refused(&a, 401, "unauthorized");
    }
    assert_eq!(metric(&m, unknown).await, u64::from(FREE_FAILURES + 5));
    let missing = send(m.addr, Method::GET, "/v1/envs", &[], TestBody::Empty)
        .await
        .unwrap();
    refused(&missing, 401, "unauthorized");
    assert_eq!(
        metric(
            &m,
            "switchyard_manager_auth_failures_total{reason=\"missing\"}"
        )
        .await,
        1
    );

    // This peer's failures now wait (over a second each). With MAX_WAITING of them waiting,
    // the next is refused at once, its token unchecked: more connections buy no guesses.
    let before = metric(&m, unknown).await;
    let mut waiting = Vec::new();
    for n in 0..MAX_WAITING {
        let addr = m.addr;
        let auth = wrong(100 + n);
        waiting.push(tokio::spawn(async move {
            send(
                addr,
                Method::GET,
                "/v1/envs",
                &[("authorization", &auth)],
                TestBody::Empty,
            )
            .await
            .unwrap()
        }));
    }
    // Each is counted before it waits.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while metric(&m, unknown).await < before + u64::from(MAX_WAITING) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failures were not counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let a = admin(&m, Method::GET, "/v1/envs", &[], TestBody::Empty).await;
    refused(&a, 429, "too_many_auth_failures");
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(metric(&m, throttled).await, 1);

    // Another peer is not slowed down: its valid token works, a wrong one is answered 401.
    let other = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let auth = format!("Bearer {}", m.admin_token);
    let a = envs_as(&m, other, &auth).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = envs_as(&m, other, "Bearer sy_x").await;
    refused(&a, 401, "unauthorized");

    for w in waiting {
        refused(&w.await.unwrap(), 401, "unauthorized");
    }
    // With nothing waiting any more, this peer's valid token is let through again.
    let a = admin(&m, Method::GET, "/v1/envs", &[], TestBody::Empty).await;
    assert_eq!(a.status, 200);
}
