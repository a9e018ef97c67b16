//! History retention: pruning keeps the state at every retained revision exactly, removes
//! what no retained revision needs, answers older revisions with `Pruned`, never touches
//! audit records (unless audit retention is asked for), and is idempotent — also when two
//! stores on one database prune at once.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::num::NonZeroU64;
use std::time::Duration;

use common::{all_audit, apply, count, delete, report, upsert};
use switchyard_api::records::{Operation, ReportStatus, now_millis};
use switchyard_store::{EntityRecord, HistoryRetention, SqlStore, Store, StoreError};

fn keep_last(n: u64) -> HistoryRetention {
    HistoryRetention {
        revisions: NonZeroU64::new(n),
        max_age: None,
    }
}

/// Six revisions of `prod`, exercising every case a pruning at revision 4 meets:
///
/// | entity | versions (revision) |
/// |---|---|
/// | api  | v1 (1), v2 (2), v3 (4), v4 (6) |
/// | web  | v1 (1), v2 (3) |
/// | gone | v1 (1), tombstone v2 (2), v3 (5) — deleted, then re-created after the cutoff |
/// | old  | v1 (1), tombstone v2 (2) — deleted before the cutoff, never re-created |
/// | tmp  | v1 (3), tombstone v2 (4) — deleted at the cutoff |
///
/// and Workers' reports: w1 ACKs 1, 2 and 5; w2 ACKs 1 and NACKs 3.
async fn six_revisions(store: &SqlStore) {
    store.create_env("prod", "admin").await.unwrap();
    let p = "Proxy";
    apply(
        store,
        "prod",
        vec![
            upsert(p, "api", "a1"),
            upsert(p, "web", "w1"),
            upsert(p, "gone", "g1"),
            upsert(p, "old", "o1"),
        ],
    )
    .await;
    apply(
        store,
        "prod",
        vec![upsert(p, "api", "a2"), delete(p, "gone"), delete(p, "old")],
    )
    .await;
    apply(
        store,
        "prod",
        vec![upsert(p, "web", "w2"), upsert(p, "tmp", "t1")],
    )
    .await;
    apply(
        store,
        "prod",
        vec![upsert(p, "api", "a3"), delete(p, "tmp")],
    )
    .await;
    apply(store, "prod", vec![upsert(p, "gone", "g3")]).await;
    apply(store, "prod", vec![upsert(p, "api", "a4")]).await;
    for (worker, revision, status) in [
        ("w1", 1, ReportStatus::Ack),
        ("w1", 2, ReportStatus::Ack),
        ("w1", 5, ReportStatus::Ack),
        ("w2", 1, ReportStatus::Ack),
        ("w2", 3, ReportStatus::Nack),
    ] {
        let error = (status == ReportStatus::Nack).then_some("boom");
        let at = 1000 + i64::try_from(revision).unwrap();
        store
            .record_report(report(worker, revision, status, error, at))
            .await
            .unwrap();
    }
}

/// The state at each revision from 0 to `to`.
async fn states(store: &SqlStore, from: u64, to: u64) -> Vec<Vec<EntityRecord>> {
    let mut out = Vec::new();
    for r in from..=to {
        out.push(store.entities("prod", Some(r)).await.unwrap());
    }
    out
}

fn is_pruned(e: &StoreError, revision: u64, history_from: u64) -> bool {
    matches!(e, StoreError::Pruned { env, revision: r, history_from: h }
        if env == "prod" && *r == revision && *h == history_from)
}

