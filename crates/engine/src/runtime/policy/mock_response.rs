//! `mock-response`: a fixed status, headers and body; the upstream is not called.

use bytes::Bytes;
use http::StatusCode;

use super::{FieldError, Reply, header_value, settable_header_name};
use switchyard_config::manifest::MockResponseSpec;

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
        match (
            settable_header_name(&field, name),
            header_value(&field, value),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            (Err(e), _) | (_, Err(e)) => errors.push(e),
        }
    }
    if let Err(message) = super::HeaderBudget::default().add(&headers) {
        errors.push(FieldError::new("headers", message));
    }
    if errors.is_empty() {
        Ok(MockResponsePolicy {
            reply: Reply {
                status,
                headers,
                body: Bytes::from(spec.body.clone()),
                code: "mock_response",
                detail: None,
                message: None,
            },
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(status: u16, headers: &[(&str, &str)], body: &str) -> MockResponseSpec {
        MockResponseSpec {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            body: body.into(),
        }
    }

    #[test]
    fn the_fixed_answer_is_compiled_once() {
        let p = compile(&spec(
            201,
            &[("content-type", "application/json")],
            "{\"ok\":true}",
        ))
        .unwrap();
        assert_eq!(p.reply.status, 201);
        assert_eq!(p.reply.headers[0].1, "application/json");
        assert_eq!(&p.reply.body[..], b"{\"ok\":true}");
        assert_eq!(p.reply.code, "mock_response");
    }

    #[test]
    fn bad_statuses_and_headers_are_named() {
        let e = compile(&spec(99, &[], "")).unwrap_err();
        assert_eq!(e[0].field, "status");
        let e = compile(&spec(
            200,
            &[("bad header", "x"), ("x-ok", "line\nbreak")],
            "",
        ))
        .unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|e| e.field.starts_with("headers.")), "{e:?}");
    }
}
