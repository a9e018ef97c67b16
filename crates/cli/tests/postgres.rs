//! Two Manager processes on one PostgreSQL database, a Worker following each: a change
//! applied through either Manager reaches both Workers (the other Manager hears of the
//! commit by `LISTEN`/`NOTIFY`, or finds it when it polls), and each Worker ACKs it to
//! its own Manager, where the revision's reports are read through either.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Manager, wait_until};
use switchyard_api::admin::ApplyRequest;

fn proxy(up: std::net::SocketAddr, release: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: p }}\nspec:\n  routes: [{{ pathPrefix: /p }}]\n  upstream: {{ targets: [{{ url: \"http://{up}\" }}] }}\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: {release} }} }}\n"
    )
}

/// Applies the proxy (upstream `up`, tagging responses `x-release: RELEASE`) to `dev`
/// through `m`: the revision committed.
fn release_through(
    m: &Manager,
    up: std::net::SocketAddr,
    release: &str,
) -> Result<u64, switchyard_api::ClientError> {
    let body = ApplyRequest {
        manifests: vec![proxy(up, release)],
        ..Default::default()
    };
    m.block_on(m.api.apply("dev", &body)).map(|o| o.revision)
}

/// Two Manager processes on the database at `url`, sealing with one key (kept in the
/// returned directory) and serving certificates from one CA (A's), so a Worker or client
/// given both verifies either.
fn two_managers(url: &str) -> (tempfile::TempDir, Manager, Manager) {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("secret.key");
    std::fs::write(&key, "33".repeat(32)).unwrap();
    let a = Manager::on_database(url, &key, None);
    let b_data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(b_data.path().join("data")).unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(a.data().join(f), b_data.path().join("data").join(f)).unwrap();
    }
    let b = Manager::on_database_in(b_data, url, &key, Some(&a.admin));
    (keys, a, b)
}

/// The revision as Manager `m` shows it: (expected Workers, audit completeness,
/// propagation), once every expected Worker's ACK is stored.
fn completed(m: &Manager, env: &str, revision: u64) -> (Vec<String>, f64, i64) {
    let mut view = None;
    wait_until("every expected Worker's ACK is stored", || {
        let v = m.block_on(m.api.revision(env, revision)).unwrap();
        let done = v.audit_completeness == Some(1.0);
        view = Some(v);
        done
    });
    let v = view.unwrap();
    (
        v.expected_workers.unwrap_or_default(),
        v.audit_completeness.unwrap(),
        v.propagation_ms
            .expect("propagation of a completed revision"),
    )
}

#[test]
fn a_change_through_either_manager_reaches_the_workers_of_both() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db =
        runtime.block_on(async { switchyard_store::testing::Postgres::get().database().await });
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("secret.key");
    std::fs::write(&key, "22".repeat(32)).unwrap();
    let a = Manager::on_database(&db.url, &key, None);
    let b = Manager::on_database(&db.url, &key, Some(&a.admin));
    a.ok(&["env", "create", "dev"], &[]);
    let (_up, up) = common::upstream("u1");
    let apply = |m: &Manager, release: &str| release_through(m, up, release).unwrap();
    assert_eq!(apply(&a, "blue"), 1);
    let wa = a.worker("dev", "edge-a");
    let wb = b.worker("dev", "edge-b");
    let release = |w: &common::Worker| {
        let mut s = std::net::TcpStream::connect(w.listen).unwrap();
        common::exchange(&mut s, "GET", "/p/x", &["connection: close"], "")
            .1
            .lines()
            .find_map(|l| l.strip_prefix("x-release: ").map(str::to_string))
    };
    assert_eq!(release(&wa).as_deref(), Some("blue"));
    assert_eq!(release(&wb).as_deref(), Some("blue"));

    for (through, colour) in [(&a, "green"), (&b, "red")] {
        let revision = apply(through, colour);
        for w in [&wa, &wb] {
            wait_until("both Workers serve the change", || {
                release(w).as_deref() == Some(colour)
            });
        }
        // Each Worker ACKed to its own Manager; either Manager shows both reports.
        for m in [&a, &b] {
            wait_until("both ACKs are stored", || {
                let reports = m.block_on(m.api.revision("dev", revision)).unwrap().reports;
                ["edge-a", "edge-b"].iter().all(|id| {
                    reports
                        .iter()
                        .any(|r| r.worker_id == *id && r.error.is_none())
                })
            });
        }
    }
}

/// A Worker given both Managers (`--manager A,B`) follows A; when A goes away it follows B
/// at once, from the revision it serves (no resynchronisation), takes the next change
/// applied through B, and ACKs it there; traffic is served throughout.
#[test]
fn a_worker_fails_over_to_another_manager_and_keeps_receiving_changes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db =
        runtime.block_on(async { switchyard_store::testing::Postgres::get().database().await });
    let (_keys, a, b) = two_managers(&db.url);
    a.ok(&["env", "create", "dev"], &[]);
    let (_up, up) = common::upstream("u1");
    let apply = |m: &Manager, release: &str| release_through(m, up, release).unwrap();
    assert_eq!(apply(&a, "blue"), 1);
    let token = a.token(&["--role", "worker", "--env", "dev", "--name", "edge-1"]);
    let both = format!("{},{}", a.url, b.url);
    let w = a.spawn_worker_with("dev", &token, Some("edge-1"), &["--manager", &both]);
    let served = |w: &common::Worker| common::traffic::status(w.admin);
    wait_until("the Worker follows A", || {
        served(&w)["sync"]["connected"] == true && served(&w)["revision"] == 1
    });
    let load = common::traffic::Load::start(w.listen, 2);
    wait_until("the load is running", || load.answered() > 100);

    let mut a = a;
    a.proc.child.kill().unwrap();
    a.proc.child.wait().unwrap();
    wait_until("the Worker follows B", || {
        let s = served(&w);
        s["sync"]["connected"] == true && s["sync"]["manager"] == b.url.as_str()
    });
    let revision = apply(&b, "green");
    wait_until("the Worker serves the change applied through B", || {
        served(&w)["revision"].as_u64() == Some(revision)
    });
    wait_until("its ACK is stored", || {
        b.block_on(b.api.revision("dev", revision))
            .unwrap()
            .reports
            .iter()
            .any(|r| r.worker_id == "edge-1" && r.error.is_none())
    });
    assert!(
        served(&w)["sync"]["last_resync"].is_null(),
        "resumed, not resynchronised: {}",
        served(&w)["sync"]
    );
    load.finish_without_failure();
}