on_both_backends! {
    async fn pruning_keeps_every_retained_state_and_removes_the_rest(store) {
        six_revisions(&store).await;
        let kept_before = states(&store, 4, 6).await;
        let delta_before = store.changes_since("prod", 4).await.unwrap();
        let latest_before = store.latest_reports("prod").await.unwrap();
        let acked_before = store.acked_revisions("prod").await.unwrap();
        let audit_before = all_audit(&store).await;
        let history_rows = count(&store, "entity_history").await;
        assert_eq!(history_rows, 13);
        assert_eq!(store.env("prod").await.unwrap().unwrap().history_from, 0);

        let out = store
            .prune_history("prod", &keep_last(3), "manager")
            .await
            .unwrap()
            .expect("something to prune");
        assert_eq!(out.env, "prod");
        assert_eq!((out.previous_history_from, out.history_from), (0, 4));
        assert_eq!(out.revisions, 3, "revisions 1 to 3");
        // Superseded at 4: api v1 and v2, web v1, gone v1, old v1, tmp v1; tombstones
        // before 4: gone v2, old v2.
        assert_eq!(out.entity_versions, 8);
        assert_eq!(out.tombstones, 1, "old's row: deleted before 4, never re-created");
        assert_eq!(out.reports, 2, "w1's ACKs of 1 and 2 (it ACKed 5 since)");
        assert_eq!(count(&store, "entity_history").await, history_rows - 8);
        assert_eq!(store.env("prod").await.unwrap().unwrap().history_from, 4);

        // Every retained revision's state, the delta from the oldest, and the Workers'
        // view are exactly what they were.
        assert_eq!(states(&store, 4, 6).await, kept_before);
        assert_eq!(store.changes_since("prod", 4).await.unwrap(), delta_before);
        assert_eq!(store.latest_reports("prod").await.unwrap(), latest_before);
        assert_eq!(store.acked_revisions("prod").await.unwrap(), acked_before);
        let revisions: Vec<u64> = store
            .revisions("prod", 100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(revisions, [6, 5, 4]);
        assert!(store.reports_for("prod", 1).await.unwrap().len() == 1, "w2's last ACK");

        // Older revisions are refused by name, not answered wrongly; 0 (empty) still is.
        let e = store.entities("prod", Some(3)).await.unwrap_err();
        assert!(is_pruned(&e, 3, 4), "{e}");
        assert!(e.to_string().contains("older than the retained history"), "{e}");
        let e = store.changes_since("prod", 2).await.unwrap_err();
        assert!(is_pruned(&e, 2, 4), "{e}");
        let e = store.revision("prod", 3).await.unwrap_err();
        assert!(is_pruned(&e, 3, 4), "{e}");
        assert!(store.revision("prod", 4).await.unwrap().is_some());
        assert!(store.revision("prod", 7).await.unwrap().is_none());
        assert!(store.entities("prod", Some(0)).await.unwrap().is_empty());
        let (current, everything) = store.changes_since("prod", 0).await.unwrap();
        assert_eq!(current, 6);
        assert!(everything.iter().all(|e| e.name != "old"), "its tombstone is gone");

        // The audit trail is whole, plus one record of the pruning.
        let audit = all_audit(&store).await;
        assert_eq!(audit.len(), audit_before.len() + 1);
        assert_eq!(&audit[1..], &audit_before[..]);
        let record = &audit[0];
        assert_eq!(record.operation, Operation::PruneHistory);
        assert_eq!(
            (record.actor.as_str(), record.env.as_deref(), record.revision),
            ("manager", Some("prod"), Some(4))
        );
        assert_eq!((record.entity_kind.as_str(), record.entity_name.as_str()), ("Environment", "prod"));
        let detail = record.detail.as_deref().unwrap();
        assert!(detail.contains("history before revision 4 pruned"), "{detail}");

        // Again: nothing to do, nothing written.
        assert_eq!(
            store.prune_history("prod", &keep_last(3), "manager").await.unwrap(),
            None
        );
        assert_eq!(all_audit(&store).await.len(), audit.len());
        // A pruning that would keep more than is left changes nothing either.
        assert_eq!(
            store.prune_history("prod", &keep_last(10), "manager").await.unwrap(),
            None
        );

        // Commits go on: versions continue; an entity whose history is gone starts again.
        let next = apply(
            &store,
            "prod",
            vec![upsert("Proxy", "api", "a5"), upsert("Proxy", "old", "o2")],
        )
        .await;
        assert_eq!(next.revision, 7);
        let versions: Vec<(&str, Option<u64>, Option<u64>)> = next
            .changes
            .iter()
            .map(|c| (c.name.as_str(), c.old_version, c.new_version))
            .collect();
        assert_eq!(versions, [("api", Some(4), Some(5)), ("old", None, Some(1))]);
        assert_eq!(states(&store, 4, 6).await, kept_before);
    }
}

on_both_backends! {
    async fn keeping_the_last_revision_keeps_the_current_state(store) {
        six_revisions(&store).await;
        let now = store.entities("prod", None).await.unwrap();
        let out = store
            .prune_history("prod", &keep_last(1), "manager")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.history_from, 6);
        assert_eq!(store.entities("prod", Some(6)).await.unwrap(), now);
        assert_eq!(store.entities("prod", None).await.unwrap(), now);
        // One history row per live entity is all that is left (tmp's tombstone at 4 and
        // everything before went).
        assert_eq!(
            count(&store, "entity_history").await,
            i64::try_from(now.len()).unwrap()
        );
        assert_eq!(store.changes_since("prod", 6).await.unwrap(), (6, Vec::new()));
    }
}

