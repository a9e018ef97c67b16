//! `prompt-firewall`: the text of LLM requests checked against named rules.
//!
//! The body is parsed once as JSON. Each JSONPath in `paths` (default
//! `$.messages[*].content` and `$.prompt`: OpenAI-style `chat/completions` and `completions`)
//! selects values, and every string inside a selected value is inspected: a plain string, an
//! array of content parts (`[{"type":"text","text":"…"}]`), nested objects — their values,
//! never their keys. All rules are compiled together when the snapshot is compiled, so each
//! string is scanned once: by a multi-pattern regex searching leftmost-first, which can use
//! literal prefilters (a [`RegexSet`] cannot, and is many times slower on clean text); only
//! when something matched does the [`RegexSet`] tell which rules did. When several rules
//! match, the first listed one (anywhere in the inspected text) is reported: 400
//! `prompt_rejected`, naming the rule and never echoing the prompt; the rule's name goes in
//! [`Reply::detail`] for metrics.
//!
//! A body that cannot be inspected — larger than `maxBodyBytes`, not JSON, or JSON with a
//! duplicate object key (which upstream parsers may resolve differently from us, so it could
//! smuggle a prompt past the rules) — is denied with 400 `prompt_uninspectable`, or let
//! through with `onUninspectable: allow`. An empty (or all-whitespace) body carries no prompt
//! and passes, so requests without a body (`GET /v1/models`) keep working behind the same
//! proxy; so does JSON in which no path selects anything.
//!
//! Matching is on the decoded JSON text (escapes such as `\u0069` resolved), with the regex
//! crate's syntax and defaults: linear time in the text, `.` does not match a newline (use
//! `(?s)`), `^` and `$` anchor the whole string (use `(?m)`). A pattern that compiles to more
//! than [`RULE_SIZE_LIMIT`] bytes is refused at compile time, as is one matching empty text.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use http::StatusCode;
use regex::{RegexBuilder, RegexSet, RegexSetBuilder};
use regex_automata::meta;
use serde_json::Value;
use serde_json_path::JsonPath;

use self::strict_json::parse;
use super::{FieldError, Reply, Verdict};
use switchyard_config::manifest::{PromptFirewallSpec, PromptRuleSpec, Uninspectable};
use switchyard_config::size::ByteSize;

mod strict_json;

/// The largest `maxBodyBytes` accepted (the body is held in memory while inspected).
pub const MAX_BODY_LIMIT: u64 = 16 << 20;
/// The most one rule's pattern may compile to.
pub const RULE_SIZE_LIMIT: usize = 1 << 20;
/// The most all rules together may compile to.
pub const SET_SIZE_LIMIT: usize = 8 << 20;
/// The lazy DFA's cache (per thread using the rules); beyond it the regex engine falls back
/// to slower (still linear) matching rather than using more memory.
const DFA_SIZE_LIMIT: usize = 2 << 20;

const DUPLICATE_KEY: &str = "duplicate object key";

#[derive(Debug)]
pub struct PromptFirewallPolicy {
    pub max_body_bytes: u64,
    paths: Vec<JsonPath>,
    /// All rules: does any match?
    any: meta::Regex,
    /// The same, one pattern per rule in listed order: which match?
    rules: RegexSet,
    /// The denial for each rule, in listed order.
    rejections: Vec<Reply>,
    /// The answers to uninspectable bodies (`None`: let them through).
    too_large: Option<Reply>,
    not_json: Option<Reply>,
    duplicate_key: Option<Reply>,
}

