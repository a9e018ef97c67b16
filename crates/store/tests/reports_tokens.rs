//! Worker reports and tokens.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::{all_audit, apply, file_store, report, upsert};
use switchyard_api::records::{Operation, ReportStatus, Role, TokenRecord, WorkerReport};
use switchyard_store::{AuditQuery, SqlStore, Store, StoreError};

on_both_backends! {
    async fn worker_reports_ack_nack_replace_and_latest(store) {
        store.create_env("prod", "admin").await.unwrap();

        store
            .record_report(report("w1", 1, ReportStatus::Ack, None, 100))
            .await
            .unwrap();
        store
            .record_report(report("w1", 2, ReportStatus::Ack, None, 200))
            .await
            .unwrap();
        store
            .record_report(report("w2", 1, ReportStatus::Ack, None, 110))
            .await
            .unwrap();
        store
            .record_report(report(
                "w2",
                2,
                ReportStatus::Nack,
                Some("bad upstream"),
                210,
            ))
            .await
            .unwrap();
        store
            .record_report(report("w3", 1, ReportStatus::Nack, Some("boom"), 120))
            .await
            .unwrap();

        let r2 = store.reports_for("prod", 2).await.unwrap();
        assert_eq!(r2.len(), 2);
        assert_eq!(r2[1].worker_id, "w2");
        assert_eq!(r2[1].status, ReportStatus::Nack);
        assert_eq!(r2[1].error.as_deref(), Some("bad upstream"));
        assert_eq!(r2[1].address.as_deref(), Some("w2.internal:8080"));
        assert_eq!(r2[1].applied_at, 205);

        // A repeated report for the same revision replaces the earlier one.
        store
            .record_report(report("w2", 2, ReportStatus::Ack, None, 250))
            .await
            .unwrap();
        let r2 = store.reports_for("prod", 2).await.unwrap();
        assert_eq!(r2.len(), 2);
        assert_eq!(
            (r2[1].status, r2[1].error.as_deref(), r2[1].received_at),
            (ReportStatus::Ack, None, 250)
        );
        assert_eq!(store.reports_for("prod", 1).await.unwrap().len(), 3);
        assert!(store.reports_for("prod", 3).await.unwrap().is_empty());

        let latest = store.latest_reports("prod").await.unwrap();
        let summary: Vec<_> = latest
            .iter()
            .map(|r| (r.worker_id.as_str(), r.revision, r.status))
            .collect();
        assert_eq!(
            summary,
            [
                ("w1", 2, ReportStatus::Ack),
                ("w2", 2, ReportStatus::Ack),
                ("w3", 1, ReportStatus::Nack)
            ]
        );
        // What each Worker serves: its highest ACK (w3 NACKed its only report).
        assert_eq!(
            store.acked_revisions("prod").await.unwrap(),
            [("w1".to_string(), 2), ("w2".to_string(), 2)]
        );

        let audit = store
            .audit(AuditQuery {
                entity_kind: Some("Worker".into()),
                limit: 100,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(
            audit.len(),
            6,
            "every report is audited, replacements included"
        );
        let nack = audit.iter().find(|a| a.entity_name == "w3").unwrap();
        assert_eq!(nack.actor, "worker:w3");
        assert_eq!(nack.env.as_deref(), Some("prod"));
        assert_eq!(nack.operation, Operation::Report);
        assert_eq!(nack.revision, Some(1));
        assert_eq!(nack.detail.as_deref(), Some("nack: boom"));
        assert_eq!(audit[0].detail.as_deref(), Some("ack"));

        let err = store
            .record_report(WorkerReport {
                env: "nope".into(),
                ..report("w1", 1, ReportStatus::Ack, None, 1)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NoSuchEnv(_)), "{err}");
    }
}

/// A Worker that jumped from revision 1 to 4 ACKs 2 and 3 as caught up to 4: the mark is
/// kept (across a reopen too) and its audit record says so; the ACK of 4 has none.
#[tokio::test]
async fn a_catch_up_ack_keeps_the_revision_it_was_applied_with() {
    let (dir, store) = file_store().await;
    store.create_env("prod", "admin").await.unwrap();
    for i in 1..=4 {
        apply(&store, "prod", vec![upsert("Proxy", "a", &i.to_string())]).await;
    }
    let ack = |revision: u64, caught_up_to: Option<u64>| WorkerReport {
        caught_up_to,
        ..report("w1", revision, ReportStatus::Ack, None, 100)
    };
    for (revision, caught_up_to) in [(2, Some(4)), (3, Some(4)), (4, None)] {
        store
            .record_report(ack(revision, caught_up_to))
            .await
            .unwrap();
    }
    let path = dir.path().join("store.db");
    store.close().await;
    let store = SqlStore::open(&path).await.unwrap();
    for (revision, caught_up_to) in [(2, Some(4)), (3, Some(4)), (4, None)] {
        assert_eq!(
            store.reports_for("prod", revision).await.unwrap(),
            [ack(revision, caught_up_to)]
        );
    }
    assert_eq!(store.latest_reports("prod").await.unwrap(), [ack(4, None)]);

    let audit = all_audit(&store).await;
    let said = |revision: u64| {
        audit
            .iter()
            .find(|a| a.operation == Operation::Report && a.revision == Some(revision))
            .and_then(|a| a.detail.clone())
    };
    for revision in [2, 3] {
        assert_eq!(
            said(revision).as_deref(),
            Some("ack (caught up: applied with revision 4)")
        );
    }
    assert_eq!(said(4).as_deref(), Some("ack"));

    // With a detail as well, the audit record says both.
    store
        .record_report(WorkerReport {
            detail: Some("resynchronised: why".into()),
            ..ack(3, Some(4))
        })
        .await
        .unwrap();
    assert_eq!(
        all_audit(&store).await[0].detail.as_deref(),
        Some("ack (caught up: applied with revision 4; resynchronised: why)")
    );
}

fn token(id: &str, hash: &str, role: Role, envs: &[&str]) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        name: format!("{id} token"),
        hash: hash.into(),
        role,
        envs: envs.iter().map(|e| e.to_string()).collect(),
        created_at: 1_700_000_000_000,
        revoked: false,
        revoked_at: None,
        expires_at: None,
    }
}

