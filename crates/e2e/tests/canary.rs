//! Canary revisions on the Worker (issue #21, first slice): a second generation live beside
//! the stable one, each request assigned to one of them when it is accepted and run wholly
//! on it — on keep-alive connections that see both — with a random share or sticky by key
//! (the same on every Worker), promoted or aborted with live generations back to one.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use switchyard_e2e::{
    ConfigDir, Conn, Harness, RunningWorker, environment_manifest, eventually, get_once,
    metric_value, payments_manifest,
};
use switchyard_worker::canary::{CanaryError, Split, SplitKey};

/// `n` requests on one keep-alive connection: how many ran on the canary (`green`), after
/// checking that each ran wholly on one generation (its header and its upstream agree).
async fn green_share(w: &RunningWorker, n: usize, headers: &[(&str, &str)]) -> usize {
    let mut conn = Conn::open(w.addr).await.unwrap();
    let mut green = 0;
    for i in 0..n {
        let a = conn.get(&format!("/payments/{i}"), headers).await.unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
        match (a.header("x-release"), a.header("x-upstream-id")) {
            (Some("blue"), Some("blue")) => {}
            (Some("green"), Some("green")) => green += 1,
            other => panic!("a request half on each generation: {other:?}"),
        }
    }
    assert!(!conn.is_closed(), "the connection outlives the canary");
    green
}

