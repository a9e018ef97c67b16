//! `switchyard apply --env ENV FILES…`: read and validate locally, send one batch, show
//! what it does, and with `--wait` wait for the Workers. `plan` sends the same batch as a
//! dry run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use switchyard_api::AdminClient;
use switchyard_api::admin::{ApplyRequest, BatchResponse, EntityKey, EntityView};
use switchyard_api::canary::CanarySpec;
use switchyard_config::Kind;
use switchyard_config::error::Reason;
use switchyard_config::for_env::{ForEnv, load_paths};
use switchyard_engine::{compile, tls};

use crate::batch;
use crate::conn::{ConnArgs, Output, stderr_is_terminal};
use crate::manager_error::Explain;
use crate::wait;

#[derive(clap::Args)]
pub struct ApplyArgs {
    #[arg(long)]
    pub env: String,
    /// Manifest files or directories (shell globs welcome). `${NAME}` is resolved with the
    /// variables of the `kind: Environment` document named like --env (or, without one,
    /// the variables the Manager keeps for it); `${env:SWITCHYARD_…}` from this process.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also delete the entities carrying the --selector labels that the files no longer
    /// contain (never anything else).
    #[arg(long, requires = "selector")]
    pub prune: bool,
    /// Labels that mark the entities these files own, `key=value[,key=value]` (with --prune).
    #[arg(long)]
    pub selector: Option<String>,
    /// Only show what would change (the same as `switchyard plan`).
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse (409) unless the environment is still at this revision (the one a plan showed).
    #[arg(long)]
    pub expected_revision: Option<u64>,
    #[command(flatten)]
    pub canary: CanaryArgs,
    /// `--wait` / `--timeout` (apply only).
    #[command(flatten)]
    pub wait: wait::WaitArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `--canary` and its settings: the revision is committed as a canary, served to a share of
/// requests on every Worker, judged against the stable revision by the Manager, and
/// promoted (or rolled back) by itself.
#[derive(clap::Args, Default)]
pub struct CanaryArgs {
    /// Commit as a canary at this share of requests, e.g. `5%` (one step, held for
    /// --step-for, then promoted to 100% if it held).
    #[arg(long, value_name = "PERCENT")]
    pub canary: Option<String>,
    /// How requests are assigned: `random` (default), `header:NAME` (sticky per header
    /// value, the same on every Worker) or `client-ip`.
    #[arg(long, value_name = "KEY")]
    pub canary_key: Option<String>,
    /// The shares it goes through, e.g. `1%,5%,25%` (each held for --step-for; the last
    /// one that holds promotes it). Starts at --canary when both are given.
    #[arg(long, value_name = "PERCENTS")]
    pub steps: Option<String>,
    /// How long each step is held before it counts as held (default 10m).
    #[arg(long, value_name = "DURATION")]
    pub step_for: Option<String>,
    /// Roll back when the canary's error rate (gateway errors, upstream 5xx) exceeds the
    /// stable revision's by more than this (default 1%).
    #[arg(long, value_name = "PERCENT")]
    pub max_error_rate: Option<String>,
    /// Roll back when the canary's p99 latency exceeds the stable revision's by more than
    /// this (default 20%).
    #[arg(long, value_name = "PERCENT")]
    pub max_p99_increase: Option<String>,
    /// Count the canary's policy denials as errors (by default they are counted apart: a
    /// rule that denies more is not failing).
    #[arg(long)]
    pub denials_are_errors: bool,
}

impl CanaryArgs {
    /// The canary asked for (`None`: a plain apply); an error naming the flag otherwise.
    pub fn spec(&self) -> anyhow::Result<Option<CanarySpec>> {
        use switchyard_api::canary::{CanaryKey, parse_percent};
        let settings = [
            ("--canary-key", self.canary_key.is_some()),
            ("--step-for", self.step_for.is_some()),
            ("--max-error-rate", self.max_error_rate.is_some()),
            ("--max-p99-increase", self.max_p99_increase.is_some()),
            ("--denials-are-errors", self.denials_are_errors),
        ];
        if self.canary.is_none() && self.steps.is_none() {
            if let Some((flag, _)) = settings.iter().find(|(_, given)| *given) {
                bail!("{flag} applies to a canary: add --canary PERCENT (or --steps)");
            }
            return Ok(None);
        }
        let pct = |flag: &str, text: &str| {
            parse_percent(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        };
        let first = self
            .canary
            .as_deref()
            .map(|t| pct("--canary", t))
            .transpose()?;
        let steps_ppm = match &self.steps {
            Some(list) => {
                let steps = list
                    .split(',')
                    .map(|t| pct("--steps", t.trim()))
                    .collect::<anyhow::Result<Vec<u32>>>()?;
                if let Some(first) = first
                    && steps.first() != Some(&first)
                {
                    bail!(
                        "--canary {} but --steps starts at {}: give the first step once, or make them agree",
                        self.canary.as_deref().unwrap_or_default(),
                        list.split(',').next().unwrap_or_default()
                    );
                }
                steps
            }
            None => first.into_iter().collect(),
        };
        let mut spec = CanarySpec {
            steps_ppm,
            ..CanarySpec::at(0)
        };
        if let Some(key) = &self.canary_key {
            spec.key = key
                .parse::<CanaryKey>()
                .map_err(|e| anyhow::anyhow!("--canary-key: {e}"))?;
        }
        if let Some(d) = &self.step_for {
            let d = switchyard_config::duration::parse_duration(d)
                .map_err(|e| anyhow::anyhow!("--step-for: {e}"))?;
            spec.step_secs = d.as_secs().max(u64::from(d.subsec_nanos() > 0));
        }
        if let Some(t) = &self.max_error_rate {
            spec.max_error_rate_ppm = pct("--max-error-rate", t)?;
        }
        if let Some(t) = &self.max_p99_increase {
            spec.max_p99_increase_ppm = pct("--max-p99-increase", t)?;
        }
        spec.denials_are_errors = self.denials_are_errors;
        spec.validate().map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.replace("canary.steps_ppm", "--steps")
                    .replace("canary.step_secs", "--step-for")
            )
        })?;
        Ok(Some(spec))
    }
}