on_both_backends! {
    async fn tokens_are_stored_by_hash_and_audited_without_secrets(store) {
        let deployer = token(
            "tok-deploy",
            "hash-of-deploy-secret",
            Role::Deployer,
            &["prod", "stage"],
        );
        let admin = token("tok-admin", "hash-of-admin-secret", Role::Admin, &[]);
        store
            .create_token(deployer.clone(), "bootstrap")
            .await
            .unwrap();
        store
            .create_token(admin.clone(), "bootstrap")
            .await
            .unwrap();

        assert_eq!(
            store.token_by_hash("hash-of-deploy-secret").await.unwrap(),
            Some(deployer.clone())
        );
        assert_eq!(store.token_by_hash("unknown").await.unwrap(), None);
        let ids: Vec<_> = store
            .list_tokens()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["tok-admin", "tok-deploy"]);

        // Same id or same hash again: refused, and nothing audited for it.
        let err = store
            .create_token(token("tok-admin", "other", Role::Viewer, &[]), "x")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err}");
        let err = store
            .create_token(
                token("tok-new", "hash-of-admin-secret", Role::Viewer, &[]),
                "x",
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err}");

        let audit = all_audit(&store).await;
        assert_eq!(audit.len(), 2);
        let record = &audit[1];
        assert_eq!(record.operation, Operation::CreateToken);
        assert_eq!(record.actor, "bootstrap");
        assert_eq!(
            (record.entity_kind.as_str(), record.entity_name.as_str()),
            ("Token", "tok-deploy")
        );
        assert_eq!(record.env, None);
        let audit_json = serde_json::to_string(&audit).unwrap();
        assert!(!audit_json.contains("hash-of"), "{audit_json}");

        let json = serde_json::to_string(&deployer).unwrap();
        assert!(!json.contains("hash"), "{json}");
        assert!(json.contains("deployer") && json.contains("stage"));
    }
}

