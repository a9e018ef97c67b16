//! `upstream-credential`: a `secret` credential put into a request header on its way to the
//! upstream (`format` with `{}` where the value goes, e.g. `Bearer {}`). The value is part
//! of the compiled snapshot, so every request uses the credential of the configuration it
//! was accepted on: a rotation never mixes old and new within one request. Clients never
//! see it; it is never logged.

use http::{HeaderName, HeaderValue};

use super::{CompileCtx, FieldError, settable_header_name};
use switchyard_config::manifest::{CredentialSpec, UpstreamCredentialSpec};

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
    let header = settable_header_name("header", &spec.header)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::policy::Credentials;
    use crate::runtime::policy::rate_limit::Limiters;

    fn compile_with(
        cred: &CredentialSpec,
        format: &str,
    ) -> Result<UpstreamCredentialPolicy, Vec<FieldError>> {
        let mut map = Credentials::new();
        map.insert("provider", cred);
        let limiters = Limiters::default();
        let ctx = CompileCtx {
            proxy: "llm",
            credentials: &map,
            limiters: &limiters,
            rate_limit_ordinal: 0,
            authenticated: false,
        };
        compile(
            &UpstreamCredentialSpec {
                credential: "provider".into(),
                header: "authorization".into(),
                format: format.into(),
            },
            &ctx,
        )
    }

    #[test]
    fn the_secret_is_formatted_into_a_sensitive_header() {
        let p = compile_with(
            &CredentialSpec::Secret {
                value: "sk-1".into(),
            },
            "Bearer {}",
        )
        .unwrap();
        assert_eq!(p.header, "authorization");
        assert_eq!(p.value, "Bearer sk-1");
        assert!(p.value.is_sensitive());
        assert!(!format!("{p:?}").contains("sk-1"));
    }

    #[test]
    fn formats_credentials_and_values_are_checked() {
        let secret = CredentialSpec::Secret {
            value: "sk-1".into(),
        };
        let e = compile_with(&secret, "Bearer").unwrap_err();
        assert_eq!(e[0].field, "format");
        let e = compile_with(&secret, "{} {}").unwrap_err();
        assert_eq!(e[0].field, "format");
        let e = compile_with(&CredentialSpec::ApiKeys { keys: vec![] }, "{}").unwrap_err();
        assert!(e[0].message.contains("of type \"api-keys\""), "{e:?}");
        let e = compile_with(
            &CredentialSpec::Secret {
                value: "a\nb".into(),
            },
            "{}",
        )
        .unwrap_err();
        assert!(e[0].message.contains("cannot be sent in a header"), "{e:?}");
        assert!(!e[0].message.contains("a\nb"));
    }
}