impl ApplyArgs {
    pub fn input(&self, dry_run: bool) -> Input<'_> {
        Input {
            env: &self.env,
            files: &self.files,
            prune_selector: if self.prune {
                self.selector.as_deref()
            } else {
                None
            },
            expected_revision: self.expected_revision,
            dry_run: dry_run || self.dry_run,
            canary: None,
        }
    }
}

/// What `apply`, `plan` (and `up`) send, before the files are read.
pub struct Input<'a> {
    pub env: &'a str,
    pub files: &'a [PathBuf],
    /// `key=value[,key=value]`: with `prune`, delete the entities carrying these labels
    /// that the files no longer contain.
    pub prune_selector: Option<&'a str>,
    pub expected_revision: Option<u64>,
    pub dry_run: bool,
    /// Commit it as this canary.
    pub canary: Option<CanarySpec>,
}

pub async fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let canary = args.canary.spec()?;
    let client = args.conn.client()?;
    let input = Input {
        canary: canary.clone(),
        ..args.input(false)
    };
    let result = send(&client, &input).await?;
    if let Some(spec) = canary
        .as_ref()
        .filter(|_| result.changed && !result.dry_run)
        && args.conn.output != Output::Json
    {
        eprintln!(
            "{}",
            crate::commands::canary::started(&args.env, result.revision, spec)
        );
    }
    let revision = (result.changed && !result.dry_run).then_some(result.revision);
    if args.conn.output == Output::Json {
        let report = wait::print_json(&client, &args.env, revision, &args.wait, &result).await?;
        return Ok(report
            .as_ref()
            .map_or_else(|| batch::exit(&result), wait::exit_code));
    }
    batch::print(&result, args.conn.output);
    if result.dry_run {
        return Ok(batch::exit(&result));
    }
    wait::after_commit(&client, &args.env, revision, &args.wait, args.conn.output).await
}

