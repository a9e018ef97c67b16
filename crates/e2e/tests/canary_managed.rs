//! Canary revisions driven by the Manager (`apply --canary`): on two Workers following it,
//! the canary serves its share of requests (each wholly on one revision), sticky keys land
//! on the same revision on both; a plain apply is refused while it runs; a failing canary
//! is rolled back by the Manager within its window (only the canary's share failed, the
//! audit trail says why); a healthy one goes through its steps to 100%, and the old
//! generation is freed — with no request failing because of the machinery.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_api::admin::{ApplyRequest, AuditParams};
use switchyard_api::canary::{CanaryKey, CanarySpec, CanaryState, CanaryStatus};
use switchyard_api::records::Operation;
use switchyard_api::{ClientError, ErrorCode};
use switchyard_e2e::cluster::{ManagedWorker, RunningManager};
use switchyard_e2e::{Conn, DEADLINE, DeadPort, Harness, payments_manifest};

/// A Manager with environment `prod` at r1 (payments → `blue`), and two Workers on it.
struct Cluster {
    manager: RunningManager,
    workers: Vec<ManagedWorker>,
    _dirs: Vec<tempfile::TempDir>,
    harness: Harness,
    token: String,
}

impl Cluster {
    async fn start() -> Cluster {
        let harness = Harness::upstreams(&["blue", "green"]).await;
        let data = tempfile::tempdir().unwrap();
        let manager = RunningManager::start(data.path()).await;
        let token = manager.env_with_worker_token("prod").await;
        let (s, b) = manager
            .apply(
                "prod",
                &[
                    payments_manifest("blue", harness.addr(0), ""),
                    prod_environment("x-switchyard-revision"),
                ],
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let mut dirs = vec![data];
        let mut workers = Vec::new();
        for id in ["w1", "w2"] {
            let cache = tempfile::tempdir().unwrap();
            let opts = ManagedWorker::options(&manager, "prod", &token, id, cache.path());
            workers.push(ManagedWorker::start(opts).await.unwrap());
            dirs.push(cache);
        }
        for w in &workers {
            w.wait_for_revision(1).await;
        }
        Cluster {
            manager,
            workers,
            _dirs: dirs,
            harness,
            token,
        }
    }

    async fn apply_canary(&self, manifest: String, spec: CanarySpec) -> u64 {
        let r = self
            .manager
            .client
            .apply(
                "prod",
                &ApplyRequest {
                    manifests: vec![manifest],
                    canary: Some(spec),
                    ..ApplyRequest::default()
                },
            )
            .await
            .unwrap();
        assert!(r.changed);
        r.revision
    }

    /// The Manager's refusal of `req` (the apply must fail with an API error).
    async fn refused(&self, req: ApplyRequest) -> switchyard_api::ErrorBody {
        match self.manager.client.apply("prod", &req).await {
            Err(ClientError::Api(failure)) => failure.body,
            other => panic!("{other:?}"),
        }
    }

    async fn status(&self) -> CanaryStatus {
        self.manager.client.canary("prod").await.unwrap().unwrap()
    }

    /// Polls the canary's status until `done` holds (bounded).
    async fn wait_status(&self, what: &str, done: impl Fn(&CanaryStatus) -> bool) -> CanaryStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status().await;
            if done(&s) {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every Worker serves `revision` to every request, one generation live.
    async fn wait_promoted(&self, revision: u64) {
        for w in &self.workers {
            let deadline = tokio::time::Instant::now() + DEADLINE;
            while w.handle.revision() != revision || w.handle.live_generations() != 1 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} not promoted",
                    w.id
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// The details of `prod`'s canary audit records, newest first.
    async fn canary_audit(&self) -> Vec<String> {
        let params = AuditParams {
            env: Some("prod".into()),
            limit: 1000,
            ..AuditParams::default()
        };
        let audit = self.manager.client.audit(&params).await.unwrap();
        audit
            .into_iter()
            .filter(|a| a.operation == Operation::Canary)
            .filter_map(|a| a.detail)
            .collect()
    }

    /// Waits until every Worker serves `revision` as its canary (ACKed it).
    async fn wait_canary_served(&self, revision: u64) {
        self.manager
            .wait_reports("prod", revision, &["w1", "w2"])
            .await;
        for w in &self.workers {
            assert_eq!(w.handle.live_generations(), 2, "{}", w.id);
        }
    }
}

/// `prod`'s Environment document: responses name their revision in `header`.
fn prod_environment(header: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Environment\nmetadata: {{ name: prod }}\nspec:\n  gateway:\n    revisionHeader: {header}\n"
    )
}

/// `n` requests on one keep-alive connection to `w`, each with `headers`: how many ran
/// on `green`, after checking each ran wholly on one revision — its release header, its
/// upstream and the revision it names agree.
async fn green_of(w: &ManagedWorker, n: usize, headers: &[(&str, &str)]) -> usize {
    let mut conn = Conn::open(w.addr).await.unwrap();
    let mut green = 0;
    let mut revisions = std::collections::BTreeMap::new();
    for i in 0..n {
        let a = conn.get(&format!("/payments/{i}"), headers).await.unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
        let revision = a.header("x-switchyard-revision").unwrap().to_string();
        match (a.header("x-release"), a.header("x-upstream-id")) {
            (Some("blue"), Some("blue")) => {}
            (Some("green"), Some("green")) => green += 1,
            other => panic!("a request half on each revision: {other:?}"),
        }
        let release = a.header("x-release").unwrap().to_string();
        let seen = revisions.entry(release.clone()).or_insert(revision.clone());
        assert_eq!(*seen, revision, "{release} answered by two revisions");
    }
    if let (Some(b), Some(g)) = (revisions.get("blue"), revisions.get("green")) {
        assert_ne!(b, g, "both releases named one revision");
    }
    green
}

/// Background load on every Worker until stopped: (requests, failures, green) per Worker.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, u64, u64)>>,
}

impl Load {
    fn start(workers: &[ManagedWorker]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = workers
            .iter()
            .map(|w| {
                let (stop, addr) = (stop.clone(), w.addr);
                tokio::spawn(async move {
                    let mut conn = Conn::open(addr).await.unwrap();
                    let (mut n, mut failed, mut green) = (0u64, 0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let a = conn.get("/payments/load", &[]).await.unwrap();
                        n += 1;
                        if a.status != 200 {
                            failed += 1;
                        } else if a.header("x-release") == Some("green") {
                            green += 1;
                        }
                    }
                    (n, failed, green)
                })
            })
            .collect();
        Load { stop, tasks }
    }

