//! The methods one route accepts, checked on the request path without following a pointer:
//! a bit per standard method, and a shared list for extension methods (rare).

use std::sync::Arc;

use http::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MethodSet {
    /// No `methods` listed: any method.
    any: bool,
    standard: u16,
    extension: Option<Arc<[Method]>>,
}

const STANDARD: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::CONNECT,
    Method::TRACE,
];

fn bit(method: &Method) -> Option<u16> {
    STANDARD.iter().position(|m| m == method).map(|i| 1 << i)
}

impl MethodSet {
    /// `None` (no `methods` in the manifest): any method.
    pub(crate) fn new(methods: Option<&[Method]>) -> MethodSet {
        let Some(methods) = methods else {
            return MethodSet {
                any: true,
                standard: 0,
                extension: None,
            };
        };
        let mut standard = 0;
        let mut extension = Vec::new();
        for m in methods {
            match bit(m) {
                Some(b) => standard |= b,
                None => extension.push(m.clone()),
            }
        }
        MethodSet {
            any: false,
            standard,
            extension: (!extension.is_empty()).then(|| extension.into()),
        }
    }

    pub(crate) fn is_any(&self) -> bool {
        self.any
    }

    /// Whether a request with `method` matches.
    pub(crate) fn accepts(&self, method: &Method) -> bool {
        self.any || self.lists(method)
    }

    /// Whether `method` is listed (never true for "any method").
    pub(crate) fn lists(&self, method: &Method) -> bool {
        match bit(method) {
            Some(b) => self.standard & b != 0,
            None => self
                .extension
                .as_deref()
                .is_some_and(|e| e.contains(method)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_extension_methods() {
        let purge: Method = "PURGE".parse().unwrap();
        let set = MethodSet::new(Some(&[Method::GET, purge.clone()]));
        assert!(set.accepts(&Method::GET) && set.accepts(&purge));
        assert!(!set.accepts(&Method::POST) && !set.accepts(&"OTHER".parse().unwrap()));
        assert!(!set.is_any());
        let any = MethodSet::new(None);
        assert!(any.accepts(&purge) && any.is_any() && !any.lists(&Method::GET));
    }
}
