//! `kind: Listener` with `protocol: https`: a Worker binds it from its files, serves TLS
//! with the certificate SNI selects, offers `h2` in ALPN or not as `http2` says, and, with
//! `tls.requireClientCertificate`, completes only handshakes whose certificate asks for a
//! client certificate. Each change applies to the handshakes after it, on the same socket;
//! an established connection carries on.

#![allow(clippy::unwrap_used)]

use switchyard_e2e::tls::{
    TestCa, certificate_manifest, client_auth_certificate_manifest, secret_credential,
};
use switchyard_e2e::{ConfigDir, Conn, Harness, RunningWorker, payments_manifest};
use switchyard_worker::WorkerOptions;

const HOST: &str = "api.example.com";
const MTLS_HOST: &str = "mtls.example.com";

fn listener(spec: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Listener\nmetadata: {{ name: secure }}\nspec: {{ address: 127.0.0.1, port: 0, protocol: https{spec} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_listeners_tls_settings_apply_to_the_next_handshakes() {
    let h = Harness::upstreams(&["a"]).await;
    let server_ca = TestCa::new();
    let clients = TestCa::new();
    let dir = ConfigDir::new();
    dir.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    dir.write(
        "api.yaml",
        &certificate_manifest("api", &server_ca.issue(&[HOST]), true),
    );
    dir.write(
        "ca.yaml",
        &secret_credential("clients-ca", &clients.root_pem),
    );
    dir.write(
        "mtls.yaml",
        &client_auth_certificate_manifest(
            "mtls",
            &server_ca.issue(&[MTLS_HOST]),
            "clients-ca",
            true,
        ),
    );
    dir.write("listener.yaml", &listener(""));
    let mut options = WorkerOptions::new(dir.path());
    options.threads = std::num::NonZeroUsize::new(2);
    let w = RunningWorker::start_from_environment(options).await;
    let https = w.listener("secure").await;

    // HTTP/2 offered; a request answered over it.
    let client = server_ca.client(&["h2", "http/1.1"]);
    let hs = client.connect(https, HOST).await.unwrap();
    assert_eq!(hs.alpn.as_deref(), Some("h2"));
    let kept = client.connect(https, HOST).await.unwrap();
    let mut kept = Conn::over(kept.stream, https).await.unwrap();
    assert_eq!(
        kept.get("/payments/1", &[("host", HOST)])
            .await
            .unwrap()
            .status,
        200
    );

    // HTTP/2 off and mutual TLS required: the next handshakes get HTTP/1.1, and only a
    // name whose certificate asks for a client certificate completes.
    dir.write(
        "listener.yaml",
        &listener(", http2: false, tls: { requireClientCertificate: true }"),
    );
    // The Worker watches its files.
    w.wait_for_revision(2).await;
    assert_eq!(w.listener("secure").await, https, "the same socket");
    assert!(
        client.connect(https, HOST).await.is_err(),
        "no client authentication for {HOST}: refused"
    );
    let presenting =
        server_ca.client_presenting(&["h2", "http/1.1"], &clients.issue_client("acme", |_| {}));
    let hs = presenting.connect(https, MTLS_HOST).await.unwrap();
    assert_eq!(hs.alpn.as_deref(), Some("http/1.1"));
    let mut c = Conn::over(hs.stream, https).await.unwrap();
    assert_eq!(
        c.get("/payments/2", &[("host", MTLS_HOST)])
            .await
            .unwrap()
            .status,
        200
    );
    // The connection established before the change carries on.
    assert_eq!(
        kept.get("/payments/3", &[("host", HOST)])
            .await
            .unwrap()
            .status,
        200
    );
}
