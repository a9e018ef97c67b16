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

/// Whether a change of this kind is applied hot (atomic swap, requests in flight finish on
/// the version they started with, connections kept), and how.
///
/// Every field of every kind is hot today: listeners, TLS and process settings are
/// command-line flags of the Worker, not manifests. A future kind whose change needs a
/// restart answers `hot: false` here, and `apply` refuses it as hot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hotness {
    pub hot: bool,
    pub how: String,
}

pub fn hotness(kind: Kind) -> Hotness {
    let (hot, how) = match kind {
        Kind::Proxy => (
            true,
            "swapped atomically; requests in flight finish on the previous version",
        ),
        Kind::Credential => (
            true,
            "the proxies that use it are recompiled and swapped atomically",
        ),
        Kind::Certificate => (
            true,
            "handshakes after the swap get the new certificate; established TLS connections \
             carry on untouched",
        ),
        Kind::Environment => (
            true,
            "variables: the entities they change are listed on their own; gateway settings: \
             swapped atomically, for requests and connections accepted after",
        ),
    };
    Hotness {
        hot,
        how: how.to_string(),
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
