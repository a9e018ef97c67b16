//! HTTPS on the Worker: certificates as `kind: Certificate` documents, chosen by SNI
//! (exact, wildcard, default), ALPN h2 and http/1.1, session resumption, and rotation as a
//! hot change — new handshakes get the new certificate, established connections carry on.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard_e2e::cluster::{ManagedWorker, RunningManager};
use switchyard_e2e::tls::{Issued, TestCa, TlsClient, certificate_manifest};
use switchyard_e2e::{ConfigDir, Conn, DEADLINE, Harness, RunningWorker, payments_manifest};
use switchyard_worker::WorkerOptions;

async fn worker(dir: &ConfigDir) -> (RunningWorker, std::net::SocketAddr) {
    RunningWorker::start_https(WorkerOptions::new(dir.path())).await
}

/// `n` HTTPS keep-alive clients (one connection each, handshaken for api.example.com)
/// sending requests without pause until `stop`; each returns how many it sent. A failed
/// request or a closed connection fails the test.
async fn keep_alive_clients(
    client: &TlsClient,
    https: std::net::SocketAddr,
    n: usize,
    stop: &tokio::sync::watch::Receiver<bool>,
    answered: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let hs = client.connect(https, "api.example.com").await.unwrap();
        let mut conn = Conn::over(hs.stream, https).await.unwrap();
        let stop = stop.clone();
        let answered = answered.clone();
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !*stop.borrow() {
                let a = conn
                    .get("/payments/r", &[("host", "api.example.com")])
                    .await
                    .unwrap_or_else(|e| {
                        panic!("request {n} on an established connection failed: {e}")
                    });
                assert_eq!(a.status, 200, "request {n}");
                n += 1;
                answered.fetch_add(1, Ordering::Relaxed);
            }
            n
        }));
    }
    clients
}

/// A Manager whose `dev` holds the payments proxy and certificate `api` (`first`, for
/// api.example.com), and a Worker `w1` following it with an HTTPS listener, at revision 1.
struct ManagedHttps {
    h: Harness,
    ca: TestCa,
    /// The Manager's data (`manager/`) and the Worker's cache (`cache/`).
    data: tempfile::TempDir,
    m: RunningManager,
    w: ManagedWorker,
    first: Issued,
    https: std::net::SocketAddr,
}

