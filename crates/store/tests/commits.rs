//! Environments, commits, versions, tombstones, history and change feeds.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::{apply, delete, request, snapshot, upsert};
use switchyard_api::records::Operation;
use switchyard_store::{Store, StoreError};

on_both_backends! {
    async fn create_and_list_environments(store) {
        assert!(store.list_envs().await.unwrap().is_empty());
        assert!(store.env("prod").await.unwrap().is_none());

        let prod = store.create_env("prod", "admin").await.unwrap();
        assert_eq!(prod.name, "prod");
        assert_eq!(prod.revision, 0);
        store.create_env("dev", "admin").await.unwrap();

        let names: Vec<_> = store
            .list_envs()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["dev", "prod"]);
        assert_eq!(store.env("prod").await.unwrap(), Some(prod));

        let err = store.create_env("prod", "admin").await.unwrap_err();
        assert!(
            matches!(err, StoreError::EnvExists(ref e) if e == "prod"),
            "{err}"
        );

        let audit = common::all_audit(&store).await;
        assert_eq!(audit.len(), 2);
        assert!(audit.iter().all(|a| a.operation == Operation::CreateEnv));
        assert_eq!(audit[0].entity_name, "dev");
        assert_eq!(audit[0].env.as_deref(), Some("dev"));
        assert_eq!(audit[0].actor, "admin");
    }
}

on_both_backends! {
    async fn first_commit_creates_version_1_at_revision_1(store) {
        store.create_env("prod", "admin").await.unwrap();
        let out = apply(
            &store,
            "prod",
            vec![
                upsert("Proxy", "api", "a1"),
                upsert("Credential", "key", "k1"),
            ],
        )
        .await;
        assert_eq!(out.revision, 1);
        assert_eq!(out.previous_revision, 0);
        assert_eq!(out.changes.len(), 2);
        assert!(
            out.changes
                .iter()
                .all(|c| c.old_version.is_none() && c.new_version == Some(1))
        );
        assert_eq!(out.changes[0].digest, "digest-a1");

        let entities = store.entities("prod", None).await.unwrap();
        let keys: Vec<_> = entities
            .iter()
            .map(|e| (e.kind.as_str(), e.name.as_str()))
            .collect();
        assert_eq!(
            keys,
            [("Credential", "key"), ("Proxy", "api")],
            "sorted by kind, name"
        );
        let api = &entities[1];
        assert_eq!((api.version, api.revision, api.deleted), (1, 1, false));
        assert_eq!(api.manifest, "{\"body\":\"a1\"}");
        assert_eq!(api.labels.get("team").map(String::as_str), Some("edge"));
        assert_eq!(store.env("prod").await.unwrap().unwrap().revision, 1);

        let rev = store.revision("prod", 1).await.unwrap().unwrap();
        assert_eq!(rev.actor, "alice");
        assert_eq!(rev.operation, Operation::Apply);
        assert_eq!(rev.changes, out.changes);
        assert!(store.revision("prod", 2).await.unwrap().is_none());
    }
}

on_both_backends! {
    async fn recommitting_the_same_digests_writes_nothing(store) {
        store.create_env("prod", "admin").await.unwrap();
        apply(&store, "prod", vec![upsert("Proxy", "api", "a1")]).await;
        let before = snapshot(&store).await;

        let out = apply(
            &store,
            "prod",
            vec![upsert("Proxy", "api", "a1"), delete("Proxy", "missing")],
        )
        .await;
        assert!(out.changes.is_empty());
        assert_eq!((out.revision, out.previous_revision), (1, 1));
        assert_eq!(
            snapshot(&store).await,
            before,
            "no rows written, not even audit"
        );
        assert_eq!(store.env("prod").await.unwrap().unwrap().revision, 1);

        // An empty batch is a no-op too.
        let out = apply(&store, "prod", vec![]).await;
        assert_eq!(out.revision, 1);
        assert_eq!(snapshot(&store).await, before);
    }
}

