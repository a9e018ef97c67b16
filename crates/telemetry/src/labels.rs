//! Label values with a bounded set of values, whatever the traffic sends.

use http::Method;

/// The methods metrics name; any other is `other`.
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

/// The index of `method` among the methods metrics name, [`METHOD_COUNT`]` - 1` for
/// `other`.
pub fn method_index(method: &Method) -> usize {
    METHODS
        .iter()
        .position(|m| m == method)
        .unwrap_or(METHODS.len())
}

/// How many values [`method_index`] has.
pub const METHOD_COUNT: usize = METHODS.len() + 1;

/// The label value of a [`method_index`].
pub fn method_name(index: usize) -> &'static str {
    METHODS.get(index).map_or("other", Method::as_str)
}

/// `method` as a label value: its name when it is a standard one, `other` otherwise.
pub fn method(method: &Method) -> &'static str {
    method_name(method_index(method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method(&Method::GET), "GET");
        assert_eq!(
            method(&Method::from_bytes(b"PURGE").unwrap_or_default()),
            "other"
        );
        assert_eq!(method_index(&Method::TRACE), METHOD_COUNT - 2);
    }
}
