//! What a request is routed on, through a real Worker and raw TCP clients: the path is
//! normalised before routing and forwarded normalised (so `/payments/../admin` meets the
//! `/admin` route and its ACL, not the `/payments` one), encoded slashes and bad escapes
//! are refused, and the Host header is checked (RFC 9112 §3.2).

#![allow(clippy::unwrap_used)]

use switchyard_e2e::raw::{RawAnswer, exchange};
use switchyard_e2e::{ConfigDir, Harness, RunningWorker};

/// `payments` (open) and `admin` (denied to everyone by an IP filter: a route-level ACL),
/// and `api` only for `api.example.com`.
fn manifests(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: payments }}
spec:
  routes:
    - pathPrefix: /payments
    - path: /only-get
      methods: [GET]
  upstream:
    targets: [{{ url: "http://{upstream}" }}]
---
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: admin }}
spec:
  routes: [{{ pathPrefix: /admin }}]
  upstream:
    targets: [{{ url: "http://{upstream}" }}]
  policies:
    - type: ip-filter
      deny: [0.0.0.0/0, "::/0"]
---
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: api }}
spec:
  routes: [{{ pathPrefix: /api, hosts: [api.example.com] }}]
  upstream:
    targets: [{{ url: "http://{upstream}" }}]
"#
    )
}

fn environment(paths: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Environment\nmetadata: {{ name: test }}\nspec:\n  gateway:\n    paths: {paths}\n"
    )
}

async fn get(w: &RunningWorker, target: &str) -> RawAnswer {
    let req = format!("GET {target} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n");
    exchange(w.addr, req.as_bytes()).await
}

async fn start() -> (Harness, ConfigDir, RunningWorker) {
    let h = Harness::upstreams(&["a"]).await;
    let cfg = ConfigDir::new();
    cfg.write("proxies.yaml", &manifests(h.addr(0)));
    let w = RunningWorker::start(cfg.path()).await;
    (h, cfg, w)
}

#[tokio::test]
async fn paths_that_resolve_to_admin_meet_the_admin_route_and_its_acl() {
    let (_h, _cfg, w) = start().await;
    for p in [
        "/admin/x",
        "/payments/../admin/x",
        "/payments/%2e%2e/admin/x",
        "/payments/%2E%2E/admin/x",
        "//admin/x",
        "/./admin/x",
        "/%61dmin/x",
        "/payments/./%2e%2e//admin/x",
        "/../../admin/x",
    ] {
        let a = get(&w, p).await;
        assert_eq!(a.status, 403, "{p}: {}", a.text);
        assert_eq!(a.json()["error"], "ip_denied", "{p}");
    }
}

#[tokio::test]
async fn the_upstream_gets_the_normalised_path_and_the_query_as_sent() {
    let (_h, _cfg, w) = start().await;
    let a = get(&w, "/payments/a/./b/../c//d%7e%3f?x=%2F..&y=1").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let body = a.json();
    assert_eq!(body["path"], "/payments/a/c/d~%3F");
    assert_eq!(body["query"], "x=%2F..&y=1");
}

#[tokio::test]
async fn nul_bad_escapes_and_encoded_slashes_are_refused_with_400() {
    let (_h, _cfg, w) = start().await;
    for (p, code) in [
        ("/payments/a%2Fb", "encoded_slash"),
        ("/payments/a%2fb", "encoded_slash"),
        ("/payments/a%5Cb", "encoded_slash"),
        ("/payments/a\\b", "encoded_slash"),
        ("/payments/a%00b", "invalid_path"),
        ("/payments/a%zzb", "invalid_path"),
        ("/payments/a%4", "invalid_path"),
    ] {
        let a = get(&w, p).await;
        assert_eq!(a.status, 400, "{p}: {}", a.text);
        assert_eq!(a.json()["error"], code, "{p}");
        assert_eq!(a.json()["source"], "client", "{p}");
    }
}

#[tokio::test]
async fn encoded_slashes_can_be_kept_or_redirected_and_merging_turned_off_hot() {
    let (_h, cfg, w) = start().await;
    cfg.write("env.yaml", &environment("{ encodedSlashes: keep }"));
    w.wait_for_revision(2).await;
    let a = get(&w, "/payments/a%2fb").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["path"], "/payments/a%2Fb");

    cfg.write(
        "env.yaml",
        &environment("{ encodedSlashes: decode-and-redirect }"),
    );
    w.wait_for_revision(3).await;
    let a = get(&w, "/payments/a%2Fb?q=1").await;
    assert_eq!(a.status, 307, "{}", a.text);
    assert_eq!(a.header("location"), Some("/payments/a/b?q=1"));

    cfg.write("env.yaml", &environment("{ mergeSlashes: false }"));
    w.wait_for_revision(4).await;
    let a = get(&w, "/payments//x").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["path"], "/payments//x");
    let a = get(&w, "//payments/x").await;
    assert_eq!(a.status, 404, "{}", a.text);
}

#[tokio::test]
async fn method_matching_is_case_sensitive() {
    let (_h, _cfg, w) = start().await;
    assert_eq!(get(&w, "/only-get").await.status, 200);
    let req = b"get /only-get HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n";
    let a = exchange(w.addr, req).await;
    assert_eq!(a.status, 404, "{}", a.text);
}

#[tokio::test]
async fn a_missing_duplicate_or_invalid_host_is_a_400() {
    let (_h, _cfg, w) = start().await;
    let cases: [(&str, &str); 6] = [
        (
            "GET /payments/x HTTP/1.1\r\nConnection: close\r\n\r\n",
            "missing_host",
        ),
        (
            "GET /payments/x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            "duplicate_host",
        ),
        (
            "GET /payments/x HTTP/1.1\r\nHost: user@gateway.test\r\nConnection: close\r\n\r\n",
            "invalid_host",
        ),
        (
            "GET /payments/x HTTP/1.1\r\nHost: gateway test\r\nConnection: close\r\n\r\n",
            "invalid_host",
        ),
        (
            "GET /payments/x HTTP/1.1\r\nHost: gateway.test:80x\r\nConnection: close\r\n\r\n",
            "invalid_host",
        ),
        (
            "GET http://other.test/payments/x HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n",
            "host_mismatch",
        ),
    ];
    for (req, code) in cases {
        let a = exchange(w.addr, req.as_bytes()).await;
        assert_eq!(a.status, 400, "{req:?}: {}", a.text);
        assert_eq!(a.json()["error"], code, "{req:?}");
    }
    // HTTP/1.0 may leave Host out; an absolute-form target that agrees with Host is fine.
    let a = exchange(w.addr, b"GET /payments/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = exchange(
        w.addr,
        b"GET http://gateway.test/payments/x HTTP/1.1\r\nHost: GATEWAY.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn routing_uses_the_lower_cased_port_stripped_authority() {
    let (_h, _cfg, w) = start().await;
    let req = b"GET /api/x HTTP/1.1\r\nHost: API.Example.COM.:8080\r\nConnection: close\r\n\r\n";
    let a = exchange(w.addr, req).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let req = b"GET /api/x HTTP/1.1\r\nHost: other.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(w.addr, req).await.status, 404);
}