/// Reads the files for `env`, validates them locally, then sends one batch.
pub async fn send(client: &AdminClient, input: &Input<'_>) -> anyhow::Result<BatchResponse> {
    let progress = stderr_is_terminal();
    let set = read_for_env(client, input.env, input.files).await?;
    if progress {
        eprintln!(
            "read {} manifest(s) for {}{}",
            set.manifests.len(),
            input.env,
            match set.environment() {
                Some(_) => " (with its Environment document)",
                None => "",
            }
        );
    }
    let mut expected_revision = input.expected_revision;
    let mut delete = Vec::new();
    if let Some(selector) = input.prune_selector {
        let selector = parse_selector(selector)?;
        // Pinned to the revision the list was read at: a change in between is a 409.
        let info = client.env(input.env).await.explain()?;
        let listed = client.entities(input.env).await.explain()?;
        expected_revision = Some(expected_revision.unwrap_or(info.revision));
        delete = prune_list(&listed, &set, &selector);
    }
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
    let request = ApplyRequest {
        manifests: set.templates,
        expected_revision,
        dry_run: input.dry_run,
        delete,
        canary: input.canary.clone(),
    };
    client.apply(input.env, &request).await.explain()
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
    let now = std::time::SystemTime::now();
    for m in &set.manifests {
        if let Some(w) = tls::expiry_warning(m, now, tls::EXPIRY_WARNING) {
            eprintln!("warning: {w}");
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
    let listed = client.entities(env).await.explain()?;
    Ok(listed
        .into_iter()
        .find(|e| e.kind == Kind::Environment && e.name == env)
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
) -> Vec<EntityKey> {
    listed
        .iter()
        .filter(|e| e.kind != Kind::Environment)
        .filter(|e| selector.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
        .filter(|e| {
            !set.manifests
                .iter()
                .any(|m| m.value.kind() == e.kind && m.value.name() == e.name)
        })
        .map(|e| EntityKey::new(e.kind, e.name.clone()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn canary(args: &[(&str, &str)]) -> anyhow::Result<Option<CanarySpec>> {
        let mut a = CanaryArgs::default();
        for (flag, value) in args {
            let v = Some((*value).to_string());
            match *flag {
                "canary" => a.canary = v,
                "canary-key" => a.canary_key = v,
                "steps" => a.steps = v,
                "step-for" => a.step_for = v,
                "max-error-rate" => a.max_error_rate = v,
                "max-p99-increase" => a.max_p99_increase = v,
                other => panic!("{other}"),
            }
        }
        a.spec()
    }

    #[test]
    fn canary_flags_become_a_spec_and_bad_ones_are_named() {
        assert_eq!(canary(&[]).unwrap(), None);
        let one = canary(&[("canary", "5%")]).unwrap().unwrap();
        assert_eq!(one, CanarySpec::at(50_000));
        let steps = canary(&[
            ("canary", "1%"),
            ("steps", "1%, 5%,25%"),
            ("step-for", "5m"),
            ("canary-key", "header:X-User-Id"),
            ("max-error-rate", "0.5%"),
            ("max-p99-increase", "50%"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(steps.steps_ppm, [10_000, 50_000, 250_000]);
        assert_eq!(steps.step_secs, 300);
        assert_eq!(steps.max_error_rate_ppm, 5_000);
        assert_eq!(steps.max_p99_increase_ppm, 500_000);
        let bad = |args: &[(&str, &str)], want: &str| {
            let e = canary(args).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        };
        bad(
            &[("canary-key", "client-ip")],
            "--canary-key applies to a canary",
        );
        bad(
            &[("canary", "5%"), ("steps", "1%,5%")],
            "--steps starts at 1%",
        );
        bad(&[("canary", "five")], "--canary:");
        bad(&[("steps", "5%,1%")], "larger than the one before");
        bad(&[("canary", "100%")], "below 100%");
        bad(&[("canary", "5%"), ("step-for", "0s")], "--step-for");
        bad(
            &[("canary", "5%"), ("canary-key", "cookie")],
            "--canary-key",
        );
    }

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
}
