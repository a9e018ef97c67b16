//! `https://` upstream targets: verified against a CA credential (or the system's roots),
//! for the target's host or `tls.serverName`; a certificate that does not verify is a 502
//! `upstream_tls_failed`, counted as its own kind; pooled TLS connections survive swaps
//! that keep the target.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;

use switchyard_e2e::tls::{TestCa, TlsUpstream, certificate_manifest};
use switchyard_e2e::{ConfigDir, Conn, RunningWorker};

fn proxy(target: &str, tls: &str, release: &str) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: api }}
spec:
  routes:
    - pathPrefix: /api
  upstream:
    targets:
      - url: {target}
{tls}
  policies:
    - type: headers
      response:
        set: {{ x-release: {release} }}
"#
    )
}

fn ca_credential(pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: internal-ca }}\nspec:\n  type: secret\n  value: |\n{indented}"
    )
}

#[tokio::test]
async fn an_https_target_is_verified_against_the_ca_credential_and_its_connections_survive_swaps() {
    let ca = TestCa::new();
    let up = TlsUpstream::start(&ca.issue(&["api.internal", "127.0.0.1"]), "tls-1").await;
    let dir = ConfigDir::new();
    dir.write("ca.yaml", &ca_credential(&ca.root_pem));
    let tls = "    tls: { ca: internal-ca }";
    let target = format!("https://{}", up.addr);
    dir.write("api.yaml", &proxy(&target, tls, "blue"));
    let w = RunningWorker::start(dir.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    let a = c.get("/api/1", &[]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.header("x-upstream-id"), Some("tls-1"));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);

    // A swap that keeps the target keeps its pooled TLS connection.
    dir.write("api.yaml", &proxy(&target, tls, "green"));
    w.wait_for_revision(2).await;
    let a = c.get("/api/2", &[]).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-release"), Some("green"));
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "the swap cost a new TLS connection"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_untrusted_or_expired_is_a_502_counted_as_tls() {
    let ca = TestCa::new();
    let dir = ConfigDir::new();
    dir.write("ca.yaml", &ca_credential(&ca.root_pem));
    // Issued for api.internal only; reached as 127.0.0.1.
    let up = TlsUpstream::start(&ca.issue(&["api.internal"]), "tls-1").await;
    let target = format!("https://{}", up.addr);
    dir.write(
        "api.yaml",
        &proxy(&target, "    tls: { ca: internal-ca }", "blue"),
    );
    let w = RunningWorker::start(dir.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    let a = c.get("/api/1", &[]).await.unwrap();
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"], "upstream_tls_failed", "{:?}", a.body);
    let metrics = w.handle.metrics_text();
    assert!(
        metrics.contains("switchyard_upstream_errors_total{proxy=\"api\",kind=\"tls\"} 1"),
        "{metrics}"
    );

    // Verified for the name the certificate has.
    dir.write(
        "api.yaml",
        &proxy(
            &target,
            "    tls: { ca: internal-ca, serverName: api.internal }",
            "blue",
        ),
    );
    w.wait_for_revision(2).await;
    assert_eq!(c.get("/api/2", &[]).await.unwrap().status, 200);

    // The system's roots do not know the test CA.
    dir.write(
        "api.yaml",
        &proxy(&target, "    tls: { serverName: api.internal }", "blue"),
    );
    w.wait_for_revision(3).await;
    let a = c.get("/api/3", &[]).await.unwrap();
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"], "upstream_tls_failed");

    // Labs: verification off.
    dir.write(
        "api.yaml",
        &proxy(&target, "    tls: { insecureSkipVerify: true }", "blue"),
    );
    w.wait_for_revision(4).await;
    assert_eq!(c.get("/api/4", &[]).await.unwrap().status, 200);

    // Expired.
    let old = TlsUpstream::start(
        &ca.issue_with(&["api.internal"], |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }),
        "old",
    )
    .await;
    dir.write(
        "api.yaml",
        &proxy(
            &format!("https://{}", old.addr),
            "    tls: { ca: internal-ca, serverName: api.internal }",
            "blue",
        ),
    );
    w.wait_for_revision(5).await;
    let a = c.get("/api/5", &[]).await.unwrap();
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"], "upstream_tls_failed");
}

#[tokio::test]
async fn tls_settings_are_checked_when_applied() {
    let dir = ConfigDir::new();
    dir.write(
        "ca.yaml",
        &ca_credential("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    );
    dir.write(
        "api.yaml",
        &proxy("http://127.0.0.1:1", "    tls: { ca: internal-ca }", "a"),
    );
    let text = match switchyard_config::load_path(dir.path()) {
        Ok(m) => switchyard_engine::compile(&m, None)
            .unwrap_err()
            .to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("spec.upstream.tls") && text.contains("no target is https://"),
        "{text}"
    );
    dir.write(
        "api.yaml",
        &proxy("https://127.0.0.1:1", "    tls: { ca: internal-ca }", "a"),
    );
    let m = switchyard_config::load_path(dir.path()).unwrap();
    let text = switchyard_engine::compile(&m, None)
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("spec.upstream.tls.ca") && text.contains("internal-ca"),
        "{text}"
    );
    dir.write(
        "api.yaml",
        &proxy("https://127.0.0.1:1", "    tls: { ca: missing }", "a"),
    );
    let m = switchyard_config::load_path(dir.path()).unwrap();
    let text = switchyard_engine::compile(&m, None)
        .unwrap_err()
        .to_string();
    assert!(text.contains("no Credential named \"missing\""), "{text}");
}

/// Active health checks reach `https://` targets over TLS (a fresh connection per check):
/// a target whose certificate verifies stays healthy while checks keep arriving; one whose
/// certificate does not is marked unhealthy.
#[tokio::test]
async fn active_health_checks_go_over_tls() {
    let ca = TestCa::new();
    let good = TlsUpstream::start(&ca.issue(&["api.internal"]), "good").await;
    let dir = ConfigDir::new();
    dir.write("ca.yaml", &ca_credential(&ca.root_pem));
    let tls = "    tls: { ca: internal-ca, serverName: api.internal }\n    healthCheck:\n      active: { path: /healthz, interval: 100ms, unhealthyThreshold: 1 }";
    dir.write(
        "api.yaml",
        &proxy(&format!("https://{}", good.addr), tls, "a"),
    );
    let w = RunningWorker::start(dir.path()).await;
    switchyard_e2e::eventually("three health checks over TLS", || {
        good.accepted.load(Ordering::SeqCst) >= 3
    })
    .await;
    let healthy = format!(
        "switchyard_upstream_target_healthy{{proxy=\"api\",target=\"https://{}\"}} 1",
        good.addr
    );
    let metrics = w.handle.metrics_text();
    assert!(metrics.contains(&healthy), "{metrics}");

    // Another CA's certificate: checks fail, the target is marked unhealthy.
    let other = TestCa::new();
    let bad = TlsUpstream::start(&other.issue(&["api.internal"]), "bad").await;
    dir.write(
        "api.yaml",
        &proxy(&format!("https://{}", bad.addr), tls, "a"),
    );
    w.wait_for_revision(2).await;
    let unhealthy = format!(
        "switchyard_upstream_target_healthy{{proxy=\"api\",target=\"https://{}\"}} 0",
        bad.addr
    );
    switchyard_e2e::eventually("the untrusted target marked unhealthy", || {
        w.handle.metrics_text().contains(&unhealthy)
    })
    .await;
}

/// Mutual TLS to an upstream: the proxy presents a `kind: Certificate`; without one the
/// upstream refuses the handshake (502, kind tls); rotating the certificate recompiles the
/// proxy, and new upstream connections present the new one.
#[tokio::test]
async fn a_client_certificate_is_presented_to_upstreams_and_rotated_hot() {
    let ca = TestCa::new();
    let clients = TestCa::new();
    let up =
        TlsUpstream::requiring_client_certificates(&ca.issue(&["api.internal"]), "mtls", &clients)
            .await;
    let dir = ConfigDir::new();
    dir.write("ca.yaml", &ca_credential(&ca.root_pem));
    let target = format!("https://{}", up.addr);
    let without = "    tls: { ca: internal-ca, serverName: api.internal }";
    dir.write("api.yaml", &proxy(&target, without, "a"));
    let w = RunningWorker::start(dir.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    let a = c.get("/api/1", &[]).await.unwrap();
    assert_eq!(a.status, 502, "no client certificate, refused");
    assert_eq!(a.json()["error"], "upstream_tls_failed");

    let first = clients.issue(&["gateway.internal"]);
    dir.write(
        "gw.yaml",
        &certificate_manifest("gateway-client", &first, false),
    );
    let with =
        "    tls: { ca: internal-ca, serverName: api.internal, clientCertificate: gateway-client }";
    dir.write("api.yaml", &proxy(&target, with, "a"));
    // The two files may be read in one reload or two: wait for the proxy's new version.
    let version = |w: &RunningWorker| {
        w.handle
            .status()
            .proxies
            .iter()
            .find(|p| p.name == "api")
            .map_or(0, |p| p.version)
    };
    switchyard_e2e::eventually("the proxy with its client certificate", || version(&w) == 2).await;
    let a = c.get("/api/2", &[]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        up.client_certificates.lock().unwrap().last(),
        Some(&first.leaf)
    );

    // Rotated: only the certificate changes; the proxy that uses it is recompiled.
    let second = clients.issue(&["gateway.internal"]);
    dir.write(
        "gw.yaml",
        &certificate_manifest("gateway-client", &second, false),
    );
    switchyard_e2e::eventually("the proxy recompiled for the new certificate", || {
        version(&w) == 3
    })
    .await;
    let a = c.get("/api/3", &[]).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        up.client_certificates.lock().unwrap().last(),
        Some(&second.leaf)
    );
}
