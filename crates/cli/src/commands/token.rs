//! `switchyard token list|revoke`: the Manager's API tokens (admin token). Secrets are never
//! shown: a token is named by its public id (`tok_…`). Tokens are created with
//! `switchyard manager token create`.

use std::process::ExitCode;

use switchyard_api::records::{TokenRecord, now_millis};

use crate::conn::ConnArgs;
use crate::manager_error::Explain;
use crate::text::{rfc3339, table};

#[derive(clap::Subcommand)]
pub enum TokenAction {
    /// Every token, revoked and expired ones included (never a secret).
    #[command(after_help = "Examples:
  switchyard token list
  switchyard token list --output json")]
    List {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Revoke a token by its id: it is refused from its next request on.
    #[command(after_help = "Examples:
  switchyard token revoke tok_1a2b3c4d5e

The Manager that revokes it refuses the token at once, on every endpoint. Revoking a revoked
token changes nothing.")]
    Revoke {
        /// The token's id (`tok_…`, as `switchyard token list` shows it).
        id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

pub async fn run(action: TokenAction) -> anyhow::Result<ExitCode> {
    match action {
        TokenAction::List { conn } => {
            let tokens = conn.client()?.tokens().await.explain()?;
            conn.output
                .print(&tokens, || describe(&tokens, now_millis()));
        }
        TokenAction::Revoke { id, conn } => {
            let token = conn.client()?.revoke_token(&id).await.explain()?;
            conn.output.print(&token, || {
                format!(
                    "token {} ({:?}, {}) revoked{}",
                    token.id,
                    token.name,
                    token.role.as_str(),
                    token
                        .revoked_at
                        .map(|at| format!(" at {}", rfc3339(at)))
                        .unwrap_or_default()
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(tokens: &[TokenRecord], now: i64) -> String {
    let rows = tokens
        .iter()
        .map(|t| {
            let status = match (t.revoked, t.revoked_at) {
                (true, Some(at)) => format!("revoked {}", rfc3339(at)),
                (true, None) => "revoked".to_string(),
                (false, _) if t.expired_at(now) => "expired".to_string(),
                (false, _) => "active".to_string(),
            };
            vec![
                t.id.clone(),
                t.name.clone(),
                t.role.as_str().to_string(),
                if t.envs.is_empty() {
                    "*".to_string()
                } else {
                    t.envs.join(",")
                },
                rfc3339(t.created_at),
                t.expires_at.map_or_else(|| "never".to_string(), rfc3339),
                status,
            ]
        })
        .collect::<Vec<_>>();
    table(
        &["ID", "NAME", "ROLE", "ENVS", "CREATED", "EXPIRES", "STATUS"],
        &rows,
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use switchyard_api::records::Role;

    use super::*;

    #[test]
    fn the_list_shows_scope_expiry_and_status_never_a_secret() {
        let token = |id: &str, revoked: bool, expires_at: Option<i64>| TokenRecord {
            id: id.into(),
            name: format!("{id}-name"),
            hash: "hash-never-shown".into(),
            role: Role::Deployer,
            envs: vec!["dev".into(), "prod".into()],
            created_at: 1_700_000_000_000,
            revoked,
            revoked_at: revoked.then_some(1_700_000_100_000),
            expires_at,
        };
        let text = describe(
            &[
                token("tok_a", false, None),
                token("tok_b", true, None),
                token("tok_c", false, Some(1_700_000_050_000)),
            ],
            1_700_000_060_000,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("ID") && lines[0].ends_with("STATUS"),
            "{text}"
        );
        assert!(
            lines[1].contains("dev,prod") && lines[1].ends_with("active"),
            "{text}"
        );
        assert!(lines[2].ends_with("revoked 2023-11-14T22:15:00Z"), "{text}");
        assert!(
            lines[3].contains("2023-11-14T22:14:10Z") && lines[3].ends_with("expired"),
            "{text}"
        );
        assert!(!text.contains("hash"), "{text}");
    }
}
