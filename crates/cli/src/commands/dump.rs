//! `switchyard dump --env ENV [--dir DIR]`: the environment's live entities as YAML
//! manifests that `switchyard apply` takes back unchanged (a plan of the dump shows no
//! changes). Secret values are never written: each becomes an `${env:SWITCHYARD_…}`
//! reference (`switchyard_config::manifest::reference_secrets`), and the variables the dump
//! refers to are listed on stderr.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::{Serialize, Serializer};
use switchyard_api::admin::EntityView;
use switchyard_config::manifest::{SecretReference, reference_secrets};

use crate::conn::ConnArgs;
use crate::manager_error::Explain;

#[derive(clap::Args)]
#[command(after_help = "Examples:
  switchyard dump --env prod > prod.yaml
  switchyard dump --env prod --dir ./prod     # ./prod/proxies/payments.yaml, ./prod/credentials/…

Secret values are never written: each secret field of a Credential becomes a reference such
as \"${env:SWITCHYARD_CREDENTIAL_OPENAI_KEY}\", which `switchyard apply` and `plan` fill in
from their environment. The variables to set are listed on stderr.")]
pub struct DumpArgs {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// Write one file per entity, DIR/<kind>s/<name>.yaml (directories are created, files
    /// of the same name replaced), instead of one multi-document YAML on stdout.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// One entity ready to write.
struct Dumped {
    kind: switchyard_config::Kind,
    name: String,
    yaml: String,
    references: Vec<SecretReference>,
}

pub async fn run(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let info = client.env(&args.env).await.explain()?;
    let mut entities = client.entities(&args.env).await.explain()?;
    // Credentials first (proxies name them), then by name: the same environment always
    // dumps to the same text.
    entities.sort_by(|a, b| {
        let key = |e: &EntityView| (!e.kind.is_secret(), e.kind.as_str(), e.name.clone());
        key(a).cmp(&key(b))
    });
    let mut taken = BTreeSet::new();
    let mut dumped = Vec::with_capacity(entities.len());
    for mut entity in entities {
        // A document that uses the environment's variables is dumped as written (its
        // `kind: Environment` document is dumped too), so the dump serves every
        // environment as the original files did. Credentials never have one here.
        if let Some(template) = entity.template.take() {
            dumped.push(Dumped {
                kind: entity.kind,
                name: entity.name,
                yaml: as_document(&template),
                references: Vec::new(),
            });
            continue;
        }
        let references = reference_secrets(entity.kind, &mut entity.manifest, &mut taken);
        let pointers = references.iter().map(|r| r.field.pointer()).collect();
        let yaml = to_yaml(&entity.manifest, &pointers)
            .with_context(|| format!("cannot write {}/{} as YAML", entity.kind, entity.name))?;
        dumped.push(Dumped {
            kind: entity.kind,
            name: entity.name,
            yaml,
            references,
        });
    }

    match &args.dir {
        None if args.conn.output == crate::conn::Output::Json => {
            // The same documents, as JSON strings of YAML text: what `apply` takes.
            let docs: Vec<serde_json::Value> = dumped
                .iter()
                .map(|d| serde_json::json!({ "kind": d.kind, "name": d.name, "yaml": d.yaml }))
                .collect();
            crate::text::out(&format!("{}\n", serde_json::to_string_pretty(&docs)?));
        }
        None => {
            let docs: Vec<&str> = dumped.iter().map(|d| d.yaml.as_str()).collect();
            crate::text::out(&docs.join("---\n"));
        }
        Some(dir) => {
            // Check every name before writing anything.
            let files = dumped
                .iter()
                .map(|d| file_for(dir, d.kind, &d.name).map(|f| (f, d)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for (file, d) in files {
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                std::fs::write(&file, &d.yaml)
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
        }
    }

    let where_to = args
        .dir
        .as_ref()
        .map_or_else(String::new, |d| format!(" into {}", d.display()));
    eprintln!(
        "{}: {} entit{} at revision {} dumped{where_to}",
        args.env,
        dumped.len(),
        if dumped.len() == 1 { "y" } else { "ies" },
        info.revision
    );
    let references: Vec<(&Dumped, &SecretReference)> = dumped
        .iter()
        .flat_map(|d| d.references.iter().map(move |r| (d, r)))
        .collect();
    if !references.is_empty() {
        eprintln!(
            "secret values are not in the dump; set these variables before `switchyard apply` or `plan`:"
        );
        let width = references
            .iter()
            .map(|(_, r)| r.variable.len())
            .max()
            .unwrap_or(0);
        for (d, r) in references {
            eprintln!(
                "  {:width$}  {}/{} {}",
                r.variable,
                d.kind.lower(),
                d.name,
                r.field.path()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A template as one document without its own `---` marker, ending with a newline.
fn as_document(template: &str) -> String {
    let mut lines: Vec<&str> = template.lines().collect();
    let first = lines
        .iter()
        .position(|l| !l.trim().is_empty() && !l.starts_with('#'));
    if let Some(i) = first.filter(|i| lines[*i].trim_end() == "---") {
        lines.remove(i);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// `DIR/<kind>s/<name>.yaml`; names that are not plain file names are refused.
fn file_for(dir: &Path, kind: switchyard_config::Kind, name: &str) -> anyhow::Result<PathBuf> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && !name.chars().any(char::is_control);
    if !plain {
        bail!(
            "{}/{name}: this name cannot be a file name; dump to stdout instead (without --dir)",
            kind.lower()
        );
    }
    let kind = kind.lower();
    let folder = match kind.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{kind}s"),
    };
    Ok(dir.join(folder).join(format!("{name}.yaml")))
}

/// A manifest (JSON) as a YAML document that reads back to the same JSON through
/// `switchyard apply`: `type` and `name` first in every mapping (the manifest reader wants a
/// policy's or credential's `type` before its fields), strings that YAML would read as
/// something else quoted, the `${env:…}` references at `references` (JSON pointers)
/// double-quoted (so any value can fill them in), and every other `${` written `$${` (so it
/// is not taken for a reference).
pub fn to_yaml(
    manifest: &serde_json::Value,
    references: &BTreeSet<String>,
) -> anyhow::Result<String> {
    let mut options = serde_saphyr::SerializerOptions::default();
    // Multi-line strings as escaped double-quoted scalars: no block-scalar chomping to get
    // wrong, and every line of a value stays on one line of the file.
    options.prefer_block_scalars = false;
    Ok(serde_saphyr::to_string_with_options(
        &Node::new(manifest, &mut String::new(), references),
        options,
    )?)
}

enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(String),
    /// `${env:NAME}`, written double-quoted and as is.
    Reference(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn escape_references(s: &str) -> String {
    s.replace("${", "$${")
}

impl Node {
    /// `at`: the JSON pointer of `v` (restored on return).
    fn new(v: &serde_json::Value, at: &mut String, references: &BTreeSet<String>) -> Node {
        use serde_json::Value;
        fn child(segment: &str, v: &Value, at: &mut String, refs: &BTreeSet<String>) -> Node {
            let len = at.len();
            at.push('/');
            at.push_str(&segment.replace('~', "~0").replace('/', "~1"));
            let node = Node::new(v, at, refs);
            at.truncate(len);
            node
        }
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) if references.contains(at.as_str()) => Node::Reference(s.clone()),
            Value::String(s) => Node::Str(escape_references(s)),
            Value::Array(items) => Node::Seq(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| child(&i.to_string(), v, at, references))
                    .collect(),
            ),
            Value::Object(map) => {
                let mut entries: Vec<(String, Node)> = map
                    .iter()
                    .map(|(k, v)| (escape_references(k), child(k, v, at, references)))
                    .collect();
                let rank = |k: &str| match k {
                    "type" => 0,
                    "name" => 1,
                    _ => 2,
                };
                entries.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
                Node::Map(entries)
            }
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Number(n) => n.serialize(s),
            Node::Str(v) => s.serialize_str(v),
            Node::Reference(r) => serde_saphyr::DoubleQuoted(r.as_str()).serialize(s),
            Node::Seq(items) => s.collect_seq(items),
            Node::Map(entries) => s.collect_map(entries.iter().map(|(k, v)| (k, v))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Reads YAML back the way `switchyard apply` does (references filled in from `vars`).
    fn read_back(yaml: &str, vars: &[(&str, &str)]) -> serde_json::Value {
        let file: Arc<str> = "dump.yaml".into();
        let text = switchyard_config::env_refs::expand(&file, yaml, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        serde_saphyr::from_str(&text).unwrap()
    }

    #[test]
    fn tricky_strings_read_back_identically() {
        let v = serde_json::json!({
            "plain": "payments",
            "words": ["yes", "no", "on", "off", "y", "n", "true", "null", "~", ""],
            "numbers": ["1.0", "0x10", "010", "1e3", "12:30", "2024-05-01", ".inf"],
            "syntax": ["a: b", "- x", "#c", "x #y", "{a}", "[1]", "*ref", "&a", "!t", "'q'", "\"d\"", "%p", "@a", "`b"],
            "spaces": [" lead", "trail ", "two\nlines\n", "tab\there"],
            "dollars": ["${literal}", "$${double}", "cost $5", "${env:HOME}", "${env:SWITCHYARD_X}"],
            "unicode": "héllo ✓",
            "n": 1, "f": 0.5, "t": true, "z": null, "empty": {}, "list": [],
        });
        let yaml = to_yaml(&v, &BTreeSet::new()).unwrap();
        assert_eq!(read_back(&yaml, &[]), v, "{yaml}");
    }

    #[test]
    fn references_are_double_quoted_and_take_any_value() {
        let v = serde_json::json!({"kind": "Credential", "metadata": {"name": "k"},
            "spec": {"value": "${env:SWITCHYARD_CREDENTIAL_K}", "type": "secret"}});
        let yaml = to_yaml(&v, &BTreeSet::from(["/spec/value".to_string()])).unwrap();
        assert!(
            yaml.contains("value: \"${env:SWITCHYARD_CREDENTIAL_K}\""),
            "{yaml}"
        );
        // `type` comes first in every mapping, `name` next.
        assert!(yaml.contains("spec:\n  type: secret\n  value:"), "{yaml}");
        let tricky = "a\"b\\c\nd: e #f ${x}";
        let back = read_back(&yaml, &[("SWITCHYARD_CREDENTIAL_K", tricky)]);
        assert_eq!(back["spec"]["value"], tricky);
    }

    #[test]
    fn files_go_to_one_folder_per_kind_and_odd_names_are_refused() {
        let dir = Path::new("/d");
        assert_eq!(
            file_for(dir, switchyard_config::Kind::Proxy, "payments").unwrap(),
            Path::new("/d/proxies/payments.yaml")
        );
        assert_eq!(
            file_for(dir, switchyard_config::Kind::Credential, "openai-key").unwrap(),
            Path::new("/d/credentials/openai-key.yaml")
        );
        for bad in ["../x", ".hidden", "a/b", ""] {
            assert!(
                file_for(dir, switchyard_config::Kind::Credential, bad).is_err(),
                "{bad}"
            );
        }
    }
}
