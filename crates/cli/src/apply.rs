//! `switchyard apply|plan --env ENV FILES…` and `switchyard promote`: read and validate
//! locally, send one batch, show what it does.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use switchyard_config::error::Reason;
use switchyard_config::for_env::{ForEnv, load_paths};
use switchyard_engine::compile;

use crate::admin_client::AdminClient;
use crate::conn::stderr_is_terminal;

/// The Manager's answer to an apply, a plan (dry run) or a promotion.
#[derive(Debug, Deserialize, Serialize)]
pub struct BatchResponse {
    pub env: String,
    pub revision: u64,
    pub previous_revision: u64,
    pub changed: bool,
    #[serde(default)]
    pub dry_run: bool,
    pub changes: Vec<Change>,
    /// Dry runs: the entities of the batch that already match what is deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchanged: Vec<EntityKey>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct EntityKey {
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct Change {
    pub kind: String,
    pub name: String,
    pub old_version: Option<u64>,
    pub new_version: Option<u64>,
    #[serde(default)]
    pub digest: String,
    pub hot: Hot,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<FieldChange>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct Hot {
    pub hot: bool,
    pub how: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct FieldChange {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<serde_json::Value>,
    #[serde(default)]
    pub secret: bool,
}

/// What `apply` and `plan` send.
pub struct Request<'a> {
    pub env: &'a str,
    pub files: &'a [PathBuf],
    /// `key=value[,key=value]`: with `prune`, delete the entities carrying these labels
    /// that the files no longer contain.
    pub prune_selector: Option<&'a str>,
    pub expected_revision: Option<u64>,
    pub dry_run: bool,
}

/// An entity as listed by the Manager (secrets redacted).
#[derive(Debug, Deserialize)]
pub struct EntityView {
    pub kind: switchyard_config::Kind,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub manifest: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct EnvInfo {
    revision: u64,
}

/// Reads the files for `env`, validates them locally, then sends one batch.
pub async fn send(client: &AdminClient, req: &Request<'_>) -> anyhow::Result<BatchResponse> {
    let progress = stderr_is_terminal();
    let set = read_for_env(client, req.env, req.files).await?;
    if progress {
        eprintln!(
            "read {} manifest(s) for {}{}",
            set.manifests.len(),
            req.env,
            match set.environment() {
                Some(_) => " (with its Environment document)",
                None => "",
            }
        );
    }
    let mut expected_revision = req.expected_revision;
    let mut delete = Vec::new();
    if let Some(selector) = req.prune_selector {
        let selector = parse_selector(selector)?;
        // Pinned to the revision the list was read at: a change in between is a 409.
        let info: EnvInfo = client.get(&format!("/v1/envs/{}", req.env)).await?;
        let listed: Vec<EntityView> = client
            .get(&format!("/v1/envs/{}/entities", req.env))
            .await?;
        expected_revision = Some(expected_revision.unwrap_or(info.revision));
        delete = prune_list(&listed, &set, &selector);
    }
    let body = serde_json::json!({
        "manifests": set.templates,
        "delete": delete,
        "dry_run": req.dry_run,
        "expected_revision": expected_revision,
    });
    if progress {
        eprintln!(
            "sending {} manifest(s){} to the Manager…",
            set.templates.len(),
            if delete.is_empty() {
                String::new()
            } else {
                format!(" and {} deletion(s)", delete.len())
            }
        );
    }
    client
        .post(&format!("/v1/envs/{}/apply", req.env), &body)
        .await
}

/// The files resolved for `env` and checked as a whole, locally. When they use variables
/// but hold no Environment document for `env`, the variables the Manager keeps for it are
/// used.
pub async fn read_for_env(
    client: &AdminClient,
    env: &str,
    files: &[PathBuf],
) -> anyhow::Result<ForEnv> {
    let files = &expand_globs(files)?;
    let set = match load_paths(files, env, None) {
        Ok(set) => set,
        Err(e)
            if e.0
                .iter()
                .any(|e| e.reason == Reason::NoEnvironmentDocument) =>
        {
            let kept = stored_variables(client, env).await?;
            load_paths(files, env, kept.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        Err(e) => bail!("{e}"),
    };
    if set.manifests.is_empty() {
        bail!(
            "no manifests for {env:?} in {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // Credentials may live in the environment rather than in these files: the Manager
    // checks those references against the environment as a whole. (The compiler skips
    // Environment documents.)
    if let Err(mut e) = compile(&set.manifests, None) {
        e.0.retain(|e| e.reason != Reason::UnknownCredential);
        if !e.0.is_empty() {
            bail!("{e}");
        }
    }
    Ok(set)
}

/// Patterns the shell did not expand (quoted in CI scripts, or on Windows) are expanded
/// here; a pattern that matches nothing is an error naming it.
pub fn expand_globs(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let text = p.to_string_lossy();
        if p.exists() || !text.contains(['*', '?', '[']) {
            out.push(p.clone());
            continue;
        }
        let matches: Vec<PathBuf> = glob::glob(&text)
            .with_context(|| format!("{text}: not a valid file pattern"))?
            .filter_map(Result::ok)
            .collect();
        if matches.is_empty() {
            bail!("{text}: no file matches this pattern");
        }
        out.extend(matches);
    }
    Ok(out)
}

/// The variables the Manager keeps for `env` (its Environment entity), if any.
async fn stored_variables(
    client: &AdminClient,
    env: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let listed: Vec<EntityView> = client.get(&format!("/v1/envs/{env}/entities")).await?;
    Ok(listed
        .into_iter()
        .find(|e| e.kind == switchyard_config::Kind::Environment && e.name == env)
        .and_then(|e| serde_json::from_value(e.manifest["spec"]["variables"].clone()).ok()))
}

/// `owner=payments,tier=gold` → pairs; a clear error otherwise.
pub fn parse_selector(s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("--selector {s:?}: expected key=value[,key=value]"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() {
            bail!(
                "--selector {s:?}: expected key=value[,key=value] with non-empty keys and values"
            );
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Entities carrying every label of `selector` that the files no longer contain. Nothing
/// else is ever listed (an environment's variables are never pruned).
fn prune_list(
    listed: &[EntityView],
    set: &ForEnv,
    selector: &BTreeMap<String, String>,
) -> Vec<serde_json::Value> {
    listed
        .iter()
        .filter(|e| e.kind != switchyard_config::Kind::Environment)
        .filter(|e| selector.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
        .filter(|e| {
            !set.manifests
                .iter()
                .any(|m| m.value.kind() == e.kind && m.value.name() == e.name)
        })
        .map(|e| serde_json::json!({ "kind": e.kind, "name": e.name }))
        .collect()
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Human output: a header line, then one line per change and, for plans, the fields.
pub fn describe(r: &BatchResponse, colour: bool) -> String {
    let paint = |c: &str, text: &str| {
        if colour {
            format!("{c}{text}{RESET}")
        } else {
            text.to_string()
        }
    };
    let unchanged = if r.unchanged.is_empty() {
        String::new()
    } else {
        format!(", {} unchanged", r.unchanged.len())
    };
    if !r.changed {
        return format!(
            "no changes: {} (revision {}) already matches{unchanged}",
            r.env, r.revision
        );
    }
    let mut out = if r.dry_run {
        format!(
            "{} (revision {}): {} change(s) would be applied as one revision{unchanged}",
            r.env,
            r.revision,
            r.changes.len()
        )
    } else {
        format!(
            "{}: revision {} (was {}), {} change(s)",
            r.env,
            r.revision,
            r.previous_revision,
            r.changes.len()
        )
    };
    for c in &r.changes {
        let (mark, colour_of, what) = match (c.old_version, c.new_version, r.dry_run) {
            (None, Some(_), true) => ("+", GREEN, "create".to_string()),
            (None, Some(v), false) => ("+", GREEN, format!("created v{v}")),
            (Some(o), Some(v), _) => ("~", YELLOW, format!("v{o} -> v{v}")),
            (Some(o), None, true) => ("-", RED, format!("delete (v{o})")),
            (Some(o), None, false) => ("-", RED, format!("deleted (was v{o})")),
            (None, None, _) => (" ", DIM, "unchanged".to_string()),
        };
        let hot = if c.hot.hot {
            "hot".to_string()
        } else {
            format!("NOT hot: {}", c.hot.how)
        };
        out.push_str(&format!(
            "\n  {} {}/{}: {what} ({hot})",
            paint(colour_of, mark),
            c.kind.to_ascii_lowercase(),
            c.name,
        ));
        for f in &c.diff {
            out.push_str("\n      ");
            out.push_str(&field_line(f, &paint));
        }
    }
    out
}

fn field_line(f: &FieldChange, paint: &dyn Fn(&str, &str) -> String) -> String {
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    let secret = if f.secret { " (secret, redacted)" } else { "" };
    match (&f.old, &f.new) {
        (Some(o), Some(n)) if f.secret && o == n => {
            format!("{}: {}", f.path, paint(YELLOW, "secret value changed"))
        }
        (Some(o), Some(n)) => format!(
            "{}: {} -> {}{secret}",
            f.path,
            paint(RED, &show(o)),
            paint(GREEN, &show(n))
        ),
        (None, Some(n)) => format!(
            "{}: {}{secret}",
            f.path,
            paint(GREEN, &format!("+ {}", show(n)))
        ),
        (Some(o), None) => format!(
            "{}: {}{secret}",
            f.path,
            paint(RED, &format!("- {}", show(o)))
        ),
        (None, None) => f.path.clone(),
    }
}

/// `switchyard promote`: the Manager copies the proxies; this prints what it did.
pub async fn promote(
    client: &AdminClient,
    from: &str,
    to: &str,
    proxies: &[String],
    dry_run: bool,
    expected_revision: Option<u64>,
) -> anyhow::Result<BatchResponse> {
    let body = serde_json::json!({
        "from": from,
        "proxies": proxies,
        "dry_run": dry_run,
        "expected_revision": expected_revision,
    });
    client.post(&format!("/v1/envs/{to}/promote"), &body).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unexpanded_globs_are_expanded_and_empty_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.yaml", "b.yaml", "c.txt"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let pattern = dir.path().join("*.yaml");
        let got = expand_globs(&[pattern]).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].ends_with("a.yaml") && got[1].ends_with("b.yaml"));
        let none = dir.path().join("*.yml");
        let e = expand_globs(&[none]).unwrap_err().to_string();
        assert!(e.contains("no file matches"), "{e}");
        let plain = dir.path().join("missing.yaml");
        assert_eq!(expand_globs(std::slice::from_ref(&plain)).unwrap(), [plain]);
    }

    #[test]
    fn selectors_read_pairs_and_name_bad_ones() {
        let s = parse_selector("owner=payments, tier=gold").unwrap();
        assert_eq!(s["owner"], "payments");
        assert_eq!(s["tier"], "gold");
        let e = parse_selector("owner").unwrap_err().to_string();
        assert!(e.contains("expected key=value"), "{e}");
        assert!(parse_selector("owner=").is_err());
    }

    #[test]
    fn a_plan_shows_each_change_its_fields_and_hotness() {
        let r: BatchResponse = serde_json::from_value(serde_json::json!({
            "env": "dev", "revision": 4, "previous_revision": 4, "changed": true, "dry_run": true,
            "changes": [
                {"kind": "Proxy", "name": "payments", "old_version": 3, "new_version": 4, "digest": "d",
                 "hot": {"hot": true, "how": "swapped"},
                 "diff": [{"path": "spec.upstream.targets[0].url", "old": "http://a", "new": "http://b"}]},
                {"kind": "Credential", "name": "key", "old_version": 1, "new_version": 2, "digest": "d",
                 "hot": {"hot": true, "how": "swapped"},
                 "diff": [{"path": "spec.value", "old": "<redacted>", "new": "<redacted>", "secret": true}]},
                {"kind": "Proxy", "name": "old", "old_version": 2, "new_version": null, "digest": "",
                 "hot": {"hot": true, "how": "swapped"}}
            ],
            "unchanged": [{"kind": "Proxy", "name": "same"}]
        }))
        .unwrap();
        let text = describe(&r, false);
        assert_eq!(
            text,
            "dev (revision 4): 3 change(s) would be applied as one revision, 1 unchanged\n  \
             ~ proxy/payments: v3 -> v4 (hot)\n      \
             spec.upstream.targets[0].url: \"http://a\" -> \"http://b\"\n  \
             ~ credential/key: v1 -> v2 (hot)\n      \
             spec.value: secret value changed\n  \
             - proxy/old: delete (v2) (hot)"
        );
        assert!(describe(&r, true).contains("\x1b[33m~\x1b[0m"));
    }
}