on_both_backends! {
    async fn a_batch_of_reports_is_stored_all_or_nothing(store) {
        store.create_env("prod", "admin").await.unwrap();
        let audit_before = all_audit(&store).await.len();

        // One report of the batch names an unknown environment: nothing of it is stored.
        let mut stray = report("w9", 1, ReportStatus::Ack, None, 100);
        stray.env = "nowhere".into();
        let err = store
            .record_reports(vec![
                report("w1", 1, ReportStatus::Ack, None, 100),
                stray,
                report("w2", 1, ReportStatus::Ack, None, 100),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NoSuchEnv(_)), "{err}");
        assert!(store.reports_for("prod", 1).await.unwrap().is_empty());
        assert_eq!(all_audit(&store).await.len(), audit_before);

        // A good batch: every report and one audit record each.
        store
            .record_reports(
                (1..=20)
                    .map(|i| report(&format!("w{i}"), 1, ReportStatus::Ack, None, 100))
                    .collect(),
            )
            .await
            .unwrap();
        assert_eq!(store.reports_for("prod", 1).await.unwrap().len(), 20);
        assert_eq!(all_audit(&store).await.len(), audit_before + 20);
    }
}

on_both_backends! {
    async fn token_expiry_is_stored_and_listed(store) {
        let never = token("tok-never", "hash-never", Role::Viewer, &[]);
        let expiring = TokenRecord {
            expires_at: Some(1_700_000_060_000),
            ..token("tok-expiring", "hash-expiring", Role::Viewer, &[])
        };
        store.create_token(never.clone(), "t").await.unwrap();
        store.create_token(expiring.clone(), "t").await.unwrap();

        let read = store.token_by_hash("hash-expiring").await.unwrap().unwrap();
        assert_eq!(read, expiring);
        assert!(!read.expired_at(1_700_000_059_999));
        assert!(read.expired_at(1_700_000_060_000));
        let read = store.token_by_hash("hash-never").await.unwrap().unwrap();
        assert_eq!(read.expires_at, None);
        assert!(!read.expired_at(i64::MAX));

        let listed = store.list_tokens().await.unwrap();
        let by_id = |id: &str| listed.iter().find(|t| t.id == id).unwrap().expires_at;
        assert_eq!(by_id("tok-expiring"), Some(1_700_000_060_000));
        assert_eq!(by_id("tok-never"), None);
        // The listing shows the expiry (null when none).
        let json = serde_json::to_value(&listed).unwrap();
        assert!(
            json.as_array()
                .unwrap()
                .iter()
                .any(|t| t["expires_at"] == 1_700_000_060_000_i64)
        );
        assert!(
            json.as_array()
                .unwrap()
                .iter()
                .any(|t| t["expires_at"].is_null())
        );
    }
}

on_both_backends! {
    async fn a_revoked_token_is_marked_once_audited_once_and_unknown_ids_are_none(store) {
        let ci = token("tok-ci", "hash-ci", Role::Deployer, &["prod"]);
        store.create_token(ci.clone(), "admin").await.unwrap();
        let audit_before = all_audit(&store).await.len();

        let (revoked, now) = store
            .revoke_token("tok-ci", "admin (tok-admin)")
            .await
            .unwrap()
            .unwrap();
        assert!(now);
        assert!(revoked.revoked);
        let at = revoked.revoked_at.unwrap();
        assert!(at >= ci.created_at, "{at}");
        assert_eq!(
            store.token_by_hash("hash-ci").await.unwrap(),
            Some(revoked.clone())
        );

        // Again: nothing changes, nothing is audited, the first revocation time stays.
        let (again, now) = store
            .revoke_token("tok-ci", "someone")
            .await
            .unwrap()
            .unwrap();
        assert!(!now);
        assert_eq!(again, revoked);
        assert_eq!(
            store.revoke_token("tok-none", "someone").await.unwrap(),
            None
        );

        let audit = all_audit(&store).await;
        assert_eq!(audit.len(), audit_before + 1, "{audit:?}");
        let record = &audit[0];
        assert_eq!(record.operation, Operation::RevokeToken);
        assert_eq!(record.actor, "admin (tok-admin)");
        assert_eq!(
            (record.entity_kind.as_str(), record.entity_name.as_str()),
            ("Token", "tok-ci")
        );
        assert!(!serde_json::to_string(&audit).unwrap().contains("hash-ci"));
    }
}
