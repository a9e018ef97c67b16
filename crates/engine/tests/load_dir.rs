//! Loading a directory: recursive, sorted, and only real manifest files.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{proxy, rendered};
use switchyard_config::load::manifest_files;
use switchyard_config::load_path;
use switchyard_engine::compile;

fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// A directory with manifests to load and files that must be skipped. Every skipped file
/// holds invalid YAML, so loading it by mistake would fail the load.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "b.yaml", &proxy("b", "{path: /b}"));
    write(root, "a.yml", &proxy("a", "{path: /a}"));
    write(root, "sub/c.yaml", &proxy("c", "{path: /c}"));
    write(root, "sub/deeper/d.yaml", &proxy("d", "{path: /d}"));
    write(root, "aa/e.yaml", &proxy("e", "{path: /e}"));
    let junk = "{ not: [valid\n";
    for skipped in [
        ".hidden.yaml",
        "b.yaml~",
        "notes.txt",
        "README.md",
        "b.yaml.bak",
        "b.yaml.swp",
        "yaml",
        ".git/config.yaml",
        "sub/.c.yaml.tmp1234",
        "sub/.#c.yaml",
        "sub/c.yaml~",
        ".hidden-dir/f.yaml",
    ] {
        write(root, skipped, junk);
    }
    dir
}

#[test]
fn lists_yaml_files_recursively_in_sorted_order() {
    let dir = tree();
    let files: Vec<PathBuf> = manifest_files(dir.path())
        .unwrap()
        .into_iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf())
        .collect();
    let expected: Vec<PathBuf> = [
        "a.yml",
        "aa/e.yaml",
        "b.yaml",
        "sub/c.yaml",
        "sub/deeper/d.yaml",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(files, expected);
}

#[test]
fn loads_manifests_in_file_order_and_names_their_files() {
    let dir = tree();
    let manifests = load_path(dir.path()).unwrap();
    let got: Vec<(String, String)> = manifests
        .iter()
        .map(|m| {
            let file = Path::new(&*m.source.file).strip_prefix(dir.path()).unwrap();
            (m.value.name().to_string(), file.display().to_string())
        })
        .collect();
    let expected = [
        ("a", "a.yml"),
        ("e", "aa/e.yaml"),
        ("b", "b.yaml"),
        ("c", "sub/c.yaml"),
        ("d", "sub/deeper/d.yaml"),
    ]
    .map(|(n, f)| (n.to_string(), f.to_string()));
    assert_eq!(got, expected);
    assert_eq!(compile(&manifests, None).unwrap().snapshot.proxy_count(), 5);
}

#[test]
fn errors_in_several_files_are_all_reported_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let z = write(dir.path(), "z.yaml", "kind: Proxy\n");
    write(dir.path(), "m.yaml", &proxy("m", "{path: /m}"));
    let a = write(dir.path(), "a.yaml", "---\nhello\n");
    let e = load_path(dir.path()).unwrap_err();
    assert_eq!(
        rendered(&e),
        [
            format!("{}:2:1: document 1: expected mapping start", a.display()),
            format!(
                "{}:1:1: document 1: missing field `apiVersion` (expected \"switchyard.dev/v1\")",
                z.display()
            ),
        ]
    );
}

#[test]
fn an_explicitly_named_file_is_always_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "proxy.txt", &proxy("a", "{path: /a}"));
    let manifests = load_path(&path).unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(&*manifests[0].source.file, path.display().to_string());
}

#[test]
fn empty_directory_has_no_manifests() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load_path(dir.path()).unwrap().is_empty());
    let c = compile(&[], None).unwrap();
    assert!(c.snapshot.proxy_count() == 0);
    assert!(c.changes.is_empty());
    assert_eq!(c.snapshot.revision, 0);
}

#[test]
fn missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope");
    let e = load_path(&path).unwrap_err();
    let err = e.first().unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(&*err.file, path.display().to_string());
    assert_eq!((err.document, err.position.line), (0, 0));
    assert!(err.message.starts_with("cannot read: "), "{}", err.message);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read: ", path.display()))
    );
}
