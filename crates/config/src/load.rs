//! Reading manifest files: multi-document YAML with positions, kinds, field paths.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::Kind;
use crate::error::{ConfigError, ConfigErrors, Position, Reason, SourceRef};
use crate::manifest::{
    API_VERSION, CertificateManifest, CredentialManifest, DocumentHeader, EnvironmentManifest,
    ListenerManifest, Manifest, ProxyManifest, WorkerSettingsManifest,
};

/// A manifest with the place it was read from.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub source: SourceRef,
    pub value: T,
    /// SHA-256 of the value's canonical JSON, computed once when read.
    pub digest: String,
}

/// Largest manifest file accepted; guards the parser against accidental huge inputs.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a file, or every `*.yaml`/`*.yml` file below a directory (sorted, hidden files and
/// editor backups skipped), fills in `${env:SWITCHYARD_…}` references from this process's
/// environment (see `env_refs`), and parses every document. All errors are collected.
pub fn load_path(path: &Path) -> Result<Vec<Located<Manifest>>, ConfigErrors> {
    let files = manifest_files(path)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let name: Arc<str> = file.display().to_string().into();
        let text = match read_limited(&file) {
            Ok(t) => t,
            Err((position, message)) => {
                errors.push(ConfigError {
                    position,
                    ..io_error(&name, message)
                });
                continue;
            }
        };
        let text = match crate::env_refs::expand(&name, &text, |n| std::env::var(n).ok()) {
            Ok(t) => t,
            Err(mut e) => {
                errors.append(&mut e);
                continue;
            }
        };
        match parse_str(name, &text) {
            Ok(mut docs) => out.append(&mut docs),
            Err(mut e) => errors.append(&mut e.0),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

pub(crate) fn io_error(file: &Arc<str>, message: String) -> ConfigError {
    ConfigError {
        file: file.clone(),
        document: 0,
        position: Position::UNKNOWN,
        entity: None,
        field: String::new(),
        message,
        reason: Reason::Invalid,
    }
}

pub(crate) fn read_limited(file: &Path) -> Result<String, (Position, String)> {
    let unknown = |message: String| (Position::UNKNOWN, message);
    let meta = std::fs::metadata(file).map_err(|e| unknown(format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(unknown(format!(
            "file is {} bytes, more than the {} byte limit for a manifest file",
            meta.len(),
            MAX_FILE_BYTES
        )));
    }
    let bytes = std::fs::read(file).map_err(|e| unknown(format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let position = Position {
            line: u32::try_from(before.matches('\n').count() + 1).unwrap_or(u32::MAX),
            column: u32::try_from(before[line_start..].chars().count() + 1).unwrap_or(u32::MAX),
        };
        (
            position,
            format!("not UTF-8 text (invalid byte at offset {valid})"),
        )
    })
}

/// The manifest files named by `path`: the file itself, or the YAML files below a directory.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    let name: Arc<str> = path.display().to_string().into();
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigErrors::single(io_error(&name, format!("cannot read: {e}"))))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            let dir_name: Arc<str> = dir.display().to_string().into();
            ConfigErrors::single(io_error(&dir_name, format!("cannot list directory: {e}")))
        })?;
        for entry in entries.flatten() {
            let p = entry.path();
            if !is_manifest_candidate(&p) {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) if has_yaml_extension(&p) => files.push(p),
                _ => {}
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Hidden files (editor swap files, atomic-write temporaries) and backups are never manifests.
pub fn is_manifest_candidate(p: &Path) -> bool {
    match p.file_name().and_then(|n| n.to_str()) {
        Some(n) => !n.starts_with('.') && !n.ends_with('~'),
        None => false,
    }
}

pub fn has_yaml_extension(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}

/// Parses every document of one YAML text. `file` names it in errors.
pub fn parse_str(file: Arc<str>, text: &str) -> Result<Vec<Located<Manifest>>, ConfigErrors> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut index = 0;
    for doc in split_documents(text) {
        if !doc.is_document() {
            continue;
        }
        index += 1;
        let source = SourceRef {
            file: file.clone(),
            document: index,
            line_offset: doc.line_offset,
        };
        if doc.is_blank() {
            continue;
        }
        match parse_document(&source, doc.text) {
            Ok(value) => {
                let digest = value.digest();
                out.push(Located {
                    source,
                    value,
                    digest,
                })
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

pub(crate) struct RawDocument<'a> {
    pub(crate) text: &'a str,
    pub(crate) line_offset: u32,
}

impl RawDocument<'_> {
    pub(crate) fn is_blank(&self) -> bool {
        self.text.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || is_marker(l)
        })
    }

    /// Whether the text opens with a `---` marker (an explicit document, possibly empty).
    fn is_explicit(&self) -> bool {
        self.text
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("---") && is_marker(l))
    }

    /// A YAML document: explicit, or with content. Comments or `...` lines alone are not.
    pub(crate) fn is_document(&self) -> bool {
        self.is_explicit() || !self.is_blank()
    }

    /// Only comments, blank lines and directives, without a `---`: the prefix of the
    /// document that the next `---` starts.
    fn is_prefix(&self) -> bool {
        !self.is_explicit()
            && self.text.lines().all(|l| {
                let t = l.trim();
                t.is_empty() || t.starts_with('#') || l.starts_with('%')
            })
    }
}

