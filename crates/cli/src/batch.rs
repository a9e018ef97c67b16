//! The Manager's answer to an apply, a plan (dry run), a promotion or a rollback
//! ([`BatchResponse`]): how it is shown to people, and the exit status it gives.

use std::process::ExitCode;

use switchyard_api::admin::BatchResponse;
use switchyard_config::plan::{ChangeClass, FieldChange};

use crate::conn::{self, Output};

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Prints the answer as is (json) or described (text, coloured on a terminal).
pub fn print(result: &BatchResponse, output: Output) {
    output.print(result, || describe(result, conn::stdout_is_terminal()));
}

/// A dry run exits 2 when something would change (like `terraform plan
/// -detailed-exitcode`); everything else that got an answer exits 0.
pub fn exit(result: &BatchResponse) -> ExitCode {
    if result.dry_run && result.changed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

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
    for planned in &r.changes {
        let c = &planned.change;
        let (mark, colour_of, what) = match (c.old_version, c.new_version, r.dry_run) {
            (None, Some(_), true) => ("+", GREEN, "create".to_string()),
            (None, Some(v), false) => ("+", GREEN, format!("created v{v}")),
            (Some(o), Some(v), _) => ("~", YELLOW, format!("v{o} -> v{v}")),
            (Some(o), None, true) => ("-", RED, format!("delete (v{o})")),
            (Some(o), None, false) => ("-", RED, format!("deleted (was v{o})")),
            (None, None, _) => (" ", DIM, "unchanged".to_string()),
        };
        let hot = match planned.hot.class {
            ChangeClass::Hot => "hot".to_string(),
            class => format!("{class}: {}", planned.hot.how),
        };
        out.push_str(&format!(
            "\n  {} {}/{}: {what} ({hot})",
            paint(colour_of, mark),
            c.kind.lower(),
            c.name,
        ));
        for f in &planned.diff {
            out.push_str("\n      ");
            out.push_str(&field_line(f, &paint));
            if f.class != ChangeClass::Hot {
                out.push_str(&format!(" [{}]", f.class));
            }
        }
    }
    if r.dry_run
        && r.changes
            .iter()
            .any(|c| c.hot.class == ChangeClass::RestartRequired)
    {
        out.push_str(&format!(
            "\n{}",
            paint(
                YELLOW,
                &format!(
                    "restart-required: `switchyard apply` refuses this; `switchyard rollout --env {} FILES…` \
                     applies it, handing each Worker over to a successor process",
                    r.env
                )
            )
        ));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_shows_each_change_its_fields_and_hotness() {
        let r: BatchResponse = serde_json::from_value(serde_json::json!({
            "env": "dev", "revision": 4, "previous_revision": 4, "changed": true, "dry_run": true,
            "changes": [
                {"kind": "Proxy", "name": "payments", "old_version": 3, "new_version": 4, "digest": "d",
                 "hot": {"hot": true, "class": "hot", "how": "swapped"},
                 "diff": [{"path": "spec.upstream.targets[0].url", "old": "http://a", "new": "http://b"}]},
                {"kind": "Credential", "name": "key", "old_version": 1, "new_version": 2, "digest": "d",
                 "hot": {"hot": true, "class": "hot", "how": "swapped"},
                 "diff": [{"path": "spec.value", "old": "<redacted>", "new": "<redacted>", "secret": true}]},
                {"kind": "Proxy", "name": "old", "old_version": 2, "new_version": null, "digest": "",
                 "hot": {"hot": true, "class": "hot", "how": "swapped"}}
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
