//! Clients speaking HTTP/2 to the Worker: h2c with prior knowledge on the plain listener and
//! h2 chosen by ALPN on the HTTPS one, with real clients (`curl`, `h2load` from
//! nghttp2-client — `.ci/run` installs both; a missing one fails the test, it is not
//! skipped) and hyper's HTTP/2 client, whose many concurrent streams on one connection
//! cross configuration swaps: each stream runs on the generation current when it was
//! accepted, none fails, and the connection is never closed (no GOAWAY).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard_e2e::tls::{TestCa, certificate_manifest};
use switchyard_e2e::{
    ConfigDir, DEADLINE, Harness, RunningWorker, metric_value, payments_manifest,
};
use switchyard_worker::WorkerOptions;
use tokio::net::TcpStream;

/// Runs an external tool (with a deadline) and returns its exit success and output. A tool
/// that is not installed fails the test with what to install.
async fn run_tool(program: &str, package: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(120), cmd.output()).await {
        Err(_) => panic!("{program} {args:?} did not finish within 120 s"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed: this test needs it (apt-get install {package}; .ci/run installs it)"
        ),
        Ok(Err(e)) => panic!("{program}: {e}"),
        Ok(Ok(out)) => out,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A Worker serving the payments proxy (release `blue`, sample upstream `a`) on a plain and
/// an HTTPS listener, with the default certificate for api.example.com issued by `ca`.
async fn worker(h: &Harness, ca: &TestCa) -> (ConfigDir, RunningWorker, SocketAddr) {
    let dir = ConfigDir::new();
    dir.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    dir.write(
        "api.yaml",
        &certificate_manifest("api", &ca.issue(&["api.example.com"]), true),
    );
    let (w, https) = RunningWorker::start_https(WorkerOptions::new(dir.path())).await;
    (dir, w, https)
}

/// What `curl -i -w` printed: the status line's protocol, the headers, the body and the
/// `%{http_version}` written after it.
struct CurlAnswer {
    http_version: String,
    head: String,
    body: serde_json::Value,
}

async fn curl(args: &[&str]) -> CurlAnswer {
    let mut all = vec!["--silent", "--show-error", "--include", "--max-time", "20"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--write-out", "\nhttp_version=%{http_version}"]);
    let (ok, text) = run_tool("curl", "curl", &all).await;
    assert!(ok, "curl {args:?}: {text}");
    let (rest, version) = text
        .rsplit_once("\nhttp_version=")
        .unwrap_or_else(|| panic!("{text}"));
    let (head, body) = rest
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{text}"));
    CurlAnswer {
        http_version: version.trim().to_string(),
        head: head.to_lowercase(),
        body: serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_h2c_with_prior_knowledge_and_h2_over_tls_by_alpn() {
    let h = Harness::upstreams(&["a"]).await;
    let ca = TestCa::new();
    let (_dir, w, https) = worker(&h, &ca).await;

    // h2c: HTTP/2 from the first byte (the connection preface), no upgrade.
    let url = format!("http://{}/payments/h2c", w.addr);
    let a = curl(&["--http2-prior-knowledge", &url]).await;
    assert_eq!(a.http_version, "2", "{}", a.head);
    assert!(a.head.starts_with("http/2 200"), "{}", a.head);
    assert!(a.head.contains("x-release: blue"), "{}", a.head);
    assert!(a.head.contains("x-upstream-id: a"), "{}", a.head);
    assert_eq!(a.body["path"], "/payments/h2c");
    assert_eq!(a.body["headers"]["x-from-gateway"], "yes");
    assert_eq!(a.body["headers"]["x-forwarded-proto"], "http");

    // h2 over TLS: curl verifies the certificate against the test CA for the name it
    // resolves to the Worker's port-0 address, and ALPN picks h2.
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.root_pem).unwrap();
    let resolve = format!("api.example.com:{}:127.0.0.1", https.port());
    let url = format!("https://api.example.com:{}/payments/alpn", https.port());
    let a = curl(&[
        "--http2",
        "--cacert",
        ca_file.to_str().unwrap(),
        "--resolve",
        &resolve,
        &url,
    ])
    .await;
    assert_eq!(a.http_version, "2", "{}", a.head);
    assert!(a.head.starts_with("http/2 200"), "{}", a.head);
    assert!(a.head.contains("x-release: blue"), "{}", a.head);
    assert_eq!(a.body["path"], "/payments/alpn");
    assert_eq!(a.body["headers"]["x-forwarded-proto"], "https");

    // The same curl asked for HTTP/1.1 gets it: the protocol is the client's choice.
    let a = curl(&[
        "--http1.1",
        "--cacert",
        ca_file.to_str().unwrap(),
        "--resolve",
        &resolve,
        &url,
    ])
    .await;
    assert_eq!(a.http_version, "1.1", "{}", a.head);
    assert!(a.head.starts_with("http/1.1 200"), "{}", a.head);
}

/// h2load's totals: requests succeeded and failed, and the application protocol it used.
#[derive(Debug)]
struct H2load {
    total: u64,
    succeeded: u64,
    failed: u64,
    errored: u64,
    status_2xx: u64,
    protocol: String,
}

fn parse_h2load(text: &str) -> H2load {
    // requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout
    let line = |prefix: &str| -> &str {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in h2load's output:\n{text}"))
    };
    let count = |line: &str, what: &str| -> u64 {
        line.split(',')
            .find_map(|part| part.trim().strip_suffix(what))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {what:?} count in {line:?}:\n{text}"))
    };
    let requests = line("requests:");
    let codes = line("status codes:");
    H2load {
        total: count(requests, "total"),
        succeeded: count(requests, "succeeded"),
        failed: count(requests, "failed"),
        errored: count(requests, "errored"),
        status_2xx: count(codes, "2xx"),
        protocol: line("Application protocol:").trim().to_string(),
    }
}

async fn h2load(url: &str, extra: &[&str]) -> (H2load, String) {
    let mut args = vec!["-n", "2000", "-c", "4", "-m", "10"];
    args.extend_from_slice(extra);
    args.push(url);
    let (ok, text) = run_tool("h2load", "nghttp2-client", &args).await;
    assert!(ok, "h2load {args:?}: {text}");
    (parse_h2load(&text), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_runs_2000_requests_over_h2c_and_over_tls_alpn_all_succeed() {
    let h = Harness::upstreams(&["a"]).await;
    let ca = TestCa::new();
    let (_dir, w, https) = worker(&h, &ca).await;

    // 4 connections, up to 10 concurrent streams each.
    let (r, text) = h2load(&format!("http://{}/payments/x", w.addr), &[]).await;
    assert_eq!(r.protocol, "h2c", "{text}");
    assert_eq!(
        (r.total, r.succeeded, r.failed, r.errored, r.status_2xx),
        (2000, 2000, 0, 0, 2000),
        "{text}"
    );

    // The same by ALPN over TLS (h2load sends no SNI for an address: the Worker presents
    // its default certificate; h2load does not verify it).
    let (r, text) = h2load(
        &format!("https://127.0.0.1:{}/payments/x", https.port()),
        &[],
    )
    .await;
    assert_eq!(r.protocol, "h2", "{text}");
    assert_eq!(
        (r.total, r.succeeded, r.failed, r.errored, r.status_2xx),
        (2000, 2000, 0, 0, 2000),
        "{text}"
    );

    // And HTTP/1.1 on the same plain port (h2load --h1; -m 10 pipelines).
    let (r, text) = h2load(&format!("http://{}/payments/x", w.addr), &["--h1"]).await;
    assert_eq!(r.protocol, "http/1.1", "{text}");
    assert_eq!(
        (r.total, r.succeeded, r.failed, r.errored, r.status_2xx),
        (2000, 2000, 0, 0, 2000),
        "{text}"
    );
}

/// Generation `i` of the payments proxy: release `r{i}`, served by upstream `a` (even) or
/// `b` (odd). A response on generation `i` carries both, never one without the other.
fn generation(h: &Harness, i: usize) -> String {
    payments_manifest(&format!("r{i}"), h.addr(i % 2), "")
}

/// One response checked against the generation it names: the release header and the
/// upstream that served it belong to the same generation. Returns that generation.
fn consistent(resp: &http::response::Parts, body: &[u8]) -> usize {
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(body));
    assert_eq!(resp.version, http::Version::HTTP_2);
    let release = resp.headers["x-release"].to_str().unwrap();
    let i: usize = release.strip_prefix('r').unwrap().parse().unwrap();
    let upstream = resp.headers["x-upstream-id"].to_str().unwrap();
    assert_eq!(
        upstream,
        ["a", "b"][i % 2],
        "release {release} served by upstream {upstream}: a mixed-generation response"
    );
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["upstream"], upstream);
    i
}

async fn get(
    send: &mut http2::SendRequest<Empty<Bytes>>,
    path: &str,
    hold: bool,
) -> Result<usize, String> {
    send.ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let mut req = http::Request::get(format!("http://gateway.test{path}"));
    if hold {
        req = req.header("x-hold", "1");
    }
    let resp = send
        .send_request(req.body(Empty::new()).unwrap())
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("{path}: body: {e}"))?
        .to_bytes();
    Ok(consistent(&parts, &body))
}

/// One h2c connection (prior knowledge), its streams: 16 loops sending requests without
/// pause, and 20 requests held at the upstream from before the first swap. 10 swaps, each
/// changing the release header and the upstream together. Every stream succeeds with a
/// response of exactly one generation; the held ones finish on the generation they were
/// accepted on (0) after all the swaps; after each swap a new stream gets the new
/// generation; the loops see every generation; and the connection is the same one
/// throughout (the client's connection task never ends: no GOAWAY, no reset) — the Worker
/// counts one client connection open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_h2c_streams_on_one_connection_cross_swaps_each_on_one_generation() {
    const SWAPS: usize = 10;
    const HELD: usize = 20;
    const LOOPS: usize = 16;
    let h = Harness::upstreams(&["a", "b"]).await;
    let dir = ConfigDir::new();
    dir.write("payments.yaml", &generation(&h, 0));
    let w = RunningWorker::start(dir.path()).await;
    let first = w.handle.revision();

    let tcp = TcpStream::connect(w.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    let (closed_tx, mut closed_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let end = match conn.await {
            Ok(()) => "the connection ended".to_string(),
            Err(e) => format!("the connection failed: {e}"),
        };
        let _ = closed_tx.send(end);
    });

    // Held streams, accepted on generation 0 and kept at upstream `a` across every swap.
    let mut arrivals = h.upstreams[0].hold.arrivals();
    let mut held = Vec::new();
    for n in 0..HELD {
        let mut s = send.clone();
        held.push(tokio::spawn(async move {
            get(&mut s, &format!("/payments/held/{n}"), true).await
        }));
    }
    tokio::time::timeout(DEADLINE, arrivals.wait_for(|n| *n >= HELD))
        .await
        .expect("the held streams did not all reach the upstream")
        .unwrap();

    // Streams without pause, on the same connection, for as long as the swaps go on.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let answered = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for l in 0..LOOPS {
        let mut s = send.clone();
        let stop = stop_rx.clone();
        let answered = answered.clone();
        loops.push(tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let mut n = 0u64;
            while !*stop.borrow() {
                let i = get(&mut s, &format!("/payments/loop/{l}/{n}"), false)
                    .await
                    .unwrap_or_else(|e| panic!("stream {n} of loop {l} failed: {e}"));
                seen.insert(i);
                n += 1;
                answered.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }

    let mut probe = send.clone();
    for i in 1..=SWAPS {
        dir.write("payments.yaml", &generation(&h, i));
        w.wait_for_revision(first + i as u64).await;
        // A stream opened after the swap runs on the new generation.
        assert_eq!(get(&mut probe, "/payments/probe", false).await.unwrap(), i);
        // Let the loops run on this generation before the next swap (a condition on the
        // count, not a sleep).
        let target = answered.load(Ordering::Relaxed) + 50;
        switchyard_e2e::eventually("the loops answer on the new generation", || {
            answered.load(Ordering::Relaxed) >= target
        })
        .await;
    }
    assert!(
        w.handle.live_generations() >= 2,
        "the held streams pin generation 0"
    );
    stop_tx.send(true).unwrap();
    let mut seen = BTreeSet::new();
    for l in loops {
        seen.extend(tokio::time::timeout(DEADLINE, l).await.unwrap().unwrap());
    }
    assert_eq!(
        seen,
        (0..=SWAPS).collect::<BTreeSet<_>>(),
        "the loops saw every generation"
    );

    // The held streams finish now, on the generation they were accepted on.
    h.upstreams[0].hold.release();
    for (n, s) in held.into_iter().enumerate() {
        let i = tokio::time::timeout(DEADLINE, s)
            .await
            .unwrap()
            .unwrap()
            .unwrap_or_else(|e| panic!("held stream {n} failed: {e}"));
        assert_eq!(i, 0, "held stream {n} ran on generation {i}");
    }
    switchyard_e2e::eventually("generation 0 is freed once its streams end", || {
        w.handle.live_generations() == 1
    })
    .await;

    // Still the same connection: it takes new streams, its task has not ended, and the
    // Worker has exactly one client connection open.
    assert!(!send.is_closed());
    assert_eq!(
        get(&mut probe, "/payments/after", false).await.unwrap(),
        SWAPS
    );
    assert!(
        closed_rx.try_recv().is_err(),
        "the client connection was closed during the swaps"
    );
    let metrics = w.handle.metrics_text();
    assert_eq!(
        metric_value(&metrics, "switchyard_connections_open"),
        Some(1.0),
        "{metrics}"
    );
    eprintln!(
        "{} streams on one connection across {SWAPS} swaps",
        answered.load(Ordering::Relaxed) + HELD as u64 + SWAPS as u64 + 1
    );
}

#[test]
fn h2load_output_is_parsed() {
    let text = "starting benchmark...\n\
        Application protocol: h2c\n\
        finished in 1.2s, 1600.00 req/s, 1.00MB/s\n\
        requests: 2000 total, 2000 started, 2000 done, 1999 succeeded, 1 failed, 0 errored, 0 timeout\n\
        status codes: 1999 2xx, 0 3xx, 0 4xx, 1 5xx\n";
    let r = parse_h2load(text);
    assert_eq!(
        (r.total, r.succeeded, r.failed, r.errored, r.status_2xx),
        (2000, 1999, 1, 0, 1999)
    );
    assert_eq!(r.protocol, "h2c");
}