/// `---` or `...` at column 0 followed by whitespace or the end of the line. YAML forbids
/// these at column 0 inside any content, so a line-based split is exact.
fn is_marker(line: &str) -> bool {
    let line = line.strip_suffix('\r').unwrap_or(line);
    ["---", "..."].iter().any(|m| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    })
}

pub(crate) fn split_documents(text: &str) -> Vec<RawDocument<'_>> {
    let mut docs = Vec::new();
    // A byte order mark is not part of the first line's content (markers, comments).
    let bom = if text.starts_with('\u{FEFF}') {
        '\u{FEFF}'.len_utf8()
    } else {
        0
    };
    let mut start = bom;
    let mut start_line = 0u32;
    let mut offset = bom;
    for (line, line_no) in text[bom..].split_inclusive('\n').zip(0u32..) {
        let content = line.strip_suffix('\n').unwrap_or(line);
        if content.starts_with("---") && is_marker(content) && offset > start {
            let before = RawDocument {
                text: &text[start..offset],
                line_offset: start_line,
            };
            // Comments and directives before a `---` belong to the document it starts.
            if !before.is_prefix() {
                docs.push(before);
                start = offset;
                start_line = line_no;
            }
        }
        if content.starts_with("...") && is_marker(content) {
            // An explicit document end: the next document starts on the following line.
            docs.push(RawDocument {
                text: &text[start..offset + line.len()],
                line_offset: start_line,
            });
            start = offset + line.len();
            start_line = line_no + 1;
        }
        offset += line.len();
    }
    if start < text.len() {
        docs.push(RawDocument {
            text: &text[start..],
            line_offset: start_line,
        });
    }
    docs
}

