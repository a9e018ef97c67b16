//! Compiled policies: everything parsed and checked up front so the request path only
//! applies ready-made values.

use http::{HeaderMap, HeaderName, HeaderValue};

pub use super::policy::{Exchange, Policy};

/// The policies of one proxy version, in the order the manifest lists them.
#[derive(Debug, Default)]
pub struct Pipeline {
    pub policies: Vec<Policy>,
}

impl Pipeline {
    /// The response phase, in order: header edits, CORS headers, then what request-phase
    /// policies left for the response (`RateLimit-*`).
    pub fn on_response(&self, ex: &Exchange, headers: &mut HeaderMap) {
        for p in &self.policies {
            match p {
                Policy::Headers(h) => h.response.apply(headers),
                Policy::Cors(c) => c.on_response(ex, headers),
                _ => {}
            }
        }
        for (name, value) in &ex.response_headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The largest request body any policy needs to see whole (prompt-firewall), if any.
    pub fn inspects_body(&self) -> bool {
        self.policies
            .iter()
            .any(|p| matches!(p, Policy::PromptFirewall(_)))
    }
}

#[derive(Debug, Default)]
pub struct HeadersPolicy {
    pub request: HeaderOps,
    pub response: HeaderOps,
}

/// Header edits: remove, then set, then add.
#[derive(Debug, Default)]
pub struct HeaderOps {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn remove_then_set_then_add() {
        let ops = HeaderOps {
            remove: vec![HeaderName::from_static("x-internal")],
            set: vec![(
                HeaderName::from_static("x-release"),
                HeaderValue::from_static("blue"),
            )],
            add: vec![(
                HeaderName::from_static("via"),
                HeaderValue::from_static("sy"),
            )],
        };
        let mut h = HeaderMap::new();
        h.insert("x-internal", HeaderValue::from_static("secret"));
        h.insert("x-release", HeaderValue::from_static("old"));
        h.insert("via", HeaderValue::from_static("1.1 lb"));
        ops.apply(&mut h);
        assert!(h.get("x-internal").is_none());
        assert_eq!(h.get("x-release").unwrap(), "blue");
        assert_eq!(h.get_all("via").iter().count(), 2);
    }
}
