//! `mock-response`: a fixed status, headers and body; the upstream is not called.

use bytes::Bytes;
use http::StatusCode;

use super::{FieldError, Reply, header_name, header_value};
use crate::manifest::MockResponseSpec;

#[derive(Debug)]
pub struct MockResponsePolicy {
    pub reply: Reply,
}

pub fn compile(spec: &MockResponseSpec) -> Result<MockResponsePolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    let status = StatusCode::from_u16(spec.status)
        .ok()
        .filter(|s| s.as_u16() >= 200)
        .unwrap_or_else(|| {
            errors.push(FieldError::new(
                "status",
                format!("invalid status {}: use 200 to 599", spec.status),
            ));
            StatusCode::OK
        });
    let mut headers = Vec::new();
    for (name, value) in &spec.headers {
        let field = format!("headers.{name}");
        match (header_name(&field, name), header_value(&field, value)) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            (Err(e), _) | (_, Err(e)) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(MockResponsePolicy {
            reply: Reply {
                status,
                headers,
                body: Bytes::from(spec.body.clone()),
                code: "mock_response",
                detail: None,
            },
        })
    } else {
        Err(errors)
    }
}
