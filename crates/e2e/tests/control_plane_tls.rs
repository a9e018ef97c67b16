//! The control plane over HTTPS: the Manager serves its admin and sync API with a
//! certificate from its own CA (`DATA/ca.pem`); Workers and clients verify it and refuse a
//! Manager they cannot verify, saying why; plain HTTP only when asked for, and never on a
//! remote address without a second flag; Workers' client certificates bind a worker token
//! to its environment.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use switchyard_api::{AdminClient, ClientError, ManagerTls};
use switchyard_e2e::cluster::{ManagedWorker, RunningManager};
use switchyard_e2e::{DEADLINE, Harness, payments_manifest};
use switchyard_manager::tls::{ManagerCa, ServeTls};
use switchyard_manager::{Manager, ManagerError, ManagerOptions};

/// A Manager with `dev` at revision 1 (the payments proxy) and a worker token for it.
async fn manager_with_dev(
    data: &Path,
    h: &Harness,
    edit: impl FnOnce(&mut ManagerOptions),
) -> (RunningManager, String) {
    let m = RunningManager::start_with(data, "127.0.0.1:0".parse().unwrap(), edit).await;
    let token = m.env_with_worker_token("dev").await;
    let (s, b) = m
        .apply("dev", &[payments_manifest("blue", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    (m, token)
}

/// A Worker certificate for `env`/`name` from the Manager's CA, written to `dir`: the
/// trust and identity a Worker is given.
fn worker_certificate(m: &RunningManager, env: &str, name: &str, dir: &Path) -> ManagerTls {
    let (ca, created) = ManagerCa::load_or_create(&m.data).unwrap();
    assert!(!created, "the Manager created its CA at start");
    let issued = ca
        .issue_worker(env, name, std::time::Duration::from_secs(3600))
        .unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, &issued.chain_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    m.tls.clone().client_certificate(&cert, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_serves_https_with_its_own_ca_and_keeps_it_across_restarts() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("manager");
    let (mut m, token) = manager_with_dev(&dir, &h, |_| {}).await;
    assert!(m.url().starts_with("https://"), "{}", m.url());
    let mode = std::fs::metadata(dir.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "ca.key mode {mode:o}");
    let ca_before = std::fs::read(dir.join("ca.pem")).unwrap();

    // A Worker given the CA follows the Manager over HTTPS.
    let cache = data.path().join("cache");
    let mut w = ManagedWorker::start(ManagedWorker::options(&m, "dev", &token, "w1", &cache))
        .await
        .unwrap();
    w.wait_for_revision(1).await;

    // After a restart on the same data, the same CA: the Worker (and its stored trust)
    // carries on, and a change reaches it.
    let addr = m.addr;
    m.stop().await;
    let m = RunningManager::start_on(&dir, addr).await;
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca_before);
    let (s, b) = m
        .apply("dev", &[payments_manifest("green", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    w.wait_for_revision(2).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_or_client_given_the_wrong_ca_refuses_the_manager_and_says_why() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let (m, token) = manager_with_dev(&data.path().join("manager"), &h, |_| {}).await;
    // Another Manager's CA.
    let (other, _) = ManagerCa::load_or_create(&data.path().join("other")).unwrap();
    let wrong = ManagerTls::ca_file(&other.path).unwrap();

    let mut opts = ManagedWorker::options(&m, "dev", &token, "w1", &data.path().join("cache"));
    opts.tls = wrong.clone();
    let err = match ManagedWorker::start(opts).await {
        Ok(mut w) => {
            w.stop().await;
            panic!("a Worker started with a Manager it cannot verify");
        }
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("not signed by a CA this client trusts") && err.contains("--manager-ca"),
        "{err}"
    );
    // Nothing was sent: the Manager never saw the Worker (nor its token); it counted the
    // handshake the Worker broke off.
    assert!(m.client.workers("dev").await.unwrap().is_empty());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, metrics) = m.call(http::Method::GET, "/metrics", None).await;
        let text = metrics.as_str().unwrap_or_default().to_string();
        let failed = text
            .lines()
            .find_map(|l| l.strip_prefix("switchyard_manager_tls_handshake_failures_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{text}"));
        if failed >= 1.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // The system's roots do not know the Manager's own CA either.
    let client = AdminClient::with_tls(&m.url(), &m.admin_token, &ManagerTls::system()).unwrap();
    let e = client.envs().await.unwrap_err();
    assert!(matches!(e, ClientError::Tls { .. }), "{e:?}");
    assert!(
        e.is_retryable(),
        "a Worker keeps its reports for when it is fixed"
    );

    // A name the certificate was not issued for (the Manager's address is; `127.0.0.2`
    // is loopback too, but not in the certificate).
    let other_name = format!("https://127.0.0.2:{}", m.addr.port());
    let client = AdminClient::with_tls(&other_name, &m.admin_token, &m.tls).unwrap();
    match client.envs().await {
        Err(ClientError::Tls { reason, .. }) => {
            assert!(reason.contains("does not name the host"), "{reason}");
        }
        // Some systems do not route 127.0.0.2: nothing to check there.
        Err(ClientError::Unreachable { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_served_only_when_asked_and_never_remotely_without_a_second_flag() {
    let data = tempfile::tempdir().unwrap();
    // Loopback, --insecure-http: plain HTTP; an https:// client is told why it fails.
    let m = RunningManager::start_plain(&data.path().join("plain")).await;
    assert!(m.url().starts_with("http://"), "{}", m.url());
    assert!(!data.path().join("plain/ca.pem").exists());
    m.client.envs().await.unwrap();
    let https = format!("https://{}", m.addr);
    let e = AdminClient::with_tls(&https, &m.admin_token, &ManagerTls::system())
        .unwrap()
        .envs()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not speak TLS"), "{e}");

    // Any address but loopback: refused, naming the way out; with the second flag, served.
    let remote = async |allow: bool| {
        let dir = data.path().join(format!("remote-{allow}"));
        let mut o = ManagerOptions::new(&dir);
        o.tls = ServeTls::InsecureHttp;
        o.allow_insecure_remote = allow;
        let manager = Manager::open(o).await.unwrap();
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        manager.serve(listener, async {}).await
    };
    match remote(false).await {
        Err(e @ ManagerError::InsecureRemote(_)) => {
            assert!(e.to_string().contains("--allow-insecure-remote"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    remote(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_certificates_bind_a_worker_token_to_its_environment() {
    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let (m, token) = manager_with_dev(&data.path().join("manager"), &h, |o| {
        o.require_worker_certificates = true;
    })
    .await;
    let certs = data.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let cache = |n: &str| data.path().join(format!("cache-{n}"));

    // The token alone is no longer enough; the refusal says how to get a certificate.
    let opts = ManagedWorker::options(&m, "dev", &token, "w0", &cache("w0"));
    let err = match ManagedWorker::start(opts).await {
        Ok(mut w) => {
            w.stop().await;
            panic!("a Worker without a certificate was served");
        }
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("worker_certificate") && err.contains("worker-cert create"),
        "{err}"
    );

    // A certificate for another environment is refused too.
    let mut opts = ManagedWorker::options(&m, "dev", &token, "w1", &cache("w1"));
    opts.tls = worker_certificate(&m, "prod", "w1", &certs);
    let err = match ManagedWorker::start(opts).await {
        Ok(mut w) => {
            w.stop().await;
            panic!("a Worker with another environment's certificate was served");
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not of \"dev\""), "{err}");

    // A certificate names its Worker: another Worker id is refused.
    let mut opts = ManagedWorker::options(&m, "dev", &token, "impostor", &cache("impostor"));
    opts.tls = worker_certificate(&m, "dev", "w9", &certs);
    let err = match ManagedWorker::start(opts).await {
        Ok(mut w) => {
            w.stop().await;
            panic!("a Worker connected under another Worker's certificate");
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("Worker \"w9\"'s, not \"impostor\"'s"), "{err}");

    // Its own environment's certificate: served, and changes reach it.
    let mut opts = ManagedWorker::options(&m, "dev", &token, "w2", &cache("w2"));
    opts.tls = worker_certificate(&m, "dev", "w2", &certs);
    let mut w = ManagedWorker::start(opts).await.unwrap();
    w.wait_for_revision(1).await;
    let (s, b) = m
        .apply("dev", &[payments_manifest("green", h.addr(0), "")])
        .await;
    assert_eq!(s, 200, "{b}");
    w.wait_for_revision(2).await;

    // Operators are not Workers: the admin API still answers the admin token alone.
    let (s, b) = m.call(http::Method::GET, "/v1/envs/dev", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["revision"], 2, "{b}");
    w.stop().await;
}