on_both_backends! {
    async fn an_age_limit_keeps_young_revisions_and_limits_combine(store) {
        six_revisions(&store).await;
        // Revisions 1 to 3 were committed two hours ago.
        let old = now_millis() - 2 * 3_600_000;
        sqlx::query("UPDATE revisions SET committed_at = $1 WHERE revision <= 3")
            .bind(old)
            .execute(store.pool())
            .await
            .unwrap();
        let hour = Some(Duration::from_secs(3600));
        // Both limits: a revision goes only when both let it go (the last 5 keep 2 and 3).
        let both = HistoryRetention {
            revisions: NonZeroU64::new(5),
            max_age: hour,
        };
        let out = store.prune_history("prod", &both, "manager").await.unwrap().unwrap();
        assert_eq!(out.history_from, 2);
        // The age alone: everything younger than an hour, i.e. from 4.
        let age = HistoryRetention {
            revisions: None,
            max_age: hour,
        };
        let out = store.prune_history("prod", &age, "manager").await.unwrap().unwrap();
        assert_eq!((out.previous_history_from, out.history_from), (2, 4));
        // Nothing younger than a zero age but the current revision, which is always kept.
        let none_young = HistoryRetention {
            revisions: None,
            max_age: Some(Duration::ZERO),
        };
        sqlx::query("UPDATE revisions SET committed_at = $1")
            .bind(old)
            .execute(store.pool())
            .await
            .unwrap();
        let out = store.prune_history("prod", &none_young, "manager").await.unwrap().unwrap();
        assert_eq!(out.history_from, 6);
        assert_eq!(store.revisions("prod", 10).await.unwrap().len(), 1);
    }
}

on_both_backends! {
    async fn nothing_is_pruned_without_a_limit_or_history(store) {
        let e = store.prune_history("nope", &keep_last(1), "manager").await.unwrap_err();
        assert!(matches!(e, StoreError::NoSuchEnv(ref n) if n == "nope"), "{e}");
        store.create_env("prod", "admin").await.unwrap();
        // Revision 0: nothing to prune.
        assert_eq!(store.prune_history("prod", &keep_last(1), "m").await.unwrap(), None);
        two_revisions(&store).await;
        // No limit: everything is kept.
        assert_eq!(
            store.prune_history("prod", &HistoryRetention::default(), "m").await.unwrap(),
            None
        );
        assert_eq!(store.revisions("prod", 100).await.unwrap().len(), 2);
    }
}

/// Two revisions of an existing `prod`.
async fn two_revisions(store: &SqlStore) {
    apply(store, "prod", vec![upsert("Proxy", "api", "a1")]).await;
    apply(store, "prod", vec![upsert("Proxy", "api", "a2")]).await;
}

