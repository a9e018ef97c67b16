//! The detector, fed synthetic runs: a clean run passes, and each way the contract can
//! break — a drop, a mixed response, a stale Worker, a connection going backwards, a
//! missing ACK, a kind never observed, a swap counter that did not move — fails with the
//! reason that names it.

use super::*;
use crate::swap::changes::Shape;

const WORKERS: usize = 2;

/// The bench's cycle from the initial apply: seq 1 (revision 1) then one change of each
/// kind (seq 2..=7, revisions 2..=7).
fn changes() -> Vec<Change> {
    let mut shape = Shape::initial();
    let mut out = vec![Change {
        seq: 1,
        revision: 1,
        kind: ChangeKind::Header,
        sent_at: 0.0,
        expect: shape.expect(),
    }];
    for (i, kind) in ChangeKind::CYCLE.iter().enumerate() {
        shape = shape.next(*kind);
        out.push(Change {
            seq: shape.seq,
            revision: shape.seq,
            kind: *kind,
            sent_at: 1.0 + i as f64,
            expect: shape.expect(),
        });
    }
    out
}

/// A correct response to `probe` from the configuration of `c`.
fn answer(c: &Change, probe: u8) -> Outcome {
    let e = c.expect;
    if probe == PROBE_EXTRA && !e.extra_route {
        return Outcome::Response {
            status: 404,
            release: c.seq as u32,
            upstream: 0,
            credential: 0,
            limit: 0,
        };
    }
    Outcome::Response {
        status: 200,
        release: c.seq as u32,
        upstream: e.upstream,
        credential: e.credential,
        limit: e.limit,
    }
}

fn sample(worker: u16, conn: u32, probe: u8, at: f64, outcome: Outcome) -> Sample {
    Sample {
        worker,
        conn,
        probe,
        at,
        latency_ms: 1.0,
        outcome,
    }
}

/// Each Worker's one keep-alive connection (conn = worker) sees every configuration in
/// order, on both paths.
fn clean_samples(changes: &[Change]) -> Vec<Sample> {
    let mut out = Vec::new();
    for w in 0..WORKERS as u16 {
        for c in changes {
            for probe in [PROBE_MAIN, PROBE_EXTRA] {
                out.push(sample(
                    w,
                    u32::from(w),
                    probe,
                    c.sent_at + 0.1,
                    answer(c, probe),
                ));
            }
        }
    }
    out
}

fn worker_id(w: usize) -> String {
    format!("w{}", w + 1)
}

/// Every Worker ACKed every revision itself; swap counters moved once per revision.
fn clean_analysis(changes: &[Change]) -> Analysis {
    let run = changes.iter().filter(|c| c.seq > 1);
    Analysis {
        revisions: run
            .map(|c| RevisionAcks {
                revision: c.revision,
                acks: (0..WORKERS).map(|w| (worker_id(w), false)).collect(),
                joined_after: 0,
                propagation_ms: Some(5.0),
            })
            .collect(),
        ackers: (0..WORKERS).map(worker_id).collect(),
        duration_s: 10.0,
        workers: (0..WORKERS)
            .map(|w| WorkerReport {
                id: worker_id(w),
                swaps_during_run: Some(6),
                live_generations_end: Some(1.0),
                ..WorkerReport::default()
            })
            .collect(),
        generations_required: true,
    }
}

fn failures_of(samples: &[Sample], changes: &[Change], a: Analysis) -> SwapReport {
    let r = analyse(samples, changes, a);
    assert!(!r.passed, "expected FAIL:\n{}", r.to_text());
    assert!(!r.failures.is_empty());
    r
}

fn mentions(r: &SwapReport, words: &[&str]) -> bool {
    r.failures
        .iter()
        .any(|f| words.iter().all(|w| f.contains(w)))
}

