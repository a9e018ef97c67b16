//! `upstream-credential`: a `secret` credential put into a request header on its way to the
//! upstream (`format` with `{}` where the value goes, e.g. `Bearer {}`). The value is part
//! of the compiled snapshot, so every request uses the credential of the configuration it
//! was accepted on: a rotation never mixes old and new within one request. Clients never
//! see it; it is never logged.

use http::{HeaderName, HeaderValue};

use super::{CompileCtx, FieldError, header_name};
use crate::manifest::{CredentialSpec, UpstreamCredentialSpec};

pub struct UpstreamCredentialPolicy {
    pub header: HeaderName,
    pub value: HeaderValue,
}

impl std::fmt::Debug for UpstreamCredentialPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredentialPolicy")
            .field("header", &self.header)
            .field("value", &"<redacted>")
            .finish()
    }
}

pub fn compile(
    spec: &UpstreamCredentialSpec,
    ctx: &CompileCtx<'_>,
) -> Result<UpstreamCredentialPolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    let header = header_name("header", &spec.header)
        .map_err(|e| errors.push(e))
        .ok();
    if spec.format.matches("{}").count() != 1 {
        errors.push(FieldError::new(
            "format",
            format!(
                "format {:?} must contain `{{}}` exactly once (where the secret goes)",
                spec.format
            ),
        ));
    }
    let secret = match ctx.credential("credential", &spec.credential, "secret") {
        Ok(CredentialSpec::Secret { value }) => Some(value),
        Ok(_) => None,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let value = secret.and_then(|s| {
        let mut v = HeaderValue::from_str(&spec.format.replacen("{}", s, 1))
            .map_err(|_| {
                errors.push(FieldError::new(
                    "credential",
                    format!(
                        "Credential {:?} holds a value that cannot be sent in a header (control characters)",
                        spec.credential
                    ),
                ))
            })
            .ok()?;
        v.set_sensitive(true);
        Some(v)
    });
    match (header, value) {
        (Some(header), Some(value)) if errors.is_empty() => {
            Ok(UpstreamCredentialPolicy { header, value })
        }
        _ => Err(errors),
    }
}
