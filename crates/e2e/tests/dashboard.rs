//! The operator's dashboard under `/ui/` (issue #20).
//!
//! Not ignored: the assets are served with their content types, `no-cache` and the strict
//! Content-Security-Policy, and `index.html` loads nothing from another origin and has no
//! inline script or style.
//!
//! The dashboard in a real browser, against a running `switchyard up`, is
//! `crates/cli/tests/dashboard_browser.rs` (it needs the `switchyard` binary).

#![allow(clippy::unwrap_used)]

use http::Method;
use switchyard_e2e::cluster::RunningManager;
use switchyard_e2e::get_once;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_with_a_strict_content_security_policy() {
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start_plain(&data.path().join("manager")).await;

    let redirect = get_once(m.addr, "/ui").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/ui/"));

    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/views.js", "text/javascript; charset=utf-8"),
        ("/ui/charts.js", "text/javascript; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let a = get_once(m.addr, path).await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.header("content-type"), Some(content_type), "{path}");
        assert_eq!(a.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(a.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{path}");
        assert!(!a.body.is_empty(), "{path}");
    }
    // Unknown files are 404s, with the same headers.
    let missing = get_once(m.addr, "/ui/nope.js").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-security-policy"), Some(CSP));

    let index = String::from_utf8(get_once(m.addr, "/ui/").await.body.to_vec()).unwrap();
    assert!(
        !index.contains("http://") && !index.contains("https://"),
        "{index}"
    );
    assert!(!index.contains("style="), "no inline style: {index}");
    assert!(!index.contains("<style"), "no inline style: {index}");
    for script in index.split("<script").skip(1) {
        let (tag, rest) = script.split_once('>').unwrap();
        assert!(
            tag.contains("src=\""),
            "every script is a file: <script{tag}>"
        );
        assert!(
            rest.starts_with("</script>"),
            "no inline script body: {rest}"
        );
    }
    assert!(
        index.contains(r#"<label for="token">Token</label>"#),
        "{index}"
    );
    // The API keeps answering JSON errors outside /ui.
    let (status, body) = m.call(Method::GET, "/nope", None).await;
    assert_eq!(status, 404, "{body}");
}