#[test]
fn a_clean_run_passes_and_observes_every_kind() {
    let c = changes();
    let r = analyse(&clean_samples(&c), &c, clean_analysis(&c));
    assert!(r.passed, "{:?}\n{}", r.failures, r.to_text());
    assert_eq!(r.revisions_committed, 6);
    for kind in ChangeKind::CYCLE {
        assert_eq!(
            r.kinds[kind.key()],
            KindReport {
                applied: 1,
                observed: 1
            },
            "{}",
            kind.key()
        );
    }
    for w in &r.workers {
        assert_eq!(w.revisions_served, 6);
        assert!(w.revisions_missed.is_empty());
        assert_eq!(w.went_backwards, 0);
    }
    assert_eq!(r.audit_completeness, 1.0);
    assert_eq!((r.audit.applied, r.audit.caught_up), (12, 0));
    assert!(r.to_text().contains("PASS"));
}

#[test]
fn a_dropped_request_fails() {
    let c = changes();
    let mut s = clean_samples(&c);
    s.push(sample(0, 9, PROBE_MAIN, 3.0, Outcome::Reset));
    // A gateway error carries no configuration's header.
    s.push(sample(
        1,
        10,
        PROBE_MAIN,
        3.0,
        Outcome::Response {
            status: 502,
            release: 0,
            upstream: 0,
            credential: 0,
            limit: 0,
        },
    ));
    let r = failures_of(&s, &c, clean_analysis(&c));
    assert_eq!(r.dropped_requests, 2);
    assert!(mentions(&r, &["2 dropped"]), "{:?}", r.failures);
}

#[test]
fn a_mixed_response_fails_for_every_field_a_change_moves() {
    let c = changes();
    // Revision 3 switched the upstream; 6 rotated the credential; 7 changed the limit;
    // 4 added the extra route and 5 removed it.
    let cases: [(usize, u8, &str); 5] = [
        (2, PROBE_MAIN, "upstream"),
        (5, PROBE_MAIN, "credential"),
        (6, PROBE_MAIN, "RateLimit-Limit"),
        (3, PROBE_EXTRA, "status 404"),
        (4, PROBE_EXTRA, "status 200"),
    ];
    for (i, probe, word) in cases {
        let mut s = clean_samples(&c);
        // The response names c[i] but shows what c[i - 1] did.
        let Outcome::Response {
            status,
            upstream,
            credential,
            limit,
            ..
        } = answer(&c[i - 1], probe)
        else {
            unreachable!()
        };
        s.push(sample(
            1,
            1,
            probe,
            c[i].sent_at + 0.2,
            Outcome::Response {
                status,
                release: c[i].seq as u32,
                upstream,
                credential,
                limit,
            },
        ));
        let r = failures_of(&s, &c, clean_analysis(&c));
        assert_eq!(r.mixed_version_responses, 1, "{word}");
        assert!(
            mentions(&r, &["did not match", word]),
            "{word}: {:?}",
            r.failures
        );
        assert!(
            r.mixed_examples[0].contains("worker w2"),
            "{:?}",
            r.mixed_examples
        );
    }
}

