//! `kind: Environment` `spec.gateway`: compiled into the snapshot (hot), from the one
//! document that defines it, checked, and reset to the defaults when it goes.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{compile_err, compile_ok, docs, parse, proxy, rendered};
use switchyard_config::Kind;
use switchyard_config::manifest::EncodedSlashes;
use switchyard_engine::compile::Numbering;
use switchyard_engine::runtime::Gateway;
use switchyard_engine::{compile, compile_changes};

fn environment(name: &str, gateway: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n  variables: {{ A: b }}\n{gateway}"
    )
}

const SETTINGS: &str = "  gateway:\n    paths: { mergeSlashes: false, encodedSlashes: keep }\n    timeouts: { idle: 5s, requestBodyIdle: 2s }\n";

#[test]
fn settings_come_from_the_environment_document_and_default_without_one() {
    let plain = compile_ok(&proxy("a", "{path: /a}"));
    assert_eq!(**plain.snapshot.gateway(), Gateway::default());
    assert!(plain.snapshot.gateway().paths.merge_slashes);
    assert_eq!(
        plain.snapshot.gateway().timeouts.idle,
        Duration::from_secs(60)
    );

    let set = compile_ok(&docs(&[
        &proxy("a", "{path: /a}"),
        &environment("dev", SETTINGS),
    ]));
    let g = set.snapshot.gateway();
    assert!(!g.paths.merge_slashes);
    assert_eq!(g.paths.encoded_slashes, EncodedSlashes::Keep);
    assert_eq!(g.timeouts.idle, Duration::from_secs(5));
    assert_eq!(g.timeouts.request_body_idle, Duration::from_secs(2));
    assert_eq!(
        g.timeouts.send,
        Duration::from_secs(60),
        "unset: the default"
    );
}

#[test]
fn a_settings_change_alone_is_a_new_revision_and_its_removal_restores_the_defaults() {
    let first = parse(&docs(&[&proxy("a", "{path: /a}"), &environment("dev", "")])).unwrap();
    let s1 = compile(&first, None).unwrap().snapshot;
    // Variables only: nothing served changes, no new revision.
    let same = parse(&docs(&[
        &proxy("a", "{path: /a}"),
        &environment("dev", "").replace("A: b", "A: c"),
    ]))
    .unwrap();
    assert_eq!(
        compile(&same, Some(&s1)).unwrap().snapshot.revision,
        s1.revision
    );

    let with = parse(&docs(&[
        &proxy("a", "{path: /a}"),
        &environment("dev", SETTINGS),
    ]))
    .unwrap();
    let s2 = compile(&with, Some(&s1)).unwrap().snapshot;
    assert_eq!(
        s2.revision,
        s1.revision + 1,
        "gateway settings are served: a swap"
    );
    assert!(!s2.gateway().paths.merge_slashes);
    assert!(
        std::sync::Arc::ptr_eq(s1.proxy("a").unwrap(), s2.proxy("a").unwrap()),
        "proxies are shared"
    );

    // Delta (Manager mode): the Environment deleted → defaults.
    let s3 = compile_changes(
        &s2,
        &[],
        &[(Kind::Environment, "dev")],
        &Numbering::default(),
    )
    .unwrap()
    .snapshot;
    assert_eq!(**s3.gateway(), Gateway::default());
    assert_eq!(s3.revision, s2.revision + 1);
    // Full set without it: the same.
    let without = parse(&proxy("a", "{path: /a}")).unwrap();
    assert_eq!(
        **compile(&without, Some(&s2)).unwrap().snapshot.gateway(),
        Gateway::default()
    );
}

#[test]
fn bad_settings_name_the_field_and_two_definitions_are_refused() {
    let e = compile_err(&environment(
        "dev",
        "  gateway:\n    timeouts: { idle: 10ms }\n",
    ));
    assert_eq!(
        rendered(&e),
        [
            "payments.yaml:4:9: environment \"dev\": spec.gateway.timeouts.idle: 10ms is out of range: use 100ms to 24h"
        ]
    );
    let e = compile_err(&docs(&[
        &environment("dev", SETTINGS),
        &environment("prod", SETTINGS),
    ]));
    assert!(
        rendered(&e)[0].contains(
            "environment \"prod\": spec.gateway: gateway settings are already defined by kind: Environment \"dev\""
        ),
        "{e}"
    );
    // Other environments' documents without settings are fine beside it.
    compile_ok(&docs(&[
        &environment("dev", SETTINGS),
        &environment("prod", ""),
    ]));
    // Unknown fields are refused at parse time.
    assert!(
        parse(&environment(
            "dev",
            "  gateway:\n    paths: { mergeSlash: true }\n"
        ))
        .is_err()
    );
}

#[test]
fn the_connection_limit_is_optional_and_bounded() {
    let set = compile_ok(&docs(&[
        &proxy("a", "{path: /a}"),
        &environment("dev", "  gateway:\n    connections: { max: 200 }\n"),
    ]));
    assert_eq!(set.snapshot.gateway().max_connections, Some(200));
    assert_eq!(Gateway::default().max_connections, None);
    for bad in ["0", "10000001"] {
        let e = compile_err(&environment(
            "dev",
            &format!("  gateway:\n    connections: {{ max: {bad} }}\n"),
        ));
        assert_eq!(
            rendered(&e),
            [format!(
                "payments.yaml:4:9: environment \"dev\": spec.gateway.connections.max: {bad} is out of range: use 1 to 10000000"
            )]
        );
    }
}
