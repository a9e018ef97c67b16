//! Parse errors name the file, the file-relative line and column, the proxy, the field path
//! and what is wrong.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::{FILE, PAYMENTS, docs, edit, parse, parse_err, proxy, single};
use switchyard_config::load_path;

#[test]
fn bad_duration() {
    let e = parse_err(&edit(PAYMENTS, "connect: 2s", "connect: 2 s"));
    assert_eq!(
        single(&e),
        "payments.yaml:17:26: proxy \"payments\": spec.upstream.timeouts.connect: \
         invalid duration \"2 s\": expected a number followed by a unit (ms, s, m, h), \
         e.g. \"2s\" or \"1m30s\""
    );
    let first = e.first().unwrap();
    assert_eq!(&*first.file, FILE);
    assert_eq!(first.document, 1);
    assert_eq!((first.position.line, first.position.column), (17, 26));
    assert_eq!(first.entity.as_deref(), Some("proxy \"payments\""));
    assert_eq!(first.field, "spec.upstream.timeouts.connect");
}

#[test]
fn unknown_field_in_a_target() {
    let e = parse_err(&edit(
        PAYMENTS,
        "weight: 1\n",
        "weight: 1\n        wieght: 2\n",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:16:9: proxy \"payments\": spec.upstream.targets[0].wieght: \
         unknown field `wieght`, expected one of url, weight"
    );
}

#[test]
fn unknown_field_at_the_top_of_spec() {
    let e = parse_err(&edit(
        PAYMENTS,
        "  policies:\n",
        "  polices: []\n  policies:\n",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:19:3: proxy \"payments\": spec.polices: \
         unknown field `polices`, expected one of routes, upstream, policies, errors, httpsRedirect"
    );
}

#[test]
fn unknown_policy_type() {
    let e = parse_err(&edit(PAYMENTS, "type: headers", "type: header"));
    assert_eq!(
        single(&e),
        "payments.yaml:20:13: proxy \"payments\": spec.policies[0].type: \
         unknown variant `header`, expected one of headers, api-key, basic-auth, jwt, mtls-auth, ip-filter, rate-limit, request-size, cors, prompt-firewall, mock-response, upstream-credential"
    );
}

#[test]
fn unknown_field_inside_a_policy() {
    let e = parse_err(&edit(
        PAYMENTS,
        "    - type: headers\n",
        "    - type: headers\n      bogus: 1\n",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:21:7: proxy \"payments\": spec.policies[0].bogus: \
         unknown field `bogus`, expected one of request, response"
    );
}

#[test]
fn unknown_field_nested_in_a_policy() {
    let e = parse_err(&edit(
        PAYMENTS,
        "set: { x-from-gateway",
        "sett: { x-from-gateway",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:24:9: proxy \"payments\": spec.policies[0].request.sett: \
         unknown field `sett`, expected one of set, add, remove"
    );
}

#[test]
fn policy_type_may_come_last() {
    let text = edit(
        PAYMENTS,
        "    - type: headers\n      response:",
        "    - response:",
    );
    let text = edit(
        &text,
        "remove: [x-internal]\n",
        "remove: [x-internal]\n      type: headers\n",
    );
    let m = parse(&text).unwrap();
    assert_eq!(m.len(), 1);
    let bad = edit(&text, "type: headers", "type: headerz");
    assert_eq!(
        single(&parse_err(&bad)),
        "payments.yaml:25:13: proxy \"payments\": spec.policies[0].type: \
         unknown variant `headerz`, expected one of headers, api-key, basic-auth, jwt, mtls-auth, ip-filter, rate-limit, request-size, cors, prompt-firewall, mock-response, upstream-credential"
    );
}

#[test]
fn policy_values_read_the_same_whatever_the_key_order() {
    let first = edit(PAYMENTS, "x-release: blue", "x-release: 5");
    let last = edit(
        &edit(
            &first,
            "    - type: headers\n      response:",
            "    - response:",
        ),
        "remove: [x-internal]\n",
        "remove: [x-internal]\n      type: headers\n",
    );
    for text in [first, last] {
        let m = parse(&text).unwrap();
        let switchyard_config::Manifest::Proxy(p) = &m[0].value else {
            panic!("not a proxy")
        };
        let switchyard_config::manifest::PolicySpec::Headers(h) = &p.spec.policies[0] else {
            panic!("not a headers policy")
        };
        assert_eq!(h.response.set["x-release"], "5");
    }
}

#[test]
fn policy_without_type() {
    let e = parse_err(&edit(
        PAYMENTS,
        "    - type: headers\n",
        "    - {}\n    - type: headers\n",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:20:7: proxy \"payments\": spec.policies[0]: missing field `type`"
    );
}

#[test]
fn unsupported_url_scheme() {
    let e = parse_err(&edit(
        PAYMENTS,
        "http://127.0.0.1:18081",
        "ftp://files.example.com",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:14:14: proxy \"payments\": spec.upstream.targets[0].url: \
         invalid URL \"ftp://files.example.com\": unsupported scheme \"ftp\", expected http or https"
    );
}

#[test]
fn url_without_scheme() {
    let e = parse_err(&edit(PAYMENTS, "http://127.0.0.1:18081", "127.0.0.1:18081"));
    assert_eq!(
        single(&e),
        "payments.yaml:14:14: proxy \"payments\": spec.upstream.targets[0].url: \
         invalid URL \"127.0.0.1:18081\": missing scheme, expected e.g. http://10.0.0.1:8080"
    );
}

#[test]
fn url_with_query_or_without_host() {
    let e = parse_err(&edit(PAYMENTS, "http://127.0.0.1:18081", "http://a/b?c=1"));
    assert_eq!(
        single(&e),
        "payments.yaml:14:14: proxy \"payments\": spec.upstream.targets[0].url: \
         invalid URL \"http://a/b?c=1\": a target URL cannot carry a query"
    );
    let e = parse_err(&edit(PAYMENTS, "http://127.0.0.1:18081", "http://:80"));
    assert_eq!(
        single(&e),
        "payments.yaml:14:14: proxy \"payments\": spec.upstream.targets[0].url: \
         invalid URL \"http://:80\": missing host"
    );
}

#[test]
fn unknown_load_balancing() {
    let e = parse_err(&edit(
        PAYMENTS,
        "loadBalancing: round-robin",
        "loadBalancing: random",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:16:20: proxy \"payments\": spec.upstream.loadBalancing: \
         unknown variant `random`, expected one of round-robin, least-requests, weighted, consistent-hash"
    );
}

#[test]
fn wrong_scalar_type() {
    let e = parse_err(&edit(PAYMENTS, "attempts: 1 }", "attempts: -1 }"));
    assert_eq!(
        single(&e),
        "payments.yaml:18:26: proxy \"payments\": spec.upstream.retries.attempts: invalid u32"
    );
    let e = parse_err(&edit(PAYMENTS, "  routes:\n", "  routes: 3\n  x:\n"));
    assert_eq!(
        single(&e),
        "payments.yaml:7:11: proxy \"payments\": spec.routes: expected sequence start"
    );
}

#[test]
fn yaml_syntax_error_broken_indentation() {
    // `upstream` indented by 3 instead of 2: the parser cannot place the key.
    let e = parse_err(&edit(PAYMENTS, "  upstream:\n", "   upstream:\n"));
    assert_eq!(
        single(&e),
        "payments.yaml:12:4: document 1: spec: \
         while parsing a block mapping, did not find expected key"
    );
    // A route key dedented out of its list item.
    let e = parse_err(&edit(PAYMENTS, "      hosts:", "     hosts:"));
    assert_eq!(
        single(&e),
        "payments.yaml:9:6: document 1: spec.routes: \
         while parsing a block collection, did not find expected '-' indicator"
    );
}

#[test]
fn yaml_syntax_error_unclosed_flow() {
    let e = parse_err(&edit(PAYMENTS, "request: 30s }", "request: 30s"));
    assert_eq!(
        single(&e),
        "payments.yaml:18:12: document 1: spec.upstream.timeouts: \
         while parsing a flow mapping, did not find expected ',' or '}'"
    );
    let e = parse_err(&edit(PAYMENTS, "[GET, POST]", "[GET, POST"));
    assert_eq!(
        single(&e),
        "payments.yaml:11:18: document 1: spec.routes[0].methods: \
         illegal placement of ':' indicator"
    );
}

#[test]
fn yaml_syntax_error_tab_and_duplicate_key() {
    let e = parse_err(&edit(
        PAYMENTS,
        "  upstream:\n",
        "  upstream:\n    retries: {}\n",
    ));
    assert_eq!(
        single(&e),
        "payments.yaml:19:5: document 1: spec.upstream: \
         duplicate mapping key: retries, set DuplicateKeyPolicy in Options if acceptable"
    );
    let e = parse_err(&edit(PAYMENTS, "  upstream:", "\tupstream:"));
    assert_eq!(
        single(&e),
        "payments.yaml:11:20: document 1: spec.routes[0]: while scanning a plain scalar, found a tab"
    );
}

#[test]
fn document_that_is_not_a_mapping() {
    for text in ["hello\n", "- a\n- b\n", "42\n", "----\n"] {
        assert_eq!(
            single(&parse_err(text)),
            "payments.yaml:1:1: document 1: expected mapping start",
            "{text:?}"
        );
    }
    let e = parse_err(&docs(&[PAYMENTS, "- a\n"]));
    assert_eq!(
        single(&e),
        "payments.yaml:27:1: document 2: expected mapping start"
    );
}

#[test]
fn missing_kind() {
    let e = parse_err(&edit(PAYMENTS, "kind: Proxy\n", ""));
    assert_eq!(
        single(&e),
        "payments.yaml:1:1: document 1: missing field `kind`"
    );
    let text = docs(&[
        PAYMENTS,
        "# no kind here\n\n  apiVersion: switchyard.dev/v1\n",
    ]);
    assert_eq!(
        single(&parse_err(&text)),
        "payments.yaml:29:3: document 2: missing field `kind`"
    );
}

#[test]
fn unknown_kind() {
    let e = parse_err(&edit(PAYMENTS, "kind: Proxy", "kind: Gateway"));
    assert_eq!(
        single(&e),
        "payments.yaml:2:7: document 1: kind: unknown kind \"Gateway\", expected one of: Proxy, Credential, Environment, Certificate, WorkerSettings, Listener"
    );
    // Kinds are case-sensitive.
    let e = parse_err(&edit(PAYMENTS, "kind: Proxy", "kind: proxy"));
    assert_eq!(
        single(&e),
        "payments.yaml:2:7: document 1: kind: unknown kind \"proxy\", expected one of: Proxy, Credential, Environment, Certificate, WorkerSettings, Listener"
    );
}

#[test]
fn wrong_api_version() {
    let e = parse_err(&edit(PAYMENTS, "switchyard.dev/v1", "switchyard.dev/v2"));
    assert_eq!(
        single(&e),
        "payments.yaml:1:13: proxy \"payments\": apiVersion: \
         unsupported apiVersion \"switchyard.dev/v2\", expected \"switchyard.dev/v1\""
    );
    let e = parse_err(&edit(PAYMENTS, "apiVersion: switchyard.dev/v1\n", ""));
    assert_eq!(
        single(&e),
        "payments.yaml:1:1: proxy \"payments\": \
         missing field `apiVersion` (expected \"switchyard.dev/v1\")"
    );
}

#[test]
fn bad_metadata_name() {
    let e = parse_err(&edit(PAYMENTS, "name: payments", "name: {a: 1}"));
    assert_eq!(
        single(&e),
        "payments.yaml:4:9: document 1: metadata.name: expected string scalar"
    );
}

#[test]
fn non_utf8_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"apiVersion: switchyard.dev/v1\nkind: Pr\xffoxy\n")
        .unwrap();
    drop(f);
    let e = load_path(&path).unwrap_err();
    assert_eq!(
        single(&e),
        format!(
            "{}:2:9: not UTF-8 text (invalid byte at offset 38)",
            path.display()
        )
    );
    // The same through the directory walk.
    let e = load_path(dir.path()).unwrap_err();
    assert_eq!(
        single(&e),
        format!(
            "{}:2:9: not UTF-8 text (invalid byte at offset 38)",
            path.display()
        )
    );
}

#[test]
fn error_in_second_document_has_file_relative_line() {
    let orders = edit(
        &PAYMENTS.replace("payments", "orders"),
        "connect: 2s",
        "connect: 2 s",
    );
    // PAYMENTS is 25 lines, `---` is line 26: the second document's line 17 is line 43.
    let e = parse_err(&docs(&[PAYMENTS, &orders]));
    let err = e.first().unwrap();
    assert_eq!(err.document, 2);
    assert_eq!(
        single(&e),
        "payments.yaml:43:26: proxy \"orders\": spec.upstream.timeouts.connect: \
         invalid duration \"2 s\": expected a number followed by a unit (ms, s, m, h), \
         e.g. \"2s\" or \"1m30s\""
    );
}

#[test]
fn errors_in_several_documents_are_all_reported() {
    let a = edit(&proxy("a", "{path: /a}"), "http://", "ftp://");
    let b = edit(&proxy("b", "{path: /b}"), "kind: Proxy\n", "");
    let c = proxy("c", "{path: /c}");
    let d = edit(&proxy("d", "{path: /d}"), "routes:", "rutes:");
    let e = parse_err(&docs(&[&a, &b, &c, &d]));
    assert_eq!(
        common::rendered(&e),
        [
            "payments.yaml:10:14: proxy \"a\": spec.upstream.targets[0].url: \
             invalid URL \"ftp://127.0.0.1:9000\": unsupported scheme \"ftp\", expected http or https",
            "payments.yaml:12:1: document 2: missing field `kind`",
            "payments.yaml:38:3: proxy \"d\": spec.rutes: \
             unknown field `rutes`, expected one of routes, upstream, policies, errors, httpsRedirect",
        ]
    );
}