impl ManagedHttps {
    async fn start() -> ManagedHttps {
        let h = Harness::upstreams(&["a"]).await;
        let ca = TestCa::new();
        let data = tempfile::tempdir().unwrap();
        let m = RunningManager::start(&data.path().join("manager")).await;
        let token = m.env_with_worker_token("dev").await;
        let first = ca.issue(&["api.example.com"]);
        let (s, b) = m
            .apply(
                "dev",
                &[
                    payments_manifest("blue", h.addr(0), ""),
                    certificate_manifest("api", &first, false),
                ],
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let cache = data.path().join("cache");
        let opts = ManagedWorker::options(&m, "dev", &token, "w1", &cache);
        let w = ManagedWorker::start_https(opts).await.unwrap();
        w.wait_for_revision(1).await;
        let https = w.https.unwrap();
        ManagedHttps {
            h,
            ca,
            data,
            m,
            w,
            first,
            https,
        }
    }
}

/// The body of a sample-upstream answer: what it received.
fn received(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn sni_picks_exact_then_wildcard_then_default_and_alpn_serves_both_protocols() {
    let h = Harness::upstreams(&["a"]).await;
    let ca = TestCa::new();
    let api = ca.issue(&["api.example.com"]);
    let wild = ca.issue(&["*.example.com"]);
    let fallback = ca.issue(&["fallback.test"]);
    let dir = ConfigDir::new();
    dir.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    dir.write("api.yaml", &certificate_manifest("api", &api, false));
    dir.write("wild.yaml", &certificate_manifest("wild", &wild, false));
    dir.write(
        "fallback.yaml",
        &certificate_manifest("fallback", &fallback, true),
    );
    let (w, https) = worker(&dir).await;

    // Verified against the CA and the name: the right certificate or no handshake at all.
    let http1 = ca.client(&["http/1.1"]);
    let hs = http1.connect(https, "api.example.com").await.unwrap();
    assert_eq!(hs.leaf, api.leaf);
    assert_eq!(hs.alpn.as_deref(), Some("http/1.1"));
    let mut c = Conn::over(hs.stream, https).await.unwrap();
    let a = c
        .get("/payments/1", &[("host", "api.example.com")])
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-release"), Some("blue"));
    assert_eq!(received(&a.body)["headers"]["x-forwarded-proto"], "https");

    let hs = http1.connect(https, "www.example.com").await.unwrap();
    assert_eq!(hs.leaf, wild.leaf);
    assert!(!hs.resumed);
    // A request reads the session ticket (sent after a TLS 1.3 handshake); a second
    // connection with the same client then resumes the session.
    let mut c = Conn::over(hs.stream, https).await.unwrap();
    let a = c
        .get("/payments/1", &[("host", "www.example.com")])
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let again = http1.connect(https, "www.example.com").await.unwrap();
    assert!(again.resumed, "the session was not resumed");

    // No certificate names it: the default one is presented.
    let any = TlsClient::accepting_any(&["h2"]);
    let hs = any.connect(https, "other.org").await.unwrap();
    assert_eq!(hs.leaf, fallback.leaf);

    // HTTP/2 by ALPN.
    let h2 = ca.client(&["h2"]);
    let hs = h2.connect(https, "api.example.com").await.unwrap();
    assert_eq!(hs.alpn.as_deref(), Some("h2"));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(hs.stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://api.example.com/payments/2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(received(&body)["headers"]["x-forwarded-proto"], "https");

    // The plain listener is unaffected.
    let mut plain = Conn::open(w.addr).await.unwrap();
    let a = plain.get("/payments/3", &[]).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(received(&a.body)["headers"]["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn a_name_no_certificate_covers_is_refused_without_a_default() {
    let h = Harness::upstreams(&["a"]).await;
    let ca = TestCa::new();
    let dir = ConfigDir::new();
    dir.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    dir.write(
        "api.yaml",
        &certificate_manifest("api", &ca.issue(&["api.example.com"]), false),
    );
    let (w, https) = worker(&dir).await;
    let refused = TlsClient::accepting_any(&["http/1.1"])
        .connect(https, "other.org")
        .await;
    assert!(
        refused.is_err(),
        "a handshake for an uncovered name must fail"
    );
    let metrics = w.handle.metrics_text();
    assert!(
        metrics.contains("switchyard_tls_no_certificate_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_certificate_expiry_seconds{certificate=\"api\"}"));

    // /status: the certificates (never a key) and the hosts routes name that none covers.
    let status = w.handle.status();
    assert_eq!(status.certificates.len(), 1);
    assert_eq!(status.certificates[0].hosts, ["api.example.com"]);
    assert!(status.certificates[0].seconds_left > 0);
    assert!(
        status.uncovered_hosts.is_empty(),
        "{:?}",
        status.uncovered_hosts
    );
    let with_hosts = payments_manifest("blue", h.addr(0), "").replace(
        "    - pathPrefix: /payments",
        "    - pathPrefix: /payments\n      hosts: [api.example.com, other.org]",
    );
    dir.write("payments.yaml", &with_hosts);
    w.wait_for_revision(2).await;
    assert_eq!(w.handle.status().uncovered_hosts, ["other.org"]);
    ca.client(&["http/1.1"])
        .connect(https, "api.example.com")
        .await
        .unwrap();
}

/// 8 keep-alive HTTPS clients send requests without pause while the certificate is rotated
/// 10 times: no request fails, no established connection is closed (each client keeps its
/// one connection throughout), every full handshake made after a Worker has swapped in a
/// certificate presents that certificate, and a TLS session from before the rotations
/// still resumes after them (sessions survive hot changes like connections do).
#[tokio::test]
async fn rotating_the_certificate_under_load_drops_nothing_and_new_handshakes_get_the_new_one() {
    let h = Harness::upstreams(&["a"]).await;
    let ca = TestCa::new();
    let dir = ConfigDir::new();
    dir.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    let first = ca.issue(&["api.example.com"]);
    dir.write("api.yaml", &certificate_manifest("api", &first, false));
    let (w, https) = worker(&dir).await;
    let client = ca.client(&["http/1.1"]);
    // A client with a session from before the rotations (its ticket read by a request).
    let resuming = ca.client(&["http/1.1"]);
    let hs = resuming.connect(https, "api.example.com").await.unwrap();
    let mut c = Conn::over(hs.stream, https).await.unwrap();
    c.get("/payments/s", &[("host", "api.example.com")])
        .await
        .unwrap();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let answered = Arc::new(AtomicU64::new(0));
    let clients = keep_alive_clients(&client, https, 8, &stop_rx, &answered).await;

    let mut current: Issued = first;
    for round in 0..10u64 {
        let next = ca.issue(&["api.example.com"]);
        let before = w.handle.revision();
        dir.write("api.yaml", &certificate_manifest("api", &next, false));
        w.wait_for_revision(before + 1).await;
        // A client of its own: no session to resume, so a full handshake.
        let hs = ca
            .client(&["http/1.1"])
            .connect(https, "api.example.com")
            .await
            .unwrap();
        assert!(!hs.resumed);
        assert_eq!(
            hs.leaf, next.leaf,
            "round {round}: a new handshake got an old certificate"
        );
        assert_ne!(hs.leaf, current.leaf);
        current = next;
        // Traffic flowed during this round.
        let seen = answered.load(Ordering::Relaxed);
        switchyard_e2e::eventually("requests answered after the rotation", || {
            answered.load(Ordering::Relaxed) > seen
        })
        .await;
    }
    let hs = resuming.connect(https, "api.example.com").await.unwrap();
    assert!(
        hs.resumed,
        "a session from before the rotations did not resume"
    );
    stop_tx.send(true).unwrap();
    for c in clients {
        let n = tokio::time::timeout(DEADLINE, c).await.unwrap().unwrap();
        assert!(n > 0);
    }
    let metrics = w.handle.metrics_text();
    assert!(
        metrics.contains("switchyard_tls_handshake_failures_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_bad_certificate_file_is_refused_and_the_previous_one_keeps_serving() {
    let h = Harness::upstreams(&["a"]).await;
    let ca = TestCa::new();
    let dir = ConfigDir::new();
    dir.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    let good = ca.issue(&["api.example.com"]);
    dir.write("api.yaml", &certificate_manifest("api", &good, false));
    let (w, https) = worker(&dir).await;

    // Another certificate's key.
    let other = ca.issue(&["api.example.com"]);
    let mismatched = Issued {
        key_pem: other.key_pem.clone(),
        ..ca.issue(&["api.example.com"])
    };
    dir.write("api.yaml", &certificate_manifest("api", &mismatched, false));
    let outcome = w.handle.reload();
    let text = format!("{outcome:?}");
    assert!(
        text.contains("api.yaml")
            && text.contains("spec.privateKey")
            && text.contains("does not match"),
        "{text}"
    );
    let key_body: String = other
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(
        !text.contains(&key_body[..24]),
        "the key leaked into the error"
    );
    let hs = ca
        .client(&["http/1.1"])
        .connect(https, "api.example.com")
        .await
        .unwrap();
    assert_eq!(hs.leaf, good.leaf, "the previous certificate keeps serving");
}

/// Through the Manager: a certificate applied to an environment is served by its Workers'
/// HTTPS listeners, its rotation is one more revision they swap and ACK, an expired one is
/// refused with the certificate and field named, and the private key appears in no answer,
/// audit record, database file or Worker cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_through_the_manager_are_served_rotated_and_never_shown() {
    use http::Method;

    let ManagedHttps {
        h: _h,
        ca,
        data,
        m,
        mut w,
        first,
        https,
    } = ManagedHttps::start().await;
    let dir = data.path().join("manager");
    let cache = data.path().join("cache");
    let client = ca.client(&["http/1.1"]);
    let hs = client.connect(https, "api.example.com").await.unwrap();
    assert_eq!(hs.leaf, first.leaf);
    let mut kept = Conn::over(hs.stream, https).await.unwrap();
    let a = kept
        .get("/payments/1", &[("host", "api.example.com")])
        .await
        .unwrap();
    assert_eq!(a.status, 200);

    let next = ca.issue(&["api.example.com"]);
    let (s, b) = m
        .apply("dev", &[certificate_manifest("api", &next, false)])
        .await;
    assert_eq!(s, 200, "{b}");
    w.wait_for_revision(2).await;
    let view = m.wait_reports("dev", 2, &["w1"]).await;
    assert!(
        view.reports
            .iter()
            .all(|r| r.status == switchyard_api::records::ReportStatus::Ack),
        "{:?}",
        view.reports
    );
    let fresh = ca.client(&["http/1.1"]);
    assert_eq!(
        fresh.connect(https, "api.example.com").await.unwrap().leaf,
        next.leaf
    );
    let a = kept
        .get("/payments/2", &[("host", "api.example.com")])
        .await
        .unwrap();
    assert_eq!(
        a.status, 200,
        "the connection from before the rotation carries on"
    );

    // Expired: refused, nothing changes.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["api.example.com".to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let old = p.self_signed(&key).unwrap();
    let expired = Issued {
        chain_pem: old.pem(),
        key_pem: key.serialize_pem(),
        leaf: old.der().clone(),
    };
    let (s, b) = m
        .apply("dev", &[certificate_manifest("api", &expired, false)])
        .await;
    assert_eq!(s, 422, "{b}");
    let text = b.to_string();
    assert!(
        text.contains("certificate \\\"api\\\"")
            && text.contains("spec.certificate")
            && text.contains("expired on"),
        "{text}"
    );

    // The key appears nowhere.
    let (_, entity) = m.call(Method::GET, "/v1/envs/dev/entities", None).await;
    let (_, audit) = m.call(Method::GET, "/v1/audit?limit=1000", None).await;
    let (_, revisions) = m.call(Method::GET, "/v1/envs/dev/revisions/2", None).await;
    assert!(entity.to_string().contains("<redacted>"), "{entity}");
    let mut places = vec![
        ("GET entities".to_string(), entity.to_string().into_bytes()),
        ("GET audit".to_string(), audit.to_string().into_bytes()),
        (
            "GET revision".to_string(),
            revisions.to_string().into_bytes(),
        ),
        (
            "worker cache".to_string(),
            std::fs::read(cache.join("dev.lkg.json")).unwrap(),
        ),
        (
            "worker status".to_string(),
            format!("{:?}", w.handle.status()).into_bytes(),
        ),
    ];
    for file in ["switchyard.db", "switchyard.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(file)) {
            places.push((file.to_string(), bytes));
        }
    }
    for key in [&first.key_pem, &next.key_pem, &expired.key_pem] {
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        let needle = &body[body.len() - 32..];
        for (place, bytes) in &places {
            let found = bytes
                .windows(needle.len())
                .any(|win| win == needle.as_bytes());
            assert!(!found, "a private key appears in {place}");
        }
    }
    w.stop().await;
}

#[tokio::test]
async fn a_proxy_with_https_redirect_sends_plain_http_clients_to_https() {
    let h = Harness::upstreams(&["a"]).await;
    let ca = TestCa::new();
    let dir = ConfigDir::new();
    let proxy = payments_manifest("blue", h.addr(0), "")
        .replace("  policies:", "  httpsRedirect: true\n  policies:");
    dir.write("payments.yaml", &proxy);
    dir.write(
        "api.yaml",
        &certificate_manifest("api", &ca.issue(&["api.example.com"]), false),
    );
    let (w, https) = worker(&dir).await;
    let mut plain = Conn::open(w.addr).await.unwrap();
    let a = plain
        .get("/payments/1?x=1", &[("host", "api.example.com:8080")])
        .await
        .unwrap();
    assert_eq!(a.status, 308);
    assert_eq!(
        a.header("location"),
        Some("https://api.example.com/payments/1?x=1")
    );
    assert_eq!(a.header("x-upstream-id"), None, "not proxied");

    let hs = ca
        .client(&["http/1.1"])
        .connect(https, "api.example.com")
        .await
        .unwrap();
    let mut c = Conn::over(hs.stream, https).await.unwrap();
    let a = c
        .get("/payments/1", &[("host", "api.example.com")])
        .await
        .unwrap();
    assert_eq!(a.status, 200);
}

/// The rotation test through the Manager: 16 HTTPS keep-alive clients send requests without
/// pause and a seventeenth makes a new handshake after every ACK, while the certificate is
/// rotated 50 times with `apply`. No request fails, no handshake fails, no established
/// connection is closed (each client keeps its one connection), and every handshake made
/// after the Worker's ACK of a rotation presents that rotation's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rotations_through_the_manager_under_load_drop_nothing() {
    let ManagedHttps {
        h: _h,
        ca,
        data: _data,
        m,
        mut w,
        first: _,
        https,
    } = ManagedHttps::start().await;

    let client = ca.client(&["http/1.1"]);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let answered = Arc::new(AtomicU64::new(0));
    let clients = keep_alive_clients(&client, https, 16, &stop_rx, &answered).await;

    for round in 1..=50u64 {
        let next = ca.issue(&["api.example.com"]);
        let (s, b) = m
            .apply("dev", &[certificate_manifest("api", &next, false)])
            .await;
        assert_eq!(s, 200, "round {round}: {b}");
        let revision = 1 + round;
        let view = m.wait_reports("dev", revision, &["w1"]).await;
        assert!(
            view.reports
                .iter()
                .all(|r| r.status == switchyard_api::records::ReportStatus::Ack),
            "round {round}: {:?}",
            view.reports
        );
        // After the ACK: a full handshake (a client without a session) gets this certificate.
        let hs = ca
            .client(&["http/1.1"])
            .connect(https, "api.example.com")
            .await
            .unwrap_or_else(|e| panic!("round {round}: handshake failed: {e}"));
        assert_eq!(
            hs.leaf, next.leaf,
            "round {round}: an old certificate after the ACK"
        );
        let mut c = Conn::over(hs.stream, https).await.unwrap();
        let a = c
            .get("/payments/h", &[("host", "api.example.com")])
            .await
            .unwrap();
        assert_eq!(a.status, 200, "round {round}");
    }
    let seen = answered.load(Ordering::Relaxed);
    stop_tx.send(true).unwrap();
    let mut total = 0;
    for c in clients {
        let n = tokio::time::timeout(DEADLINE, c).await.unwrap().unwrap();
        assert!(n > 0, "a client made no request");
        total += n;
    }
    assert!(total >= seen);
    let metrics = w.handle.metrics_text();
    assert!(
        metrics.contains("switchyard_tls_handshake_failures_total 0"),
        "{metrics}"
    );
    w.stop().await;
}
