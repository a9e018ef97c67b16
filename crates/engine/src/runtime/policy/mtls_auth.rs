//! `mtls-auth`: the consumer is named by the client certificate the connection's TLS
//! handshake verified (a `kind: Certificate` with `spec.clientAuth`). The Worker computes
//! the certificate's identity once per connection; this policy only picks the part it names
//! and checks it against its lists, so a request costs a reference count.

use std::collections::HashSet;
use std::sync::Arc;

use http::StatusCode;

use super::{CompileCtx, Exchange, FieldError, Reply, RequestView, Verdict};
use switchyard_config::manifest::{MtlsAuthSpec, MtlsIdentity};

#[derive(Debug)]
pub struct MtlsAuthPolicy {
    identity: MtlsIdentity,
    /// Empty: any verified certificate.
    allow: HashSet<Arc<str>>,
    /// The CA credentials accepted; empty: any.
    cas: Vec<Arc<str>>,
}

pub fn compile(
    spec: &MtlsAuthSpec,
    ctx: &CompileCtx<'_>,
) -> Result<MtlsAuthPolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    for (i, name) in spec.cas.iter().enumerate() {
        if let Err(e) = ctx.credential(&format!("cas[{i}]"), name, "secret") {
            errors.push(e);
        }
    }
    for (i, a) in spec.allow.iter().enumerate() {
        if a.is_empty() {
            errors.push(FieldError::new(
                format!("allow[{i}]"),
                "an empty identity matches no certificate",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(MtlsAuthPolicy {
        identity: spec.identity,
        allow: spec.allow.iter().map(|a| Arc::from(a.as_str())).collect(),
        cas: spec.cas.iter().map(|c| Arc::from(c.as_str())).collect(),
    })
}

impl MtlsAuthPolicy {
    pub fn on_request(&self, req: &RequestView<'_>, ex: &mut Exchange) -> Verdict {
        let deny = |status, code, message: &str| {
            Verdict::Reply(Reply::deny(status, code, MtlsAuthSpec::TYPE, message))
        };
        let Some(cert) = req.client_cert else {
            return deny(
                StatusCode::UNAUTHORIZED,
                "missing_client_certificate",
                "a client certificate is required: connect over HTTPS presenting a certificate \
                 issued by a trusted CA",
            );
        };
        if !self.cas.is_empty() && !self.cas.contains(&cert.ca) {
            return deny(
                StatusCode::UNAUTHORIZED,
                "untrusted_client_certificate",
                "the client certificate was not issued by a CA this API trusts",
            );
        }
        let Some(name) = cert.get(self.identity) else {
            let what = match self.identity {
                MtlsIdentity::SubjectCn => "a subject common name (CN)",
                MtlsIdentity::SanDns => "a DNS name in its subjectAltName",
                MtlsIdentity::SanUri => "a URI in its subjectAltName",
            };
            return deny(
                StatusCode::UNAUTHORIZED,
                "invalid_client_certificate",
                &format!("the client certificate has no identity: it needs {what}"),
            );
        };
        if !self.allow.is_empty() && !self.allow.contains(name) {
            return deny(
                StatusCode::FORBIDDEN,
                "client_not_allowed",
                "the client certificate's identity is not allowed here",
            );
        }
        ex.consumer = Some(name.clone());
        Verdict::Continue
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;

    use http::{HeaderMap, Method, Uri};

    use super::*;
    use crate::runtime::policy::Credentials;
    use crate::runtime::policy::rate_limit::Limiters;
    use crate::tls::ClientIdentity;
    use switchyard_config::manifest::CredentialSpec;

    fn identity(ca: &str, cn: Option<&str>, dns: Option<&str>) -> ClientIdentity {
        ClientIdentity {
            ca: ca.into(),
            subject_cn: cn.map(Arc::from),
            san_dns: dns.map(Arc::from),
            san_uri: None,
        }
    }

    fn policy(spec: &MtlsAuthSpec) -> Result<MtlsAuthPolicy, Vec<FieldError>> {
        let ca = CredentialSpec::Secret {
            value: "pem".into(),
        };
        let keys = CredentialSpec::ApiKeys { keys: vec![] };
        let mut credentials = Credentials::new();
        credentials.insert("clients-ca", &ca);
        credentials.insert("keys", &keys);
        let limiters = Limiters::default();
        let ctx = CompileCtx {
            proxy: "p",
            credentials: &credentials,
            limiters: &limiters,
            rate_limit_ordinal: 0,
            authenticated: false,
        };
        compile(spec, &ctx)
    }

    /// The verdict and the consumer for a request on a connection with `cert`.
    fn run(p: &MtlsAuthPolicy, cert: Option<&ClientIdentity>) -> (Option<u16>, Option<String>) {
        let mut uri = Uri::from_static("/x");
        let mut headers = HeaderMap::new();
        let view = RequestView {
            method: &Method::GET,
            uri: &mut uri,
            headers: &mut headers,
            peer: IpAddr::from([127, 0, 0, 1]),
            client_cert: cert,
        };
        let mut ex = Exchange::default();
        let status = match p.on_request(&view, &mut ex) {
            Verdict::Continue => None,
            Verdict::Reply(r) => Some(r.status.as_u16()),
        };
        (status, ex.consumer.map(|c| c.to_string()))
    }

    #[test]
    fn the_certificate_names_the_consumer() {
        let p = policy(&MtlsAuthSpec::default()).unwrap();
        let id = identity("clients-ca", Some("acme"), Some("acme.clients.test"));
        assert_eq!(run(&p, Some(&id)), (None, Some("acme".into())));
        let p = policy(&MtlsAuthSpec {
            identity: MtlsIdentity::SanDns,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(run(&p, Some(&id)), (None, Some("acme.clients.test".into())));
        // Asked for a URI SAN it does not have.
        let p = policy(&MtlsAuthSpec {
            identity: MtlsIdentity::SanUri,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(run(&p, Some(&id)), (Some(401), None));
    }

    #[test]
    fn no_certificate_is_401_and_the_lists_restrict() {
        let p = policy(&MtlsAuthSpec::default()).unwrap();
        assert_eq!(run(&p, None), (Some(401), None));
        let p = policy(&MtlsAuthSpec {
            allow: vec!["acme".into()],
            cas: vec!["clients-ca".into()],
            ..Default::default()
        })
        .unwrap();
        let acme = identity("clients-ca", Some("acme"), None);
        assert_eq!(run(&p, Some(&acme)), (None, Some("acme".into())));
        let globex = identity("clients-ca", Some("globex"), None);
        assert_eq!(run(&p, Some(&globex)), (Some(403), None));
        let other_ca = identity("partners-ca", Some("acme"), None);
        assert_eq!(run(&p, Some(&other_ca)), (Some(401), None));
    }

    #[test]
    fn ca_names_must_be_secret_credentials() {
        let e = policy(&MtlsAuthSpec {
            cas: vec!["nope".into(), "keys".into()],
            allow: vec![String::new()],
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["cas[0]", "cas[1]", "allow[0]"]);
        assert!(e[0].message.contains("no Credential named \"nope\""));
        assert!(e[1].message.contains("of type \"api-keys\""));
    }
}