fn start(w: &RunningWorker, dir: &ConfigDir, split: Split) -> Result<u64, CanaryError> {
    tokio::task::block_in_place(|| w.handle.start_canary(dir.path(), split))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_serves_its_share_of_requests_each_wholly_and_ends_cleanly() {
    let h = Harness::upstreams(&["blue", "green"]).await;
    let stable = ConfigDir::new();
    stable.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    let canary = ConfigDir::new();
    canary.write("payments.yaml", &payments_manifest("green", h.addr(1), ""));
    let workers = [
        RunningWorker::start(stable.path()).await,
        RunningWorker::start(stable.path()).await,
    ];
    let r1 = workers[0].handle.revision();

    // Nothing to promote or abort yet.
    assert!(matches!(
        workers[0].handle.promote_canary(),
        Err(CanaryError::NoCanary)
    ));

    // 20% at random, on each Worker: 2000 requests, binomial sd ≈ 18.
    for w in &workers {
        let r2 = start(w, &canary, Split::new(200_000, SplitKey::Random)).unwrap();
        assert_eq!(r2, r1 + 1);
        assert_eq!(
            w.handle.revision(),
            r1,
            "the stable revision is still the one served"
        );
        assert_eq!(w.handle.live_generations(), 2);
        let green = green_share(w, 2_000, &[]).await;
        assert!(
            (320..=480).contains(&green),
            "{green} of 2000 on the canary"
        );
    }
    // The generation of each request is in the metrics.
    let text =
        String::from_utf8_lossy(&get_once(workers[0].admin, "/metrics").await.body).to_string();
    let on = |r: u64| {
        metric_value(
            &text,
            &format!("switchyard_generation_requests_total{{revision=\"{r}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(on(r1 + 1) >= 320.0 && on(r1) >= 1_500.0, "{text}");

    // Sticky by a header: a user is on the same generation on both Workers, every time.
    let sticky = Split::new(300_000, SplitKey::Header("x-user-id".parse().unwrap()));
    for w in &workers {
        start(w, &canary, sticky.clone()).unwrap();
        assert_eq!(
            w.handle.live_generations(),
            2,
            "the replaced canary is gone"
        );
    }
    let mut by_user: BTreeMap<String, usize> = BTreeMap::new();
    for u in 0..200 {
        let user = format!("user-{u}");
        let headers = [("x-user-id", user.as_str())];
        let a = green_share(&workers[0], 2, &headers).await;
        let b = green_share(&workers[1], 2, &headers).await;
        assert!(
            a == b && (a == 0 || a == 2),
            "{user}: {a} and {b} of 2 on the canary"
        );
        by_user.insert(user, a / 2);
    }
    let on_canary: usize = by_user.values().sum();
    assert!((35..=85).contains(&on_canary), "{on_canary} of 200 users");

    // A canary cannot change what a process serves for every request.
    let gateway = ConfigDir::new();
    gateway.write("payments.yaml", &payments_manifest("green", h.addr(1), ""));
    gateway.write(
        "env.yaml",
        &environment_manifest("    connections: { max: 20 }"),
    );
    let refused = start(&workers[0], &gateway, Split::new(1, SplitKey::Random)).unwrap_err();
    assert!(
        matches!(&refused, CanaryError::NotPerRequest(what) if what == "the gateway settings"),
        "{refused}"
    );
    assert!(matches!(
        start(&workers[0], &stable, Split::new(1, SplitKey::Random)),
        Err(CanaryError::Unchanged(_))
    ));

    // Abort on one, promote on the other: one generation each, the right one.
    assert_eq!(workers[0].handle.abort_canary().unwrap(), r1);
    assert_eq!(workers[1].handle.promote_canary().unwrap(), r1 + 1);
    assert_eq!(workers[1].handle.revision(), r1 + 1);
    eventually("one generation live on each Worker", || {
        workers.iter().all(|w| w.handle.live_generations() == 1)
    })
    .await;
    assert_eq!(green_share(&workers[0], 50, &[]).await, 0);
    assert_eq!(green_share(&workers[1], 50, &[]).await, 50);
}

/// What a canary is judged by: each generation's own numbers. A canary whose upstream
/// answers 500 has every one of its requests counted as an upstream 5xx on its revision,
/// none on the stable one; every request's duration is counted on the revision it ran on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_generation_has_its_own_numbers() {
    let h = Harness::upstreams(&["blue"]).await;
    let failing = switchyard_e2e::upstream::serve_fn(|_| {
        http::Response::builder()
            .status(500)
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"boom",
            )))
            .unwrap()
    })
    .await;
    let stable = ConfigDir::new();
    stable.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    let canary = ConfigDir::new();
    canary.write("payments.yaml", &payments_manifest("green", failing, ""));
    let w = RunningWorker::start(stable.path()).await;
    let r1 = w.handle.revision();
    start(&w, &canary, Split::new(500_000, SplitKey::Random)).unwrap();
    let mut conn = Conn::open(w.addr).await.unwrap();
    let (mut ok, mut failed) = (0.0, 0.0);
    for i in 0..400 {
        let a = conn.get(&format!("/payments/{i}"), &[]).await.unwrap();
        match (a.status, a.header("x-release")) {
            (200, Some("blue")) => ok += 1.0,
            (500, Some("green")) => failed += 1.0,
            other => panic!("{other:?}"),
        }
    }
    assert!(ok > 100.0 && failed > 100.0, "{ok} / {failed}");
    let text = String::from_utf8_lossy(&get_once(w.admin, "/metrics").await.body).to_string();
    let value = |series: &str, r: u64| {
        metric_value(&text, &format!("{series}{{revision=\"{r}\"}}")).unwrap_or(0.0)
    };
    let (r2, requests) = (r1 + 1, "switchyard_generation_requests_total");
    assert_eq!(value(requests, r1), ok, "{text}");
    assert_eq!(value(requests, r2), failed);
    assert_eq!(
        value("switchyard_generation_upstream_5xx_total", r2),
        failed
    );
    assert_eq!(value("switchyard_generation_upstream_5xx_total", r1), 0.0);
    assert_eq!(value("switchyard_generation_policy_denials_total", r2), 0.0);
    for (r, n) in [(r1, ok), (r2, failed)] {
        assert_eq!(
            value("switchyard_generation_request_duration_seconds_count", r),
            n,
            "{text}"
        );
    }
    for kind in ["502", "503", "504", "reset"] {
        let series =
            format!("switchyard_generation_errors_total{{revision=\"{r2}\",kind=\"{kind}\"}}");
        assert_eq!(
            metric_value(&text, &series),
            Some(0.0),
            "an upstream's own 500 is not a gateway error: {series}"
        );
    }
}
