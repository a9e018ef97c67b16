//! The loader and compiler return errors, never panic, whatever the input.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{PAYMENTS, docs, parse};
use http::Method;
use switchyard_config::parse_str;
use switchyard_engine::compile;

/// Parses and compiles `text`, then routes a few requests through the result. Errors are
/// fine; they must just never be empty.
fn exercise(text: &str) {
    let manifests = match parse_str(Arc::from("f.yaml"), text) {
        Ok(m) => m,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    match compile(&manifests, None) {
        Ok(c) => {
            for path in ["/", "/payments", "/payments/x", "", "x", "/é"] {
                for host in [
                    None,
                    Some("api.example.com"),
                    Some("x.example.com:1"),
                    Some("[::1"),
                    Some(":"),
                    Some("é"),
                ] {
                    let _ = c.snapshot.route(host, path, &Method::GET);
                }
            }
            let again = compile(&manifests, Some(&c.snapshot)).unwrap();
            assert!(again.changes.is_empty());
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "\n",
    " ",
    "  ",
    "-",
    "---",
    "...",
    ":",
    "{",
    "}",
    "[",
    "]",
    "#",
    "&a",
    "*a",
    "!!str ",
    "\"",
    "'",
    "|",
    ">",
    "%",
    "?",
    ",",
    "\t",
    "\r",
    "é",
    "0",
    "/",
    "*.",
    "<<: *a\n",
    "\u{FEFF}",
    "\\",
    "weight: 0",
    "path: /x",
    "methods: []",
    "hosts: []",
    "\n---\n",
    "\n...\n",
    "type: headers",
];

#[test]
fn mutated_manifests_never_panic() {
    let base: Vec<char> = docs(&[PAYMENTS, &PAYMENTS.replace("payments", "orders")])
        .chars()
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..1500 {
        let mut s = base.clone();
        for _ in 0..=rng.below(5) {
            let at = rng.below(s.len() + 1);
            if rng.below(3) == 0 {
                let end = (at + rng.below(8)).min(s.len());
                s.drain(at..end);
            } else {
                let piece = PIECES[rng.below(PIECES.len())];
                s.splice(at..at, piece.chars());
            }
        }
        let text: String = s.into_iter().collect();
        let outcome = std::panic::catch_unwind(|| exercise(&text));
        assert!(outcome.is_ok(), "panicked on input:\n{text:?}");
    }
}

#[test]
fn pathological_inputs_are_refused_without_panicking() {
    let header = "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {name: a}\n";
    // Deep flow nesting.
    let deep = format!(
        "{header}spec: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse(&deep).is_err());
    // Deep block nesting.
    let deep: String = (0..5_000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    assert!(parse(&deep).is_err());
    // Alias expansion bomb.
    let mut bomb = String::from("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n");
    for i in 1..12 {
        bomb += &format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(",")
        );
    }
    assert!(parse(&bomb).is_err());
    // Unknown anchors, odd scalars and markers.
    for text in [
        "a: *nope\n",
        "!!binary x\n",
        "---\n---\n...\n...\n",
        "%YAML 1.2\n",
        "\u{FEFF}",
        "\0",
    ] {
        exercise(text);
    }
}

#[test]
fn extreme_numbers_are_handled() {
    let upstream = |u: &str| {
        format!(
            "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{name: a}}\n\
             spec:\n  routes: [{{path: /}}]\n  upstream: {u}\n"
        )
    };
    // Largest weights: the weighted schedule is scaled down, not overflowed.
    let text = upstream(
        "{loadBalancing: weighted, targets: [{url: 'http://a', weight: 4294967295}, \
         {url: 'http://b', weight: 4294967294}]}",
    );
    let c = compile(&parse(&text).unwrap(), None).unwrap();
    let u = &c.snapshot.proxy("a").unwrap().upstream;
    assert!(matches!(
        u.pick(Default::default(), 0, std::time::Instant::now()),
        switchyard_engine::runtime::Pick::Target(_)
    ));
    // Durations that overflow are refused; the largest representable one is accepted.
    let text =
        upstream("{timeouts: {connect: 99999999999999999999s}, targets: [{url: 'http://a'}]}");
    assert!(parse(&text).is_err());
    let text =
        upstream("{timeouts: {connect: 18446744073709551615ms}, targets: [{url: 'http://a'}]}");
    assert!(parse(&text).is_ok());
}
