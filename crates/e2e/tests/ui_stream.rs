//! `GET /ui/stream`: what the dashboard listens to instead of polling. It says `changed`
//! at once, then after a revision is announced, a Worker connects, reports, or goes away;
//! only to a token that may read the environment.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use switchyard_e2e::cluster::{ManagedWorker, RunningManager};
use switchyard_e2e::upstream::read_until;
use switchyard_e2e::{Harness, payments_manifest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens the stream of `env` with `token`; returns the connection and what was read of the
/// answer so far (at least its head).
async fn open(addr: SocketAddr, env: &str, token: Option<&str>) -> (TcpStream, Vec<u8>) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET /ui/stream?env={env} HTTP/1.1\r\nhost: manager\r\n{auth}\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut conn, &mut seen, "\r\n\r\n").await;
    (conn, seen)
}

/// The latest version the stream said.
fn latest(seen: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(seen);
    let at = text.rfind("\"version\":")? + "\"version\":".len();
    text[at..].split('}').next()?.parse().ok()
}

/// Reads until the stream says a version of at least `want`; returns it.
async fn wait_version(conn: &mut TcpStream, seen: &mut Vec<u8>, want: u64) -> u64 {
    tokio::time::timeout(switchyard_e2e::DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(v) = latest(seen).filter(|v| *v >= want) {
                return v;
            }
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream closed");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no version {want}: {}", String::from_utf8_lossy(seen)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_stream_says_when_to_look_again_and_only_to_readers() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start_plain(&data.path().join("manager")).await;
    let worker_token = m.env_with_worker_token("dev").await;
    let viewer = m.token("viewer", &["dev"]).await;
    let (s, b) = m
        .call(
            http::Method::POST,
            "/v1/envs",
            Some(serde_json::json!({ "name": "other" })),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let outsider = m.token("viewer", &["other"]).await;

    // Refused without a token, and to a token of another environment.
    let (_, head) = open(m.addr, "dev", None).await;
    assert!(
        head.starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (_, head) = open(m.addr, "dev", Some(&outsider)).await;
    assert!(
        head.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    let (mut conn, mut seen) = open(m.addr, "dev", Some(&viewer)).await;
    let text = String::from_utf8_lossy(&seen).to_lowercase();
    assert!(
        text.starts_with("http/1.1 200") && text.contains("content-type: text/event-stream"),
        "{text}"
    );
    // At once: look now.
    read_until(
        &mut conn,
        &mut seen,
        "event: changed\ndata: {\"env\":\"dev\",\"version\":0}",
    )
    .await;
    // A commit.
    let (s, b) = m
        .apply("dev", &[payments_manifest("blue", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    wait_version(&mut conn, &mut seen, 1).await;
    // A Worker connects and ACKs revision 1: two more changes (a burst is folded into its
    // latest version, so the count is at least 3, not each one seen).
    let cache = data.path().join("cache");
    let mut w = ManagedWorker::start(ManagedWorker::options(
        &m,
        "dev",
        &worker_token,
        "w1",
        &cache,
    ))
    .await
    .unwrap();
    w.wait_for_revision(1).await;
    m.wait_reports("dev", 1, &["w1"]).await;
    let v = wait_version(&mut conn, &mut seen, 3).await;
    // It goes away.
    w.stop().await;
    wait_version(&mut conn, &mut seen, v + 1).await;
    // Nothing but `changed` events and heartbeats: no revision content, no secrets.
    let text = String::from_utf8_lossy(&seen);
    assert!(
        !text.contains("payments") && !text.contains(&viewer),
        "{text}"
    );
}
