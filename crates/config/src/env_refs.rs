//! References in manifest text, filled in before the text is parsed:
//!
//! - `${env:NAME}`: from the environment of the process that reads the files (`switchyard
//!   apply` in CI, or a files-mode Worker), so secret values come from a secret store and
//!   never sit in git. Only names starting with `SWITCHYARD_` may be used (other variables
//!   of the process stay private).
//! - `${NAME}`: an environment's variable (`spec.variables` of its `kind: Environment`
//!   document), so the same files serve dev, stage and prod. Resolved by `switchyard
//!   apply --env` and by the Manager (which keeps the text as written, a *template*, so a
//!   promotion can resolve it again with the target environment's variables).
//!
//! `$${` writes a literal `${`. A value is put into the YAML text where the reference
//! stands, escaped for the kind of scalar around it (double-quoted, single-quoted or
//! plain), so no value can change the document's structure. Unquoted (a plain scalar, as
//! Helm and envsubst users write `url: ${UPSTREAM}`), a value is used as is when it reads
//! back as the same text there — `http://10.0.0.1:8080` does; one that would end the
//! scalar, start a comment or read as YAML syntax (`: `, ` #`, `,[]{}`, a leading indicator
//! character, surrounding spaces, a line break) is refused, naming the reference quoted as
//! the fix (`"${UPSTREAM}"`). A refusal never shows the value. References in comments are
//! left as written.

use std::borrow::Cow;
use std::sync::Arc;

use crate::error::{ConfigError, Position, Reason, SourceRef};

pub const PREFIX: &str = "SWITCHYARD_";

/// What to do with one family of references.
pub enum Refs<'a> {
    /// Fill in from `lookup`; a missing value is an error whose message ends with `hint`,
    /// for `missing`.
    Expand {
        lookup: &'a dyn Fn(&str) -> Option<String>,
        hint: &'a str,
        missing: Reason,
    },
    /// Leave as written (someone else resolves them later).
    Keep,
    /// Refuse, with this explanation.
    Refuse(&'a str),
}

/// How a text's references are resolved.
pub struct Resolver<'a> {
    /// `${env:NAME}`.
    pub env: Refs<'a>,
    /// `${NAME}`.
    pub vars: Refs<'a>,
    /// Turn `$${` into `${` (the last pass over a text); otherwise leave it as written.
    pub unescape: bool,
}

/// Why a files-mode read refuses `${NAME}`.
pub const VARS_NEED_APPLY: &str = "environment variables (`${NAME}`) are resolved by `switchyard apply --env ENV` from the environment's kind: Environment document; here only `${env:SWITCHYARD_…}` can be used";

/// Expands every `${env:NAME}` in `text` with `lookup` (a files-mode read: environment
/// variables `${NAME}` are refused).
pub fn expand<'t>(
    file: &Arc<str>,
    text: &'t str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Cow<'t, str>, Vec<ConfigError>> {
    Resolver {
        env: Refs::Expand {
            lookup: &lookup,
            hint: "is not set in the environment of this process",
            missing: Reason::Invalid,
        },
        vars: Refs::Refuse(VARS_NEED_APPLY),
        unescape: true,
    }
    .run(file, text)
}

/// The environment variables (`${NAME}`) a text refers to, outside comments, in order of
/// first use.
pub fn variables_in(text: &str) -> Vec<String> {
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let record = |name: &str| {
        let mut seen = seen.borrow_mut();
        if !seen.iter().any(|s| s == name) {
            seen.push(name.to_string());
        }
        Some("x".to_string())
    };
    let file: Arc<str> = "".into();
    let _ = Resolver {
        env: Refs::Keep,
        vars: Refs::Expand {
            lookup: &record,
            hint: "",
            missing: Reason::Invalid,
        },
        unescape: false,
    }
    .run(&file, text);
    seen.into_inner()
}

