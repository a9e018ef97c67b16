//! The operator's dashboard (issue #20) in a real browser, against a running `switchyard up`.
//!
//! Ignored (`cargo test -p switchyard-cli --test dashboard_browser -- --ignored`, run by
//! `.ci/run`): it needs `npm ci` in crates/e2e/ui and Debian's chromium (`/usr/bin/chromium`,
//! or `CHROMIUM`). The script, `crates/e2e/ui/dashboard.test.mjs` (playwright-core driving
//! chromium headless), signs in with a viewer token, sees both Workers at r1, has r2 applied
//! by the CLI (`switchyard apply`) and sees it, its field diff and both ACKs without
//! reloading, the revision page's timeline, a stopped Worker marked disconnected, a NACK with
//! its error, and a token of another environment seeing nothing of `dev`.
//!
//! The cluster is `switchyard up` itself — its Manager (HTTPS with its own CA) and first
//! Worker, on ports it picks — with its sample upstreams replaced by the test's own (the
//! `examples/` ones listen on fixed ports), plus a second Worker as its own process, the one
//! the script has stopped. `SCREENSHOT_DIR` makes the script write docs/dashboard/'s
//! screenshots.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, run, spawn_up, upstream, wait_until, worker_args};

fn manifest(release: &str, target: std::net::SocketAddr) -> String {
    switchyard_e2e::payments_manifest(release, target, "")
}

#[test]
#[ignore = "needs chromium and `npm ci` in crates/e2e/ui; run by .ci/run"]
fn the_dashboard_in_a_real_browser_against_switchyard_up() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/ui");
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in {} first",
        ui.display()
    );
    let (_blue, blue) = upstream("blue");
    let (_green, green) = upstream("green");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("payments.yaml"), manifest("blue", blue)).unwrap();
    // The canary the script starts and aborts (r3, then r4): another response header.
    let canary_file = dir.path().join("canary.yaml");
    std::fs::write(&canary_file, manifest("green-canary", green)).unwrap();

    let (up, fields) = spawn_up(&data, &config, &["--workers", "1"]);
    let url = fields["manager"].as_str().unwrap().to_string();
    let ca = data.join("ca.pem");
    let admin_file = data.join("admin.token");
    let conn = [
        ("SWITCHYARD_MANAGER", url.as_str()),
        ("SWITCHYARD_CA", ca.to_str().unwrap()),
        ("SWITCHYARD_TOKEN_FILE", admin_file.to_str().unwrap()),
    ];
    let (ok, _, err) = run(&["env", "create", "other"], &conn);
    assert!(ok, "{err}");
    let token = |role: &str, env: &str, name: &str| {
        let args = [
            "manager",
            "token",
            "create",
            "--data",
            data.to_str().unwrap(),
            "--role",
            role,
            "--env",
            env,
            "--name",
            name,
        ];
        let (ok, out, err) = run(&args, &[]);
        assert!(ok, "{err}");
        out.trim().to_string()
    };
    let viewer = token("viewer", "dev", "dashboard-viewer");
    let other = token("viewer", "other", "other-viewer");
    let worker_token = std::fs::read_to_string(data.join("worker-dev.token")).unwrap();

    // The second Worker, a process of its own.
    let cache = dir.path().join("cache-w2");
    let mut args = worker_args(&url, &ca, "dev", worker_token.trim(), Some("w2"), &cache);
    args.extend(["--listen", "127.0.0.1:0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut w2 = Some(Proc::spawn(&args));
    w2.as_ref().unwrap().wait_log("worker listening");
    let api = switchyard_api::AdminClient::with_tls(
        &url,
        std::fs::read_to_string(&admin_file).unwrap().trim(),
        &switchyard_api::ManagerTls::ca_file(&ca).unwrap(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    wait_until("both Workers ACKed r1", || {
        let view = runtime.block_on(api.revision("dev", 1)).unwrap();
        view.acks == 2
    });

    let mut node = Command::new("node")
        .arg("dashboard.test.mjs")
        .current_dir(&ui)
        .env("MANAGER_URL", &url)
        // Node's own fetch trusts `up`'s CA; the browser is told to accept its certificate.
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .env("MANAGER_CA", &ca)
        .env("REQUIRE_LIVE", "1")
        .env("VIEWER_TOKEN", &viewer)
        .env("OTHER_TOKEN", &other)
        .env(
            "ADMIN_TOKEN",
            std::fs::read_to_string(&admin_file).unwrap().trim(),
        )
        .env("MANIFEST_R2", manifest("green", green))
        .env("CANARY_FILE", &canary_file)
        .env("SWITCHYARD_BIN", env!("CARGO_BIN_EXE_switchyard"))
        .env("SWITCHYARD_CA", &ca)
        .env("WORKER_A", "up-worker-1")
        .env("WORKER_B", "w2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (Node.js 18 or later) on PATH");
    let mut stdin = node.stdin.take().unwrap();
    let out = BufReader::new(node.stdout.take().unwrap());
    let mut transcript = Vec::new();
    let started = Instant::now();
    for line in out.lines() {
        let line = line.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the browser test took more than 4 minutes"
        );
        eprintln!("node: {line}");
        match line.as_str() {
            "STEP stop-w2" => {
                // Stopped as an orchestrator stops it: SIGTERM, then gone.
                let mut w = w2.take().unwrap();
                w.signal("TERM");
                w.child.wait().unwrap();
            }
            "STEP nack-r3" => {
                let revision = runtime.block_on(api.env("dev")).unwrap().revision;
                runtime.block_on(async {
                    let store = switchyard_store::SqlStore::open(&data.join("switchyard.db"))
                        .await
                        .unwrap();
                    switchyard_e2e::cluster::commit_rejected_by_workers(&store, "dev", revision)
                        .await;
                    store.close().await;
                });
            }
            _ => {
                transcript.push(line);
                continue;
            }
        }
        stdin.write_all(b"GO\n").unwrap();
        stdin.flush().unwrap();
    }
    let status = node.wait().unwrap();
    assert!(status.success(), "dashboard.test.mjs: {status}");
    assert!(transcript.iter().any(|l| l == "PASS"), "{transcript:?}");
    drop(up);
}
