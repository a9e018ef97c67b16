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
/// when the message carries a `Connection` header.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
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