#[test]
fn a_stale_worker_that_acks_but_serves_the_old_revision_fails_naming_it() {
    let c = changes();
    // Worker 2 ACKs everything (and its counter moves) but keeps serving revision 1.
    let mut s: Vec<Sample> = clean_samples(&c)
        .into_iter()
        .filter(|s| s.worker == 0)
        .collect();
    for ch in &c {
        for probe in [PROBE_MAIN, PROBE_EXTRA] {
            s.push(sample(1, 1, probe, ch.sent_at + 0.1, answer(&c[0], probe)));
        }
    }
    let r = failures_of(&s, &c, clean_analysis(&c));
    assert_eq!(r.dropped_requests + r.mixed_version_responses, 0);
    assert_eq!(r.workers[1].revisions_missed, vec![2, 3, 4, 5, 6, 7]);
    assert!(r.workers[0].revisions_missed.is_empty());
    assert!(
        mentions(
            &r,
            &["worker w2", "never seen serving 6 of the 6", "r2, r3"]
        ),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_revision_superseded_before_sampling_is_shown_apart_not_failed() {
    let c = changes();
    // Worker 1 was never sampled on revision 3, but served 4 and later.
    let s: Vec<Sample> = clean_samples(&c)
        .into_iter()
        .filter(|s| !(s.worker == 0 && matches!(s.outcome, Outcome::Response { release: 3, .. })))
        .collect();
    let r = analyse(&s, &c, clean_analysis(&c));
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(r.workers[0].revisions_served, 5);
    assert_eq!(r.workers[0].revisions_superseded, 1);
    assert!(r.workers[0].revisions_missed.is_empty());
}

#[test]
fn a_connection_that_goes_backwards_fails() {
    let c = changes();
    let mut s = clean_samples(&c);
    // Worker 1's connection, after revision 7, answers with revision 4 again.
    s.push(sample(0, 0, PROBE_MAIN, 9.0, answer(&c[3], PROBE_MAIN)));
    let r = failures_of(&s, &c, clean_analysis(&c));
    assert_eq!(r.workers[0].went_backwards, 1);
    assert_eq!(r.mixed_version_responses, 0);
    assert!(
        mentions(&r, &["worker w1", "older revision"]),
        "{:?}",
        r.failures
    );
    // The same answer on a new connection is not going backwards.
    let mut s = clean_samples(&c);
    s.push(sample(0, 99, PROBE_MAIN, 0.5, answer(&c[3], PROBE_MAIN)));
    assert!(analyse(&s, &c, clean_analysis(&c)).passed);
}

#[test]
fn a_missing_ack_fails_naming_the_worker_and_revisions() {
    let c = changes();
    let mut a = clean_analysis(&c);
    for r in a.revisions.iter_mut().filter(|r| r.revision >= 5) {
        r.acks.retain(|(w, _)| w != "w2");
    }
    let r = failures_of(&clean_samples(&c), &c, a);
    assert_eq!(r.audit.missing["w2"], vec![5, 6, 7]);
    assert_eq!(r.workers[1].acks_missing, vec![5, 6, 7]);
    assert!((r.audit_completeness - 9.0 / 12.0).abs() < 1e-9);
    assert!(
        mentions(&r, &["worker w2", "no ACK for 3 of the 6", "r5, r6, r7"]),
        "{:?}",
        r.failures
    );
}

#[test]
fn catch_up_acks_count_apart_and_complete_the_audit() {
    let c = changes();
    let mut a = clean_analysis(&c);
    a.revisions[1].acks[1].1 = true;
    a.revisions[2].joined_after = 1;
    let r = analyse(&clean_samples(&c), &c, a);
    assert!(r.passed, "{:?}", r.failures);
    assert_eq!(
        (r.audit.applied, r.audit.caught_up, r.audit.joined_after),
        (11, 1, 1)
    );
    assert_eq!(r.audit_completeness, 1.0);
}

#[test]
fn a_kind_never_observed_fails() {
    let c = changes();
    // The load never asks for the extra route.
    let s: Vec<Sample> = clean_samples(&c)
        .into_iter()
        .filter(|s| s.probe == PROBE_MAIN)
        .collect();
    let r = failures_of(&s, &c, clean_analysis(&c));
    assert_eq!(r.kinds["route_addition"].observed, 0);
    assert_eq!(r.kinds["route_removal"].observed, 0);
    assert!(
        mentions(&r, &["route addition", "never observed"]),
        "{:?}",
        r.failures
    );
    assert!(
        mentions(&r, &["route removal", "never observed"]),
        "{:?}",
        r.failures
    );
}

#[test]
fn a_swap_counter_that_did_not_move_fails() {
    let c = changes();
    let mut a = clean_analysis(&c);
    a.workers[0].swaps_during_run = Some(2);
    let r = failures_of(&clean_samples(&c), &c, a);
    assert!(
        mentions(
            &r,
            &[
                "worker w1",
                "swap counter advanced 2 times",
                "6 new revisions"
            ]
        ),
        "{:?}",
        r.failures
    );
}

#[test]
fn generations_left_live_fail() {
    let c = changes();
    let mut a = clean_analysis(&c);
    a.workers[1].live_generations_end = Some(2.0);
    let r = failures_of(&clean_samples(&c), &c, a);
    assert!(
        mentions(&r, &["worker w2", "generations"]),
        "{:?}",
        r.failures
    );
}