impl Resolver<'_> {
    pub fn run<'t>(
        &self,
        file: &Arc<str>,
        text: &'t str,
    ) -> Result<Cow<'t, str>, Vec<ConfigError>> {
        if !text.contains("${") {
            return Ok(Cow::Borrowed(text));
        }
        let source = SourceRef {
            file: file.clone(),
            document: 0,
            line_offset: 0,
        };
        let mut out = String::with_capacity(text.len());
        let mut errors = Vec::new();
        for (line_no, line) in text.split_inclusive('\n').enumerate() {
            let mut rest = line;
            let mut col = 0usize;
            while let Some(i) = rest.find("${") {
                // `$${` is an escaped literal `${`.
                if i > 0 && rest.as_bytes()[i - 1] == b'$' {
                    if self.unescape {
                        out.push_str(&rest[..i - 1]);
                        out.push_str("${");
                    } else {
                        out.push_str(&rest[..i + 2]);
                    }
                    col += i + 2;
                    rest = &rest[i + 2..];
                    continue;
                }
                out.push_str(&rest[..i]);
                let at = Position {
                    line: u32::try_from(line_no + 1).unwrap_or(u32::MAX),
                    column: u32::try_from(col + i + 1).unwrap_or(u32::MAX),
                };
                let error = |message: String| {
                    let mut e = ConfigError::new(&source, at, message);
                    e.field = key_of_line(line);
                    e
                };
                let Some(end) = rest[i..].find('}') else {
                    errors.push(error(
                        "unterminated `${`: expected `${env:NAME}` or `${NAME}` (write `$${` for a literal `${`)".into(),
                    ));
                    out.push_str(&rest[i..]);
                    rest = "";
                    break;
                };
                let written = &rest[i..i + end + 1];
                let reference = &rest[i + 2..i + end];
                let prefix_in_line = &line[..col + i];
                col += i + end + 1;
                rest = &rest[i + end + 1..];
                if matches!(quoting(prefix_in_line), Quoting::Comment) {
                    // Comments are left as written.
                    out.push_str(written);
                    continue;
                }
                let (refs, name, shown, valid) = match reference.strip_prefix("env:") {
                    Some(name) => (
                        &self.env,
                        name,
                        format!("`${{env:{name}}}`"),
                        valid_env_name(name),
                    ),
                    None => (
                        &self.vars,
                        reference,
                        format!("`${{{reference}}}`"),
                        valid_var_name(reference),
                    ),
                };
                if !valid {
                    errors.push(error(if reference.starts_with("env:") {
                        format!("{shown}: only environment variables whose names start with {PREFIX} (letters, digits, _) can be used")
                    } else {
                        format!("unknown reference {shown}: expected `${{NAME}}` (an environment's variable: letters, digits, _) or `${{env:SWITCHYARD_…}}` (write `$${{` for a literal `${{`)")
                    }));
                    continue;
                }
                match refs {
                    Refs::Keep => out.push_str(written),
                    Refs::Refuse(why) => errors.push(error(format!("{shown}: {why}"))),
                    Refs::Expand {
                        lookup,
                        hint,
                        missing,
                    } => match lookup(name) {
                        None => {
                            errors.push(error(format!("{shown}: {name} {hint}")).because(*missing))
                        }
                        Some(value) => match escape(prefix_in_line, &value, written) {
                            Ok(v) => out.push_str(&v),
                            Err(why) => errors.push(error(format!("{shown}: the value {why}"))),
                        },
                    },
                }
            }
            out.push_str(rest);
        }
        if errors.is_empty() {
            Ok(Cow::Owned(out))
        } else {
            Err(errors)
        }
    }
}

/// The mapping key a line sets (`url` for `  - url: "${X}"`), to name the field in errors.
fn key_of_line(line: &str) -> String {
    let t = line.trim_start().trim_start_matches("- ").trim_start();
    match t.find(':') {
        Some(i) if i > 0 && !t[..i].contains(['{', '[', '"', '\'', ' ', '$']) => t[..i].to_string(),
        _ => String::new(),
    }
}

fn valid_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn valid_env_name(name: &str) -> bool {
    name.len() > PREFIX.len()
        && name.starts_with(PREFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

enum Quoting {
    Plain,
    Single,
    Double,
    /// After a `#` that starts a comment: left as written.
    Comment,
}

/// The kind of scalar a reference stands in, from the text before it on its line.
fn quoting(before: &str) -> Quoting {
    let mut state = Quoting::Plain;
    let mut prev = ' ';
    let mut chars = before.chars().peekable();
    while let Some(c) = chars.next() {
        let after_space = prev.is_whitespace();
        prev = c;
        state = match (state, c) {
            (Quoting::Plain, '"') => Quoting::Double,
            (Quoting::Plain, '\'') => Quoting::Single,
            // A comment starts at `#` after whitespace (or at the start of the line).
            (Quoting::Plain, '#') if after_space => return Quoting::Comment,
            (Quoting::Double, '\\') => {
                chars.next();
                Quoting::Double
            }
            (Quoting::Double, '"') => Quoting::Plain,
            (Quoting::Single, '\'') => {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    Quoting::Single
                } else {
                    Quoting::Plain
                }
            }
            (s, _) => s,
        };
    }
    state
}

/// `value` written where a reference stood, after `before` on its line; `written` is the
/// reference as written (`${NAME}`), to name the fix in a refusal.
fn escape(before: &str, value: &str, written: &str) -> Result<String, String> {
    match quoting(before) {
        Quoting::Comment => Err("is in a comment".into()),
        Quoting::Double => {
            let mut out = String::with_capacity(value.len());
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => {
                        return Err("contains a control character".into());
                    }
                    c => out.push(c),
                }
            }
            Ok(out)
        }
        Quoting::Single => {
            if value.contains(['\n', '\r']) {
                return Err(format!(
                    "spans several lines: put the reference in double quotes (\"{written}\")"
                ));
            }
            Ok(value.replace('\'', "''"))
        }
        Quoting::Plain => match plain_unsafe(value) {
            None => Ok(value.to_string()),
            Some(why) => Err(format!(
                "{why}, so it cannot stand unquoted here: quote the reference (\"{written}\")"
            )),
        },
    }
}

