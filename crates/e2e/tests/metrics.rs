//! `/metrics` as Prometheus and its tools read it: Prometheus text 0.0.4 by default and
//! OpenMetrics when asked, accepted by `promtool check metrics` on the Worker and the
//! Manager; requests counted by method and status code; requests and gateway errors
//! counted per configuration revision, so errors can be lined up with swaps.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use http::Method;
use switchyard_e2e::cluster::{ManagedWorker, RunningManager};
use switchyard_e2e::{
    Answer, Conn, DeadPort, Harness, metric_value, payments_manifest, wait_metric,
};

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn scrape(addr: SocketAddr, headers: &[(&str, &str)]) -> Answer {
    let mut conn = Conn::open(addr).await.unwrap();
    let answer = conn.get("/metrics", headers).await.unwrap();
    assert_eq!(answer.status, 200);
    answer
}

fn text(answer: &Answer) -> String {
    String::from_utf8(answer.body.to_vec()).unwrap()
}

/// `promtool check metrics` on `text`: `Ok(false)` when promtool is not installed (allowed
/// outside CI: `.ci/run` installs it and sets `SWITCHYARD_REQUIRE_PROMTOOL=1`).
fn promtool(what: &str, text: &str) -> bool {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("SWITCHYARD_REQUIRE_PROMTOOL").is_none() => {
            eprintln!("promtool not run ({e}): install Debian's `prometheus` package");
            return false;
        }
        Err(e) => panic!("promtool: {e} (SWITCHYARD_REQUIRE_PROMTOOL is set)"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on the {what}'s /metrics: {said}\n{text}"
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_manager_metrics_are_prometheus_text_by_default_and_pass_promtool() {
    let h = Harness::upstreams(&["a"]).await;
    let dead = DeadPort::new();
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start_plain(&data.path().join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    let (s, b) = m
        .apply("dev", &[payments_manifest("blue", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    let cache = data.path().join("cache");
    let w = ManagedWorker::start(ManagedWorker::options(&m, "dev", &token, "w1", &cache))
        .await
        .unwrap();
    w.wait_for_revision(1).await;

    // Revision 1: three GETs, a POST and a method outside the known set, all answered.
    let mut conn = Conn::open(w.addr).await.unwrap();
    for _ in 0..3 {
        assert_eq!(conn.get("/payments/x", &[]).await.unwrap().status, 200);
    }
    let post = conn
        .request(Method::POST, "/payments/x", &[])
        .await
        .unwrap();
    assert_eq!(post.status, 200);
    let purge = Method::from_bytes(b"PURGE").unwrap();
    assert_eq!(
        conn.request(purge, "/payments/x", &[])
            .await
            .unwrap()
            .status,
        200
    );
    // Revision 2 points at a port nobody listens on: the gateway answers 502 itself.
    let (s, b) = m
        .apply("dev", &[payments_manifest("green", dead.addr, "")])
        .await;
    assert_eq!(s, 200, "{b}");
    w.wait_for_revision(2).await;
    assert_eq!(conn.get("/payments/x", &[]).await.unwrap().status, 502);

    let series = |labels: &str| format!("switchyard_requests_total{{proxy=\"payments\",{labels}}}");
    for (labels, n) in [
        ("method=\"GET\",code=\"200\"", 3.0),
        ("method=\"POST\",code=\"200\"", 1.0),
        ("method=\"other\",code=\"200\"", 1.0),
        ("method=\"GET\",code=\"502\"", 1.0),
    ] {
        wait_metric(w.admin, &series(labels), |v| v == n).await;
    }
    wait_metric(
        w.admin,
        "switchyard_generation_requests_total{revision=\"1\"}",
        |v| v == 5.0,
    )
    .await;
    wait_metric(
        w.admin,
        "switchyard_generation_requests_total{revision=\"2\"}",
        |v| v == 1.0,
    )
    .await;

    let worker = scrape(w.admin, &[]).await;
    assert_eq!(worker.header("content-type"), Some(PROMETHEUS_TEXT));
    let body = text(&worker);
    let value = |s: &str| metric_value(&body, s);
    assert_eq!(
        value("switchyard_generation_errors_total{revision=\"2\",kind=\"502\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value("switchyard_generation_errors_total{revision=\"1\",kind=\"502\"}"),
        Some(0.0),
        "{body}"
    );
    assert!(value("process_resident_memory_bytes").unwrap() > 0.0);
    assert!(value("process_open_fds").unwrap() > 0.0);
    assert!(
        body.contains("switchyard_build_info{version=\"")
            && body.contains("# TYPE switchyard_requests_total counter\n"),
        "{body}"
    );
    let checked = promtool("Worker", &body);

    // Asked for OpenMetrics, the same samples in OpenMetrics.
    let om = scrape(
        w.admin,
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
    )
    .await;
    assert_eq!(om.header("content-type"), Some(OPENMETRICS));
    let om = text(&om);
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE switchyard_requests counter\n"));
    assert_eq!(
        metric_value(&om, &series("method=\"GET\",code=\"200\"")),
        Some(3.0)
    );

    let auth = format!("Bearer {}", m.admin_token);
    let manager = scrape(m.addr, &[("authorization", &auth)]).await;
    assert_eq!(manager.header("content-type"), Some(PROMETHEUS_TEXT));
    let body = text(&manager);
    assert_eq!(
        metric_value(&body, "switchyard_manager_commits_total{env=\"dev\"}"),
        Some(2.0),
        "{body}"
    );
    assert!(
        metric_value(&body, "process_cpu_seconds_total").is_some(),
        "{body}"
    );
    assert!(body.contains("switchyard_build_info{version=\""), "{body}");
    assert_eq!(checked, promtool("Manager", &body));
}
