//! Audit records: one per change, filters, and refusal of changes that cannot be audited.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::{all_audit, apply, delete, request, snapshot, upsert};
use switchyard_api::records::{Operation, ReportStatus, WorkerReport, now_millis};
use switchyard_store::{AuditQuery, Store, StoreError};

on_both_backends! {
    async fn one_audit_record_per_change_with_versions(store) {
        store.create_env("prod", "admin").await.unwrap();
        apply(
            &store,
            "prod",
            vec![upsert("Proxy", "api", "a1"), upsert("Proxy", "web", "w1")],
        )
        .await;
        let mut req = request(
            "prod",
            vec![upsert("Proxy", "api", "a2"), delete("Proxy", "web")],
        );
        req.actor = "bob".into();
        req.operation = Operation::Promote;
        req.detail = Some("promoted from stage r12".into());
        store.commit(req).await.unwrap();

        let audit = all_audit(&store).await;
        assert_eq!(audit.len(), 5, "create-env + 2 + 2");
        assert!(audit.windows(2).all(|w| w[0].id > w[1].id), "newest first");

        let (delete_web, update_api) = (&audit[0], &audit[1]);
        assert_eq!(update_api.actor, "bob");
        assert_eq!(update_api.env.as_deref(), Some("prod"));
        assert_eq!(
            (
                update_api.entity_kind.as_str(),
                update_api.entity_name.as_str()
            ),
            ("Proxy", "api")
        );
        assert_eq!(
            (update_api.old_version, update_api.new_version),
            (Some(1), Some(2))
        );
        assert_eq!(update_api.digest.as_deref(), Some("digest-a2"));
        assert_eq!(update_api.operation, Operation::Promote);
        assert_eq!(update_api.revision, Some(2));
        assert_eq!(
            update_api.detail.as_deref(),
            Some("promoted from stage r12")
        );

        assert_eq!(delete_web.entity_name, "web");
        assert_eq!(
            (delete_web.old_version, delete_web.new_version),
            (Some(1), None)
        );

        let created = &audit[3];
        assert_eq!((created.old_version, created.new_version), (None, Some(1)));
        assert_eq!(created.actor, "alice");
        assert_eq!(created.revision, Some(1));
        assert_eq!(created.detail, None);
    }
}

/// A query with a large limit, adjusted by `f`.
fn query(f: impl FnOnce(&mut AuditQuery)) -> AuditQuery {
    let mut q = AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    };
    f(&mut q);
    q
}

on_both_backends! {
    async fn audit_filters_combine(store) {
        store.create_env("prod", "admin").await.unwrap();
        store.create_env("dev", "admin").await.unwrap();
        for i in 0..3 {
            apply(
                &store,
                "prod",
                vec![upsert("Proxy", "api", &format!("p{i}"))],
            )
            .await;
            apply(
                &store,
                "dev",
                vec![
                    upsert("Proxy", "api", &format!("d{i}")),
                    upsert("Credential", "key", &format!("k{i}")),
                ],
            )
            .await;
        }
        let mut req = request("dev", vec![upsert("Proxy", "api", "by-bob")]);
        req.actor = "bob".into();
        store.commit(req).await.unwrap();

        let prod = store
            .audit(query(|q| q.env = Some("prod".into())))
            .await
            .unwrap();
        assert_eq!(prod.len(), 4, "create-env + 3 commits");
        assert!(prod.iter().all(|a| a.env.as_deref() == Some("prod")));

        let dev_api = store
            .audit(query(|q| {
                q.env = Some("dev".into());
                q.entity_kind = Some("Proxy".into());
                q.entity_name = Some("api".into());
            }))
            .await
            .unwrap();
        assert_eq!(dev_api.len(), 4);
        let versions: Vec<_> = dev_api.iter().map(|a| a.new_version).collect();
        assert_eq!(versions, [Some(4), Some(3), Some(2), Some(1)]);

        let by_kind = store
            .audit(query(|q| q.entity_kind = Some("Credential".into())))
            .await
            .unwrap();
        assert_eq!(by_kind.len(), 3);

        let bob = store
            .audit(query(|q| q.actor = Some("bob".into())))
            .await
            .unwrap();
        assert_eq!(bob.len(), 1);
        assert_eq!(bob[0].digest.as_deref(), Some("digest-by-bob"));

        let everything = store.audit(query(|_| {})).await.unwrap();
        assert_eq!(everything.len(), 2 + 3 + 6 + 1);
        let since_all = store.audit(query(|q| q.since = Some(0))).await.unwrap();
        assert_eq!(since_all.len(), everything.len());
        let future = store
            .audit(query(|q| q.since = Some(now_millis() + 60_000)))
            .await
            .unwrap();
        assert!(future.is_empty());
        // `since` is inclusive: the newest record's own timestamp still matches it.
        let newest_at = everything[0].at;
        let recent = store
            .audit(query(|q| q.since = Some(newest_at)))
            .await
            .unwrap();
        assert!(!recent.is_empty() && recent.iter().all(|a| a.at >= newest_at));

        let two = store
            .audit(AuditQuery {
                limit: 2,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(two, everything[..2]);
        let default_limit = store.audit(AuditQuery::default()).await.unwrap();
        assert_eq!(default_limit.len(), everything.len(), "limit 0 means 100");
    }
}

on_both_backends! {
    async fn audit_limit_zero_means_one_hundred(store) {
        store.create_env("prod", "admin").await.unwrap();
        let changes = (0..120)
            .map(|i| upsert("Proxy", &format!("p{i:03}"), "x"))
            .collect();
        apply(&store, "prod", changes).await;
        assert_eq!(store.audit(AuditQuery::default()).await.unwrap().len(), 100);
        assert_eq!(all_audit(&store).await.len(), 121);
    }
}

on_both_backends! {
    async fn a_failed_audit_write_refuses_the_change(store) {
        store.create_env("prod", "admin").await.unwrap();
        apply(&store, "prod", vec![upsert("Proxy", "api", "a1")]).await;
        let before = snapshot(&store).await;

        common::break_audit(&store, "fail_audit", None).await;

        let err = store
            .commit(request(
                "prod",
                vec![upsert("Proxy", "api", "a2"), upsert("Proxy", "new", "n1")],
            ))
            .await
            .unwrap_err();
        match &err {
            StoreError::AuditFailed(msg) => assert!(msg.contains("audit unavailable"), "{msg}"),
            other => panic!("expected AuditFailed, got {other}"),
        }
        assert_eq!(snapshot(&store).await, before, "nothing committed");
        assert_eq!(store.env("prod").await.unwrap().unwrap().revision, 1);
        let live = store.entities("prod", None).await.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].version, live[0].digest.as_str()), (1, "digest-a1"));

        // Every audited write is refused the same way.
        let err = store.create_env("stage", "admin").await.unwrap_err();
        assert!(matches!(err, StoreError::AuditFailed(_)), "{err}");
        assert!(store.env("stage").await.unwrap().is_none());
        let report = common::report("w1", 1, ReportStatus::Ack, None, 2);
        let err = store.record_report(report.clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::AuditFailed(_)), "{err}");
        assert!(store.reports_for("prod", 1).await.unwrap().is_empty());

        // Once the audit works again, the next commit is revision 2: no gap.
        common::heal_audit(&store, "fail_audit").await;
        let out = apply(&store, "prod", vec![upsert("Proxy", "api", "a2")]).await;
        assert_eq!(out.revision, 2);
        store.record_report(report).await.unwrap();
    }
}

