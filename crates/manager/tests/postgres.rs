#![allow(clippy::unwrap_used)]
//! Two Managers sharing one PostgreSQL database (each with its own data directory, the
//! same sealing key): a change committed through one is what the other serves; two
//! applies against one revision, one through each, give one revision and one 409; a token
//! created through one works on the other; the audit trail holds every change once.

use switchyard_api::admin::ApplyRequest;
use switchyard_api::{AdminClient, ManagerTls};
use switchyard_manager::{Manager, ManagerOptions};
use switchyard_store::testing::Postgres;

fn proxy(release: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{name: api}}\nspec:\n  routes: [{{pathPrefix: /api}}]\n  upstream: {{targets: [{{url: \"http://127.0.0.1:1\"}}]}}\n  policies:\n    - type: headers\n      response: {{set: {{x-release: {release}}}}}\n"
    )
}

/// A Manager on `url` serving on a port of its own; its client with `token` (or the admin
/// token it wrote, on the first start).
struct Running {
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    async fn start(url: &str) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut options = ManagerOptions::new(dir.path());
        options.database = Some(url.to_string());
        // Every Manager of one database seals with the same key.
        options.secret_key = Some("11".repeat(32));
        let manager = Manager::open(options).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(manager.serve(listener, async move {
            let _ = stopped.await;
        }));
        Running {
            dir,
            addr,
            _stop: stop,
        }
    }

    fn client(&self, token: &str) -> AdminClient {
        let tls = ManagerTls::ca_file(&self.dir.path().join("ca.pem")).unwrap();
        AdminClient::with_tls(&format!("https://{}", self.addr), token, &tls).unwrap()
    }

    fn admin_token(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("admin.token")).ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_on_one_postgres_database_are_one_control_plane() {
    let db = Postgres::get().database().await;
    let a = Running::start(&db.url).await;
    let b = Running::start(&db.url).await;
    // The first start made the admin token; the second found one in the database.
    let token = a.admin_token().expect("the first Manager's admin token");
    assert!(b.admin_token().is_none());
    let (ca, cb) = (a.client(&token), b.client(&token));

    ca.create_env("prod").await.unwrap();
    let body = |release: &str, expected: Option<u64>| ApplyRequest {
        manifests: vec![proxy(release)],
        expected_revision: expected,
        ..ApplyRequest::default()
    };
    assert_eq!(
        ca.apply("prod", &body("blue", None))
            .await
            .unwrap()
            .revision,
        1
    );
    // Through B: the same environment, revision and entity.
    assert_eq!(cb.env("prod").await.unwrap().revision, 1);

    // One apply against revision 1 through each Manager at once: one wins.
    let (green, red) = (body("green", Some(1)), body("red", Some(1)));
    let (ra, rb) = tokio::join!(ca.apply("prod", &green), cb.apply("prod", &red));
    let outcomes = [ra.is_ok(), rb.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "{ra:?} {rb:?}"
    );
    let lost = if ra.is_ok() { rb } else { ra };
    match lost.unwrap_err() {
        switchyard_api::ClientError::Api(f) => assert_eq!(f.status, 409, "{}", f.body.message),
        other => panic!("{other}"),
    }
    assert_eq!(cb.env("prod").await.unwrap().revision, 2);
    assert_eq!(ca.revisions("prod", 10).await.unwrap().len(), 2);

    // A token created through B works on A.
    let created = cb
        .create_token(&switchyard_api::admin::CreateToken {
            name: "viewer".into(),
            role: "viewer".into(),
            envs: vec![],
            expires_in: None,
            expires_at: None,
        })
        .await
        .unwrap();
    let viewer = a.client(&created.token);
    assert_eq!(viewer.env("prod").await.unwrap().revision, 2);

    // Every change audited once: the first start's admin token, the environment, two
    // applies, the viewer token.
    let audit = ca
        .audit(&switchyard_api::admin::AuditParams {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 5, "{audit:?}");
    let revisions: Vec<_> = audit.iter().filter_map(|r| r.revision).collect();
    assert_eq!(revisions, [2, 1, 0]);
}

/// A Manager whose database goes away answers 503 `store_unavailable` to writes (nothing
/// written, nothing acknowledged) and 503 on `/readyz`; when the database is back, both
/// recover by themselves and nothing was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_loses_its_database_refuses_writes_until_it_is_back() {
    let db = Postgres::get().database().await;
    let a = Running::start(&db.url).await;
    let token = a.admin_token().unwrap();
    let c = a.client(&token);
    c.create_env("prod").await.unwrap();
    let body = ApplyRequest {
        manifests: vec![proxy("blue")],
        ..ApplyRequest::default()
    };
    assert_eq!(c.apply("prod", &body).await.unwrap().revision, 1);
    let ready = || async {
        let url = format!("https://{}", a.addr);
        let tls = ManagerTls::ca_file(&a.dir.path().join("ca.pem")).unwrap();
        let t = switchyard_api::Transport::builder(&url, "")
            .unwrap()
            .tls(&tls)
            .unwrap()
            .build();
        t.send_with(axum::http::Method::GET, "/readyz", None::<&()>, &[])
            .await
            .unwrap()
            .status
    };
    assert_eq!(ready().await, 200);

    db.set_reachable(false).await;
    let refused = c
        .apply(
            "prod",
            &ApplyRequest {
                manifests: vec![proxy("green")],
                ..ApplyRequest::default()
            },
        )
        .await
        .unwrap_err();
    match refused {
        switchyard_api::ClientError::Api(f) => {
            assert_eq!(f.status, 503, "{}", f.body.message);
            assert_eq!(f.body.code, switchyard_api::ErrorCode::StoreUnavailable);
        }
        other => panic!("{other}"),
    }
    assert_eq!(ready().await, 503);

    db.set_reachable(true).await;
    assert_eq!(ready().await, 200);
    // Nothing of the refused write landed; the next one is revision 2.
    assert_eq!(c.env("prod").await.unwrap().revision, 1);
    let green = ApplyRequest {
        manifests: vec![proxy("green")],
        ..ApplyRequest::default()
    };
    assert_eq!(c.apply("prod", &green).await.unwrap().revision, 2);
}

/// A rollout driven by one Manager is saved at every step: the other Manager shows the
/// same rollout, and refuses to start another while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manager_shows_the_rollout_one_of_them_drives() {
    let db = Postgres::get().database().await;
    let a = Running::start(&db.url).await;
    let b = Running::start(&db.url).await;
    let token = a.admin_token().unwrap();
    let (ca, cb) = (a.client(&token), b.client(&token));
    ca.create_env("prod").await.unwrap();
    let body = ApplyRequest {
        manifests: vec![proxy("blue")],
        ..ApplyRequest::default()
    };
    ca.apply("prod", &body).await.unwrap();
    assert!(cb.rollout_status("prod").await.unwrap().is_none());

    let started = ca
        .rollout("prod", &switchyard_api::admin::RolloutRequest::default())
        .await
        .unwrap();
    // No Worker is connected: it has nothing to walk and finishes by itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let through_b = loop {
        let seen = cb.rollout_status("prod").await.unwrap();
        if let Some(s) = &seen
            && s.state != switchyard_api::admin::RolloutState::Running
        {
            break seen.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "B shows {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(through_b.id, started.id);
    assert_eq!(
        through_b.state,
        switchyard_api::admin::RolloutState::Succeeded
    );
    let json = |s: &switchyard_api::admin::RolloutStatus| serde_json::to_value(s).unwrap();
    assert_eq!(
        json(&ca.rollout_status("prod").await.unwrap().unwrap()),
        json(&through_b),
        "the same rollout through either Manager"
    );
}
