//! APIops history and feedback, through the real binary against a real Manager process:
//! `rollback` (a new revision with an earlier one's content), `--wait` (every expected
//! Worker ACKs; NACKs and silent Workers reported, exit 1), expiring tokens, and the CLI's
//! one-line error messages.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use common::{Manager, Worker, get, run, upstream, wait_until};
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::Value;
use switchyard_api::admin::{CreateToken, EntityView};
use switchyard_api::records::{AuditRecord, Operation, ReportStatus, TokenRecord};
use switchyard_api::sync::ReportBody;

fn worker_token(m: &Manager) -> String {
    m.token(&["--role", "worker", "--env", "dev"])
}

/// A Manager-mode Worker process following `dev`, connected to the Manager.
fn worker(m: &Manager, id: &str) -> Worker {
    let worker = m.spawn_worker("dev", &worker_token(m), Some(id));
    wait_until("the worker is connected to the manager", || {
        m.connected("dev", id)
    });
    worker
}

/// Subscribes to `dev`'s notifications as Worker `id`, the way a Worker does, and never
/// answers: the Manager expects it to ACK every revision committed meanwhile. The stream
/// stays open while the returned answer is kept.
fn silent_worker(m: &Manager, id: &str) -> impl Sized {
    silent_worker_as(m, id, &worker_token(m))
}

/// [`silent_worker`] with `token`: the Manager takes reports for `id` only with the token
/// its stream was opened with.
fn silent_worker_as(m: &Manager, id: &str, token: &str) -> impl Sized + use<> {
    let transport = m.worker_transport(token, id);
    let accept = (
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    let stream = m
        .block_on(transport.open(Method::GET, "/v1/envs/dev/events", Bytes::new(), &[accept]))
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    wait_until("the silent worker is connected", || m.connected("dev", id));
    stream
}

fn payments(release: &str, upstream: SocketAddr) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: payments }}\nspec:\n  routes: [{{ pathPrefix: /payments }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: {release} }} }}\n"
    )
}

fn orders(upstream: SocketAddr) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: orders }}\nspec:\n  routes: [{{ pathPrefix: /orders }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n"
    )
}

/// A credential no proxy uses (stored sealed by the Manager).
fn secret(value: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: upstream-key }}\nspec:\n  type: secret\n  value: \"{value}\"\n"
    )
}

/// Writes `files` (name, text) as the only files of `dir`.
fn write_dir(dir: &Path, files: &[(&str, String)]) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// kind/name → digest of the live entities.
fn digests(m: &Manager) -> Vec<(String, String)> {
    m.get_200::<Vec<EntityView>>("/v1/envs/dev/entities")
        .into_iter()
        .map(|e| (format!("{}/{}", e.kind, e.name), e.digest))
        .collect()
}

fn audit(m: &Manager) -> Vec<AuditRecord> {
    m.get_200("/v1/audit?env=dev&limit=1000")
}

