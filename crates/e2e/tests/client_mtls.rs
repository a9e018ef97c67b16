//! Client mTLS on the Worker's HTTPS listener: a `kind: Certificate` with `spec.clientAuth`
//! asks clients for a certificate and verifies it against a CA credential; the `mtls-auth`
//! policy takes the consumer from it (rate-limit keys and the access log use it). A client
//! without a certificate gets a 401 (or, with `mode: required`, no handshake); one from
//! another CA, or expired, gets no handshake; the CA rotates hot.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use switchyard_e2e::tls::{
    Issued, TestCa, TlsClient, client_auth_certificate_manifest, secret_credential,
};
use switchyard_e2e::{ConfigDir, Conn, Harness, RunningWorker, eventually, payments_manifest};
use switchyard_worker::{AccessLogTarget, WorkerOptions};

const HOST: &str = "api.example.com";

/// The payments proxy behind `mtls-auth` (with `extra` fields) and a rate limit of `limit`
/// requests per consumer and hour.
fn proxy(h: &Harness, extra: &str, limit: u32) -> String {
    payments_manifest("blue", h.addr(0), "").replace(
        "  policies:\n",
        &format!(
            "  policies:\n    - type: mtls-auth\n{extra}    - type: rate-limit\n      key: consumer\n      limit: {limit}\n      per: 1h\n"
        ),
    )
}

/// A Worker serving HTTPS with `api` (api.example.com, clients verified against Credential
/// `clients-ca` holding `clients`' root), logging access to a file.
struct Setup {
    _h: Harness,
    server_ca: TestCa,
    dir: ConfigDir,
    w: RunningWorker,
    https: SocketAddr,
    log: PathBuf,
}

impl Setup {
    async fn start(clients: &TestCa, required: bool, policy_extra: &str, limit: u32) -> Setup {
        let h = Harness::upstreams(&["a"]).await;
        let server_ca = TestCa::new();
        let dir = ConfigDir::new();
        dir.write("payments.yaml", &proxy(&h, policy_extra, limit));
        dir.write(
            "ca.yaml",
            &secret_credential("clients-ca", &clients.root_pem),
        );
        let server = server_ca.issue(&[HOST]);
        dir.write(
            "api.yaml",
            &client_auth_certificate_manifest("api", &server, "clients-ca", required),
        );
        let log = dir.path().join("access.log");
        let mut options = WorkerOptions::new(dir.path());
        options.access_log = AccessLogTarget::File(log.clone());
        let (w, https) = RunningWorker::start_https(options).await;
        Setup {
            _h: h,
            server_ca,
            dir,
            w,
            https,
            log,
        }
    }

    fn presenting(&self, cert: &Issued) -> TlsClient {
        self.server_ca.client_presenting(&["http/1.1"], cert)
    }

    /// An HTTP/1.1 connection handshaken by `client`.
    async fn open(&self, client: &TlsClient) -> Conn {
        let hs = client.connect(self.https, HOST).await.unwrap();
        Conn::over(hs.stream, self.https).await.unwrap()
    }

