//! `switchyard apply --env ENV FILES…`: validate locally, send one batch, report.

use std::path::PathBuf;

use anyhow::bail;
use serde::Deserialize;
use switchyard_model::{Manifest, compile, load_path};

use crate::admin_client::AdminClient;

#[derive(Debug, Deserialize)]
pub struct ApplyResponse {
    pub env: String,
    pub revision: u64,
    pub previous_revision: u64,
    pub changed: bool,
    pub changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
pub struct Change {
    pub kind: String,
    pub name: String,
    pub old_version: Option<u64>,
    pub new_version: Option<u64>,
}

/// Reads every file (or directory) and checks the set locally; stops on the first problem.
pub fn read_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<Manifest>> {
    let mut all = Vec::new();
    for p in paths {
        match load_path(p) {
            Ok(mut docs) => all.append(&mut docs),
            Err(e) => bail!("{e}"),
        }
    }
    if all.is_empty() {
        bail!("no manifests found in {paths:?}");
    }
    if let Err(e) = compile(&all, None) {
        bail!("{e}");
    }
    Ok(all.into_iter().map(|m| m.value).collect())
}

pub async fn apply(
    client: &AdminClient,
    env: &str,
    manifests: &[Manifest],
) -> anyhow::Result<ApplyResponse> {
    send(client, env, manifests, false).await
}

/// The same batch as a dry run: what would change, nothing written.
pub async fn plan(
    client: &AdminClient,
    env: &str,
    manifests: &[Manifest],
) -> anyhow::Result<ApplyResponse> {
    send(client, env, manifests, true).await
}

async fn send(
    client: &AdminClient,
    env: &str,
    manifests: &[Manifest],
    dry_run: bool,
) -> anyhow::Result<ApplyResponse> {
    let body = serde_json::json!({
        "manifests": manifests.iter().map(Manifest::canonical_json).collect::<Vec<_>>(),
        "dry_run": dry_run,
    });
    client.post(&format!("/v1/envs/{env}/apply"), &body).await
}

/// One line per change: `kind/name: what` (`what` from the old and new versions).
fn change_lines(
    out: &mut String,
    r: &ApplyResponse,
    what: impl Fn(Option<u64>, Option<u64>) -> String,
) {
    for c in &r.changes {
        out.push_str(&format!(
            "\n  {}/{}: {}",
            c.kind.to_ascii_lowercase(),
            c.name,
            what(c.old_version, c.new_version)
        ));
    }
}

/// A plan, entity by entity.
pub fn describe_plan(r: &ApplyResponse) -> String {
    if !r.changed {
        return format!(
            "no changes: {} (revision {}) already matches these manifests",
            r.env, r.revision
        );
    }
    let mut out = format!(
        "{} (revision {}): {} change(s) would be applied as one revision",
        r.env,
        r.revision,
        r.changes.len()
    );
    change_lines(&mut out, r, |old, new| match (old, new) {
        (None, Some(_)) => "create".to_string(),
        (Some(o), Some(v)) => format!("update v{o} -> v{v}"),
        (Some(o), None) => format!("delete (v{o})"),
        (None, None) => "unchanged".to_string(),
    });
    out
}

pub fn describe(r: &ApplyResponse) -> String {
    if !r.changed {
        return format!(
            "no changes: {} is already at revision {} with these manifests",
            r.env, r.revision
        );
    }
    let mut out = format!(
        "{}: revision {} (was {}), {} change(s)",
        r.env,
        r.revision,
        r.previous_revision,
        r.changes.len()
    );
    change_lines(&mut out, r, |old, new| match (old, new) {
        (None, Some(v)) => format!("created v{v}"),
        (Some(o), Some(v)) => format!("v{o} -> v{v}"),
        (Some(o), None) => format!("deleted (was v{o})"),
        (None, None) => "unchanged".to_string(),
    });
    out
}
