//! Whole-set checks: names, route ownership, and every field the compiler validates.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{PAYMENTS, compile_err, compile_ok, docs, edit, proxy, rendered, single};
use http::Method;
use switchyard_config::load_path;
use switchyard_engine::{Snapshot, compile};

/// The proxy that serves a request, by name.
fn served_by(s: &Snapshot, host: Option<&str>, path: &str, method: Method) -> Option<String> {
    s.route(host, path, &method)
        .map(|(_, p, _)| p.name.to_string())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

// ---- names ----

#[test]
fn duplicate_proxy_names_across_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", &proxy("payments", "{path: /a}"));
    let b = write(
        dir.path(),
        "b.yaml",
        &format!("# a copy\n{}", proxy("payments", "{path: /b}")),
    );
    let manifests = load_path(dir.path()).unwrap();
    let e = compile(&manifests, None).unwrap_err();
    assert_eq!(
        single(&e),
        format!(
            "{b}:5:9: proxy \"payments\": metadata.name: duplicate name: \
             proxy \"payments\" is already defined at {a}:4:9"
        )
    );
}

#[test]
fn duplicate_proxy_names_in_one_file() {
    let e = compile_err(&docs(&[
        &proxy("a", "{path: /a}"),
        &proxy("b", "{path: /b}"),
        &proxy("a", "{path: /c}"),
    ]));
    assert_eq!(
        single(&e),
        "payments.yaml:26:9: proxy \"a\": metadata.name: duplicate name: \
         proxy \"a\" is already defined at payments.yaml:4:9"
    );
}

#[test]
fn invalid_proxy_name() {
    let e = compile_err(&edit(PAYMENTS, "name: payments", "name: Payments"));
    assert_eq!(
        single(&e),
        "payments.yaml:4:9: proxy \"Payments\": metadata.name: invalid name \"Payments\": \
         use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"
    );
    for ok in ["a", "0", "a-b_c.d", "payments-v2"] {
        compile_ok(&proxy(ok, "{path: /}"));
    }
    for bad in ["-a", ".a", "a b", "é", "\"\""] {
        let e = compile_err(&proxy(bad, "{path: /}"));
        assert_eq!(e.first().unwrap().field, "metadata.name", "{bad}");
    }
}

// ---- route conflicts ----

#[test]
fn two_proxies_claiming_the_same_host_path_and_method() {
    let e = compile_err(&docs(&[
        &proxy(
            "a",
            "{pathPrefix: /x, hosts: [api.example.com], methods: [GET, POST]}",
        ),
        &proxy(
            "b",
            "{pathPrefix: /x, hosts: [api.example.com], methods: [post]}",
        ),
    ]));
    assert_eq!(
        single(&e),
        "payments.yaml:18:7: proxy \"b\": spec.routes[0]: route conflict: \
         host api.example.com + pathPrefix /x + POST is already claimed by proxy \"a\" \
         (spec.routes[0] at payments.yaml:7:7)"
    );
}

#[test]
fn conflicts_without_hosts_or_methods() {
    let e = compile_err(&docs(&[
        &proxy("a", "{path: /x}"),
        &proxy("b", "{path: /x}"),
    ]));
    assert_eq!(
        single(&e),
        "payments.yaml:18:7: proxy \"b\": spec.routes[0]: route conflict: \
         any host + path /x + any method is already claimed by proxy \"a\" \
         (spec.routes[0] at payments.yaml:7:7)"
    );
}

#[test]
fn conflicting_wildcard_hosts_are_compared_normalised() {
    let e = compile_err(&docs(&[
        &proxy("a", "{pathPrefix: /x, hosts: [a.com, \"*.b.com\"]}"),
        &proxy("b", "{pathPrefix: /x, hosts: [\"*.B.com.\"]}"),
    ]));
    assert_eq!(
        single(&e),
        "payments.yaml:18:7: proxy \"b\": spec.routes[0]: route conflict: \
         host *.b.com + pathPrefix /x + any method is already claimed by proxy \"a\" \
         (spec.routes[0] at payments.yaml:7:7)"
    );
}