on_both_backends! {
    async fn update_delete_and_recreate_keep_counting_versions(store) {
        store.create_env("prod", "admin").await.unwrap();
        apply(
            &store,
            "prod",
            vec![upsert("Proxy", "api", "a1"), upsert("Proxy", "web", "w1")],
        )
        .await;

        // r2: update → v2, history kept
        let out = apply(&store, "prod", vec![upsert("Proxy", "api", "a2")]).await;
        assert_eq!(out.revision, 2);
        assert_eq!(out.changes[0].old_version, Some(1));
        assert_eq!(out.changes[0].new_version, Some(2));
        let at1 = store.entities("prod", Some(1)).await.unwrap();
        assert_eq!(at1[0].digest, "digest-a1");
        assert_eq!(at1[0].version, 1);
        let now = store.entities("prod", None).await.unwrap();
        assert_eq!(
            (now[0].version, now[0].revision, now[0].digest.as_str()),
            (2, 2, "digest-a2")
        );

        // r3: delete → tombstone; gone now, still there at r1 and r2
        let out = apply(&store, "prod", vec![delete("Proxy", "web")]).await;
        assert_eq!(out.revision, 3);
        assert_eq!(out.changes[0].old_version, Some(1));
        assert_eq!(out.changes[0].new_version, None);
        assert_eq!(out.changes[0].digest, "");
        let names =
            |v: Vec<switchyard_store::EntityRecord>| v.into_iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(names(store.entities("prod", None).await.unwrap()), ["api"]);
        assert_eq!(
            names(store.entities("prod", Some(1)).await.unwrap()),
            ["api", "web"]
        );
        assert_eq!(
            names(store.entities("prod", Some(2)).await.unwrap()),
            ["api", "web"]
        );
        assert_eq!(
            names(store.entities("prod", Some(3)).await.unwrap()),
            ["api"]
        );
        assert!(store.entities("prod", Some(0)).await.unwrap().is_empty());
        assert_eq!(
            names(store.entities("prod", Some(u64::MAX)).await.unwrap()),
            ["api"]
        );

        // Deleting again changes nothing.
        assert!(
            apply(&store, "prod", vec![delete("Proxy", "web")])
                .await
                .changes
                .is_empty()
        );

        // r4: re-create → version continues after the tombstone (v1, tombstone v2, now v3)
        let out = apply(&store, "prod", vec![upsert("Proxy", "web", "w1")]).await;
        assert_eq!(out.revision, 4);
        assert_eq!(out.changes[0].old_version, None);
        assert_eq!(out.changes[0].new_version, Some(3));
        let web = store.entities("prod", None).await.unwrap().pop().unwrap();
        assert_eq!(
            (web.name.as_str(), web.version, web.revision),
            ("web", 3, 4)
        );
        assert_eq!(common::count(&store, "entity_history").await, 5);
    }
}

on_both_backends! {
    async fn expected_revision_conflict_writes_nothing(store) {
        store.create_env("prod", "admin").await.unwrap();
        apply(&store, "prod", vec![upsert("Proxy", "api", "a1")]).await;
        let before = snapshot(&store).await;

        let mut req = request("prod", vec![upsert("Proxy", "api", "a2")]);
        req.expected_revision = Some(0);
        let err = store.commit(req).await.unwrap_err();
        match err {
            StoreError::Conflict {
                env,
                expected,
                actual,
            } => {
                assert_eq!((env.as_str(), expected, actual), ("prod", 0, 1));
            }
            other => panic!("expected a conflict, got {other}"),
        }
        assert_eq!(snapshot(&store).await, before);
        assert_eq!(
            store.entities("prod", None).await.unwrap()[0].digest,
            "digest-a1"
        );

        let mut req = request("prod", vec![upsert("Proxy", "api", "a2")]);
        req.expected_revision = Some(1);
        assert_eq!(store.commit(req).await.unwrap().revision, 2);
    }
}

on_both_backends! {
    async fn unknown_environment_is_reported(store) {
        let err = store
            .commit(request("nope", vec![upsert("Proxy", "api", "a1")]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NoSuchEnv(ref e) if e == "nope"),
            "{err}"
        );
        assert!(matches!(
            store.entities("nope", None).await,
            Err(StoreError::NoSuchEnv(_))
        ));
        assert!(matches!(
            store.changes_since("nope", 0).await,
            Err(StoreError::NoSuchEnv(_))
        ));
        assert!(matches!(
            store.revisions("nope", 10).await,
            Err(StoreError::NoSuchEnv(_))
        ));
        assert!(matches!(
            store.latest_reports("nope").await,
            Err(StoreError::NoSuchEnv(_))
        ));
        assert!(common::all_audit(&store).await.is_empty());
    }
}

