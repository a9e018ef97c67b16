//! Manifests read *for one environment*: what `switchyard apply --env ENV` and the Manager
//! do with manifest text before validating it.
//!
//! 1. `${env:SWITCHYARD_…}` is filled in by the process that reads the files (the CLI; the
//!    Manager refuses them: it never reads its own environment for manifests).
//! 2. `kind: Environment` documents are collected; the one named like the target
//!    environment supplies the variables, the others (other environments' documents kept in
//!    the same files) are skipped.
//! 3. `${NAME}` is resolved with those variables (or, when the files have no document for
//!    the target, with the variables the Manager already keeps for it).
//!
//! Each manifest comes back with its *template*: the document as written (after step 1,
//! before step 3). The Manager keeps it, so a promotion can resolve the same template
//! with the target environment's variables.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Kind;
use crate::env_refs::{Refs, Resolver};
use crate::error::{ConfigError, ConfigErrors, Position, Reason, SourceRef};
use crate::load::{
    Located, io_error, manifest_files, parse_document, read_limited, split_documents,
};
use crate::manifest::{EnvironmentManifest, Manifest};

/// Manifests resolved for one environment.
#[derive(Debug, Default)]
pub struct ForEnv {
    /// Every document for the target, in file order (its Environment document included).
    pub manifests: Vec<Located<Manifest>>,
    /// Same order: the document text as written (after `${env:…}`), before `${NAME}`.
    pub templates: Vec<String>,
    /// The variables used: the target's Environment document in the texts, or `fallback`.
    pub variables: Option<BTreeMap<String, String>>,
    /// Environment documents for other environments, skipped.
    pub skipped_environments: Vec<String>,
}

impl ForEnv {
    /// The target's Environment document, when the texts have one.
    pub fn environment(&self) -> Option<&EnvironmentManifest> {
        self.manifests.iter().find_map(|m| match &m.value {
            Manifest::Environment(e) => Some(e),
            _ => None,
        })
    }
}

/// Where `${env:…}` values come from.
pub enum EnvSource<'a> {
    /// This process's environment (the CLI).
    Process,
    /// Refused with this explanation (the Manager).
    Refuse(&'a str),
}

/// Reads files and directories (like [`crate::load_path`]) for environment `env`.
pub fn load_paths(
    paths: &[PathBuf],
    env: &str,
    fallback: Option<&BTreeMap<String, String>>,
) -> Result<ForEnv, ConfigErrors> {
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let files = match manifest_files(path) {
            Ok(f) => f,
            Err(mut e) => {
                errors.append(&mut e.0);
                continue;
            }
        };
        for file in files {
            let name: Arc<str> = file.display().to_string().into();
            match read_limited(&file) {
                Ok(t) => texts.push((name, t)),
                Err((position, message)) => errors.push(ConfigError {
                    position,
                    ..io_error(&name, message)
                }),
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    if texts.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ConfigErrors::single(io_error(
            &shown.join(", ").into(),
            "no manifest files (*.yaml, *.yml) found".to_string(),
        )));
    }
    resolve_texts(&texts, env, fallback, &EnvSource::Process)
}