on_both_backends! {
    /// The audit write fails on the batch's second change, after the first change's entity,
    /// history and audit rows are written: all of them are rolled back.
    async fn an_audit_failure_mid_batch_rolls_back_the_earlier_changes(store) {
        store.create_env("prod", "admin").await.unwrap();
        apply(&store, "prod", vec![upsert("Proxy", "api", "a1")]).await;
        let before = snapshot(&store).await;
        common::break_audit(&store, "fail_second", Some("NEW.entity_name = 'second'")).await;

        let changes = vec![
            upsert("Proxy", "api", "a2"),
            upsert("Proxy", "second", "s1"),
        ];
        let err = store.commit(request("prod", changes)).await.unwrap_err();
        assert!(matches!(err, StoreError::AuditFailed(_)), "{err}");
        assert_eq!(snapshot(&store).await, before);
        assert_eq!(
            store.entities("prod", None).await.unwrap()[0].digest,
            "digest-a1"
        );
        let (current, changed) = store.changes_since("prod", 1).await.unwrap();
        assert_eq!((current, changed.len()), (1, 0));
    }
}

on_both_backends! {
    async fn a_deleted_environment_leaves_only_its_audit_trail_and_its_name_free(store) {
        store.create_env("qa", "admin").await.unwrap();
        store.create_env("prod", "admin").await.unwrap();
        apply(
            &store,
            "qa",
            vec![upsert("Proxy", "a", "1"), upsert("Proxy", "b", "1")],
        )
        .await;
        apply(&store, "qa", vec![delete("Proxy", "b")]).await;
        apply(&store, "prod", vec![upsert("Proxy", "a", "1")]).await;
        store
            .record_report(WorkerReport {
                env: "qa".into(),
                worker_id: "w1".into(),
                revision: 2,
                status: ReportStatus::Ack,
                error: None,
                applied_at: 1,
                pulled_at: None,
                received_at: 2,
                address: None,
                detail: None,
                caught_up_to: None,
            })
            .await
            .unwrap();
        let qa_trail = || {
            store.audit(AuditQuery {
                env: Some("qa".into()),
                limit: 1000,
                ..AuditQuery::default()
            })
        };
        let before = qa_trail().await.unwrap();

        let deleted = store
            .delete_env("qa", "admin (tok-1)", Some("forced: w1 connected"))
            .await
            .unwrap();
        assert_eq!(
            (deleted.revision, deleted.entities, deleted.revisions),
            (2, 1, 2)
        );

        assert_eq!(store.env("qa").await.unwrap(), None);
        assert!(matches!(
            store.entities("qa", None).await.unwrap_err(),
            StoreError::NoSuchEnv(_)
        ));
        assert!(matches!(
            store.revisions("qa", 10).await.unwrap_err(),
            StoreError::NoSuchEnv(_)
        ));
        // The audit trail is kept, with the deletion on top.
        let after = qa_trail().await.unwrap();
        assert_eq!(after.len(), before.len() + 1);
        assert_eq!(after[1..], before[..]);
        let record = &after[0];
        assert_eq!(record.operation, Operation::DeleteEnv);
        assert_eq!(
            (record.entity_kind.as_str(), record.entity_name.as_str()),
            ("Environment", "qa")
        );
        assert_eq!(record.revision, Some(2));
        assert_eq!(record.detail.as_deref(), Some("forced: w1 connected"));
        // Other environments are untouched; the name can be used again, from revision 0.
        assert_eq!(store.entities("prod", None).await.unwrap().len(), 1);
        assert_eq!(store.create_env("qa", "admin").await.unwrap().revision, 0);
        assert!(store.entities("qa", None).await.unwrap().is_empty());
        assert!(store.reports_for("qa", 2).await.unwrap().is_empty());
        assert!(matches!(
            store.delete_env("nope", "admin", None).await.unwrap_err(),
            StoreError::NoSuchEnv(_)
        ));
    }
}