    /// The access-log lines written so far, once there are at least `n`.
    async fn log_lines(&self, n: usize) -> Vec<serde_json::Value> {
        eventually("access-log lines", || {
            std::fs::read_to_string(&self.log).is_ok_and(|t| t.lines().count() >= n)
        })
        .await;
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Whether `client` is refused: the handshake fails, or (TLS 1.3, where the server
/// verifies the client's certificate after the client considers the handshake done) the
/// connection ends before any response.
async fn refused(client: &TlsClient, https: SocketAddr) -> bool {
    let Ok(hs) = client.connect(https, HOST).await else {
        return true;
    };
    let Ok(mut c) = Conn::over(hs.stream, https).await else {
        return true;
    };
    c.get("/payments/x", &[("host", HOST)]).await.is_err()
}

#[tokio::test]
async fn a_certificate_from_the_ca_names_the_consumer_none_is_a_401_another_ca_is_refused() {
    let clients = TestCa::new();
    let s = Setup::start(&clients, false, "", 2).await;

    // acme: its CN is the consumer; the rate limit counts per consumer.
    let acme = s.presenting(&clients.issue_client("acme", |_| {}));
    let mut c = s.open(&acme).await;
    for i in 0..2 {
        let a = c.get("/payments/a", &[("host", HOST)]).await.unwrap();
        assert_eq!(a.status, 200, "request {i}: {:?}", a.body);
    }
    let a = c.get("/payments/a", &[("host", HOST)]).await.unwrap();
    assert_eq!(a.status, 429, "acme's third request in the hour");
    // globex has its own bucket.
    let globex = s.presenting(&clients.issue_client("globex", |_| {}));
    let a = s
        .open(&globex)
        .await
        .get("/payments/g", &[("host", HOST)])
        .await
        .unwrap();
    assert_eq!(a.status, 200);

    // No certificate: the handshake completes (mode optional) and the answer says why.
    let anonymous = s.server_ca.client(&["http/1.1"]);
    let a = s
        .open(&anonymous)
        .await
        .get("/payments/n", &[("host", HOST)])
        .await
        .unwrap();
    assert_eq!(a.status, 401, "{:?}", a.body);
    assert_eq!(a.json()["error"], "missing_client_certificate");
    assert_eq!(a.json()["policy"], "mtls-auth");
    // Nor over plain HTTP.
    let a = Conn::open(s.w.addr)
        .await
        .unwrap()
        .get("/payments/p", &[("host", HOST)])
        .await
        .unwrap();
    assert_eq!(a.status, 401);

    // A certificate from another CA, or expired: no handshake.
    let strangers = TestCa::new();
    let stranger = s.presenting(&strangers.issue_client("acme", |_| {}));
    assert!(
        refused(&stranger, s.https).await,
        "another CA's certificate"
    );
    let expired = clients.issue_client("acme", |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    assert!(
        refused(&s.presenting(&expired), s.https).await,
        "an expired certificate"
    );

    // The access log names the consumer of each request the policy let through or limited.
    let lines = s.log_lines(6).await;
    // (Sorted: requests on different connections may be logged in either order.)
    let mut consumers: Vec<(u64, Option<&str>)> = lines
        .iter()
        .map(|l| (l["status"].as_u64().unwrap(), l["consumer"].as_str()))
        .collect();
    consumers.sort();
    assert_eq!(
        consumers,
        [
            (200, Some("acme")),
            (200, Some("acme")),
            (200, Some("globex")),
            (401, None),
            (401, None),
            (429, Some("acme")),
        ]
    );
    // The two refused handshakes are counted.
    eventually("two handshake failures counted", || {
        s.w.handle
            .metrics_text()
            .contains("switchyard_tls_handshake_failures_total 2")
    })
    .await;
}

#[tokio::test]
async fn required_mode_refuses_a_client_without_a_certificate_and_the_policy_lists_restrict() {
    let clients = TestCa::new();
    let extra = "      identity: san-uri\n      allow: [\"spiffe://example.org/acme\"]\n      cas: [clients-ca]\n";
    let s = Setup::start(&clients, true, extra, 100).await;
    let anonymous = s.server_ca.client(&["http/1.1"]);
    assert!(refused(&anonymous, s.https).await, "no certificate");

    let with_uri = |name: &str| {
        let uri = format!("spiffe://example.org/{name}");
        clients.issue_client(name, move |p| {
            p.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        })
    };
    let a = s
        .open(&s.presenting(&with_uri("acme")))
        .await
        .get("/payments/a", &[("host", HOST)])
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = s
        .open(&s.presenting(&with_uri("globex")))
        .await
        .get("/payments/g", &[("host", HOST)])
        .await
        .unwrap();
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["error"], "client_not_allowed");
    // Verified, but without the URI the policy takes the identity from.
    let a = s
        .open(&s.presenting(&clients.issue_client("acme", |_| {})))
        .await
        .get("/payments/n", &[("host", HOST)])
        .await
        .unwrap();
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"], "invalid_client_certificate");
    let lines = s.log_lines(3).await;
    let ok: Vec<&serde_json::Value> = lines.iter().filter(|l| l["status"] == 200).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0]["consumer"], "spiffe://example.org/acme");
}

/// The CA credential is replaced: a hot change. A connection established before it carries
/// on (its certificate was verified in its handshake); new handshakes are verified against
/// the new CA, and a session from before the change does not resume (it would bring back
/// a certificate of the old CA). Within one version, sessions resume with their identity.
#[tokio::test]
async fn rotating_the_client_ca_is_hot_and_keeps_established_connections() {
    let first = TestCa::new();
    let s = Setup::start(&first, false, "", 100).await;
    let old = s.presenting(&first.issue_client("acme", |_| {}));
    let mut kept = s.open(&old).await;
    let a = kept.get("/payments/1", &[("host", HOST)]).await.unwrap();
    assert_eq!(a.status, 200);
    // A second connection of the same client resumes its session (the ticket was read
    // with the response) and is still acme.
    let hs = old.connect(s.https, HOST).await.unwrap();
    assert!(hs.resumed, "the session did not resume");
    let mut resumed = Conn::over(hs.stream, s.https).await.unwrap();
    let a = resumed.get("/payments/2", &[("host", HOST)]).await.unwrap();
    assert_eq!(
        a.status, 200,
        "a resumed session keeps its client certificate"
    );

    // Not a CA: refused, naming the certificate's field; nothing changes.
    let before = s.w.handle.revision();
    s.dir.write(
        "ca.yaml",
        &secret_credential("clients-ca", "not a certificate"),
    );
    let text = format!("{:?}", s.w.handle.reload());
    assert!(
        text.contains("api.yaml")
            && text.contains("spec.clientAuth.ca")
            && text.contains("holds no CA certificate"),
        "{text}"
    );
    assert_eq!(s.w.handle.revision(), before);
    assert!(!refused(&s.presenting(&first.issue_client("acme", |_| {})), s.https).await);

    let second = TestCa::new();
    s.dir.write(
        "ca.yaml",
        &secret_credential("clients-ca", &second.root_pem),
    );
    s.w.wait_for_revision(before + 1).await;
    let a = kept.get("/payments/3", &[("host", HOST)]).await.unwrap();
    assert_eq!(
        a.status, 200,
        "the connection from before the change carries on"
    );
    let new = s.presenting(&second.issue_client("globex", |_| {}));
    let a = s
        .open(&new)
        .await
        .get("/payments/4", &[("host", HOST)])
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(
        refused(&old, s.https).await,
        "a certificate of the old CA, even with a session from before"
    );
    assert!(refused(&s.presenting(&first.issue_client("acme", |_| {})), s.https).await);
}

/// Through the Manager: the CA credential and the certificate applied together are served
/// by the Worker (which ACKs), a CA rotation applied alone is one more revision it swaps and
/// ACKs, after which the new CA's clients are accepted and the old CA's refused, and a
/// certificate naming a credential the environment does not have is refused (422).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_manager_the_ca_credential_is_applied_and_rotated() {
    use switchyard_e2e::cluster::{ManagedWorker, RunningManager};

