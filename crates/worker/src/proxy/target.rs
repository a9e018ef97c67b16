//! The request target as the gateway routes it: the checked authority (engine
//! `runtime::host`) and the URI rebuilt around a normalised path (engine `runtime::path`).

use bytes::{BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{Version, header};
use switchyard_engine::runtime::host::{HostInput, request_host as check_host};

use super::error::GatewayError;

/// The host the request is routed on (checked: one valid `Host` on HTTP/1.1, agreeing with
/// an absolute-form target or `:authority`).
pub fn request_host(parts: &Parts) -> Result<Option<&str>, GatewayError> {
    let uri = &parts.uri;
    check_host(HostInput {
        host_headers: parts.headers.get_all(header::HOST).iter(),
        target: uri.authority().map(|a| a.as_str()),
        scheme_is_https: uri.scheme_str() == Some("https"),
        requires_host: parts.version == Version::HTTP_11,
    })
    .map_err(|e| GatewayError::BadRequest {
        code: e.code(),
        message: e.message(),
    })
}

/// `uri` with its path replaced by `path` (the query kept).
pub fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let query = uri.query();
    let mut pq = BytesMut::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    pq.put_slice(path.as_bytes());
    if let Some(q) = query {
        pq.put_u8(b'?');
        pq.put_slice(q.as_bytes());
    }
    let pq = PathAndQuery::from_maybe_shared(Bytes::from(pq)).ok()?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).ok()
}