#[test]
fn conflict_within_one_proxy() {
    let e = compile_err(&proxy(
        "a",
        "{path: /x}\n    - {path: /y}\n    - {path: /x}",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:9:7: proxy \"a\": spec.routes[2]: route conflict: \
         any host + path /x + any method is already claimed by proxy \"a\" \
         (spec.routes[0] at payments.yaml:7:7)"
    );
}

#[test]
fn every_later_claimant_is_reported_once() {
    let e = compile_err(&docs(&[
        &proxy("a", "{path: /x, hosts: [a.com, b.com]}"),
        &proxy("b", "{path: /x, hosts: [a.com, b.com]}"),
        &proxy("c", "{path: /x, hosts: [b.com]}"),
    ]));
    assert_eq!(
        rendered(&e),
        [
            "payments.yaml:18:7: proxy \"b\": spec.routes[0]: route conflict: \
             host a.com + path /x + any method is already claimed by proxy \"a\" \
             (spec.routes[0] at payments.yaml:7:7)",
            "payments.yaml:29:7: proxy \"c\": spec.routes[0]: route conflict: \
             host b.com + path /x + any method is already claimed by proxy \"a\" \
             (spec.routes[0] at payments.yaml:7:7)",
        ]
    );
}

#[test]
fn same_path_with_disjoint_methods_is_not_a_conflict() {
    let c = compile_ok(&docs(&[
        &proxy("a", "{pathPrefix: /x, methods: [GET, HEAD]}"),
        &proxy("b", "{pathPrefix: /x, methods: [POST]}"),
    ]));
    let s = &c.snapshot;
    assert_eq!(
        served_by(s, None, "/x/1", Method::GET).as_deref(),
        Some("a")
    );
    assert_eq!(
        served_by(s, None, "/x/1", Method::POST).as_deref(),
        Some("b")
    );
    assert_eq!(served_by(s, None, "/x/1", Method::DELETE), None);
}

#[test]
fn any_method_and_get_on_the_same_path_is_not_a_conflict() {
    let c = compile_ok(&docs(&[
        &proxy("a", "{path: /x}"),
        &proxy("b", "{path: /x, methods: [GET]}"),
    ]));
    let s = &c.snapshot;
    assert_eq!(served_by(s, None, "/x", Method::GET).as_deref(), Some("b"));
    assert_eq!(
        served_by(s, None, "/x", Method::DELETE).as_deref(),
        Some("a")
    );
}

#[test]
fn different_hosts_or_path_kinds_are_not_conflicts() {
    let c = compile_ok(&docs(&[
        &proxy("a", "{pathPrefix: /x}"),
        &proxy("b", "{pathPrefix: /x, hosts: [a.example.com]}"),
        &proxy("c", "{pathPrefix: /x, hosts: [\"*.example.com\"]}"),
        &proxy("d", "{path: /x}"),
    ]));
    let s = &c.snapshot;
    assert_eq!(
        served_by(s, Some("a.example.com"), "/x/1", Method::GET).as_deref(),
        Some("b")
    );
    assert_eq!(
        served_by(s, Some("b.example.com"), "/x/1", Method::GET).as_deref(),
        Some("c")
    );
    assert_eq!(
        served_by(s, Some("other.org"), "/x/1", Method::GET).as_deref(),
        Some("a")
    );
    assert_eq!(served_by(s, None, "/x", Method::GET).as_deref(), Some("d"));
}

// ---- routes ----

#[test]
fn empty_route_list() {
    let e = compile_err(&edit(
        &proxy("a", "{path: /}"),
        "routes:\n    - {path: /}\n",
        "routes: []\n",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:6:11: proxy \"a\": spec.routes: a proxy needs at least one route"
    );
}

#[test]
fn route_with_both_path_and_path_prefix() {
    let e = compile_err(&proxy("a", "{path: /a, pathPrefix: /a}"));
    assert_eq!(
        single(&e),
        "payments.yaml:7:7: proxy \"a\": spec.routes[0]: set either `path` or `pathPrefix`, not both"
    );
    let e = compile_err(&proxy("a", "{methods: [GET]}"));
    assert_eq!(
        single(&e),
        "payments.yaml:7:7: proxy \"a\": spec.routes[0]: a route needs `path` or `pathPrefix`"
    );
}

#[test]
fn path_must_start_with_a_slash() {
    let e = compile_err(&edit(
        PAYMENTS,
        "pathPrefix: /payments",
        "pathPrefix: payments",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:8:7: proxy \"payments\": spec.routes[0].pathPrefix: \
         invalid path \"payments\": must start with '/'"
    );
    let e = compile_err(&proxy("a", "{path: \"/a?b=1\"}"));
    assert_eq!(
        single(&e),
        "payments.yaml:7:7: proxy \"a\": spec.routes[0].path: \
         invalid path \"/a?b=1\": no query, fragment, spaces or control characters"
    );
}

#[test]
fn invalid_host() {
    let e = compile_err(&edit(
        PAYMENTS,
        "[api.example.com]",
        "[api.example.com, \"api.example.com:80\"]",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:8:7: proxy \"payments\": spec.routes[0].hosts[1]: \
         invalid host \"api.example.com:80\": expected a host name such as api.example.com \
         or *.example.com (no port)"
    );
    for bad in [
        "*", "*.", "-a.com", "a-.com", "a..com", "a_b.com", "a.*.com", "**.a.com", "",
    ] {
        let e = compile_err(&proxy("a", &format!("{{path: /, hosts: [\"{bad}\"]}}")));
        assert_eq!(
            e.first().unwrap().field,
            "spec.routes[0].hosts[0]",
            "{bad:?}"
        );
        assert!(
            e.first().unwrap().message.starts_with("invalid host"),
            "{bad:?}"
        );
    }
}

#[test]
fn wildcard_and_mixed_case_hosts_are_accepted() {
    let c = compile_ok(&proxy(
        "a",
        "{path: /, hosts: [\"*.example.com\", \"API.Other.ORG.\"]}",
    ));
    let s = &c.snapshot;
    assert_eq!(
        served_by(s, Some("x.example.com"), "/", Method::GET).as_deref(),
        Some("a")
    );
    assert_eq!(
        served_by(s, Some("a.b.example.com:8080"), "/", Method::GET).as_deref(),
        Some("a")
    );
    assert_eq!(served_by(s, Some("example.com"), "/", Method::GET), None);
    assert_eq!(
        served_by(s, Some("api.other.org"), "/", Method::GET).as_deref(),
        Some("a")
    );
}

#[test]
fn empty_host_list() {
    let e = compile_err(&edit(PAYMENTS, "hosts: [api.example.com]", "hosts: []"));
    assert_eq!(
        single(&e),
        "payments.yaml:8:7: proxy \"payments\": spec.routes[0].hosts: \
         empty list: omit `hosts` to match any host"
    );
}

#[test]
fn empty_or_invalid_methods() {
    let e = compile_err(&edit(PAYMENTS, "methods: [GET, POST]", "methods: []"));
    assert_eq!(
        single(&e),
        "payments.yaml:8:7: proxy \"payments\": spec.routes[0].methods: \
         empty list: omit `methods` to match any method"
    );
    let e = compile_err(&edit(
        PAYMENTS,
        "methods: [GET, POST]",
        "methods: [GET, \"PO ST\"]",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:8:7: proxy \"payments\": spec.routes[0].methods[1]: invalid method \"PO ST\""
    );
}

// ---- upstream ----

#[test]
fn empty_target_list() {
    let e = compile_err(&edit(
        PAYMENTS,
        "    targets:\n      - url: http://127.0.0.1:18081\n        weight: 1\n",
        "    targets: []\n",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:13:14: proxy \"payments\": spec.upstream.targets: \
         an upstream needs at least one target"
    );
}

#[test]
fn zero_weight() {
    let e = compile_err(&edit(PAYMENTS, "weight: 1", "weight: 0"));
    assert_eq!(
        single(&e),
        "payments.yaml:14:7: proxy \"payments\": spec.upstream.targets[0].weight: \
         weight must be at least 1"
    );
}

#[test]
fn retries_above_ten_are_refused() {
    let e = compile_err(&edit(PAYMENTS, "attempts: 1 }", "attempts: 11 }"));
    // Fields without a recorded position point at the proxy's name.
    assert_eq!(
        single(&e),
        "payments.yaml:4:9: proxy \"payments\": spec.upstream.retries.attempts: at most 10"
    );
    let c = compile_ok(&edit(PAYMENTS, "attempts: 1 }", "attempts: 10 }"));
    assert_eq!(
        c.snapshot
            .proxy("payments")
            .unwrap()
            .upstream
            .retry_attempts,
        10
    );
    let c = compile_ok(&edit(PAYMENTS, "attempts: 1 }", "attempts: 0 }"));
    assert_eq!(
        c.snapshot
            .proxy("payments")
            .unwrap()
            .upstream
            .retry_attempts,
        0
    );
}

#[test]
fn zero_timeouts_are_refused() {
    let e = compile_err(&edit(
        PAYMENTS,
        "{ connect: 2s, request: 30s }",
        "{ connect: 0s, request: 0ms }",
    ));
    assert_eq!(
        rendered(&e),
        [
            "payments.yaml:4:9: proxy \"payments\": spec.upstream.timeouts.connect: must be greater than 0",
            "payments.yaml:4:9: proxy \"payments\": spec.upstream.timeouts.request: must be greater than 0",
        ]
    );
}

// ---- upstream resilience ----

/// PAYMENTS with `extra` (indented upstream fields) after its `retries` line.
fn upstream_with(extra: &str) -> String {
    edit(
        PAYMENTS,
        "    retries: { attempts: 1 }       # only on connect failure, to another target\n",
        &format!("    retries: {{ attempts: 1 }}\n{extra}"),
    )
}

fn errors_of(extra: &str) -> Vec<String> {
    rendered(&compile_err(&upstream_with(extra)))
}

const AT: &str = "payments.yaml:4:9: proxy \"payments\": ";

#[test]
fn every_resilience_field_compiles_with_its_values() {
    let c = compile_ok(&edit(
        &upstream_with(
            "    hashOn: header:x-user\n\
             \x20   maxConcurrentRequests: 100\n\
             \x20   healthCheck:\n\
             \x20     active: { path: /healthz, interval: 2s, timeout: 500ms, healthyThreshold: 1, unhealthyThreshold: 4 }\n\
             \x20     passive: { consecutiveFailures: 3, coolOff: 10s }\n",
        ),
        "loadBalancing: round-robin",
        "loadBalancing: consistent-hash",
    ));
    let u = &c.snapshot.proxy("payments").unwrap().upstream;
    assert_eq!(
        u.hash_on,
        Some(switchyard_engine::runtime::RequestKey::Header(
            http::HeaderName::from_static("x-user")
        ))
    );
    assert_eq!(u.max_concurrent_requests, Some(100));
    let active = u.health.active.as_ref().unwrap();
    assert_eq!(active.path.as_str(), "/healthz");
    assert_eq!(active.interval, std::time::Duration::from_secs(2));
    assert_eq!(active.timeout, std::time::Duration::from_millis(500));
    assert_eq!(
        (active.healthy_threshold, active.unhealthy_threshold),
        (1, 4)
    );
    let passive = u.health.passive.unwrap();
    assert_eq!(passive.consecutive_failures, 3);
    assert_eq!(passive.cool_off, std::time::Duration::from_secs(10));
    assert_eq!(
        u.targets[0].check_uri.as_ref().unwrap().to_string(),
        "http://127.0.0.1:18081/healthz"
    );
}

#[test]
fn health_check_defaults() {
    let c = compile_ok(&upstream_with(
        "    healthCheck: { active: { path: /up }, passive: {} }\n",
    ));
    let u = &c.snapshot.proxy("payments").unwrap().upstream;
    let active = u.health.active.as_ref().unwrap();
    assert_eq!(active.interval, std::time::Duration::from_secs(5));
    assert_eq!(active.timeout, std::time::Duration::from_secs(1));
    assert_eq!(
        (active.healthy_threshold, active.unhealthy_threshold),
        (2, 3)
    );
    let passive = u.health.passive.unwrap();
    assert_eq!(passive.consecutive_failures, 5);
    assert_eq!(passive.cool_off, std::time::Duration::from_secs(30));
    // Without healthCheck: no checks, no limit, no hash key.
    let c = compile_ok(PAYMENTS);
    let u = &c.snapshot.proxy("payments").unwrap().upstream;
    assert!(!u.health.is_enabled());
    assert_eq!(u.max_concurrent_requests, None);
    assert_eq!(u.hash_on, None);
    assert!(u.targets[0].check_uri.is_none());
}

#[test]
fn consistent_hash_needs_hash_on_and_only_it_takes_it() {
    let e = compile_err(&edit(
        PAYMENTS,
        "loadBalancing: round-robin",
        "loadBalancing: consistent-hash",
    ));
    assert_eq!(
        single(&e),
        format!(
            "{AT}spec.upstream.hashOn: required with `loadBalancing: consistent-hash`: \
             client-ip or header:<name>"
        )
    );
    assert_eq!(
        errors_of("    hashOn: client-ip\n"),
        [format!(
            "{AT}spec.upstream.hashOn: only used with `loadBalancing: consistent-hash`"
        )]
    );
    for (value, message) in [
        (
            "cookie:session",
            "invalid value \"cookie:session\": use client-ip or header:<name>",
        ),
        ("\"header:x user\"", "invalid header name \"x user\""),
        // A consumer is a rate-limit key only; header names are taken exactly as written.
        (
            "consumer",
            "invalid value \"consumer\": use client-ip or header:<name>",
        ),
        ("\"header: x-user\"", "invalid header name \" x-user\""),
        ("\"header:\"", "invalid header name \"\""),
    ] {
        let e = compile_err(&edit(
            &upstream_with(&format!("    hashOn: {value}\n")),
            "loadBalancing: round-robin",
            "loadBalancing: consistent-hash",
        ));
        assert_eq!(single(&e), format!("{AT}spec.upstream.hashOn: {message}"));
    }
}

#[test]
fn health_check_fields_are_validated() {
    assert_eq!(
        errors_of("    healthCheck: {}\n"),
        [format!(
            "{AT}spec.upstream.healthCheck: set `active`, `passive` or both \
             (leave healthCheck out for no checks)"
        )]
    );
    assert_eq!(
        errors_of(
            "    healthCheck:\n\
             \x20     active: { path: healthz, interval: 10ms, timeout: 2m, healthyThreshold: 0, unhealthyThreshold: 1001 }\n\
             \x20     passive: { consecutiveFailures: 0, coolOff: 0s }\n"
        ),
        [
            format!(
                "{AT}spec.upstream.healthCheck.active.path: invalid path \"healthz\": \
                 must start with '/', no fragment, spaces or control characters"
            ),
            format!(
                "{AT}spec.upstream.healthCheck.active.interval: 10ms is less than the 100ms minimum"
            ),
            format!("{AT}spec.upstream.healthCheck.active.timeout: 2m is more than the 1m maximum"),
            format!(
                "{AT}spec.upstream.healthCheck.active.healthyThreshold: must be between 1 and 1000"
            ),
            format!(
                "{AT}spec.upstream.healthCheck.active.unhealthyThreshold: must be between 1 and 1000"
            ),
            format!(
                "{AT}spec.upstream.healthCheck.passive.consecutiveFailures: must be between 1 and 1000"
            ),
            format!("{AT}spec.upstream.healthCheck.passive.coolOff: must be greater than 0"),
        ]
    );
    // `path` is required; unknown fields are refused.
    assert!(
        common::parse(&upstream_with(
            "    healthCheck: { active: { interval: 1s } }\n"
        ))
        .is_err()
    );
    assert!(
        common::parse(&upstream_with(
            "    healthCheck: { passive: { failures: 3 } }\n"
        ))
        .is_err()
    );
}

#[test]
fn retry_budget_and_concurrency_limit_are_validated() {
    assert_eq!(
        errors_of("    maxConcurrentRequests: 0\n"),
        [format!(
            "{AT}spec.upstream.maxConcurrentRequests: must be at least 1 (leave it out for no limit)"
        )]
    );
    let with_budget = |budget: &str| {
        edit(
            PAYMENTS,
            "retries: { attempts: 1 }",
            &format!("retries: {{ attempts: 1, budget: {budget} }}"),
        )
    };
    assert_eq!(
        rendered(&compile_err(&with_budget(
            "{ ratio: 1.5, minPerSecond: 10001 }"
        ))),
        [
            format!(
                "{AT}spec.upstream.retries.budget.ratio: 1.5 is not between 0 and 1 \
                 (retries allowed per request)"
            ),
            format!("{AT}spec.upstream.retries.budget.minPerSecond: at most 10000"),
        ]
    );
    assert!(common::parse(&with_budget("{ ratio: 0.1, perSecond: 1 }")).is_err());
    compile_ok(&with_budget("{ ratio: 0, minPerSecond: 0 }"));
    compile_ok(&with_budget("{ ratio: 1 }"));
}

// ---- headers policy ----

#[test]
fn invalid_header_name() {
    let e = compile_err(&edit(PAYMENTS, "x-release: blue", "\"x release\": blue"));
    assert_eq!(
        single(&e),
        "payments.yaml:4:9: proxy \"payments\": spec.policies[0].response.set.x release: \
         invalid header name \"x release\""
    );
    let e = compile_err(&edit(
        PAYMENTS,
        "remove: [x-internal]",
        "remove: [x-internal, \"\"]",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:4:9: proxy \"payments\": spec.policies[0].request.remove[1]: \
         invalid header name \"\""
    );
}

#[test]
fn invalid_header_value() {
    let e = compile_err(&edit(
        PAYMENTS,
        "x-release: blue",
        "x-release: \"blue\\nx-evil: 1\"",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:4:9: proxy \"payments\": spec.policies[0].response.set.x-release: \
         invalid header value \"blue\\nx-evil: 1\""
    );
}

#[test]
fn hop_by_hop_headers_are_refused_in_policies() {
    let e = compile_err(&edit(PAYMENTS, "x-release: blue", "connection: close"));
    assert_eq!(
        single(&e),
        "payments.yaml:4:9: proxy \"payments\": spec.policies[0].response.set.connection: \
         \"connection\" is a hop-by-hop header and cannot be changed by a policy"
    );
    let text = edit(
        PAYMENTS,
        "remove: [x-internal]",
        "remove: [x-internal, Keep-Alive]\n        add: { Transfer-Encoding: chunked, te: trailers }",
    );
    assert_eq!(
        rendered(&compile_err(&text)),
        [
            "payments.yaml:4:9: proxy \"payments\": spec.policies[0].request.add.Transfer-Encoding: \
             \"Transfer-Encoding\" is a hop-by-hop header and cannot be changed by a policy",
            "payments.yaml:4:9: proxy \"payments\": spec.policies[0].request.add.te: \
             \"te\" is a hop-by-hop header and cannot be changed by a policy",
            "payments.yaml:4:9: proxy \"payments\": spec.policies[0].request.remove[1]: \
             \"Keep-Alive\" is a hop-by-hop header and cannot be changed by a policy",
        ]
    );
}

#[test]
fn content_length_is_the_data_planes_and_refused_in_policies() {
    let e = compile_err(&edit(PAYMENTS, "x-release: blue", "content-length: \"5\""));
    assert_eq!(
        single(&e),
        "payments.yaml:4:9: proxy \"payments\": spec.policies[0].response.set.content-length: \
         \"content-length\" is written by the gateway from the body and cannot be changed by a policy"
    );
}

#[test]
fn header_edits_beyond_what_the_data_plane_carries_are_refused() {
    let many: Vec<String> = (0..65).map(|i| format!("x-h{i}: v")).collect();
    let text = edit(
        PAYMENTS,
        "x-release: blue",
        &format!("x-release: blue, {}", many.join(", ")),
    );
    assert_eq!(
        single(&compile_err(&text)),
        "payments.yaml:4:9: proxy \"payments\": spec.policies[0].response: 66 headers added to \
         one message in all; at most 64 fit what HTTP clients and upstreams accept"
    );
    let big = "v".repeat(8 * 1024);
    let text = edit(
        PAYMENTS,
        "x-release: blue",
        &format!("x-release: \"{big}\""),
    );
    assert!(
        single(&compile_err(&text)).contains("spec.policies[0].response: 8201 bytes of headers"),
        "{}",
        compile_err(&text)
    );
}

// ---- several errors ----

#[test]
fn all_errors_of_a_set_are_reported() {
    let a = edit(
        &edit(PAYMENTS, "weight: 1", "weight: 0"),
        "attempts: 1 }",
        "attempts: 11 }",
    );
    let a = edit(&a, "x-release: blue", "connection: close");
    let b = edit(
        &proxy("b", "{path: /b}"),
        "routes:\n    - {path: /b}\n",
        "routes: []\n",
    );
    let c = proxy("c", "{path: b}");
    let e = compile_err(&docs(&[&a, &b, &c]));
    assert_eq!(
        rendered(&e),
        [
            "payments.yaml:14:7: proxy \"payments\": spec.upstream.targets[0].weight: \
             weight must be at least 1",
            "payments.yaml:4:9: proxy \"payments\": spec.upstream.retries.attempts: at most 10",
            "payments.yaml:4:9: proxy \"payments\": spec.policies[0].response.set.connection: \
             \"connection\" is a hop-by-hop header and cannot be changed by a policy",
            "payments.yaml:32:11: proxy \"b\": spec.routes: a proxy needs at least one route",
            "payments.yaml:43:7: proxy \"c\": spec.routes[0].path: \
             invalid path \"b\": must start with '/'",
        ]
    );
    assert_eq!(e.len(), 5);
    // The set renders as one error per line.
    assert_eq!(e.to_string().lines().count(), 5);
}

#[test]
fn absurd_timeouts_are_refused() {
    let text = common::PAYMENTS.replace(
        "connect: 2s, request: 30s",
        "connect: 2s, request: 18446744073709551615ms",
    );
    let e = switchyard_engine::compile(&common::parse(&text).unwrap(), None).unwrap_err();
    assert!(
        e.to_string().contains("spec.upstream.timeouts.request: ")
            && e.to_string().contains("maximum"),
        "{e}"
    );
}

/// PAYMENTS with a rate limit on `key` first in its pipeline (after `prefix` policies).
fn rate_limited(prefix: &str, key: &str) -> String {
    edit(
        PAYMENTS,
        "  policies:\n",
        &format!(
            "  policies:\n{prefix}    - {{ type: rate-limit, key: {key}, limit: 5, per: 1s }}\n"
        ),
    )
}

#[test]
fn rate_limit_keys_read_as_consumer_client_ip_or_a_header() {
    // Rate limits: consumer (after authentication), client-ip, header:<name> with spaces
    // around the name allowed.
    for key in ["client-ip", "header:x-user", "\"header: X-User \""] {
        compile_ok(&rate_limited("", key));
    }
    let api_key = "    - { type: api-key, credentials: [keys] }\n";
    let with_keys = docs(&[
        &rate_limited(api_key, "consumer"),
        "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: { name: keys }\n\
         spec: { type: api-keys, keys: [{ consumer: a, key: k0123456789abcdef }] }\n",
    ]);
    compile_ok(&with_keys);
    for (key, message) in [
        (
            "consumer",
            "`key: consumer` needs an authentication policy (api-key, basic-auth or jwt) \
             earlier in the pipeline",
        ),
        (
            "cookie:session",
            "invalid key \"cookie:session\": use consumer, client-ip or header:<name>",
        ),
        ("\"header:x user\"", "invalid header name \"x user\""),
        ("\"header: \"", "invalid header name \" \""),
    ] {
        let e = compile_err(&rate_limited("", key));
        assert_eq!(
            single(&e),
            format!("{AT}spec.policies[0].key: {message}"),
            "{key}"
        );
    }
    // hashOn: see `consistent_hash_needs_hash_on_and_only_it_takes_it`.
}

#[test]
fn request_keys_are_written_back_as_written() {
    let text = edit(
        &rate_limited("", "\"header: X-User \""),
        "loadBalancing: round-robin",
        "loadBalancing: consistent-hash\n    hashOn: header:X-Session",
    );
    let json = common::parse(&text).unwrap()[0].value.canonical_json();
    assert!(json.contains(r#""key":"header: X-User ""#), "{json}");
    assert!(json.contains(r#""hashOn":"header:X-Session""#), "{json}");
}