on_both_backends! {
    async fn concurrent_prunings_prune_once(store) {
        six_revisions(&store).await;
        let retention = keep_last(2);
        let (a, b) = tokio::join!(
            store.prune_history("prod", &retention, "manager-a"),
            store.prune_history("prod", &retention, "manager-b"),
        );
        let done: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
        assert_eq!(done.len(), 1, "exactly one pruned: {done:?}");
        let prunings = all_audit(&store)
            .await
            .into_iter()
            .filter(|r| r.operation == Operation::PruneHistory)
            .count();
        assert_eq!(prunings, 1);
    }
}

/// Two stores on one PostgreSQL database — two Managers — pruning the same environment at
/// the same time, while a third commits: one pruning, no error, the commit kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_on_one_postgres_prune_once() {
    let db = switchyard_store::testing::Postgres::get().database().await;
    let (a, b) = (db.store().await, db.store().await);
    six_revisions(&a).await;
    let retention = keep_last(2);
    let (x, y, committed) = tokio::join!(
        a.prune_history("prod", &retention, "manager-a"),
        b.prune_history("prod", &retention, "manager-b"),
        b.commit(common::request("prod", vec![upsert("Proxy", "api", "a9")])),
    );
    let committed = committed.unwrap();
    assert_eq!(committed.revision, 7);
    let done: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
    assert!(
        !done.is_empty() && done.len() <= 2,
        "at least one pruned: {done:?}"
    );
    // Each pruning that happened moved history forward from where the previous left it.
    if let [first, second] = done.as_slice() {
        assert!(first.history_from != second.history_from, "{done:?}");
    }
    let env = a.env("prod").await.unwrap().unwrap();
    assert_eq!(env.revision, 7);
    assert!(
        env.history_from == 5 || env.history_from == 6,
        "{}",
        env.history_from
    );
    // The state at the retained revisions is intact.
    let api = a
        .entities("prod", Some(7))
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.name == "api")
        .unwrap();
    assert_eq!(api.digest, "digest-a9");
    assert_eq!(
        a.entities("prod", Some(6)).await.unwrap().len(),
        a.entities("prod", Some(7)).await.unwrap().len()
    );
    // Pruned again (to 6, unless a pruning after the commit did), then: nothing to do.
    b.prune_history("prod", &retention, "manager-b")
        .await
        .unwrap();
    assert_eq!(
        a.prune_history("prod", &retention, "manager-a")
            .await
            .unwrap(),
        None
    );
    assert_eq!(a.env("prod").await.unwrap().unwrap().history_from, 6);
}

on_both_backends! {
    async fn audit_retention_deletes_only_older_records_and_says_so(store) {
        six_revisions(&store).await;
        let before = all_audit(&store).await;
        // The first half were written two days ago.
        let old = now_millis() - 2 * 86_400_000;
        let cut = before[before.len() / 2].id;
        sqlx::query("UPDATE audit SET at = $1 WHERE id < $2")
            .bind(old)
            .bind(cut)
            .execute(store.pool())
            .await
            .unwrap();
        let deleted = store
            .prune_audit(now_millis() - 86_400_000, "manager")
            .await
            .unwrap();
        let expected = before.iter().filter(|r| r.id < cut).count();
        assert_eq!(deleted, u64::try_from(expected).unwrap());
        let after = all_audit(&store).await;
        assert_eq!(after.len(), before.len() - expected + 1);
        assert_eq!(after[0].operation, Operation::PruneAudit);
        assert_eq!(after[0].actor, "manager");
        assert_eq!(after[0].entity_kind, "Store");
        assert!(
            after[0].detail.as_deref().unwrap().starts_with(&format!("{expected} audit records")),
            "{:?}",
            after[0].detail
        );
        assert!(after[1..].iter().all(|r| r.id >= cut));
        // Nothing older left: nothing deleted, nothing written.
        assert_eq!(store.prune_audit(now_millis() - 86_400_000, "manager").await.unwrap(), 0);
        assert_eq!(all_audit(&store).await.len(), after.len());
    }
}