    let h = Harness::upstreams(&["a"]).await;
    let server_ca = TestCa::new();
    let first = TestCa::new();
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start(&data.path().join("manager")).await;
    let token = m.env_with_worker_token("dev").await;
    let server = server_ca.issue(&[HOST]);
    let (s, b) = m
        .apply(
            "dev",
            &[
                proxy(&h, "", 100),
                secret_credential("clients-ca", &first.root_pem),
                client_auth_certificate_manifest("api", &server, "clients-ca", false),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let opts = ManagedWorker::options(&m, "dev", &token, "w1", &data.path().join("cache"));
    let mut w = ManagedWorker::start_https(opts).await.unwrap();
    w.wait_for_revision(1).await;
    let https = w.https.unwrap();
    let get = |client: TlsClient| async move {
        let hs = client.connect(https, HOST).await.unwrap();
        let mut c = Conn::over(hs.stream, https).await.unwrap();
        c.get("/payments/m", &[("host", HOST)])
            .await
            .unwrap()
            .status
    };
    let old_client =
        server_ca.client_presenting(&["http/1.1"], &first.issue_client("acme", |_| {}));
    assert_eq!(get(old_client.clone()).await, 200);

    let second = TestCa::new();
    let (s, b) = m
        .apply("dev", &[secret_credential("clients-ca", &second.root_pem)])
        .await;
    assert_eq!(s, 200, "{b}");
    let view = m.wait_reports("dev", 2, &["w1"]).await;
    assert!(
        view.reports
            .iter()
            .all(|r| r.status == switchyard_api::records::ReportStatus::Ack),
        "{:?}",
        view.reports
    );
    let new_client =
        server_ca.client_presenting(&["http/1.1"], &second.issue_client("globex", |_| {}));
    assert_eq!(get(new_client).await, 200);
    assert!(refused(&old_client, https).await);

    let other = server_ca.issue(&["other.example.com"]);
    let (s, b) = m
        .apply(
            "dev",
            &[client_auth_certificate_manifest(
                "other", &other, "nope", false,
            )],
        )
        .await;
    assert_eq!(s, 422, "{b}");
    let text = b.to_string();
    assert!(
        text.contains("spec.clientAuth.ca") && text.contains("nope"),
        "{text}"
    );
    w.stop().await;
}
