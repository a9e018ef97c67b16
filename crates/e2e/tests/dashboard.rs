//! The operator's dashboard under `/ui/` (issue #20).
//!
//! Not ignored: the assets are served with their content types, `no-cache` and the strict
//! Content-Security-Policy, and `index.html` loads nothing from another origin and has no
//! inline script or style.
//!
//! Ignored (`cargo test -p switchyard-e2e --test dashboard -- --ignored`, run by `.ci/run`):
//! a real browser — `crates/e2e/ui/dashboard.test.mjs`, playwright-core driving Debian's
//! chromium headless — against a Manager with two Workers: sign in with a viewer token, see
//! both Workers at r1, apply r2 and see it and both ACKs without reloading, the revision
//! page and its timeline, a stopped Worker marked disconnected, a NACK with its error, a
//! token of another environment seeing nothing of `dev`. Needs `npm ci` in crates/e2e/ui
//! and `/usr/bin/chromium` (or `CHROMIUM`); `SCREENSHOT_DIR` makes it write the screenshots
//! of docs/dashboard/.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;

use http::Method;
use switchyard_e2e::cluster::{ManagedWorker, RunningManager};
use switchyard_e2e::{Harness, get_once, payments_manifest};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_with_a_strict_content_security_policy() {
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start_plain(&data.path().join("manager")).await;

    let redirect = get_once(m.addr, "/ui").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/ui/"));

    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/views.js", "text/javascript; charset=utf-8"),
        ("/ui/charts.js", "text/javascript; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let a = get_once(m.addr, path).await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.header("content-type"), Some(content_type), "{path}");
        assert_eq!(a.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(a.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{path}");
        assert!(!a.body.is_empty(), "{path}");
    }
    // Unknown files are 404s, with the same headers.
    let missing = get_once(m.addr, "/ui/nope.js").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-security-policy"), Some(CSP));

    let index = String::from_utf8(get_once(m.addr, "/ui/").await.body.to_vec()).unwrap();
    assert!(
        !index.contains("http://") && !index.contains("https://"),
        "{index}"
    );
    assert!(!index.contains("style="), "no inline style: {index}");
    assert!(!index.contains("<style"), "no inline style: {index}");
    for script in index.split("<script").skip(1) {
        let (tag, rest) = script.split_once('>').unwrap();
        assert!(
            tag.contains("src=\""),
            "every script is a file: <script{tag}>"
        );
        assert!(
            rest.starts_with("</script>"),
            "no inline script body: {rest}"
        );
    }
    assert!(
        index.contains(r#"<label for="token">Token</label>"#),
        "{index}"
    );
    // The API keeps answering JSON errors outside /ui.
    let (status, body) = m.call(Method::GET, "/nope", None).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and `npm ci` in crates/e2e/ui; run by .ci/run"]
async fn the_dashboard_in_a_real_browser() {
    let ui = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in {} first",
        ui.display()
    );
    let h = Harness::upstreams(&["a", "b"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start_plain(&data.path().join("manager")).await;
    let worker_token = m.env_with_worker_token("dev").await;
    let (s, b) = m
        .apply("dev", &[payments_manifest("blue", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = m
        .call(
            Method::POST,
            "/v1/envs",
            Some(serde_json::json!({ "name": "other" })),
        )
        .await;
    assert_eq!(s, 201, "{b}");

    let mut workers = Vec::new();
    for id in ["w1", "w2"] {
        let opts = ManagedWorker::options(&m, "dev", &worker_token, id, &data.path().join(id));
        workers.push(ManagedWorker::start(opts).await.unwrap());
    }
    for w in &workers {
        w.wait_for_revision(1).await;
    }
    m.wait_reports("dev", 1, &["w1", "w2"]).await;
    let viewer = m.token("viewer", &["dev"]).await;
    let other = m.token("viewer", &["other"]).await;

    let mut node = tokio::process::Command::new("node")
        .arg("dashboard.test.mjs")
        .current_dir(&ui)
        .env("MANAGER_URL", m.url())
        // The Manager serves /ui/stream: live updates are part of what is proven, so the
        // script's stand-in for a Manager without it (the Refresh button) must not run.
        .env("REQUIRE_LIVE", "1")
        .env("VIEWER_TOKEN", &viewer)
        .env("OTHER_TOKEN", &other)
        .env("ADMIN_TOKEN", &m.admin_token)
        .env("MANIFEST_R2", payments_manifest("green", h.addr(1), ""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node (Node.js 18 or later) on PATH");
    let mut stdin = node.stdin.take().unwrap();
    let mut out = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut transcript = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(180);
    while let Some(line) = tokio::time::timeout_at(deadline, out.next_line())
        .await
        .expect("the browser test took more than 3 minutes")
        .unwrap()
    {
        eprintln!("node: {line}");
        match line.as_str() {
            "STEP stop-w2" => workers[1].stop().await,
            "STEP nack-r3" => m.commit_rejected_by_workers("dev", 2).await,
            _ => {
                transcript.push(line);
                continue;
            }
        }
        stdin.write_all(b"GO\n").await.unwrap();
        stdin.flush().await.unwrap();
    }
    let status = node.wait().await.unwrap();
    assert!(status.success(), "dashboard.test.mjs: {status}");
    assert!(transcript.iter().any(|l| l == "PASS"), "{transcript:?}");
}
