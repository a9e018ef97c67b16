//! `switchyard audit`: the audit trail, newest first, filtered by environment, entity,
//! actor and age.

use std::process::ExitCode;

use anyhow::{Context, bail};
use switchyard_api::admin::AuditParams;
use switchyard_api::records::AuditRecord;

use crate::conn::ConnArgs;
use crate::manager_error::Explain;
use crate::text::{one_line, rfc3339, table};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  switchyard audit --env dev --since 1h
  switchyard audit --env prod --entity proxy/payments --limit 10
  switchyard audit --actor 'ci (tok_1a2b3c)' --output json
  switchyard audit --env dev --since 2024-05-01T12:00:00Z --until 2024-05-01T13:00:00Z
  switchyard audit --env dev --limit 50 --before 1234   # the next 50, older than id 1234

Times are UTC. Tokens scoped to environments (deployer) must give --env.")]
pub struct AuditArgs {
    /// Only this environment's records.
    #[arg(long)]
    pub env: Option<String>,
    /// Only this entity's records: KIND/NAME, e.g. proxy/payments or credential/openai-key
    /// (the kind is case-insensitive).
    #[arg(long, value_name = "KIND/NAME")]
    pub entity: Option<String>,
    /// Only this actor's records, as shown in the ACTOR column (e.g. `ci (tok_1a2b3c)`).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only records this recent: a duration (30m, 1h, 2d), an RFC 3339 time
    /// (2024-05-01T12:00:00Z) or unix milliseconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Only records at or before this time: as --since.
    #[arg(long)]
    pub until: Option<String>,
    /// Only records with an id below this one: the next page after a listing whose last
    /// (oldest) record had this id (`--output json` shows ids).
    #[arg(long, value_name = "ID")]
    pub before: Option<u64>,
    /// How many records at most (newest first).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    // Checked here rather than by clap, so a mistake is one line naming the expected form.
    let entity = match &args.entity {
        Some(e) => Some(parse_entity(e).with_context(|| format!("--entity {e:?}"))?),
        None => None,
    };
    let since = match &args.since {
        Some(s) => Some(parse_since(s).with_context(|| format!("--since {s:?}"))?),
        None => None,
    };
    let until = match &args.until {
        Some(s) => Some(parse_since(s).with_context(|| format!("--until {s:?}"))?),
        None => None,
    };
    let client = args.conn.client()?;
    let query = AuditParams {
        env: args.env,
        entity,
        actor: args.actor,
        since: since.map(|ms| ms.to_string()),
        until: until.map(|ms| ms.to_string()),
        before: args.before,
        limit: args.limit,
    };
    // Printed as received with `--output json`.
    let records = client.audit(&query).await.explain()?;
    args.conn.output.print(&records, || describe(&records));
    Ok(ExitCode::SUCCESS)
}

fn describe(records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return "no audit records match".to_string();
    }
    let version = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("v{v}"));
    let rows = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                rfc3339(r.at),
                r.actor.clone(),
                r.env.clone().unwrap_or_else(|| "-".into()),
                r.operation.as_str().to_string(),
                format!("{}/{}", r.entity_kind.to_ascii_lowercase(), r.entity_name),
                if r.old_version.is_none() && r.new_version.is_none() {
                    "-".into()
                } else {
                    format!("{} -> {}", version(r.old_version), version(r.new_version))
                },
                r.revision.map_or_else(|| "-".into(), |v| v.to_string()),
                r.detail.as_deref().map_or_else(|| "-".into(), one_line),
            ]
        })
        .collect::<Vec<_>>();
    table(
        &[
            "ID",
            "TIME",
            "ACTOR",
            "ENV",
            "OPERATION",
            "ENTITY",
            "VERSION",
            "REVISION",
            "DETAIL",
        ],
        &rows,
    )
    .trim_end()
    .to_string()
}

/// `proxy/payments` → `Proxy/payments` (kinds are stored as manifests write them).
fn parse_entity(s: &str) -> anyhow::Result<String> {
    let Some((kind, name)) = s.split_once('/') else {
        bail!("expected KIND/NAME, e.g. proxy/payments");
    };
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphabetic()) || name.is_empty() {
        bail!("expected KIND/NAME, e.g. proxy/payments");
    }
    let mut k = kind.to_ascii_lowercase();
    k[..1].make_ascii_uppercase();
    Ok(format!("{k}/{name}"))
}

/// A duration back from now, an RFC 3339 time, or unix milliseconds → unix milliseconds.
fn parse_since(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let to_ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
    };
    if let Ok(d) = humantime::parse_duration(s)
        && let Some(t) = std::time::SystemTime::now().checked_sub(d)
        && let Some(ms) = to_ms(t)
    {
        return Ok(ms);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s)
        && let Some(ms) = to_ms(t)
    {
        return Ok(ms);
    }
    bail!(
        "expected a duration (30m, 1h, 2d), an RFC 3339 time (2024-05-01T12:00:00Z) or unix milliseconds"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_kind_slash_name_with_any_case_of_kind() {
        assert_eq!(parse_entity("proxy/payments").unwrap(), "Proxy/payments");
        assert_eq!(parse_entity("CREDENTIAL/a/b").unwrap(), "Credential/a/b");
        for bad in ["proxy", "/payments", "proxy/", "pro-xy/a"] {
            assert!(
                parse_entity(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("KIND/NAME"),
                "{bad}"
            );
        }
    }

    #[test]
    fn since_takes_durations_times_and_millis() {
        assert_eq!(parse_since("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        let hour_ago = parse_since("1h").unwrap();
        let now = switchyard_api::records::now_millis();
        assert!((now - hour_ago - 3_600_000).abs() < 60_000);
        assert!(parse_since("yesterday").is_err());
    }
}
