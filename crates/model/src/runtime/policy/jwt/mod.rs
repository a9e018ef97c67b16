//! `jwt`: bearer tokens checked for signature (HS256/RS256/ES256), issuer, audience and
//! time. (Interface in place; verification is being implemented.)

use std::time::SystemTime;

use super::{CompileCtx, Exchange, FieldError, RequestView, Verdict};
use crate::manifest::JwtSpec;

#[derive(Debug)]
pub struct JwtPolicy {}

pub fn compile(_spec: &JwtSpec, _ctx: &CompileCtx<'_>) -> Result<JwtPolicy, Vec<FieldError>> {
    Err(vec![FieldError::new("type", "jwt is not available yet")])
}

impl JwtPolicy {
    pub fn on_request(
        &self,
        _req: &mut RequestView<'_>,
        _ex: &mut Exchange,
        _now: SystemTime,
    ) -> Verdict {
        Verdict::Continue
    }
}