/// Every JSON document printed on stdout, in order.
fn json_docs(out: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(out)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn rollback_restores_an_earlier_revision_as_a_new_one() {
    let (_upstream, up) = upstream("a");
    let m = Manager::with_env("dev");
    let w1 = worker(&m, "w1");
    let gw = w1.listen;
    let files = m.dir().join("manifests");
    let files_arg = files.to_str().unwrap().to_string();

    // r1, waited for: the one Worker ACKs.
    write_dir(
        &files,
        &[
            ("payments.yaml", payments("blue", up)),
            ("key.yaml", secret("s3cret-one")),
        ],
    );
    let (ok, out, err) = m.cli(&["apply", "--env", "dev", &files_arg, "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("dev: revision 1 (was 0)"), "{out}");
    assert!(out.contains("revision 1: 1/1 Workers ACKed"), "{out}");
    // Off a terminal, no progress line: only the final result.
    assert!(!err.contains('\r'), "{err:?}");
    assert!(get(gw, "/payments/1").1.contains("x-release: blue"));
    let r1 = digests(&m);

    // r2: payments and the credential changed, orders added.
    write_dir(
        &files,
        &[
            ("payments.yaml", payments("green", up)),
            ("orders.yaml", orders(up)),
            ("key.yaml", secret("s3cret-two")),
        ],
    );
    let (ok, out, err) = m.cli(&["apply", "--env", "dev", &files_arg, "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("revision 2: 1/1 Workers ACKed"), "{out}");
    assert!(get(gw, "/payments/2").1.contains("x-release: green"));
    assert_eq!(get(gw, "/orders/1").0, 200);
    let audit_before = audit(&m).len();

    // A dry run says what would change and changes nothing; like plan, it exits 2.
    let (code, out, err) = m.code(
        &[
            "rollback",
            "--env",
            "dev",
            "--to-revision",
            "1",
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("rollback to revision 1: dev (revision 2): 3 change(s) would be applied")
            && out.contains("proxy/orders: delete (v1)")
            && out.contains("~ proxy/payments: v2 -> v3 (hot)"),
        "{out}"
    );
    assert_eq!(m.revision("dev"), 2);

    // The rollback: revision 3, r1's content, the Worker back to r1's behaviour.
    let (ok, out, err) = m.cli(&["rollback", "--env", "dev", "--to-revision", "1", "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("dev: revision 3 (was 2), 3 change(s)")
            && out.contains("credential/upstream-key: v2 -> v3")
            && out.contains("proxy/orders: deleted (was v1)")
            && out.contains("proxy/payments: v2 -> v3")
            && out.contains("revision 3 has the content of revision 1")
            && out.contains("revision 3: 1/1 Workers ACKed"),
        "{out}"
    );
    assert_eq!(m.revision("dev"), 3);
    assert_eq!(
        digests(&m),
        r1,
        "revision 3 has exactly revision 1's entities"
    );
    assert!(get(gw, "/payments/3").1.contains("x-release: blue"));
    assert_eq!(get(gw, "/orders/2").0, 404);

    // History is kept: r3 is a rollback, audited with its detail, one record per change.
    let rev = m.block_on(m.api.revision("dev", 3)).unwrap();
    assert_eq!(rev.record.operation, Operation::Rollback);
    let audit_after = audit(&m);
    let rollbacks: Vec<&AuditRecord> = audit_after
        .iter()
        .filter(|a| a.operation == Operation::Rollback)
        .collect();
    assert_eq!(rollbacks.len(), 3, "{audit_after:?}");
    for a in &rollbacks {
        assert_eq!(a.detail.as_deref(), Some("rollback to revision 1"));
        assert_eq!(a.revision, Some(3));
    }
    let rev2 = m.block_on(m.api.revision("dev", 2)).unwrap();
    assert_eq!(
        rev2.record.operation,
        Operation::Apply,
        "earlier revisions are untouched"
    );

    // To the current revision: nothing changes, nothing is written.
    let audit_count = audit(&m).len();
    assert!(audit_count > audit_before);
    let (ok, out, err) = m.cli(&["rollback", "--env", "dev", "--to-revision", "3", "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("no changes: dev (revision 3) already has the content of revision 3"),
        "{out}"
    );
    // r1 has the same content as r3: no change either.
    let (ok, out, _) = m.cli(&["rollback", "--env", "dev", "--to-revision", "1"]);
    assert!(ok && out.contains("no changes"), "{out}");
    assert_eq!(m.revision("dev"), 3);
    assert_eq!(audit(&m).len(), audit_count, "no audit noise");

    // Forward to r2's content, as JSON: one document, the wait's report under "wait".
    let (ok, out, err) = m.cli(&[
        "rollback",
        "--env",
        "dev",
        "--to-revision",
        "2",
        "--wait",
        "--output",
        "json",
    ]);
    assert!(ok, "{out}{err}");
    let docs = json_docs(&out);
    assert_eq!(docs.len(), 1, "{out}");
    assert_eq!(docs[0]["to_revision"], 2);
    assert_eq!(docs[0]["revision"], 4);
    assert_eq!(docs[0]["previous_revision"], 3);
    assert_eq!(docs[0]["changed"], true);
    assert_eq!(docs[0]["changes"].as_array().unwrap().len(), 3);
    let wait = &docs[0]["wait"];
    assert_eq!(wait["revision"], 4);
    assert_eq!(wait["outcome"], "acked");
    assert_eq!(wait["workers"][0]["id"], "w1");
    assert_eq!(wait["workers"][0]["status"], "ack");
    assert!(get(gw, "/payments/4").1.contains("x-release: green"));
    assert_eq!(
        get(gw, "/orders/3").0,
        200,
        "orders is back, after its tombstone"
    );
    let r4 = m.block_on(m.api.revision("dev", 4)).unwrap();
    let orders_change = r4
        .record
        .changes
        .iter()
        .find(|c| c.name == "orders")
        .unwrap()
        .clone();
    assert_eq!(orders_change.old_version, None);
    assert_eq!(
        orders_change.new_version,
        Some(3),
        "v1, the v2 tombstone, then v3"
    );

    // To a revision that does not exist (yet), or 0: refused, nothing written.
    let (ok, _, err) = m.cli(&["rollback", "--env", "dev", "--to-revision", "9"]);
    assert!(!ok);
    assert!(
        err.contains("environment \"dev\" has no revision 9 (it is at revision 4)"),
        "{err}"
    );
    let (ok, _, err) = m.cli(&["rollback", "--env", "dev", "--to-revision", "0"]);
    assert!(!ok);
    assert!(err.contains("invalid_revision"), "{err}");
    assert_eq!(m.revision("dev"), 4);
}

#[test]
fn apply_wait_with_no_change_returns_at_once() {
    let m = Manager::with_env("dev");
    let _silent = silent_worker(&m, "never-answers");
    let files = m.dir().join("manifests");
    write_dir(
        &files,
        &[("orders.yaml", orders("127.0.0.1:1".parse().unwrap()))],
    );
    let files_arg = files.to_str().unwrap();
    // Committed without waiting; the same again with --wait creates no revision, so there
    // is nothing to wait for, even with a Worker that never answers.
    let (ok, out, err) = m.cli(&["apply", "--env", "dev", files_arg]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = m.cli(&[
        "apply",
        "--env",
        "dev",
        files_arg,
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("no changes"), "{out}");
}

#[test]
fn apply_wait_times_out_naming_the_worker_that_did_not_answer() {
    let m = Manager::with_env("dev");
    let _silent = silent_worker(&m, "silent-worker");
    let files = m.dir().join("manifests");
    write_dir(
        &files,
        &[("orders.yaml", orders("127.0.0.1:1".parse().unwrap()))],
    );
    let started = std::time::Instant::now();
    let (ok, out, err) = m.cli(&[
        "apply",
        "--env",
        "dev",
        files.to_str().unwrap(),
        "--wait",
        "--timeout",
        "1s",
    ]);
    assert!(!ok, "{out}{err}");
    assert!(out.contains("dev: revision 1 (was 0)"), "{out}");
    assert!(
        out.contains(
            "revision 1: timed out after 1s: 0/1 Workers ACKed, 0 NACKed, 1 did not answer"
        ) && out.contains("silent-worker: no answer"),
        "{out}"
    );
    assert!(started.elapsed() < common::DEADLINE);
    // The revision was committed all the same.
    assert_eq!(m.revision("dev"), 1);
}

#[test]
fn apply_wait_reports_a_nack_with_its_error() {
    let m = Manager::with_env("dev");
    let token = worker_token(&m);
    let _silent = silent_worker_as(&m, "nacking-worker", &token);
    let files = m.dir().join("manifests");
    write_dir(
        &files,
        &[("orders.yaml", orders("127.0.0.1:1".parse().unwrap()))],
    );
    let child = m.cli_child(&[
        "apply",
        "--env",
        "dev",
        files.to_str().unwrap(),
        "--wait",
        "--timeout",
        "20s",
    ]);
    wait_until("revision 1 is committed", || m.revision("dev") == 1);
    // The Worker's NACK, as a Worker reports it.
    let nack = ReportBody {
        revision: 1,
        status: ReportStatus::Nack,
        error: Some("proxy orders: upstream http://127.0.0.1:1 refused".into()),
        applied_at: 0,
        pulled_at: None,
        address: None,
        store_id: None,
        detail: None,
        caught_up_to: None,
    };
    let transport = m.worker_transport(&token, "nacking-worker");
    let reply = m
        .block_on(transport.send(Method::POST, "/v1/envs/dev/reports", Some(&nack)))
        .unwrap();
    assert_eq!(reply.status, 204);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("revision 1: 0/1 Workers ACKed, 1 NACKed")
            && stdout.contains(
                "nacking-worker: NACK: proxy orders: upstream http://127.0.0.1:1 refused"
            ),
        "{stdout}"
    );
}

#[test]
fn an_expired_token_is_refused_with_when_and_how_to_renew() {
    let m = Manager::with_env("dev");
    let short = m.token(&[
        "--role",
        "admin",
        "--name",
        "short-lived",
        "--expires-in",
        "1ms",
    ]);
    let long = m.token(&[
        "--role",
        "admin",
        "--name",
        "long-lived",
        "--expires-in",
        "30d",
    ]);
    let rollback_with = |token: &str| {
        run(
            &["rollback", "--env", "dev", "--to-revision", "1"],
            &[
                ("SWITCHYARD_MANAGER", m.url.as_str()),
                ("SWITCHYARD_CA", m.ca.as_str()),
                ("SWITCHYARD_TOKEN", token),
            ],
        )
    };
    let mut last = String::new();
    wait_until("the short-lived token has expired", || {
        let (ok, _, err) = rollback_with(&short);
        last = err;
        !ok && last.contains("expired at")
    });
    let line = last.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with("error: the Manager refused the token: token tok_")
            && line.contains("(\"short-lived\") expired at 20")
            && line.contains("create a new one with `switchyard manager token create`"),
        "{line}"
    );
    // The long-lived one works (the environment is at revision 0: nothing to roll back to).
    let (ok, _, err) = rollback_with(&long);
    assert!(!ok && err.contains("has no revision 1"), "{err}");

    // The listing shows each token's expiry.
    let tokens: Vec<TokenRecord> = m.get_200("/v1/tokens");
    let expiry = |name: &str| tokens.iter().find(|t| t.name == name).unwrap().expires_at;
    assert!(expiry("bootstrap-admin").is_none());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let long_at = expiry("long-lived").unwrap();
    assert!(long_at > now + 29 * 86_400_000 && long_at <= now + 30 * 86_400_000);
    assert!(expiry("short-lived").unwrap() <= now);

    // Through the API: expires_in as a duration.
    let create = |expires_in: &str| {
        let request = CreateToken {
            name: "api".into(),
            role: "viewer".into(),
            expires_in: Some(expires_in.into()),
            ..CreateToken::default()
        };
        let call = m
            .api
            .transport()
            .send(Method::POST, "/v1/tokens", Some(&request));
        let reply = m.block_on(call).unwrap();
        (reply.status, reply.json())
    };
    let (status, created) = create("1h");
    assert_eq!(status, 201, "{created}");
    assert!(created["expires_at"].as_i64().unwrap() > now);
    let (status, err) = create("soon");
    assert_eq!(status, 400, "{err}");
}

#[test]
fn cli_errors_name_the_cause_and_the_fix() {
    let m = Manager::with_env("dev");
    let files = m.dir().join("manifests");
    write_dir(
        &files,
        &[("orders.yaml", orders("127.0.0.1:1".parse().unwrap()))],
    );
    let files_arg = files.to_str().unwrap();
    let one_line = |err: &str| {
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err.trim().to_string()
    };

    // An unknown environment.
    let (ok, _, err) = m.cli(&["apply", "--env", "prod", files_arg]);
    assert!(!ok);
    assert_eq!(
        one_line(&err),
        format!(
            "error: environment prod does not exist on the Manager at {}; create it with `switchyard env create prod`",
            m.url
        )
    );
    let (ok, _, err) = m.cli(&["rollback", "--env", "prod", "--to-revision", "1"]);
    assert!(!ok);
    assert!(err.contains("environment prod does not exist"), "{err}");

    // A bad token.
    let (ok, _, err) = run(
        &[
            "apply",
            "--env",
            "dev",
            files_arg,
            "--token",
            "sy_not_a_token",
        ],
        &[
            ("SWITCHYARD_MANAGER", m.url.as_str()),
            ("SWITCHYARD_CA", m.ca.as_str()),
        ],
    );
    assert!(!ok);
    assert_eq!(
        one_line(&err),
        "error: the Manager refused the token (unknown or revoked token): check --token-file / --token (SWITCHYARD_TOKEN_FILE / SWITCHYARD_TOKEN)"
    );

    // A role that may not.
    let viewer = m.token(&["--role", "viewer"]);
    let (ok, _, err) = run(
        &["rollback", "--env", "dev", "--to-revision", "1"],
        &[
            ("SWITCHYARD_MANAGER", m.url.as_str()),
            ("SWITCHYARD_CA", m.ca.as_str()),
            ("SWITCHYARD_TOKEN", viewer.as_str()),
        ],
    );
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.starts_with("error: the token's role may not do this: token tok_")
            && line.contains("has role viewer, which cannot change \"dev\""),
        "{line}"
    );

    // No Manager there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (ok, _, err) = run(
        &["apply", "--env", "dev", files_arg, "--manager", &nowhere],
        &[("SWITCHYARD_TOKEN", m.admin.as_str())],
    );
    assert!(!ok);
    let line = one_line(&err);
    assert!(
        line.starts_with(&format!(
            "error: cannot reach the Manager at {nowhere}, nothing was sent (is it running? check --manager / SWITCHYARD_MANAGER)"
        )),
        "{line}"
    );
}
