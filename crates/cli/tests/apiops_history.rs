//! APIops history and feedback, through the real binary against a real Manager process:
//! `rollback` (a new revision with an earlier one's content), `--wait` (every expected
//! Worker ACKs; NACKs and silent Workers reported, exit 1), expiring tokens, and the CLI's
//! one-line error messages.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Proc, addr, get, run, wait_until};
use serde_json::{Value, json};

/// A Manager process with a `dev` environment, and the admin token.
struct Manager {
    dir: tempfile::TempDir,
    _proc: Proc,
    addr: SocketAddr,
    url: String,
    admin: String,
}

impl Manager {
    fn start() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (proc, url, admin) = common::spawn_manager(&data);
        let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
        let m = Manager {
            dir,
            _proc: proc,
            addr,
            url,
            admin,
        };
        let (ok, out, err) = m.cli(&["env", "create", "dev"]);
        assert!(ok, "{out}{err}");
        m
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `switchyard ARGS` with this Manager and the admin token in the environment.
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        run(
            args,
            &[
                ("SWITCHYARD_MANAGER", self.url.as_str()),
                ("SWITCHYARD_TOKEN", self.admin.as_str()),
            ],
        )
    }

    /// `manager token create` straight into the store; returns the secret.
    fn token(&self, extra: &[&str]) -> String {
        let data = self.data();
        let mut args = vec![
            "manager",
            "token",
            "create",
            "--data",
            data.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = run(&args, &[]);
        assert!(ok, "{err}");
        out.trim().to_string()
    }

    fn worker_token(&self) -> String {
        self.token(&["--role", "worker", "--env", "dev"])
    }

    /// An admin API call: (status, JSON body or Null).
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http(self.addr, method, path, &self.admin, &[], body)
    }

    fn revision(&self) -> u64 {
        self.api("GET", "/v1/envs/dev", None).1["revision"]
            .as_u64()
            .unwrap()
    }

    fn connected(&self, worker: &str) -> bool {
        let (_, workers) = self.api("GET", "/v1/envs/dev/workers", None);
        workers
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == worker && w["connected"] == true)
    }

    /// A Manager-mode Worker process following `dev`; returns it and its traffic address.
    fn worker(&self, id: &str) -> (Proc, SocketAddr) {
        let token = self.worker_token();
        let cache = self.dir.path().join(format!("cache-{id}"));
        let worker = Proc::spawn(&[
            "worker",
            "--manager",
            &self.url,
            "--env",
            "dev",
            "--token",
            &token,
            "--worker-id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--access-log",
            "off",
        ]);
        let gw = addr(&worker.wait_log("worker listening"), "listen");
        wait_until("the worker is connected to the manager", || {
            self.connected(id)
        });
        (worker, gw)
    }

    /// Subscribes to `dev`'s notifications as Worker `id`, the way a Worker does, and
    /// never answers: the Manager expects it to ACK every revision committed meanwhile.
    fn silent_worker(&self, id: &str) -> TcpStream {
        let token = self.worker_token();
        let mut s = TcpStream::connect(self.addr).unwrap();
        write!(
            s,
            "GET /v1/envs/dev/events HTTP/1.1\r\nHost: manager\r\nAuthorization: Bearer {token}\r\n\
             x-switchyard-worker: {id}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        wait_until("the silent worker is connected", || self.connected(id));
        s
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, JSON body or Null).
fn http(
    to: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut s = TcpStream::connect(to).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: manager\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
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
    let (status, list) = m.api("GET", "/v1/envs/dev/entities", None);
    assert_eq!(status, 200);
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                format!(
                    "{}/{}",
                    e["kind"].as_str().unwrap(),
                    e["name"].as_str().unwrap()
                ),
                e["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn audit(m: &Manager) -> Vec<Value> {
    let (status, list) = m.api("GET", "/v1/audit?env=dev&limit=1000", None);
    assert_eq!(status, 200);
    list.as_array().unwrap().clone()
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
    let upstream = Proc::spawn(&["upstream", "--listen", "127.0.0.1:0", "--id", "a"]);
    let up = addr(&upstream.wait_log("sample upstream listening"), "addr");
    let m = Manager::start();
    let (_worker, gw) = m.worker("w1");
    let files = m.dir.path().join("manifests");
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

    // A dry run says what would change and changes nothing.
    let (ok, out, err) = m.cli(&[
        "rollback",
        "--env",
        "dev",
        "--to-revision",
        "1",
        "--dry-run",
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("rollback to revision 1: dev (revision 2): 3 change(s) would be applied")
            && out.contains("proxy/orders: delete (v1)")
            && out.contains("~ proxy/payments: v2 -> v3 (hot)"),
        "{out}"
    );
    assert_eq!(m.revision(), 2);

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
    assert_eq!(m.revision(), 3);
    assert_eq!(
        digests(&m),
        r1,
        "revision 3 has exactly revision 1's entities"
    );
    assert!(get(gw, "/payments/3").1.contains("x-release: blue"));
    assert_eq!(get(gw, "/orders/2").0, 404);

    // History is kept: r3 is a rollback, audited with its detail, one record per change.
    let (_, rev) = m.api("GET", "/v1/envs/dev/revisions/3", None);
    assert_eq!(rev["operation"], "rollback");
    let audit_after = audit(&m);
    let rollbacks: Vec<&Value> = audit_after
        .iter()
        .filter(|a| a["operation"] == "rollback")
        .collect();
    assert_eq!(rollbacks.len(), 3, "{audit_after:?}");
    for a in &rollbacks {
        assert_eq!(a["detail"], "rollback to revision 1");
        assert_eq!(a["revision"], 3);
    }
    let (_, rev2) = m.api("GET", "/v1/envs/dev/revisions/2", None);
    assert_eq!(
        rev2["operation"], "apply",
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
    assert_eq!(m.revision(), 3);
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
    let (_, r4) = m.api("GET", "/v1/envs/dev/revisions/4", None);
    let orders_change = r4["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "orders")
        .unwrap()
        .clone();
    assert_eq!(orders_change["old_version"], Value::Null);
    assert_eq!(
        orders_change["new_version"], 3,
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
    assert_eq!(m.revision(), 4);
}

#[test]
fn apply_wait_with_no_change_returns_at_once() {
    let m = Manager::start();
    let _silent = m.silent_worker("never-answers");
    let files = m.dir.path().join("manifests");
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
    let m = Manager::start();
    let _silent = m.silent_worker("silent-worker");
    let files = m.dir.path().join("manifests");
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
    assert_eq!(m.revision(), 1);
}

#[test]
fn apply_wait_reports_a_nack_with_its_error() {
    let m = Manager::start();
    let _silent = m.silent_worker("nacking-worker");
    let files = m.dir.path().join("manifests");
    write_dir(
        &files,
        &[("orders.yaml", orders("127.0.0.1:1".parse().unwrap()))],
    );
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["apply", "--env", "dev", files.to_str().unwrap()])
        .args(["--wait", "--timeout", "20s"])
        .env("SWITCHYARD_MANAGER", &m.url)
        .env("SWITCHYARD_TOKEN", &m.admin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("revision 1 is committed", || m.revision() == 1);
    // The Worker's NACK, as a Worker reports it.
    let worker_token = m.worker_token();
    let (status, _) = http(
        m.addr,
        "POST",
        "/v1/envs/dev/reports",
        &worker_token,
        &[("x-switchyard-worker", "nacking-worker")],
        Some(json!({
            "revision": 1,
            "status": "nack",
            "error": "proxy orders: upstream http://127.0.0.1:1 refused",
            "applied_at": 0,
            "address": null,
        })),
    );
    assert_eq!(status, 204);
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
    let m = Manager::start();
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
    let (status, tokens) = m.api("GET", "/v1/tokens", None);
    assert_eq!(status, 200);
    let expiry = |name: &str| {
        tokens
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["expires_at"]
            .clone()
    };
    assert!(expiry("bootstrap-admin").is_null());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let long_at = expiry("long-lived").as_i64().unwrap();
    assert!(long_at > now + 29 * 86_400_000 && long_at <= now + 30 * 86_400_000);
    assert!(expiry("short-lived").as_i64().unwrap() <= now);

    // Through the API: expires_in as a duration.
    let (status, created) = m.api(
        "POST",
        "/v1/tokens",
        Some(json!({ "name": "api", "role": "viewer", "expires_in": "1h" })),
    );
    assert_eq!(status, 201, "{created}");
    assert!(created["expires_at"].as_i64().unwrap() > now);
    let (status, err) = m.api(
        "POST",
        "/v1/tokens",
        Some(json!({ "name": "api", "role": "viewer", "expires_in": "soon" })),
    );
    assert_eq!(status, 400, "{err}");
}

#[test]
fn cli_errors_name_the_cause_and_the_fix() {
    let m = Manager::start();
    let files = m.dir.path().join("manifests");
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
        &[("SWITCHYARD_MANAGER", m.url.as_str())],
    );
    assert!(!ok);
    assert_eq!(
        one_line(&err),
        "error: the Manager refused the token (unknown or revoked token): check --token / SWITCHYARD_TOKEN"
    );

    // A role that may not.
    let viewer = m.token(&["--role", "viewer"]);
    let (ok, _, err) = run(
        &["rollback", "--env", "dev", "--to-revision", "1"],
        &[
            ("SWITCHYARD_MANAGER", m.url.as_str()),
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
            "error: cannot reach the Manager at {nowhere} (is it running? check --manager / SWITCHYARD_MANAGER)"
        )),
        "{line}"
    );
}
