//! Canary revisions in the store, on both backends: the canary row is written by its
//! revision's commit, a plain commit is refused while it runs (nothing written), a step
//! moves once (conditional), and the commit that returns to the stable content ends it —
//! each with its audit record.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::{all_audit, apply, request, upsert};
use switchyard_api::canary::{CanarySpec, CanaryState};
use switchyard_api::records::Operation;
use switchyard_store::{CanaryCommit, Store, StoreError};

fn canary_audit(all: &[switchyard_api::records::AuditRecord]) -> Vec<String> {
    all.iter()
        .filter(|a| a.operation == Operation::Canary)
        .filter_map(|a| a.detail.clone())
        .collect()
}

on_both_backends! {
    async fn a_canary_lives_and_ends_with_its_commits(store) {
        store.create_env("prod", "admin").await.unwrap();
        apply(&store, "prod", vec![upsert("Proxy", "api", "v1")]).await;
        assert!(store.canary("prod").await.unwrap().is_none());

        let spec = CanarySpec { steps_ppm: vec![10_000, 50_000], ..CanarySpec::at(1) };
        let mut start = request("prod", vec![upsert("Proxy", "api", "v2")]);
        start.canary = CanaryCommit::Start(spec.clone());
        let out = store.commit(start).await.unwrap();
        assert_eq!(out.revision, 2);
        let c = store.canary("prod").await.unwrap().unwrap();
        assert_eq!(
            (c.revision, c.stable_revision, c.step, c.state, &c.spec),
            (2, 1, 0, CanaryState::Running, &spec)
        );

        // Nothing else is committed while it runs, and nothing is written.
        let plain = store.commit(request("prod", vec![upsert("Proxy", "web", "w1")])).await;
        assert!(
            matches!(plain, Err(StoreError::CanaryRunning { revision: 2, .. })),
            "{plain:?}"
        );
        assert_eq!(store.env("prod").await.unwrap().unwrap().revision, 2);

        // A step moves once: a second Manager's same move finds it moved.
        assert!(store.canary_step("prod", 2, 0, 1, "judge", "step 1/2 held").await.unwrap());
        assert!(!store.canary_step("prod", 2, 0, 1, "judge", "step 1/2 held").await.unwrap());
        assert_eq!(store.canary("prod").await.unwrap().unwrap().step, 1);

        // Rolled back: the stable content committed again ends it in the same commit.
        let mut back = request("prod", vec![upsert("Proxy", "api", "v1")]);
        back.canary = CanaryCommit::End {
            revision: 2,
            state: CanaryState::RolledBack,
            reason: "error rate 100%".into(),
        };
        let out = store.commit(back.clone()).await.unwrap();
        assert_eq!(out.revision, 3);
        let c = store.canary("prod").await.unwrap().unwrap();
        assert_eq!(c.state, CanaryState::RolledBack);
        assert_eq!(c.rollback_revision, Some(3));
        assert_eq!(c.reason.as_deref(), Some("error rate 100%"));
        // Ending it again: it is not running (nothing written).
        back.changes = vec![upsert("Proxy", "api", "v3")];
        let again = store.commit(back).await;
        assert!(matches!(again, Err(StoreError::NoCanary { revision: 2, .. })), "{again:?}");
        assert_eq!(store.env("prod").await.unwrap().unwrap().revision, 3);
        // Plain commits go through again; a promotion of an ended canary changes nothing.
        apply(&store, "prod", vec![upsert("Proxy", "web", "w1")]).await;
        assert!(!store.promote_canary("prod", 2, "admin", "late").await.unwrap());

        let details = canary_audit(&all_audit(&store).await);
        for want in ["canary r2 started beside r1", "step 1/2 held", "canary r2 rolled-back; r3"] {
            assert!(details.iter().any(|d| d.contains(want)), "{want}: {details:?}");
        }
    }
}

on_both_backends! {
    async fn a_promoted_canary_is_the_revision_and_its_environment_deletes_cleanly(store) {
        store.create_env("prod", "admin").await.unwrap();
        apply(&store, "prod", vec![upsert("Proxy", "api", "v1")]).await;
        let mut start = request("prod", vec![upsert("Proxy", "api", "v2")]);
        start.canary = CanaryCommit::Start(CanarySpec::at(50_000));
        store.commit(start).await.unwrap();
        assert!(store.promote_canary("prod", 2, "admin", "by hand").await.unwrap());
        let c = store.canary("prod").await.unwrap().unwrap();
        assert_eq!((c.state, c.rollback_revision), (CanaryState::Promoted, None));
        assert!(c.ended_at.is_some());
        // Promoted: plain commits go through.
        apply(&store, "prod", vec![upsert("Proxy", "api", "v3")]).await;
        store.delete_env("prod", "admin", None).await.unwrap();
        store.create_env("prod", "admin").await.unwrap();
        assert!(store.canary("prod").await.unwrap().is_none());
    }
}