/// The scenario: two Managers on one PostgreSQL, three Workers (two following A,
/// one B), steady load on all three. A change through A, then one through B, reaches all
/// three; A is killed under load: no request fails, its Workers follow B within seconds and
/// take the next change; A restarted answers every revision's audit completeness and
/// propagation as B does, from the store.
#[test]
fn three_workers_on_two_managers_survive_losing_one() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db =
        runtime.block_on(async { switchyard_store::testing::Postgres::get().database().await });
    let (_keys, a, b) = two_managers(&db.url);
    a.ok(&["env", "create", "dev"], &[]);
    let (_up, up) = common::upstream("u1");
    let apply = |m: &Manager, release: &str| release_through(m, up, release).unwrap();
    assert_eq!(apply(&a, "blue"), 1);
    let (ab, ba) = (
        format!("{},{}", a.url, b.url),
        format!("{},{}", b.url, a.url),
    );
    let worker = |id: &str, managers: &str| {
        let token = a.token(&["--role", "worker", "--env", "dev", "--name", id]);
        a.spawn_worker_with("dev", &token, Some(id), &["--manager", managers])
    };
    let workers = [
        worker("edge-a1", &ab),
        worker("edge-a2", &ab),
        worker("edge-b1", &ba),
    ];
    let served = |w: &common::Worker| common::traffic::status(w.admin);
    let on = |w: &common::Worker, m: &Manager, revision: u64| {
        let s = served(w);
        s["sync"]["connected"] == true
            && s["sync"]["manager"] == m.url.as_str()
            && s["revision"] == revision
    };
    for (w, m) in workers.iter().zip([&a, &a, &b]) {
        wait_until("each Worker follows its Manager", || on(w, m, 1));
    }
    let loads: Vec<_> = workers
        .iter()
        .map(|w| common::traffic::Load::start(w.listen, 2))
        .collect();
    for load in &loads {
        wait_until("the load is running", || load.answered() > 50);
    }
    let ids = ["edge-a1", "edge-a2", "edge-b1"].map(String::from).to_vec();

    let mut revisions = Vec::new();
    for (through, release) in [(&a, "green"), (&b, "red")] {
        let revision = apply(through, release);
        for w in &workers {
            wait_until("all three serve it", || {
                served(w)["revision"].as_u64() == Some(revision)
            });
        }
        let (expected, _, _) = completed(through, "dev", revision);
        assert_eq!(expected, ids, "r{revision}: connected to either Manager");
        revisions.push(revision);
    }

    // A crashes: its two Workers follow B within seconds, serving throughout.
    let mut a = a;
    a.proc.child.kill().unwrap();
    a.proc.child.wait().unwrap();
    for w in &workers {
        wait_until("every Worker follows B", || {
            let s = served(w);
            s["sync"]["connected"] == true && s["sync"]["manager"] == b.url.as_str()
        });
    }
    let revision = apply(&b, "gold");
    for w in &workers {
        wait_until("all three serve the change applied through B", || {
            served(w)["revision"].as_u64() == Some(revision)
        });
    }
    revisions.push(revision);
    for load in loads {
        load.finish_without_failure();
    }

    // A comes back: every revision's numbers, as A and B both answer them from the store.
    let a = a.restart();
    for &r in &revisions {
        let on_b = completed(&b, "dev", r);
        assert_eq!(on_b.0, ids, "r{r}");
        assert_eq!(completed(&a, "dev", r), on_b, "r{r}: the same through A");
    }
    // Who is connected, where: the same answer through either Manager.
    let listed = |m: &Manager| {
        let mut v: Vec<(String, bool, Option<String>)> = m
            .block_on(m.api.workers("dev"))
            .unwrap()
            .into_iter()
            .map(|w| (w.id, w.connected, w.manager))
            .collect();
        v.sort();
        v
    };
    let through_b = listed(&b);
    assert_eq!(through_b.len(), 3);
    assert!(
        through_b
            .iter()
            .all(|(_, connected, manager)| *connected && manager.is_some())
    );
    assert_eq!(listed(&a), through_b);
}

