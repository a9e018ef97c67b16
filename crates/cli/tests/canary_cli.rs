//! `apply --canary`, `canary status|abort|promote` and `status` as an operator runs them:
//! the binary against a real Manager process and a Worker following it.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{Manager, upstream, wait_until};

fn proxy(upstream: SocketAddr, release: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: api }}\nspec:\n  routes: [{{ pathPrefix: /api }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: {release} }} }}\n"
    )
}

#[test]
fn a_canary_is_started_followed_refused_around_and_aborted_with_the_cli() {
    let m = Manager::with_env("dev");
    let (_up, up) = upstream("up");
    let _worker = m.worker("dev", "w1");
    wait_until("w1 is connected", || m.connected("dev", "w1"));
    let file = |name: &str, release: &str| {
        let path = m.dir().join(name);
        std::fs::write(&path, proxy(up, release)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (blue, green, red) = (
        file("blue.yaml", "blue"),
        file("green.yaml", "green"),
        file("red.yaml", "red"),
    );
    let (ok, _, err) = m.cli(&["apply", "--env", "dev", &blue]);
    assert!(ok, "{err}");

    // Bad flags are named, and nothing is sent.
    let (ok, _, err) = m.cli(&[
        "apply",
        "--env",
        "dev",
        &green,
        "--canary",
        "5%",
        "--canary-key",
        "cookie",
    ]);
    assert!(!ok && err.contains("--canary-key"), "{err}");
    assert_eq!(m.revision("dev"), 1);

    let (ok, _, err) = m.cli(&[
        "apply",
        "--env",
        "dev",
        &green,
        "--canary",
        "20%",
        "--step-for",
        "1h",
        "--canary-key",
        "header:x-user-id",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("revision 2 is a canary of dev: 20% of requests (header:x-user-id)"),
        "{err}"
    );
    wait_until("w1 serves the canary beside r1", || {
        m.block_on(m.api.revision("dev", 2)).unwrap().acks == 1
    });

    let (ok, text, err) = m.cli(&["canary", "status", "--env", "dev"]);
    assert!(ok, "{err}");
    assert!(
        text.starts_with("canary r2 of dev (stable r1): running, step 1/1 at 20% (header:x-user-id), steps 20% → 100%"),
        "{text}"
    );
    let s = m.json(&["status", "--env", "dev"]);
    assert_eq!(s["canary"]["state"], "running", "{s}");
    assert_eq!(s["canary"]["share_ppm"], 200_000, "{s}");
    let (_, text, _) = m.cli(&["status", "--env", "dev"]);
    assert!(
        text.contains("canary r2 of dev (stable r1): running"),
        "{text}"
    );

    // Nothing else is committed while it runs; the refusal says how to finish it.
    let (ok, _, err) = m.cli(&["apply", "--env", "dev", &red]);
    assert!(!ok, "a plain apply during a canary went through");
    assert!(
        err.contains("canary_running") && err.contains("switchyard canary abort --env dev"),
        "{err}"
    );

    let (ok, text, err) = m.cli(&[
        "canary",
        "abort",
        "--env",
        "dev",
        "--reason",
        "wrong colour",
    ]);
    assert!(ok, "{err}");
    assert!(
        text.starts_with("canary r2 of dev (stable r1): aborted, stable content committed as r3"),
        "{text}"
    );
    assert!(
        text.contains("why: aborted by") && text.contains(": wrong colour"),
        "{text}"
    );
    let (ok, _, err) = m.cli(&["canary", "promote", "--env", "dev"]);
    assert!(!ok && err.contains("no running canary"), "{err}");
    let (ok, _, err) = m.cli(&["apply", "--env", "dev", &red]);
    assert!(ok, "{err}");
}
