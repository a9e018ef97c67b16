//! A short `switchyard bench swap` as an end-to-end test: Worker processes, real load,
//! every kind of hot change. Asserts the contract (nothing dropped, nothing mixed, every
//! change audited on every Worker), never a timing.

#![allow(clippy::unwrap_used)]

mod common;

use common::run;

#[test]
fn a_short_bench_swap_drops_nothing_mixes_nothing_and_audits_everything() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let (ok, out, err) = run(
        &[
            "bench",
            "swap",
            "--workers",
            "2",
            "--duration",
            "4s",
            "--changes-per-sec",
            "4",
            "--connections",
            "8",
            "--new-connections-per-sec",
            "5",
            "--json",
            json.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "bench swap failed:\n{out}\n{err}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["dropped_requests"], 0, "{out}");
    assert_eq!(r["mixed_version_responses"], 0, "{out}");
    assert_eq!(r["audit_completeness"], 1.0, "{out}");
    assert!(r["swaps"].as_u64().unwrap() >= 4, "{out}");
    assert!(r["requests"].as_u64().unwrap() > 0);
    for field in ["p50", "p99", "max"] {
        assert!(r["propagation_ms"][field].is_number(), "{out}");
    }
    let kinds: Vec<&str> = r["changes_by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k[0].as_str().unwrap())
        .collect();
    for kind in [
        "response header",
        "upstream target switch",
        "route addition",
        "route removal",
        "credential rotation",
        "policy edit",
    ] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    let workers = r["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for w in workers {
        for f in ["rss_start_kb", "rss_peak_kb", "rss_end_kb"] {
            assert!(w[f].as_u64().unwrap() > 0, "{w}");
        }
        assert_eq!(w["live_generations_end"], 1.0, "{w}");
    }
    assert!(out.contains("PASS"));
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
    assert!(r["swaps"].as_u64().unwrap() >= 3, "{out}");
    for w in r["workers"].as_array().unwrap() {
        assert!(w["rss_end_kb"].as_u64().unwrap() > 0, "{w}");
        assert_eq!(w["live_generations_end"], 1.0, "{w}");
    }

    // Only the operator's proxy is left.
    let (ok, out, err) = m.cli(&["apply", "--env", "staging", theirs.to_str().unwrap()]);
    assert!(ok && out.contains("no changes"), "{out}{err}");
    let entities = m.block_on(m.api.entities("staging")).unwrap();
    let names: Vec<&str> = entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["theirs"], "{entities:?}");
}
