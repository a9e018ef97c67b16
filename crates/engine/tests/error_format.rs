//! `spec.errors` of a proxy: a tagged setting, checked when parsed, compiled into the
//! proxy (and absent from its canonical form when not set, so existing digests hold).
#![allow(clippy::unwrap_used)]

mod common;

use common::{compile_ok, parse, proxy};
use switchyard_engine::runtime::ErrorFormat;

fn with_errors(errors: &str) -> String {
    format!(
        "{}  errors: {errors}\n",
        proxy("chat", "{pathPrefix: /v1/chat}")
    )
}

#[test]
fn the_format_is_compiled_into_the_proxy() {
    let plain = compile_ok(&proxy("chat", "{pathPrefix: /v1/chat}"));
    assert_eq!(
        plain.snapshot.proxy("chat").unwrap().errors,
        ErrorFormat::Switchyard
    );
    let openai = compile_ok(&with_errors("{ format: openai }"));
    assert_eq!(
        openai.snapshot.proxy("chat").unwrap().errors,
        ErrorFormat::OpenAi
    );
    let explicit = compile_ok(&with_errors("{ format: switchyard }"));
    assert_eq!(
        explicit.snapshot.proxy("chat").unwrap().errors,
        ErrorFormat::Switchyard
    );
}

#[test]
fn unset_keeps_the_canonical_form_and_bad_values_are_refused() {
    let plain = parse(&proxy("chat", "{pathPrefix: /v1/chat}")).unwrap();
    assert!(!plain[0].value.canonical_json().contains("errors"));
    let set = parse(&with_errors("{ format: openai }")).unwrap();
    assert!(
        set[0]
            .value
            .canonical_json()
            .contains(r#""errors":{"format":"openai"}"#)
    );
    for bad in [
        "{ format: xml }",
        "{ format: openai, extra: 1 }",
        "{}",
        "openai",
    ] {
        let e = parse(&with_errors(bad)).unwrap_err().to_string();
        assert!(e.contains("spec.errors"), "{bad}: {e}");
    }
}
