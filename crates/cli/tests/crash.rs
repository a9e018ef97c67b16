//! Crash consistency of the Manager, by fault injection: the real `switchyard manager`
//! process is killed with SIGKILL at a random moment of a 500-proxy apply, then its store
//! is checked as the next start finds it — all of the apply or none of it, one audit
//! record per entity version, SQLite's `integrity_check` ok — and the Manager is started
//! again on it and serves that state.
//!
//! A handful of runs here (a few seconds); more with `SWITCHYARD_CRASH_RUNS=30`. The kill
//! points come from a seeded generator (`SWITCHYARD_CRASH_SEED`, default fixed); every
//! failure names the seed, the run and the kill point.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Proc;
use switchyard_api::AdminClient;
use switchyard_api::admin::ApplyRequest;
use switchyard_api::records::Operation;
use switchyard_store::{AuditQuery, SqlStore, Store};

const PROXIES: usize = 500;
const ENV: &str = "dev";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            }
        })
        .unwrap_or(default)
}

/// The `n`th random number of `seed`: the kill points, reproducible from the seed
/// (`DefaultHasher::new` has fixed keys).
fn random(seed: u64, n: u64) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    (seed, n).hash(&mut h);
    h.finish()
}

/// When a run kills the Manager.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// This long after the apply is sent.
    After(Duration),
    /// This long after its write-ahead log is first written to (the commit has begun).
    IntoCommit(Duration),
}

