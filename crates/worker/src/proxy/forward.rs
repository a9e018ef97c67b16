//! Header and URI rewriting between client and upstream.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use switchyard_engine::runtime::{Route, Target};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For` (appending the client), `-Proto` and `-Host`, and drops `Host`
/// (the upstream client sets it to the target's authority).
///
/// `client` is the peer address as a header value, made once per connection; `tls` whether
/// it connected over TLS.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    tls: bool,
    host: Option<&HeaderValue>,
) {
    let xff = match headers.get(&X_FORWARDED_FOR) {
        Some(prev) => {
            let mut b = BytesMut::with_capacity(prev.len() + 2 + client.len());
            b.put_slice(prev.as_bytes());
            b.put_slice(b", ");
            b.put_slice(client.as_bytes());
            HeaderValue::from_maybe_shared(b.freeze()).ok()
        }
        None => Some(client.clone()),
    };
    if let Some(v) = xff {
        headers.insert(&X_FORWARDED_FOR, v);
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(h) = host {
        headers.insert(&X_FORWARDED_HOST, h.clone());
    }
    headers.remove(header::HOST);
}

/// The upstream request target, in origin form: the target's base path, then the request's
/// path (minus the route prefix when `stripPrefix` is on) and query. (The connection is the
/// target's; `Host` is set by its pool.)
pub fn upstream_path(target: &Target, route: &Route, original: &Uri) -> Option<Uri> {
    let path = original.path();
    let rest = match &route.strip {
        Some(prefix) => path.strip_prefix(prefix.as_str()).unwrap_or(path),
        None => path,
    };
    let pq = if target.base_path.is_empty() && route.strip.is_none() {
        original
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    } else {
        let query = original.query();
        let mut s = String::with_capacity(
            target.base_path.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1,
        );
        s.push_str(&target.base_path);
        if !rest.starts_with('/') {
            s.push('/');
        }
        s.push_str(rest);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        PathAndQuery::from_maybe_shared(bytes::Bytes::from(s)).ok()?
    };
    Some(Uri::from(pq))
}

/// The peer address as an `X-Forwarded-For` element.
pub fn client_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_engine::runtime::remove_hop_by_hop;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_headers_append_client() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert(header::HOST, HeaderValue::from_static("api.example.com"));
        let host = h.get(header::HOST).cloned();
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("127.0.0.1"),
            false,
            host.as_ref(),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        set_forwarded(&mut h, &HeaderValue::from_static("127.0.0.1"), true, None);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert!(!h.contains_key(header::HOST));
    }
}