/// Eight applies against one revision, four through each Manager process, at once: exactly
/// one commits, the seven others are refused with 409 and nothing of theirs is written.
#[test]
fn eight_conflicting_applies_over_two_managers_one_wins() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db =
        runtime.block_on(async { switchyard_store::testing::Postgres::get().database().await });
    let (_keys, a, b) = two_managers(&db.url);
    a.ok(&["env", "create", "dev"], &[]);
    let (_up, up) = common::upstream("u1");
    let first = ApplyRequest {
        manifests: vec![proxy(up, "base")],
        ..Default::default()
    };
    assert_eq!(a.block_on(a.api.apply("dev", &first)).unwrap().revision, 1);
    let calls = (0..8).map(|i| {
        let m = if i % 2 == 0 { &a } else { &b };
        let body = ApplyRequest {
            manifests: vec![proxy(up, &format!("r{i}"))],
            expected_revision: Some(1),
            ..Default::default()
        };
        // A client of this runtime's own (`m.api`'s connections live on the Manager's).
        let tls = switchyard_api::ManagerTls::ca_file(std::path::Path::new(&m.ca)).unwrap();
        let api = switchyard_api::AdminClient::with_tls(&m.url, &m.admin, &tls).unwrap();
        async move { api.apply("dev", &body).await }
    });
    let results: Vec<_> = runtime.block_on(async {
        let started: Vec<_> = calls.map(tokio::spawn).collect();
        let mut results = Vec::new();
        for call in started {
            results.push(call.await.unwrap());
        }
        results
    });
    let won: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for lost in results.iter().filter(|r| r.is_err()) {
        match lost.as_ref().unwrap_err() {
            switchyard_api::ClientError::Api(f) => assert_eq!(f.status, 409, "{}", f.body.message),
            other => panic!("{other}"),
        }
    }
    assert_eq!(b.revision("dev"), 2);
    let applies = a
        .block_on(a.api.audit(&switchyard_api::admin::AuditParams {
            env: Some("dev".into()),
            limit: 100,
            ..Default::default()
        }))
        .unwrap()
        .into_iter()
        .filter(|r| r.revision == Some(2))
        .count();
    assert_eq!(applies, 1, "one audit record for the one change that won");
}

