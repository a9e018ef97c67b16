//! `request-size`: bodies over `maxBytes` get 413. A declared `Content-Length` over the
//! limit is refused before anything is sent upstream; a chunked (or lying) body is counted
//! as it streams and cut off at the limit, so nothing is buffered.

use http::StatusCode;

use super::{Exchange, Reply, RequestView, Verdict};
use switchyard_config::manifest::RequestSizeSpec;

#[derive(Debug)]
pub struct RequestSizePolicy {
    pub max_bytes: u64,
}

pub fn compile(spec: &RequestSizeSpec) -> RequestSizePolicy {
    RequestSizePolicy {
        max_bytes: spec.max_bytes.bytes(),
    }
}

impl RequestSizePolicy {
    pub fn on_request(&self, req: &mut RequestView<'_>, _ex: &mut Exchange) -> Verdict {
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(n) if n > self.max_bytes => Verdict::Reply(too_large(self.max_bytes)),
            _ => Verdict::Continue,
        }
    }
}

/// The 413 answer (also used by the Worker when a streamed body goes over the limit).
pub fn too_large(max: u64) -> Reply {
    Reply::deny(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        RequestSizeSpec::TYPE,
        format!("the request body is larger than {max} bytes"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method, Uri};

    use super::*;
    use switchyard_config::size::ByteSize;

    fn check(p: &RequestSizePolicy, length: Option<&str>) -> Verdict {
        let mut h = HeaderMap::new();
        if let Some(l) = length {
            h.insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from_str(l).unwrap(),
            );
        }
        let mut uri: Uri = "/".parse().unwrap();
        p.on_request(
            &mut RequestView {
                method: &Method::POST,
                uri: &mut uri,
                headers: &mut h,
                peer: [127, 0, 0, 1].into(),
                client_cert: None,
            },
            &mut Exchange::default(),
        )
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_up_front() {
        let p = compile(&RequestSizeSpec {
            max_bytes: ByteSize(1024),
        });
        assert!(matches!(check(&p, Some("1024")), Verdict::Continue));
        assert!(matches!(check(&p, None), Verdict::Continue));
        match check(&p, Some("1025")) {
            Verdict::Reply(r) => {
                assert_eq!(r.status, 413);
                assert_eq!(r.code, "request_too_large");
            }
            Verdict::Continue => panic!("let through"),
        }
    }
}