    async fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut sum = (0, 0, 0);
        for t in self.tasks {
            let (n, f, g) = t.await.unwrap();
            sum = (sum.0 + n, sum.1 + f, sum.2 + g);
        }
        sum
    }
}

fn spec(steps_ppm: &[u32], step_secs: u64) -> CanarySpec {
    CanarySpec {
        steps_ppm: steps_ppm.to_vec(),
        step_secs,
        ..CanarySpec::at(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_serves_its_share_on_every_worker_sticky_by_key_and_blocks_plain_applies() {
    let c = Cluster::start().await;
    let green = payments_manifest("green", c.harness.addr(1), "");

    // 20% at random, held for an hour: each Worker gives the canary its share.
    let r2 = c.apply_canary(green.clone(), spec(&[200_000], 3600)).await;
    c.wait_canary_served(r2).await;
    let s = c.status().await;
    assert_eq!(
        (s.state, s.share_ppm, s.stable_revision),
        (CanaryState::Running, 200_000, 1)
    );
    for w in &c.workers {
        assert_eq!(
            w.handle.revision(),
            1,
            "the stable revision is the Worker's own"
        );
        // 2000 requests: binomial sd ≈ 18; ±80 is over 4 sd.
        let g = green_of(w, 2_000, &[]).await;
        assert!(
            (320..=480).contains(&g),
            "{}: {g} of 2000 on the canary; {:?}",
            w.id,
            c.status().await
        );
    }

    // A Worker that starts while the canary runs serves the stable revision with the
    // canary beside it, not the canary to every request.
    let cache = tempfile::tempdir().unwrap();
    let opts = ManagedWorker::options(&c.manager, "prod", &c.token, "w3", cache.path());
    let mut w3 = ManagedWorker::start(opts).await.unwrap();
    c.manager.wait_reports("prod", r2, &["w3"]).await;
    assert_eq!((w3.handle.revision(), w3.handle.live_generations()), (1, 2));
    let g = green_of(&w3, 1_000, &[]).await;
    assert!((120..=280).contains(&g), "w3: {g} of 1000 on the canary");
    w3.stop().await;

    // One canary at a time, and nothing else is committed while it runs.
    let refused = c
        .refused(ApplyRequest {
            manifests: vec![payments_manifest("blue", c.harness.addr(0), "")],
            ..ApplyRequest::default()
        })
        .await;
    assert_eq!(refused.code, ErrorCode::CanaryRunning, "{refused:?}");
    assert!(
        refused
            .message
            .contains("switchyard canary promote --env prod")
            && refused
                .message
                .contains("switchyard canary abort --env prod"),
        "{}",
        refused.message
    );

    // Aborted: the stable content comes back as r3, on every request, one generation.
    let why = switchyard_api::canary::CanaryAction {
        reason: Some("seen enough".into()),
    };
    let aborted = c.manager.client.canary_abort("prod", &why).await.unwrap();
    assert_eq!(aborted.state, CanaryState::Aborted);
    assert!(
        aborted
            .reason
            .as_deref()
            .unwrap()
            .ends_with(": seen enough"),
        "{aborted:?}"
    );
    assert_eq!(aborted.rollback_revision, Some(3));
    for w in &c.workers {
        w.wait_for_revision(3).await;
        assert_eq!(green_of(w, 50, &[]).await, 0);
        assert_eq!(w.handle.live_generations(), 1);
    }

    // What cannot be a canary is refused, nothing written: here gateway settings, which
    // apply to every request of a Worker whichever revision it runs on.
    let before = c.manager.client.env("prod").await.unwrap().revision;
    let refused = c
        .refused(ApplyRequest {
            manifests: vec![prod_environment("x-revision")],
            canary: Some(spec(&[200_000], 3600)),
            ..ApplyRequest::default()
        })
        .await;
    assert_eq!(refused.code, ErrorCode::NotCanaryable, "{refused:?}");
    assert!(
        refused
            .details
            .iter()
            .any(|d| d.contains("environment/prod: spec.gateway")),
        "{:?}",
        refused.details
    );
    assert_eq!(c.manager.client.env("prod").await.unwrap().revision, before);
    assert!(
        c.manager
            .client
            .canary("prod")
            .await
            .unwrap()
            .unwrap()
            .state
            == CanaryState::Aborted
    );

    // Sticky by a header: each user lands on the same revision on both Workers, always.
    let sticky = CanarySpec {
        key: CanaryKey::Header {
            name: "x-user-id".into(),
        },
        ..spec(&[200_000], 3600)
    };
    let r4 = c.apply_canary(green, sticky).await;
    c.wait_canary_served(r4).await;
    let mut on_canary = 0;
    for user in 0..200 {
        let id = format!("user-{user}");
        let h = [("x-user-id", id.as_str())];
        let first = green_of(&c.workers[0], 3, &h).await;
        let second = green_of(&c.workers[1], 3, &h).await;
        assert!(
            first == 0 || first == 3,
            "{id} moved between revisions on w1"
        );
        assert_eq!(first, second, "{id} lands on another revision on w2");
        on_canary += usize::from(first == 3);
    }
    assert!(
        (20..=60).contains(&on_canary),
        "{on_canary} of 200 users on the canary"
    );

    // Promoted by hand: every request on r4, one generation.
    let promoted = c
        .manager
        .client
        .canary_promote("prod", &Default::default())
        .await
        .unwrap();
    assert_eq!(promoted.state, CanaryState::Promoted);
    c.wait_promoted(r4).await;
    for w in &c.workers {
        assert_eq!(green_of(w, 50, &[]).await, 50);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_by_the_manager_and_only_its_share_failed() {
    let c = Cluster::start().await;
    let dead = DeadPort::new();
    let load = Load::start(&c.workers);
    // A canary pointing at an upstream that refuses connections: 25%, an hour a step.
    let r2 = c
        .apply_canary(
            payments_manifest("green", dead.addr, ""),
            spec(&[250_000], 3600),
        )
        .await;
    let ended = c
        .wait_status("the canary rolled back", |s| {
            s.state != CanaryState::Running
        })
        .await;
    assert_eq!(ended.state, CanaryState::RolledBack, "{ended:?}");
    let reason = ended.reason.clone().unwrap();
    assert!(reason.contains("error rate"), "{reason}");
    let r3 = ended.rollback_revision.unwrap();
    assert_eq!(r3, r2 + 1);
    for w in &c.workers {
        w.wait_for_revision(r3).await;
    }
    // After the rollback, nothing fails.
    let after = Load::start(&c.workers);
    let (before_n, before_failed, _) = load.finish().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (after_n, after_failed, _) = after.finish().await;
    assert!(after_n > 0);
    assert_eq!(after_failed, 0, "requests failed after the rollback");
    // Before it, only the canary's share did: 25% of the requests at most (with margin).
    assert!(before_failed > 0, "the canary was never tried");
    assert!(
        before_failed * 100 <= before_n * 40,
        "{before_failed} of {before_n} requests failed with a 25% canary"
    );
    // The audit trail says so, with the numbers.
    let details = c.canary_audit().await;
    assert!(
        details
            .iter()
            .any(|d| d.contains("rolled-back") && d.contains("error rate")),
        "{details:?}"
    );
    assert!(details.iter().any(|d| d.contains("started")), "{details:?}");
    // The Manager counts it, for alerting.
    let metrics = c
        .manager
        .client
        .raw(http::Method::GET, "/metrics", None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains(
            "switchyard_manager_canary_endings_total{env=\"prod\",outcome=\"rolled-back\"} 1"
        ),
        "{text}"
    );
    for w in &c.workers {
        assert_eq!(w.handle.live_generations(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_goes_through_three_steps_to_every_request() {
    let c = Cluster::start().await;
    let load = Load::start(&c.workers);
    let r2 = c
        .apply_canary(
            payments_manifest("green", c.harness.addr(1), ""),
            spec(&[100_000, 300_000, 600_000], 1),
        )
        .await;
    let done = c
        .wait_status("the canary promoted", |s| s.state != CanaryState::Running)
        .await;
    assert_eq!(done.state, CanaryState::Promoted, "{done:?}");
    assert_eq!(done.step, 2);
    c.wait_promoted(r2).await;
    let (n, failed, green) = load.finish().await;
    assert_eq!(failed, 0, "{failed} of {n} requests failed");
    assert!(green > 0 && green < n, "{green} of {n} on the canary");
    for w in &c.workers {
        assert_eq!(green_of(w, 50, &[]).await, 50);
    }
    let details = c.canary_audit().await;
    for want in ["step 1/3 held", "step 2/3 held", "promoted"] {
        assert!(
            details.iter().any(|d| d.contains(want)),
            "{want}: {details:?}"
        );
    }
}