on_both_backends! {
    async fn duplicate_entity_in_one_batch_is_refused(store) {
        store.create_env("prod", "admin").await.unwrap();
        let before = snapshot(&store).await;
        let err = store
            .commit(request(
                "prod",
                vec![upsert("Proxy", "api", "a1"), delete("Proxy", "api")],
            ))
            .await
            .unwrap_err();
        match err {
            StoreError::Database(msg) => assert_eq!(msg, "duplicate entity in batch: Proxy/api"),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(snapshot(&store).await, before);
    }
}

on_both_backends! {
    async fn changes_since_returns_later_changes_with_tombstones(store) {
        store.create_env("prod", "admin").await.unwrap();
        store.create_env("dev", "admin").await.unwrap();
        apply(
            &store,
            "prod",
            vec![
                upsert("Proxy", "a", "a1"),
                upsert("Proxy", "b", "b1"),
                upsert("Proxy", "keep", "k1"),
            ],
        )
        .await; // r1
        apply(&store, "dev", vec![upsert("Proxy", "other-env", "x")]).await;
        apply(&store, "prod", vec![upsert("Proxy", "a", "a2")]).await; // r2
        apply(
            &store,
            "prod",
            vec![upsert("Proxy", "a", "a3"), delete("Proxy", "b")],
        )
        .await; // r3
        apply(&store, "prod", vec![upsert("Proxy", "c", "c1")]).await; // r4

        let (current, changes) = store.changes_since("prod", 1).await.unwrap();
        assert_eq!(current, 4);
        let summary: Vec<_> = changes
            .iter()
            .map(|e| (e.name.as_str(), e.version, e.revision, e.deleted))
            .collect();
        assert_eq!(
            summary,
            [("a", 3, 3, false), ("b", 2, 3, true), ("c", 1, 4, false)]
        );
        let b = &changes[1];
        assert!(b.manifest.is_empty() && b.digest.is_empty());

        let (current, changes) = store.changes_since("prod", 3).await.unwrap();
        assert_eq!(current, 4);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].name, "c");

        let (current, changes) = store.changes_since("prod", 4).await.unwrap();
        assert_eq!((current, changes.len()), (4, 0));
        let (_, changes) = store.changes_since("prod", u64::MAX).await.unwrap();
        assert!(changes.is_empty());

        let (_, everything) = store.changes_since("prod", 0).await.unwrap();
        let names: Vec<_> = everything.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "keep"]);
    }
}

on_both_backends! {
    async fn revisions_are_listed_newest_first(store) {
        store.create_env("prod", "admin").await.unwrap();
        for i in 0..5 {
            let mut req = request("prod", vec![upsert("Proxy", "api", &i.to_string())]);
            req.operation = if i == 4 {
                Operation::Rollback
            } else {
                Operation::Apply
            };
            store.commit(req).await.unwrap();
        }
        let revs = store.revisions("prod", 0).await.unwrap();
        let numbers: Vec<_> = revs.iter().map(|r| r.revision).collect();
        assert_eq!(numbers, [5, 4, 3, 2, 1]);
        assert_eq!(revs[0].operation, Operation::Rollback);
        assert_eq!(revs[0].changes[0].old_version, Some(4));
        let two: Vec<_> = store
            .revisions("prod", 2)
            .await
            .unwrap()
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(two, [5, 4]);
    }
}

on_both_backends! {
    async fn templates_are_kept_with_each_version(store) {
        store.create_env("dev", "admin").await.unwrap();
        let with_template = |body: &str, template: Option<&str>| {
            let mut c = upsert("Proxy", "api", body);
            if let switchyard_store::Change::Upsert { template: t, .. } = &mut c {
                *t = template.map(str::to_string);
            }
            c
        };
        apply(&store, "dev", vec![with_template("a1", Some("url: ${A}"))]).await;
        apply(&store, "dev", vec![with_template("a2", None)]).await;
        let now = store.entities("dev", None).await.unwrap();
        assert_eq!(now[0].template, None);
        let then = store.entities("dev", Some(1)).await.unwrap();
        assert_eq!(then[0].template.as_deref(), Some("url: ${A}"));
        let (_, since) = store.changes_since("dev", 0).await.unwrap();
        assert_eq!(since[0].template, None);

        // The same manifest from another template is a change; the same pair again is not.
        let with_digest = |template: &str| {
            let mut c = with_template("a2", Some(template));
            if let switchyard_store::Change::Upsert {
                template_digest, ..
            } = &mut c
            {
                *template_digest = Some(format!("td-{template}"));
            }
            c
        };
        let out = apply(&store, "dev", vec![with_digest("url: ${B}")]).await;
        assert_eq!(out.changes.len(), 1, "a new template is recorded");
        let out = apply(&store, "dev", vec![with_digest("url: ${B}")]).await;
        assert!(
            out.changes.is_empty(),
            "the same template again changes nothing"
        );
    }
}