pub(crate) fn parse_document(source: &SourceRef, text: &str) -> Result<Manifest, ConfigError> {
    let header: DocumentHeader = deserialize_with_path(source, text)?;
    let at = |s: &serde_saphyr::Spanned<String>| Position::from_location(source, s.referenced);
    let Some(kind) = header.kind else {
        return Err(ConfigError::new(
            source,
            document_start(source, text),
            "missing field `kind`",
        ));
    };
    let name = header.metadata.and_then(|m| m.name);
    let with_entity = |e: ConfigError| match &name {
        Some(n) => match Kind::parse_written(&kind.value) {
            Some(k) => e.entity(k, n),
            None => e,
        },
        _ => e,
    };
    match &header.api_version {
        Some(v) if v.value == API_VERSION => {}
        Some(other) => {
            return Err(with_entity(
                ConfigError::new(
                    source,
                    at(other),
                    format!(
                        "unsupported apiVersion {:?}, expected {API_VERSION:?}",
                        other.value
                    ),
                )
                .field("apiVersion"),
            ));
        }
        None => {
            return Err(with_entity(ConfigError::new(
                source,
                document_start(source, text),
                format!("missing field `apiVersion` (expected {API_VERSION:?})"),
            )));
        }
    }
    match Kind::parse_written(&kind.value) {
        Some(Kind::Proxy) => deserialize_with_path::<ProxyManifest>(source, text)
            .map(Manifest::Proxy)
            .map_err(with_entity),
        Some(Kind::Credential) => deserialize_with_path::<CredentialManifest>(source, text)
            .map(Manifest::Credential)
            // Never echo what was written inside a credential: it may be a secret.
            .map_err(|e| with_entity(scrub_secret_echo(e))),
        Some(Kind::Certificate) => deserialize_with_path::<CertificateManifest>(source, text)
            .map(Manifest::Certificate)
            // Never echo what was written inside a certificate: the key is a secret.
            .map_err(|e| with_entity(scrub_secret_echo(e))),
        Some(Kind::Environment) => deserialize_with_path::<EnvironmentManifest>(source, text)
            .and_then(|m| m.check(source).map(|()| m))
            .map(Manifest::Environment)
            .map_err(with_entity),
        Some(Kind::WorkerSettings) => deserialize_with_path::<WorkerSettingsManifest>(source, text)
            .and_then(|m| m.check(source).map(|()| m))
            .map(Manifest::WorkerSettings)
            .map_err(with_entity),
        Some(Kind::Listener) => deserialize_with_path::<ListenerManifest>(source, text)
            .and_then(|m| m.check(source).map(|()| m))
            .map(Manifest::Listener)
            .map_err(with_entity),
        None => Err(ConfigError::new(
            source,
            at(&kind),
            format!(
                "unknown kind {:?}, expected one of: {}",
                kind.value,
                Kind::list()
            ),
        )
        .field("kind")),
    }
}

/// Where a document's content begins: the first line that is not blank, a comment, a
/// directive or a document marker. Used for errors about the document as a whole.
fn document_start(source: &SourceRef, text: &str) -> Position {
    text.lines()
        .zip(1u32..)
        .map(|(l, n)| (l.strip_prefix('\u{FEFF}').unwrap_or(l), n))
        .find(|(l, _)| {
            let t = l.trim();
            !(t.is_empty() || t.starts_with('#') || l.starts_with('%') || is_marker(l))
        })
        .map_or(Position::UNKNOWN, |(l, n)| {
            let indent = l.chars().take_while(|c| c.is_whitespace()).count();
            Position {
                line: n.saturating_add(source.line_offset),
                column: u32::try_from(indent + 1).unwrap_or(u32::MAX),
            }
        })
}

/// Deserializes one document, recording the field path of the first error.
fn deserialize_with_path<T: DeserializeOwned>(
    source: &SourceRef,
    text: &str,
) -> Result<T, ConfigError> {
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let position = e
            .location()
            .map(|loc| Position::from_location(source, loc))
            .unwrap_or(Position::UNKNOWN);
        let field = if path == "." {
            String::new()
        } else {
            clean_spanned_path(&path)
        };
        ConfigError::new(source, position, parser_message(&e)).field(field)
    })
}

/// The parser's message without its own location suffix or source snippet.
fn parser_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

/// `Spanned<T>` fields show up as an extra `.value` segment in serde paths; drop it.
/// The spanned fields are `metadata.name`, `spec.routes`, each route, and `upstream.targets`.
fn clean_spanned_path(path: &str) -> String {
    let mut out = path
        .replace("name.value", "name")
        .replace("routes.value", "routes")
        .replace("targets.value", "targets");
    if let Some(start) = out.find("routes[")
        && let Some(close) = out[start..].find(']')
    {
        let at = start + close + 1;
        if out[at..].starts_with(".value") {
            out.replace_range(at..at + ".value".len(), "");
        }
    }
    // Syntax errors inside a mapping end the path with an unknown (`?`) key.
    while let Some(parent) = out.strip_suffix(".?") {
        out.truncate(parent.len());
    }
    if out == "?" {
        out.clear();
    }
    out
}

/// Parser messages can quote the offending value (`invalid type: string "…"`); inside a
/// credential that value may be a secret, so the quote is cut.
fn scrub_secret_echo(mut e: ConfigError) -> ConfigError {
    if let Some(i) = e.message.find(['"', '`']) {
        let quoted_value = e.message[i..].starts_with('"');
        if quoted_value {
            e.message.truncate(i);
            e.message.push_str("(value not shown: credential)");
        }
    }
    e
}
