//! Worker presence: the streams Managers hold, the Workers expected for each revision, and
//! the progress of a revision's ACKs — stored, so every Manager gives the same answers.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::{apply, report, upsert};
use switchyard_api::records::{ReportStatus, now_millis};
use switchyard_store::{PRESENCE_TTL_MS, Store, WorkerConnection};

fn stream(worker: &str, manager: &str, session: &str) -> WorkerConnection {
    let now = now_millis();
    WorkerConnection {
        env: "prod".into(),
        worker_id: worker.into(),
        manager: manager.into(),
        session: session.into(),
        address: Some(format!("{worker}.internal:8080")),
        version: Some("0.1.0".into()),
        connected_at: now,
        last_seen: now,
    }
}

fn ids(c: &[WorkerConnection]) -> Vec<(&str, &str)> {
    c.iter()
        .map(|c| (c.worker_id.as_str(), c.manager.as_str()))
        .collect()
}

on_both_backends! {
    async fn the_workers_connected_at_commit_are_expected_and_their_acks_complete_it(store) {
        store.create_env("prod", "admin").await.unwrap();
        // Nobody connected: known, and empty.
        let r1 = apply(&store, "prod", vec![upsert("Proxy", "a", "1")]).await;
        assert_eq!(store.expected_workers("prod", r1.revision).await.unwrap(), Some(vec![]));

        // w1 on Manager A, w2 on Manager B, w3 on A but not refreshed for longer than the TTL
        // (A went away without saying so), w2 also still listed on a dead Manager.
        store.worker_connected(stream("w1", "A", "1")).await.unwrap();
        store.worker_connected(stream("w2", "B", "1")).await.unwrap();
        let mut stale = stream("w3", "A", "2");
        stale.last_seen -= PRESENCE_TTL_MS + 1_000;
        store.worker_connected(stale).await.unwrap();
        let mut old = stream("w2", "C", "1");
        old.connected_at -= 60_000;
        old.last_seen -= 1_000;
        store.worker_connected(old).await.unwrap();

        assert_eq!(
            ids(&store.connections("prod").await.unwrap()),
            [("w1", "A"), ("w2", "B")],
            "live streams only, the latest per Worker"
        );
        let r2 = apply(&store, "prod", vec![upsert("Proxy", "a", "2")]).await;
        assert_eq!(
            store.expected_workers("prod", r2.revision).await.unwrap(),
            Some(vec!["w1".to_string(), "w2".to_string()])
        );

        // The ACKs count toward it; the one that completes it says so, once.
        let p = store.record_report(report("w1", r2.revision, ReportStatus::Ack, None, r2.committed_at + 10)).await.unwrap();
        assert_eq!((p.len(), p[0].done, p[0].expected, p[0].completed_now), (1, 1, 2, false));
        // A NACK and a Worker that was not expected change nothing.
        let p = store.record_report(report("w2", r2.revision, ReportStatus::Nack, Some("bad"), r2.committed_at + 20)).await.unwrap();
        assert!(p.is_empty());
        let p = store.record_report(report("w9", r2.revision, ReportStatus::Ack, None, r2.committed_at + 20)).await.unwrap();
        assert_eq!((p[0].done, p[0].completed_now), (1, false));
        let p = store.record_report(report("w2", r2.revision, ReportStatus::Ack, None, r2.committed_at + 40)).await.unwrap();
        assert_eq!((p[0].done, p[0].expected, p[0].completed_now), (2, 2, true));
        assert_eq!(p[0].last_swap - p[0].committed_at, 35);
        let p = store.record_report(report("w2", r2.revision, ReportStatus::Ack, None, r2.committed_at + 50)).await.unwrap();
        assert_eq!((p[0].done, p[0].completed_now), (2, false), "completed once only");

        // Unknown revisions have no expected set.
        assert_eq!(store.expected_workers("prod", 99).await.unwrap(), None);
    }
}

on_both_backends! {
    async fn streams_are_replaced_removed_and_refreshed_per_manager(store) {
        store.create_env("prod", "admin").await.unwrap();
        store.worker_connected(stream("w1", "A", "1")).await.unwrap();
        // The Worker reconnected to A (a new session) before the old stream's removal ran:
        // the late removal does not remove the new stream.
        store.worker_connected(stream("w1", "A", "2")).await.unwrap();
        store.worker_disconnected("prod", "w1", "A", "1").await.unwrap();
        assert_eq!(ids(&store.connections("prod").await.unwrap()), [("w1", "A")]);
        store.worker_disconnected("prod", "w1", "A", "2").await.unwrap();
        assert!(store.connections("prod").await.unwrap().is_empty());

        // A refresh replaces everything a Manager holds, and only what it holds.
        store.worker_connected(stream("w1", "A", "3")).await.unwrap();
        store.worker_connected(stream("w2", "B", "1")).await.unwrap();
        let mut held = stream("w3", "A", "4");
        held.last_seen = 0; // refreshed: the store stamps it
        store.refresh_connections("A", vec![held]).await.unwrap();
        let now = store.connections("prod").await.unwrap();
        assert_eq!(ids(&now), [("w2", "B"), ("w3", "A")]);
        assert!(now[1].last_seen > 0);

        // Deleting the environment deletes its streams.
        store.delete_env("prod", "admin", None).await.unwrap();
        store.create_env("prod", "admin").await.unwrap();
        assert!(store.connections("prod").await.unwrap().is_empty());
    }
}