/// Why `value` cannot stand in a plain (unquoted) YAML scalar as the same text, if it
/// cannot: it would end the scalar, start a comment, or read as YAML syntax. (Flow
/// indicators are refused anywhere: the reference may be inside `[…]` or `{…}`.)
fn plain_unsafe(value: &str) -> Option<&'static str> {
    let Some(first) = value.chars().next() else {
        return Some("is empty");
    };
    if value.chars().any(char::is_control) {
        return Some("contains a control character or a line break");
    }
    if first == ' ' || value.ends_with(' ') {
        return Some("starts or ends with a space");
    }
    if value.contains(": ") || value.ends_with(':') {
        return Some("contains `: `");
    }
    if value.contains(" #") {
        return Some("contains ` #`");
    }
    if value.contains([',', '[', ']', '{', '}']) {
        return Some("contains a flow indicator (`,`, `[`, `]`, `{` or `}`)");
    }
    let second = value.chars().nth(1);
    let leading_indicator = matches!(
        first,
        '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`'
    ) || (matches!(first, '-' | '?' | ':')
        && second.is_none_or(|c| c == ' '));
    if leading_indicator {
        return Some("starts with an indicator character");
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SWITCHYARD_ACME_KEY" => Some("acme-123".into()),
            "SWITCHYARD_TRICKY" => Some("a\"b\\c\nd: e".into()),
            "SWITCHYARD_EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, Vec<String>> {
        let f: Arc<str> = "keys.yaml".into();
        expand(&f, text, env)
            .map(Cow::into_owned)
            .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn references_are_filled_in_and_escaped_for_their_quoting() {
        assert_eq!(
            run("key: \"${env:SWITCHYARD_ACME_KEY}\"\n").unwrap(),
            "key: \"acme-123\"\n"
        );
        assert_eq!(
            run("key: ${env:SWITCHYARD_ACME_KEY}\n").unwrap(),
            "key: acme-123\n"
        );
        assert_eq!(
            run("key: \"${env:SWITCHYARD_TRICKY}\"\n").unwrap(),
            "key: \"a\\\"b\\\\c\\nd: e\"\n"
        );
        assert_eq!(
            run("a: 'x${env:SWITCHYARD_ACME_KEY}'").unwrap(),
            "a: 'xacme-123'"
        );
        assert_eq!(run("a: \"$${literal}\"").unwrap(), "a: \"${literal}\"");
        assert_eq!(run("no references").unwrap(), "no references");
        // Comments are left alone, references and all.
        assert_eq!(
            run("# use ${env:SWITCHYARD_NOPE} here\nk: v # ${env:X}\n").unwrap(),
            "# use ${env:SWITCHYARD_NOPE} here\nk: v # ${env:X}\n"
        );
        assert_eq!(
            run("k: a#${env:SWITCHYARD_ACME_KEY}").unwrap(),
            "k: a#acme-123"
        );
    }

    #[test]
    fn the_value_round_trips_through_yaml() {
        let text = run("value: \"${env:SWITCHYARD_TRICKY}\"\n").unwrap();
        let v: std::collections::BTreeMap<String, String> = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(v["value"], "a\"b\\c\nd: e");
    }

    #[test]
    fn problems_name_the_place() {
        let e = run("a: 1\nkey: \"${env:SWITCHYARD_MISSING}\"\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("keys.yaml:2:7:"), "{e:?}");
        assert!(e[0].contains("SWITCHYARD_MISSING is not set"), "{e:?}");
        let e = run("key: ${env:HOME}").unwrap_err();
        assert!(e[0].contains("start with SWITCHYARD_"), "{e:?}");
        let e = run("key: ${SWITCHYARD_X}").unwrap_err();
        assert!(e[0].contains("switchyard apply --env"), "{e:?}");
        assert!(e[0].contains(": key: "), "the field is named: {e:?}");
        let e = run("key: ${no-such}").unwrap_err();
        assert!(e[0].contains("unknown reference"), "{e:?}");
        let e = run("key: ${env:SWITCHYARD_TRICKY}").unwrap_err();
        assert!(
            e[0].contains("quote the reference (\"${env:SWITCHYARD_TRICKY}\")"),
            "{e:?}"
        );
        let e = run("key: \"${env:SWITCHYARD_ACME_KEY\"").unwrap_err();
        assert!(e[0].contains("unterminated"), "{e:?}");
    }

    /// `text` with `${NAME}` and `${env:NAME}` both filled in from `values`.
    fn both(text: &str, values: &[(&str, &str)]) -> Result<String, Vec<String>> {
        let lookup = |name: &str| {
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        let f: Arc<str> = "m.yaml".into();
        Resolver {
            env: Refs::Expand {
                lookup: &lookup,
                hint: "is not set",
                missing: Reason::Invalid,
            },
            vars: Refs::Expand {
                lookup: &lookup,
                hint: "is not a variable",
                missing: Reason::Invalid,
            },
            unescape: true,
        }
        .run(&f, text)
        .map(Cow::into_owned)
        .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn unquoted_references_take_values_that_read_back_the_same() {
        let safe = [
            "http://10.0.0.1:8080",
            "a#b",
            "it's",
            "say \"hi\"",
            "-1",
            "-x",
            "50%",
            "a & b",
            "/v1/chat?x=1&y=2",
            "é✓",
        ];
        for value in safe {
            for reference in ["${UPSTREAM}", "${env:SWITCHYARD_UPSTREAM}"] {
                let text = both(
                    &format!("url: {reference}\n"),
                    &[("UPSTREAM", value), ("SWITCHYARD_UPSTREAM", value)],
                )
                .unwrap_or_else(|e| panic!("{value:?}: {e:?}"));
                let back: std::collections::BTreeMap<String, String> =
                    serde_saphyr::from_str(&text).unwrap();
                assert_eq!(back["url"], value, "{text}");
            }
        }
    }

    #[test]
    fn unquoted_references_refuse_what_yaml_would_read_otherwise_naming_the_fix() {
        let unsafe_values = [
            ("a: b", "contains `: `"),
            ("a:", "contains `: `"),
            ("a #b", "contains ` #`"),
            ("[a]", "flow indicator"),
            ("a,b", "flow indicator"),
            ("{a}", "flow indicator"),
            ("*ref", "indicator character"),
            ("&anchor", "indicator character"),
            ("!tag", "indicator character"),
            ("#x", "indicator character"),
            ("- x", "indicator character"),
            ("-", "indicator character"),
            ("? x", "indicator character"),
            ("|", "indicator character"),
            ("'q'", "indicator character"),
            ("\"q\"", "indicator character"),
            ("@x", "indicator character"),
            (" x", "space"),
            ("x ", "space"),
            ("a\nb", "line break"),
            ("", "is empty"),
        ];
        for (value, why) in unsafe_values {
            let e = both("url: ${UPSTREAM}\n", &[("UPSTREAM", value)]).unwrap_err();
            assert!(e[0].contains(why), "{value:?}: {e:?}");
            assert!(
                e[0].contains("quote the reference (\"${UPSTREAM}\")"),
                "{value:?}: {e:?}"
            );
            let e = both(
                "url: ${env:SWITCHYARD_UPSTREAM}\n",
                &[("SWITCHYARD_UPSTREAM", value)],
            )
            .unwrap_err();
            assert!(
                e[0].contains("quote the reference (\"${env:SWITCHYARD_UPSTREAM}\")"),
                "{value:?}: {e:?}"
            );
            // The value itself is never shown (it may be a secret).
            if value.len() > 2 {
                assert!(!e[0].contains(value), "{value:?}: {e:?}");
            }
            // Quoted, the same value is fine.
            let text = both("url: \"${UPSTREAM}\"\n", &[("UPSTREAM", value)]).unwrap();
            let back: std::collections::BTreeMap<String, String> =
                serde_saphyr::from_str(&text).unwrap();
            assert_eq!(back["url"], value, "{text}");
        }
    }
}
