//! A short `switchyard bench swap` as an end-to-end test: Worker processes, real load,
//! every kind of hot change. Asserts the contract (nothing dropped, nothing mixed, every
//! change observed, served and audited on every Worker), never a timing; and that the
//! verdict fails, naming the Worker, when one is cut off from the Manager mid-run.

#![allow(clippy::unwrap_used)]

mod common;

use common::run;

/// A 5-second `bench swap` of two Worker processes of its own, with 8 keep-alive
/// connections and 5 new connections a second, writing its JSON report to `json`.
fn own_cluster(json: &std::path::Path, more: &[&str]) -> (bool, String, String) {
    let mut args = vec![
        "bench",
        "swap",
        "--workers",
        "2",
        "--duration",
        "5s",
        "--connections",
        "8",
        "--new-connections-per-sec",
        "5",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    run(&args, &[])
}

#[test]
fn a_short_bench_swap_drops_nothing_mixes_nothing_and_audits_everything() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // Three seconds of changes between the quiet seconds: 18 changes, three of each kind,
    // with room for a slow apply on a busy machine.
    let (ok, out, err) = own_cluster(&json, &["--changes-per-sec", "6"]);
    assert!(ok, "bench swap failed:\n{out}\n{err}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["dropped_requests"], 0, "{out}");
    assert_eq!(r["mixed_version_responses"], 0, "{out}");
    assert_eq!(r["audit_completeness"], 1.0, "{out}");
    assert_eq!(r["failures"], serde_json::json!([]), "{out}");
    let revisions = r["revisions_committed"].as_u64().unwrap();
    assert!(revisions >= 6, "{out}");
    assert!(r["requests"].as_u64().unwrap() > 0);
    // Every revision had both Workers' ACKs, so each has a propagation time.
    assert_eq!(r["propagation_ms"]["count"], revisions, "{out}");
    assert_eq!(
        r["audit"]["acked"].as_u64().unwrap(),
        2 * revisions,
        "{out}"
    );
    for kind in [
        "response_header",
        "upstream_switch",
        "route_addition",
        "route_removal",
        "credential_rotation",
        "policy_edit",
    ] {
        let k = &r["kinds"][kind];
        assert!(k["applied"].as_u64().unwrap() >= 1, "{kind}: {out}");
        assert!(k["observed"].as_u64().unwrap() >= 1, "{kind}: {out}");
    }
    let workers = r["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for w in workers {
        for f in ["rss_start_kb", "rss_peak_kb", "rss_end_kb"] {
            assert!(w[f].as_u64().unwrap() > 0, "{w}");
        }
        assert_eq!(w["live_generations_end"], 1.0, "{w}");
        assert_eq!(w["revisions_missed"], serde_json::json!([]), "{w}");
        assert_eq!(w["went_backwards"], 0, "{w}");
        let served = w["revisions_served"].as_u64().unwrap();
        let superseded = w["revisions_superseded"].as_u64().unwrap();
        assert_eq!(served + superseded, revisions, "{w}");
        assert!(w["swaps_during_run"].as_u64().unwrap() >= served, "{w}");
    }
    assert!(out.contains("PASS"));
}

/// The detector fires end to end: Worker 1 is cut off from the Manager halfway through
/// the run (its traffic listener keeps answering, with the revision it had). The bench
/// exits 1 and names it, with the revisions it never served and never ACKed; Worker 2 is
/// clean.
#[test]
fn a_worker_cut_off_mid_run_fails_the_bench_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let (ok, out, err) = own_cluster(&json, &["--changes-per-sec", "4", "--cut-worker", "1"]);
    assert!(
        !ok,
        "bench swap passed with a Worker cut off:\n{out}\n{err}"
    );
    assert!(out.contains("FAIL"), "{out}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["passed"], false);
    // Nothing was dropped: the cut Worker keeps serving what it had.
    assert_eq!(r["dropped_requests"], 0, "{out}");
    let w1 = &r["workers"][0];
    assert_eq!(w1["id"], "bench-w1");
    let missed = w1["revisions_missed"].as_array().unwrap();
    assert!(!missed.is_empty(), "{w1}");
    assert!(!w1["acks_missing"].as_array().unwrap().is_empty(), "{w1}");
    assert_eq!(r["workers"][1]["revisions_missed"], serde_json::json!([]));
    let failures: Vec<&str> = r["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("worker bench-w1: never seen serving")),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("worker bench-w1: no ACK")),
        "{failures:?}"
    );
    assert!(
        failures.iter().all(|f| !f.contains("bench-w2")),
        "{failures:?}"
    );
}

/// `bench swap --manager … --targets …` against a cluster the bench did not start: a
/// Manager process with an entity of its own, and two Worker processes. The bench's
/// entities are gone afterwards; the operator's are untouched.
#[test]
fn bench_swap_measures_an_existing_cluster_and_cleans_up() {
    let m = common::Manager::with_env("staging");
    let theirs = m.dir().join("theirs.yaml");
    std::fs::write(
        &theirs,
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: { name: theirs }\nspec:\n  routes: [{ pathPrefix: /bench }]\n  upstream:\n    targets: [{ url: \"http://127.0.0.1:9\" }]\n",
    )
    .unwrap();
    let (ok, out, err) = m.cli(&["apply", "--env", "staging", theirs.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let worker_token = m.token(&["--role", "worker", "--env", "staging"]);
    let workers: Vec<common::Worker> = (0..2)
        .map(|i| m.spawn_worker("staging", &worker_token, Some(&format!("ops-w{i}"))))
        .collect();
    let targets: Vec<String> = workers
        .iter()
        .map(|w| format!("http://{}", w.listen))
        .collect();
    let admins: Vec<String> = workers
        .iter()
        .map(|w| format!("http://{}", w.admin))
        .collect();
    let json = m.dir().join("report.json");
    let (ok, out, err) = m.cli(&[
        "bench",
        "swap",
        "--manager",
        &m.url,
        "--env",
        "staging",
        "--targets",
        &targets.join(","),
        "--worker-admins",
        &admins.join(","),
        "--duration",
        "3s",
        "--changes-per-sec",
        "4",
        "--connections",
        "4",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "bench swap failed:\n{out}\n{err}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["dropped_requests"], 0, "{out}");
    assert_eq!(r["mixed_version_responses"], 0, "{out}");
    assert_eq!(r["audit_completeness"], 1.0, "{out}");
    assert_eq!(r["failures"], serde_json::json!([]), "{out}");
    assert!(r["revisions_committed"].as_u64().unwrap() >= 3, "{out}");
    for (i, w) in r["workers"].as_array().unwrap().iter().enumerate() {
        // Targets are named by the Manager's id of the Worker listening there.
        assert_eq!(w["id"], format!("ops-w{i}"), "{w}");
        assert!(w["rss_end_kb"].as_u64().unwrap() > 0, "{w}");
        assert_eq!(w["live_generations_end"], 1.0, "{w}");
        assert_eq!(w["revisions_missed"], serde_json::json!([]), "{w}");
        assert!(w["swaps_during_run"].as_u64().unwrap() >= 1, "{w}");
    }

    // Only the operator's proxy is left.
    let (ok, out, err) = m.cli(&["apply", "--env", "staging", theirs.to_str().unwrap()]);
    assert!(ok && out.contains("no changes"), "{out}{err}");
    let entities = m.block_on(m.api.entities("staging")).unwrap();
    let names: Vec<&str> = entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["theirs"], "{entities:?}");
}