/// The database goes away for 30 s under load. Traffic is unaffected; every write through
/// either Manager is refused with 503 `store_unavailable`; a Worker restarted meanwhile
/// with an empty cache is still answered (its Manager serves the revision it announced);
/// when the database is back everything converges: the next change reaches both Workers,
/// and the ACK the restarted Worker could not deliver is stored.
#[test]
fn thirty_seconds_without_the_database() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db =
        runtime.block_on(async { switchyard_store::testing::Postgres::get().database().await });
    let (_keys, a, b) = two_managers(&db.url);
    a.ok(&["env", "create", "dev"], &[]);
    let (_up, up) = common::upstream("u1");
    let apply = |m: &Manager, release: &str| release_through(m, up, release);
    assert_eq!(apply(&a, "blue").unwrap(), 1);
    let (ab, ba) = (
        format!("{},{}", a.url, b.url),
        format!("{},{}", b.url, a.url),
    );
    let t1 = a.token(&["--role", "worker", "--env", "dev", "--name", "edge-1"]);
    let t2 = a.token(&["--role", "worker", "--env", "dev", "--name", "edge-2"]);
    let spawn1 = || a.spawn_worker_with("dev", &t1, Some("edge-1"), &["--manager", &ab]);
    let mut w1 = spawn1();
    let w2 = a.spawn_worker_with("dev", &t2, Some("edge-2"), &["--manager", &ba]);
    let served = |w: &common::Worker| common::traffic::status(w.admin);
    for w in [&w1, &w2] {
        wait_until("both Workers serve r1", || {
            let s = served(w);
            s["sync"]["connected"] == true && s["revision"] == 1
        });
    }
    let steady = common::traffic::Load::start(w2.listen, 2);
    let mut restarted = common::traffic::Load::start(w1.listen, 2);
    wait_until("the load is running", || steady.answered() > 50);

    runtime.block_on(db.set_reachable(false));
    let outage = std::time::Instant::now();
    let mut refused = 0;
    let mut w1_restarted = false;
    while outage.elapsed() < std::time::Duration::from_secs(30) {
        for m in [&a, &b] {
            match apply(m, "green").unwrap_err() {
                switchyard_api::ClientError::Api(f) => {
                    assert_eq!(f.status, 503, "{}", f.body.message);
                    assert_eq!(f.body.code, switchyard_api::ErrorCode::StoreUnavailable);
                    refused += 1;
                }
                other => panic!("{other}"),
            }
        }
        if !w1_restarted && outage.elapsed() > std::time::Duration::from_secs(5) {
            // A Worker that starts now, with nothing cached, is answered all the same.
            restarted.finish_without_failure();
            drop(w1);
            std::fs::remove_dir_all(a.dir().join("cache-edge-1")).unwrap();
            w1 = spawn1();
            wait_until("the restarted Worker serves r1", || {
                served(&w1)["revision"] == 1
            });
            restarted = common::traffic::Load::start(w1.listen, 2);
            w1_restarted = true;
        }
        // The outage's pace, not a synchronisation: one write attempt per Manager a second.
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert!(refused >= 40, "{refused} writes refused");
    runtime.block_on(db.set_reachable(true));

    // Converges: the next change is committed and reaches both Workers, and the ACK the
    // restarted Worker could not deliver during the outage is stored.
    let mut r2 = None;
    wait_until("a write is accepted again", || {
        r2 = apply(&b, "gold").ok();
        r2.is_some()
    });
    let r2 = r2.unwrap();
    assert_eq!(r2, 2, "nothing of the refused writes was committed");
    for w in [&w1, &w2] {
        wait_until("both Workers serve r2", || served(w)["revision"] == r2);
    }
    wait_until("the restarted Worker's ACK of r1 is stored", || {
        a.block_on(a.api.revision("dev", 1))
            .unwrap()
            .reports
            .iter()
            .any(|r| r.worker_id == "edge-1" && r.error.is_none())
    });
    restarted.finish_without_failure();
    steady.finish_without_failure();
}