/// The same for texts already in memory, each named for errors.
pub fn resolve_texts(
    texts: &[(Arc<str>, String)],
    env: &str,
    fallback: Option<&BTreeMap<String, String>>,
    env_source: &EnvSource<'_>,
) -> Result<ForEnv, ConfigErrors> {
    let process = |n: &str| std::env::var(n).ok();
    let env_refs = match env_source {
        EnvSource::Process => Refs::Expand {
            lookup: &process,
            hint: "is not set in the environment of this process",
            missing: Reason::Invalid,
        },
        EnvSource::Refuse(why) => Refs::Refuse(why),
    };
    let first = Resolver {
        env: env_refs,
        vars: Refs::Keep,
        unescape: false,
    };
    let mut errors = Vec::new();
    // Pass 1: `${env:…}` filled in; Environment documents read.
    let mut expanded: Vec<(Arc<str>, String)> = Vec::with_capacity(texts.len());
    for (name, text) in texts {
        match first.run(name, text) {
            Ok(t) => expanded.push((name.clone(), t.into_owned())),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let mut out = ForEnv::default();
    let mut target: Option<(SourceRef, EnvironmentManifest)> = None;
    for (name, text) in &expanded {
        for (source, doc) in documents(name, text) {
            if !doc.contains(Kind::Environment.as_str()) {
                continue;
            }
            let Ok(Manifest::Environment(e)) = parse_document(&source, &unescaped(doc)) else {
                continue;
            };
            if e.metadata.name.value != env {
                out.skipped_environments.push(e.metadata.name.value.clone());
                continue;
            }
            if let Some((first, _)) = &target {
                errors.push(
                    ConfigError::new(
                        &source,
                        Position::from_location(&source, e.metadata.name.referenced),
                        format!(
                            "a second kind: Environment document for {env:?} (the first is in {})",
                            first.file
                        ),
                    )
                    .entity(Kind::Environment, env),
                );
            } else {
                target = Some((source, e));
            }
        }
    }
    let variables = match &target {
        Some((_, e)) => Some(e.spec.variables.clone()),
        None => fallback.cloned(),
    };
    let hint = match (&target, fallback) {
        (Some(_), _) => format!(
            "is not defined in spec.variables of the kind: Environment document for {env:?}"
        ),
        (None, Some(_)) => format!(
            "is not defined for {env:?} (its variables on the Manager; add a kind: Environment document named {env:?} to define it)"
        ),
        (None, None) => {
            format!("is not defined: no kind: Environment document named {env:?} in these files")
        }
    };
    let lookup = |n: &str| variables.as_ref().and_then(|v| v.get(n).cloned());
    let second = Resolver {
        env: Refs::Keep,
        vars: Refs::Expand {
            lookup: &lookup,
            hint: &hint,
            // With no variables anywhere, the Manager may keep some (the CLI asks it).
            missing: if target.is_none() && fallback.is_none() {
                Reason::NoEnvironmentDocument
            } else {
                Reason::Invalid
            },
        },
        unescape: true,
    };
    // Pass 2: `${NAME}` resolved, every document parsed.
    for (name, text) in &expanded {
        for (source, doc) in documents(name, text) {
            let resolved = match second.run(name, doc) {
                Ok(t) => t,
                Err(e) => {
                    errors.extend(e.into_iter().map(|e| relocate(e, &source)));
                    continue;
                }
            };
            match parse_document(&source, &resolved) {
                Ok(Manifest::Environment(e)) if e.metadata.name.value != env => {}
                Ok(value) => {
                    if matches!(value, Manifest::Environment(_))
                        && !crate::env_refs::variables_in(doc).is_empty()
                    {
                        errors.push(ConfigError::new(
                            &source,
                            Position::UNKNOWN,
                            "a kind: Environment document defines variables; it cannot use them",
                        ));
                        continue;
                    }
                    let digest = value.digest();
                    out.templates.push(doc.to_string());
                    out.manifests.push(Located {
                        source,
                        value,
                        digest,
                    });
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        out.variables = variables;
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Resolves one stored template with an environment's variables (a promotion, or a
/// deployed entity after its environment's variables changed).
pub fn resolve_template(
    name: &Arc<str>,
    template: &str,
    env: &str,
    variables: &BTreeMap<String, String>,
    refuse_env: &str,
) -> Result<Located<Manifest>, ConfigErrors> {
    let lookup = |n: &str| variables.get(n).cloned();
    let hint =
        format!("is not defined in {env:?} (spec.variables of its kind: Environment document)");
    let resolver = Resolver {
        env: Refs::Refuse(refuse_env),
        vars: Refs::Expand {
            lookup: &lookup,
            hint: &hint,
            missing: Reason::Invalid,
        },
        unescape: true,
    };
    let source = SourceRef {
        file: name.clone(),
        document: 1,
        line_offset: 0,
    };
    let text = resolver.run(name, template).map_err(ConfigErrors)?;
    let value = parse_document(&source, &text).map_err(ConfigErrors::single)?;
    let digest = value.digest();
    Ok(Located {
        source,
        value,
        digest,
    })
}

/// The non-blank documents of one text, each with the source that names it in errors.
fn documents<'t>(name: &Arc<str>, text: &'t str) -> Vec<(SourceRef, &'t str)> {
    let mut out = Vec::new();
    let mut index = 0;
    for doc in split_documents(text) {
        if !doc.is_document() {
            continue;
        }
        index += 1;
        if doc.is_blank() {
            continue;
        }
        out.push((
            SourceRef {
                file: name.clone(),
                document: index,
                line_offset: doc.line_offset,
            },
            doc.text,
        ));
    }
    out
}

/// `$${` written as `${` (an Environment document has no references to resolve).
fn unescaped(doc: &str) -> std::borrow::Cow<'_, str> {
    if doc.contains("$${") {
        doc.replace("$${", "${").into()
    } else {
        doc.into()
    }
}

/// An error found in one document's text, moved to its place in the file.
fn relocate(mut e: ConfigError, source: &SourceRef) -> ConfigError {
    e.document = source.document;
    if e.position.line > 0 {
        e.position.line += source.line_offset;
    }
    e
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