/// The write-ahead log's size and modification time: changes when a transaction writes.
fn written(wal: &Path) -> Option<(u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(wal).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// A Manager process on port 0 over `data`, and its admin API.
fn start_manager(data: &Path) -> (Proc, AdminClient) {
    let (proc, url, token) = common::spawn_manager(data);
    let tls = switchyard_api::ManagerTls::ca_file(&data.join("ca.pem")).unwrap();
    (proc, AdminClient::with_tls(&url, &token, &tls).unwrap())
}

/// Generation `g` of the environment: every proxy changes.
fn generation(g: u64) -> ApplyRequest {
    let manifests = (0..PROXIES)
        .map(|i| {
            format!(
                "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: p{i} }}\nspec:\n  routes: [{{ pathPrefix: /p{i} }}]\n  upstream: {{ targets: [{{ url: \"http://127.0.0.1:1\" }}] }}\n  policies:\n    - type: headers\n      response: {{ set: {{ x-generation: \"{g}\" }} }}\n"
            )
        })
        .collect();
    ApplyRequest {
        manifests,
        ..ApplyRequest::default()
    }
}

/// One entity version as written: name, new version, digest.
type Written = (String, Option<u64>, Option<String>);

/// What the store holds after a crash, checked as the next start finds it: all of every
/// apply or none of it, and the audit trail one for one with the entity versions.
async fn check(data: &Path, ctx: &str) -> u64 {
    let store = SqlStore::open(&data.join("switchyard.db")).await.unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), ["ok"], "{ctx}");
    let revision = store.env(ENV).await.unwrap().unwrap().revision;
    // Each apply changes every proxy: at revision r, all of them are at version r, made
    // by revision r.
    let entities = store.entities(ENV, None).await.unwrap();
    assert_eq!(entities.len(), PROXIES, "{ctx}: revision {revision}");
    for e in &entities {
        assert_eq!(
            (e.version, e.revision),
            (revision, revision),
            "{ctx}: {}",
            e.name
        );
    }
    let revisions = store.revisions(ENV, 1000).await.unwrap();
    assert_eq!(revisions.len() as u64, revision, "{ctx}");
    // Per revision: its record's changes, and the audit records of the applies, are the
    // same entity versions with the same digests.
    let audit = store
        .audit(AuditQuery {
            env: Some(ENV.into()),
            limit: 1_000_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let mut audited: BTreeMap<u64, Vec<Written>> = BTreeMap::new();
    for a in audit.iter().filter(|a| a.operation == Operation::Apply) {
        audited.entry(a.revision.unwrap()).or_default().push((
            a.entity_name.clone(),
            a.new_version,
            a.digest.clone(),
        ));
    }
    assert_eq!(audited.len() as u64, revision, "{ctx}: audited revisions");
    for r in &revisions {
        let mut recorded: Vec<_> = r
            .changes
            .iter()
            .map(|c| (c.name.clone(), c.new_version, Some(c.digest.clone())))
            .collect();
        recorded.sort();
        let mut rows = audited.remove(&r.revision).unwrap_or_default();
        rows.sort();
        assert_eq!(recorded.len(), PROXIES, "{ctx}: revision {}", r.revision);
        assert_eq!(rows, recorded, "{ctx}: revision {}", r.revision);
    }
    store.close().await;
    revision
}

#[test]
fn a_manager_killed_at_any_point_of_a_big_apply_keeps_all_or_nothing() {
    let runs = setting("SWITCHYARD_CRASH_RUNS", 4);
    let seed = setting("SWITCHYARD_CRASH_SEED", 0x5eed_c0ff_ee15_dead);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Revision 1, applied to the end: how long a whole apply takes here.
    let (mut manager, api) = start_manager(&data);
    rt.block_on(api.create_env(ENV)).unwrap();
    let started = Instant::now();
    let first = rt.block_on(api.apply(ENV, &generation(1))).unwrap();
    let took = started.elapsed();
    assert_eq!(first.revision, 1);
    let mut api = api;
    let mut revision = 1;
    // Runs whose apply was answered / committed but not answered / not committed.
    let (mut answered_runs, mut unanswered_commits, mut lost) = (0, 0, 0);

    for run in 0..runs {
        // Even runs: anywhere from the request's first byte to a little after its answer.
        // Odd runs: inside the commit, which is the last moment of the apply — once the
        // database's write-ahead log is first written to, and a little later.
        let window = u64::try_from(took.as_micros() * 5 / 4)
            .unwrap_or(u64::MAX)
            .max(1);
        let point = if run % 2 == 0 {
            KillPoint::After(Duration::from_micros(random(seed, run) % window))
        } else {
            KillPoint::IntoCommit(Duration::from_micros(random(seed, run) % 3_000))
        };
        let ctx = format!(
            "seed {seed:#x}, run {run}, killed {point:?} in an apply that takes ~{took:?} \
             (rerun with SWITCHYARD_CRASH_SEED={seed:#x} SWITCHYARD_CRASH_RUNS={runs})"
        );
        let wal = data.join("switchyard.db-wal");
        let before = written(&wal);
        let client = api.clone();
        let apply = rt.spawn(async move { client.apply(ENV, &generation(revision + 1)).await });
        match point {
            KillPoint::After(delay) => std::thread::sleep(delay),
            KillPoint::IntoCommit(delay) => {
                let deadline = Instant::now() + took * 4;
                while written(&wal) == before && !apply.is_finished() && Instant::now() < deadline {
                    std::hint::spin_loop();
                }
                std::thread::sleep(delay);
            }
        }
        manager.child.kill().unwrap();
        manager.child.wait().unwrap();
        let answered = rt.block_on(apply).unwrap();

        let found = rt.block_on(check(&data, &ctx));
        match &answered {
            // An answered apply is durable.
            Ok(out) => {
                assert_eq!((out.revision, found), (revision + 1, revision + 1), "{ctx}");
                answered_runs += 1;
            }
            Err(_) if found == revision + 1 => unanswered_commits += 1,
            Err(_) => {
                assert_eq!(found, revision, "{ctx}");
                lost += 1;
            }
        }
        revision = found;

        // The Manager starts again on what it left and serves exactly that.
        let (again, client) = start_manager(&data);
        assert_eq!(
            rt.block_on(client.env(ENV)).unwrap().revision,
            revision,
            "{ctx}"
        );
        let entities = rt.block_on(client.entities(ENV)).unwrap();
        assert_eq!(entities.len(), PROXIES, "{ctx}");
        manager = again;
        api = client;
    }
    eprintln!(
        "{runs} kill -9 runs (seed {seed:#x}): all or nothing, audit one for one, integrity ok; \
         {answered_runs} answered, {unanswered_commits} committed unanswered, {lost} not committed"
    );
}