pub fn compile(spec: &PromptFirewallSpec) -> Result<PromptFirewallPolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    let max_body_bytes = spec.max_body_bytes.bytes();
    if max_body_bytes == 0 || max_body_bytes > MAX_BODY_LIMIT {
        errors.push(FieldError::new(
            "maxBodyBytes",
            format!("must be between 1 byte and {}", ByteSize(MAX_BODY_LIMIT)),
        ));
    }

    if spec.paths.is_empty() {
        errors.push(FieldError::new(
            "paths",
            "at least one JSONPath is required",
        ));
    }
    let mut paths = Vec::with_capacity(spec.paths.len());
    for (i, p) in spec.paths.iter().enumerate() {
        match JsonPath::parse(p) {
            Ok(path) => paths.push(path),
            Err(e) => errors.push(FieldError::new(
                format!("paths[{i}]"),
                format!("invalid JSONPath {p:?}: {e}"),
            )),
        }
    }

    if spec.rules.is_empty() {
        errors.push(FieldError::new("rules", "at least one rule is required"));
    }
    let mut names = HashSet::new();
    let mut patterns = Vec::with_capacity(spec.rules.len());
    for (i, rule) in spec.rules.iter().enumerate() {
        if rule.name.trim().is_empty() {
            errors.push(FieldError::new(
                format!("rules[{i}].name"),
                "must not be empty",
            ));
        } else if !names.insert(rule.name.as_str()) {
            errors.push(FieldError::new(
                format!("rules[{i}].name"),
                format!("another rule is already named {:?}", rule.name),
            ));
        }
        match rule_pattern(rule) {
            Ok(p) => patterns.push(p),
            Err(message) => errors.push(FieldError::new(format!("rules[{i}].pattern"), message)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let too_large = || {
        vec![FieldError::new(
            "rules",
            format!(
                "the rules together are too large once compiled (over {}): use fewer or simpler rules",
                ByteSize(SET_SIZE_LIMIT as u64)
            ),
        )]
    };
    let rules = RegexSetBuilder::new(&patterns)
        .size_limit(SET_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => too_large(),
            e => vec![FieldError::new(
                "rules",
                format!("the rules cannot be compiled together: {}", regex_error(&e)),
            )],
        })?;
    // Configured as the `regex` crate configures its own (same syntax and limits), but
    // leftmost-first and without the patterns' capture groups.
    let any = meta::Regex::builder()
        .configure(
            meta::Regex::config()
                .nfa_size_limit(Some(SET_SIZE_LIMIT))
                .hybrid_cache_capacity(DFA_SIZE_LIMIT)
                .which_captures(regex_automata::nfa::thompson::WhichCaptures::Implicit),
        )
        .build_many(&patterns)
        .map_err(|e| match e.size_limit() {
            Some(_) => too_large(),
            None => vec![FieldError::new(
                "rules",
                format!("the rules cannot be compiled together: {e}"),
            )],
        })?;

    let rejections = spec
        .rules
        .iter()
        .map(|r| {
            let mut reply = Reply::deny(
                StatusCode::BAD_REQUEST,
                "prompt_rejected",
                PromptFirewallSpec::TYPE,
                format!("the prompt matches rule \"{}\"", r.name),
            );
            reply.detail = Some(Arc::from(r.name.as_str()));
            reply
        })
        .collect();
    let uninspectable = |why: String| match spec.on_uninspectable {
        Uninspectable::Deny => Some(Reply::deny(
            StatusCode::BAD_REQUEST,
            "prompt_uninspectable",
            PromptFirewallSpec::TYPE,
            format!("the request body cannot be inspected: {why}"),
        )),
        Uninspectable::Allow => None,
    };
    Ok(PromptFirewallPolicy {
        max_body_bytes,
        paths,
        any,
        rules,
        rejections,
        too_large: uninspectable(format!("it is larger than {max_body_bytes} bytes")),
        not_json: uninspectable("it is not valid JSON".into()),
        duplicate_key: uninspectable("it has a duplicate JSON object key".into()),
    })
}

/// The rule as one regex of the set (literals escaped, `(?i)` for case-insensitive rules),
/// checked on its own first so that a problem is reported against this rule.
fn rule_pattern(rule: &PromptRuleSpec) -> Result<String, String> {
    if rule.pattern.is_empty() {
        return Err("must not be empty".into());
    }
    let body = if rule.regex {
        rule.pattern.clone()
    } else {
        regex::escape(&rule.pattern)
    };
    let re = RegexBuilder::new(&body)
        .case_insensitive(rule.case_insensitive)
        .size_limit(RULE_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => format!(
                "the pattern is too large once compiled (over {}): simplify it \
                 (bounded repetitions multiply; Unicode classes such as \\w are large, \
                 (?-u:\\w) is ASCII-only)",
                ByteSize(limit as u64)
            ),
            e => format!("invalid regular expression: {}", regex_error(&e)),
        })?;
    if re.is_match("") {
        return Err("the pattern matches empty text: a rule must need some text to match".into());
    }
    Ok(if rule.case_insensitive {
        format!("(?i){body}")
    } else {
        body
    })
}

/// A regex error on one line (the crate's syntax errors span several, with a caret).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    match text.lines().find_map(|l| l.trim().strip_prefix("error: ")) {
        Some(reason) => reason.to_string(),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

impl PromptFirewallPolicy {
    /// Inspects a whole request body (at most `max_body_bytes`).
    pub fn inspect(&self, body: &[u8]) -> Verdict {
        if body.len() as u64 > self.max_body_bytes {
            return self.oversized();
        }
        // No body, no prompt (and nothing for the upstream to read one from).
        if body.iter().all(u8::is_ascii_whitespace) {
            return Verdict::Continue;
        }
        let doc = match parse(body) {
            Ok(doc) => doc,
            Err(e) if e.is_data() && e.to_string().starts_with(DUPLICATE_KEY) => {
                return answer(&self.duplicate_key);
            }
            Err(_) => return answer(&self.not_json),
        };
        match self.first_match(&doc) {
            Some(rule) => Verdict::Reply(self.rejections[rule].clone()),
            None => Verdict::Continue,
        }
    }

    /// The verdict for a body larger than `max_body_bytes` (never read whole).
    pub fn oversized(&self) -> Verdict {
        answer(&self.too_large)
    }

    /// The first listed rule that matches some selected string, if any.
    fn first_match(&self, doc: &Value) -> Option<usize> {
        let mut first: Option<usize> = None;
        for path in &self.paths {
            for node in path.query(doc) {
                let flow = each_string(node, &mut |text| {
                    // The usual case (no match) costs one fast `is_match` per string; which
                    // rules matched is only asked of the strings that match some rule.
                    let earlier = if self.any.is_match(text) {
                        self.rules.matches(text).iter().next()
                    } else {
                        None
                    };
                    if let Some(rule) = earlier
                        && first.is_none_or(|f| rule < f)
                    {
                        first = Some(rule);
                    }
                    if first == Some(0) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                if flow.is_break() {
                    return first;
                }
            }
        }
        first
    }
}

fn answer(reply: &Option<Reply>) -> Verdict {
    match reply {
        Some(r) => Verdict::Reply(r.clone()),
        None => Verdict::Continue,
    }
}

/// Calls `f` on every string in `v` (values of objects, not keys), depth first. The depth
/// is bounded by the JSON parser's recursion limit.
fn each_string<'v>(
    v: &'v Value,
    f: &mut impl FnMut(&'v str) -> ControlFlow<()>,
) -> ControlFlow<()> {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().try_for_each(|item| each_string(item, f)),
        Value::Object(map) => map.values().try_for_each(|item| each_string(item, f)),
        Value::Null | Value::Bool(_) | Value::Number(_) => ControlFlow::Continue(()),
    }
}

#[cfg(test)]
mod tests;
