//! Splitting a file into documents: markers, comments, empty documents, directives, and
//! positions that stay relative to the file.
#![allow(clippy::unwrap_used)]

mod common;

use common::{PAYMENTS, docs, edit, parse, parse_err, proxy, single};
use switchyard_config::{Located, Manifest};

/// `(document index, line offset, name)` of each parsed manifest.
fn layout(m: &[Located<Manifest>]) -> Vec<(usize, u32, String)> {
    m.iter()
        .map(|l| {
            (
                l.source.document,
                l.source.line_offset,
                l.value.name().to_string(),
            )
        })
        .collect()
}

#[test]
fn documents_separated_by_markers() {
    let text = docs(&[&proxy("a", "{path: /a}"), &proxy("b", "{path: /b}")]);
    let m = parse(&text).unwrap();
    assert_eq!(layout(&m), [(1, 0, "a".into()), (2, 10, "b".into())]);
}

#[test]
fn leading_comments_before_the_first_marker_belong_to_the_first_document() {
    let text = format!("# Payments team\n# owner: someone\n---\n{PAYMENTS}");
    let m = parse(&text).unwrap();
    assert_eq!(layout(&m), [(1, 0, "payments".into())]);

    let bad = edit(&text, "connect: 2s", "connect: 2 s");
    let e = parse_err(&bad);
    assert_eq!(e.first().unwrap().document, 1);
    assert!(
        single(&e).starts_with(
            "payments.yaml:20:26: proxy \"payments\": spec.upstream.timeouts.connect: "
        ),
        "{e}"
    );

    // An error without a known proxy names document 1, not a phantom document 2.
    assert_eq!(
        single(&parse_err("# just a comment\n---\nhello\n")),
        "payments.yaml:3:1: document 1: expected mapping start"
    );
}

#[test]
fn comments_between_documents() {
    let text = format!(
        "{}---\n# the orders proxy\n# follows\n{}",
        proxy("a", "{path: /a}"),
        proxy("b", "{path: /b}")
    );
    let m = parse(&text).unwrap();
    assert_eq!(layout(&m), [(1, 0, "a".into()), (2, 10, "b".into())]);
    let bad = edit(&text, "name: b", "name: {}");
    assert_eq!(
        single(&parse_err(&bad)),
        "payments.yaml:17:9: document 2: metadata.name: expected string scalar"
    );
}

#[test]
fn empty_documents_are_skipped() {
    let text = format!(
        "---\n---\n# only a comment\n---\n{}---\n\n---\n{}---\n...\n",
        proxy("a", "{path: /a}"),
        proxy("b", "{path: /b}")
    );
    let m = parse(&text).unwrap();
    // Empty documents still count, as in YAML: `a` is the third document of the file.
    assert_eq!(layout(&m), [(3, 3, "a".into()), (5, 16, "b".into())]);
    let bad = edit(&text, "name: b", "name: {}");
    assert_eq!(
        single(&parse_err(&bad)),
        "payments.yaml:21:9: document 5: metadata.name: expected string scalar"
    );
}

#[test]
fn files_with_nothing_in_them() {
    for text in [
        "",
        "\n\n",
        "# nothing\n",
        "---\n",
        "---\n# c\n...\n",
        "   \n\t\n",
    ] {
        assert_eq!(parse(text).unwrap().len(), 0, "{text:?}");
    }
}

#[test]
fn document_end_markers() {
    let text = format!(
        "{}...\n# next\n---\n{}...\n",
        proxy("a", "{path: /a}"),
        proxy("b", "{path: /b}")
    );
    let m = parse(&text).unwrap();
    assert_eq!(layout(&m), [(1, 0, "a".into()), (2, 11, "b".into())]);
    let bad = edit(&text, "name: b", "name: {}");
    assert_eq!(
        single(&parse_err(&bad)),
        "payments.yaml:17:9: document 2: metadata.name: expected string scalar"
    );
    // A document ended by `...` and the next one started without `---`.
    let text = format!(
        "{}...\n{}",
        proxy("a", "{path: /a}"),
        proxy("b", "{path: /b}")
    );
    assert_eq!(
        layout(&parse(&text).unwrap()),
        [(1, 0, "a".into()), (2, 11, "b".into())]
    );
}

#[test]
fn marker_with_a_comment_and_explicit_first_marker() {
    let text = format!(
        "--- # a\n{}--- # b\n{}",
        proxy("a", "{path: /a}"),
        proxy("b", "{path: /b}")
    );
    let m = parse(&text).unwrap();
    assert_eq!(layout(&m), [(1, 0, "a".into()), (2, 11, "b".into())]);
}

#[test]
fn directives_before_the_first_marker() {
    let text = format!("%YAML 1.2\n---\n{PAYMENTS}");
    let m = parse(&text).unwrap();
    assert_eq!(layout(&m), [(1, 0, "payments".into())]);
    let bad = edit(&text, "weight: 1", "wieght: 1");
    assert_eq!(
        single(&parse_err(&bad)),
        "payments.yaml:17:9: proxy \"payments\": spec.upstream.targets[0].wieght: \
         unknown field `wieght`, expected one of url, weight"
    );
}

#[test]
fn markers_inside_content_do_not_split() {
    // Only `---` at column 0 followed by a space or the end of line is a marker.
    let text = edit(
        PAYMENTS,
        "labels: { owner: payments-team }",
        "labels: { owner: payments-team, note: \"--- not a marker\", x: ----- }",
    );
    let m = parse(&text).unwrap();
    assert_eq!(layout(&m), [(1, 0, "payments".into())]);
    let Manifest::Proxy(p) = &m[0].value else {
        panic!("not a proxy")
    };
    assert_eq!(p.metadata.labels["note"], "--- not a marker");
    assert_eq!(p.metadata.labels["x"], "-----");
}

#[test]
fn byte_order_mark_and_crlf() {
    let text = format!("\u{FEFF}# c\n---\n{PAYMENTS}");
    assert_eq!(layout(&parse(&text).unwrap()), [(1, 0, "payments".into())]);

    let crlf = docs(&[PAYMENTS, PAYMENTS]).replace("payments\n", "orders\n");
    let crlf = crlf
        .replacen("orders\n", "payments\n", 1)
        .replace('\n', "\r\n");
    let m = parse(&crlf).unwrap();
    assert_eq!(
        layout(&m),
        [(1, 0, "payments".into()), (2, 25, "orders".into())]
    );
    let bad =
        crlf.replacen("connect: 2s", "connect: 2 s", 2)
            .replacen("connect: 2 s", "connect: 2s", 1);
    assert!(
        single(&parse_err(&bad))
            .starts_with("payments.yaml:43:26: proxy \"orders\": spec.upstream.timeouts.connect: ")
    );
}
