//! What a planned change does, for people: the fields that differ between two versions of
//! an entity (secret values redacted), and whether the change can be applied hot.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Kind;
use crate::manifest::redact_json;

/// One field that differs. `path` is like `spec.upstream.targets[0].url`; `old` is absent
/// for an added field, `new` for a removed one. Secret values read `"<redacted>"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldChange {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// The field holds a secret: its values are not shown, only that it changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// How this field's change reaches the Workers, and why (filled in by the engine's
    /// classification; `hot` until then).
    #[serde(default = "hot_class")]
    pub class: ChangeClass,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

fn hot_class() -> ChangeClass {
    ChangeClass::Hot
}

/// The fields that differ between two versions of an entity's canonical JSON (`None` =
/// the entity does not exist on that side). Computed on the clear values, shown with the
/// secret ones redacted.
pub fn field_changes(kind: Kind, old: Option<&str>, new: Option<&str>) -> Vec<FieldChange> {
    let parse = |t: Option<&str>| t.and_then(|t| serde_json::from_str::<Value>(t).ok());
    let (clear_old, clear_new) = (parse(old), parse(new));
    let redacted_old = old.map(|t| redact_json(kind, t));
    let redacted_new = new.map(|t| redact_json(kind, t));
    let mut out = Vec::new();
    walk(
        String::new(),
        clear_old.as_ref(),
        clear_new.as_ref(),
        &mut out,
    );
    for change in &mut out {
        let shown_old = redacted_old.as_ref().and_then(|v| at(v, &change.path));
        let shown_new = redacted_new.as_ref().and_then(|v| at(v, &change.path));
        let clear_o = clear_old.as_ref().and_then(|v| at(v, &change.path));
        let clear_n = clear_new.as_ref().and_then(|v| at(v, &change.path));
        if shown_old != clear_o || shown_new != clear_n {
            change.secret = true;
            change.old = shown_old.cloned();
            change.new = shown_new.cloned();
        }
    }
    out
}

fn walk(path: String, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(p, a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                walk(format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(FieldChange {
            path,
            old: a.cloned(),
            new: b.cloned(),
            secret: false,
            class: ChangeClass::Hot,
            reason: String::new(),
        }),
    }
}

/// The value at `path` (as built by `walk`).
fn at<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut v = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            v = v.get(key)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            v = v.get(i)?;
        }
    }
    Some(v)
}

/// How a change reaches the Workers. The classification of every field of every kind
/// is one table in the engine crate (`switchyard_engine::classify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ChangeClass {
    /// Swapped atomically: requests in flight finish on the version they started with,
    /// connections are kept.
    Hot,
    /// Applied by the running Worker without a restart, but connections move: old ones
    /// finish where they are (drained), new ones go to the new place (a listener moved).
    HotWithDrain,
    /// A Worker process takes it only when it starts: refused by `apply`, rolled out by
    /// `switchyard rollout` (a handover per Worker, one at a time).
    RestartRequired,
}

impl ChangeClass {
    /// As written in plans and errors: `hot`, `hot-with-drain`, `restart-required`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeClass::Hot => "hot",
            ChangeClass::HotWithDrain => "hot-with-drain",
            ChangeClass::RestartRequired => "restart-required",
        }
    }

    /// Whether `apply` may carry it (everything but a restart).
    pub const fn is_hot(self) -> bool {
        !matches!(self, ChangeClass::RestartRequired)
    }
}

impl std::fmt::Display for ChangeClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a change of an entity is applied hot (atomic swap, requests in flight finish on
/// the version they started with, connections kept), and how: the strictest class of the
/// fields it changes, with that class's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hotness {
    /// `class` is not `restart-required`.
    pub hot: bool,
    pub class: ChangeClass,
    pub how: String,
}

impl Hotness {
    pub fn new(class: ChangeClass, how: impl Into<String>) -> Hotness {
        Hotness {
            hot: class.is_hot(),
            class,
            how: how.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn changed_added_and_removed_fields_are_listed_by_path() {
        let old = r#"{"spec":{"upstream":{"targets":[{"url":"http://a"}]},"routes":[{"pathPrefix":"/p"}]}}"#;
        let new = r#"{"spec":{"upstream":{"targets":[{"url":"http://b"},{"url":"http://c"}]},"policies":[]}}"#;
        let c = field_changes(Kind::Proxy, Some(old), Some(new));
        let paths: Vec<&str> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.policies",
                "spec.routes",
                "spec.upstream.targets[0].url",
                "spec.upstream.targets[1]"
            ]
        );
        assert_eq!(c[2].old, Some(Value::String("http://a".into())));
        assert_eq!(c[2].new, Some(Value::String("http://b".into())));
        assert!(c[1].new.is_none() && c[0].old.is_none());
        assert_eq!(
            at(
                &serde_json::from_str(new).unwrap(),
                "spec.upstream.targets[1].url"
            )
            .unwrap(),
            "http://c"
        );
    }

    #[test]
    fn secret_values_are_never_shown() {
        let old = r#"{"kind":"Credential","spec":{"type":"secret","value":"s3cret-old"}}"#;
        let new = r#"{"kind":"Credential","spec":{"type":"secret","value":"s3cret-new"}}"#;
        let c = field_changes(Kind::Credential, Some(old), Some(new));
        assert_eq!(c.len(), 1);
        assert!(c[0].secret);
        let shown = serde_json::to_string(&c).unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        let created = field_changes(Kind::Credential, None, Some(new));
        assert!(!serde_json::to_string(&created).unwrap().contains("s3cret"));
    }
}
