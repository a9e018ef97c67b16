//! Connection-level headers (RFC 9110 §7.6.1), in one list: the compiler refuses policies
//! that would set them, and the Worker never forwards them, in either direction.

use http::header::{self, HeaderMap, HeaderName};

/// The connection-level headers.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Whether `name` frames the message (`Content-Length`): the HTTP stack writes it from the
/// body; a policy that set it could announce a length the body does not have, and every
/// response (or upstream request) would hang or be cut.
pub fn is_framing(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
}

/// Whether `name` is a connection-level header.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes connection-level headers, including any named in `Connection`. Allocates only
/// when the message carries a `Connection` header. The common message has none: one pass
/// over its header names tells, instead of a hashed lookup per connection-level name.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn only_connection_level_headers_go_and_a_message_without_them_is_untouched() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let before = h.clone();
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before);

        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before);

        h.insert(header::CONNECTION, HeaderValue::from_static("x-a"));
        remove_hop_by_hop(&mut h);
        assert!(!h.contains_key("x-a") && !h.contains_key(header::CONNECTION));
        assert!(h.contains_key(header::CONTENT_TYPE));
    }
}
