//! Shared inputs and helpers for the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use switchyard_config::{ConfigErrors, Located, Manifest, parse_str};

use switchyard_engine::{Compiled, compile};

/// The example from the issue, as `payments.yaml`. Line numbers used by the tests:
/// 4 `name`, 8 the route, 13 `targets`, 14 the first target's `url`, 17 `timeouts`,
/// 18 `retries`, 20 the policy's `type`. 25 lines.
pub const PAYMENTS: &str = r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata:
  name: payments
  labels: { owner: payments-team }
spec:
  routes:
    - pathPrefix: /payments        # longest prefix wins; also `path` for exact
      hosts: [api.example.com]     # optional, `*.example.com` allowed; absent = any host
      methods: [GET, POST]         # optional; absent = any
      stripPrefix: false
  upstream:
    targets:
      - url: http://127.0.0.1:18081
        weight: 1
    loadBalancing: round-robin     # also least-requests, weighted
    timeouts: { connect: 2s, request: 30s }
    retries: { attempts: 1 }       # only on connect failure, to another target
  policies:
    - type: headers
      response:
        set: { x-release: blue }
      request:
        set: { x-from-gateway: "yes" }
        remove: [x-internal]
"#;

pub const FILE: &str = "payments.yaml";

/// `text` with the one occurrence of `from` replaced by `to`; fails if `from` is not there
/// exactly once, so an edit can never silently do nothing.
pub fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must occur exactly once"
    );
    text.replacen(from, to, 1)
}

/// A small proxy in 10 lines; `route` is a flow mapping written at line 7, column 7.
pub fn proxy(name: &str, route: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\n\
         kind: Proxy\n\
         metadata:\n  \
           name: {name}\n\
         spec:\n  \
           routes:\n    \
             - {route}\n  \
           upstream:\n    \
             targets:\n      \
               - url: http://127.0.0.1:9000\n"
    )
}

/// Documents joined into one multi-document file.
pub fn docs(parts: &[&str]) -> String {
    parts.join("---\n")
}

pub fn parse(text: &str) -> Result<Vec<Located<Manifest>>, ConfigErrors> {
    parse_str(Arc::from(FILE), text)
}

/// The errors of a text that must fail to parse.
pub fn parse_err(text: &str) -> ConfigErrors {
    match parse(text) {
        Ok(m) => panic!("expected a parse error, got {} manifests", m.len()),
        Err(e) => e,
    }
}

pub fn compile_ok(text: &str) -> Compiled {
    compile(&parse(text).unwrap(), None).unwrap()
}

/// The errors of a text that parses but must fail to compile.
pub fn compile_err(text: &str) -> ConfigErrors {
    let manifests = match parse(text) {
        Ok(m) => m,
        Err(e) => panic!("expected the text to parse, got:\n{e}"),
    };
    match compile(&manifests, None) {
        Ok(_) => panic!("expected a compile error"),
        Err(e) => e,
    }
}

/// Every error of a set, rendered.
pub fn rendered(e: &ConfigErrors) -> Vec<String> {
    e.0.iter().map(ToString::to_string).collect()
}

/// The only error of a set, rendered; fails if there are several.
pub fn single(e: &ConfigErrors) -> String {
    assert_eq!(e.len(), 1, "expected exactly one error, got:\n{e}");
    e.0[0].to_string()
}
