//! `api-key`: the consumer's key from a header or a query parameter, looked up among the
//! keys of `api-keys` credentials. Keys are kept as SHA-256 digests only; a presented key
//! is hashed and the digest looked up, so the comparison never runs over the key itself
//! and its timing says nothing about stored keys. The key is never logged.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, StatusCode, Uri};
use sha2::{Digest, Sha256};

use super::{CompileCtx, Exchange, FieldError, Reply, RequestView, Verdict, header_name};
use switchyard_config::manifest::{ApiKeySpec, CredentialSpec};

#[derive(Debug)]
pub struct ApiKeyPolicy {
    header: Option<HeaderName>,
    query: Option<String>,
    /// SHA-256(key) → consumer.
    keys: HashMap<[u8; 32], Arc<str>>,
    hide: bool,
}

pub fn compile(spec: &ApiKeySpec, ctx: &CompileCtx<'_>) -> Result<ApiKeyPolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    let header = match (&spec.header, &spec.query) {
        (None, None) => Some(HeaderName::from_static("x-api-key")),
        (Some(h), _) => header_name("header", h).map_err(|e| errors.push(e)).ok(),
        (None, Some(_)) => None,
    };
    if let Some(q) = &spec.query
        && (q.is_empty() || q.contains(['&', '=', '#']))
    {
        errors.push(FieldError::new(
            "query",
            format!("invalid query parameter name {q:?}"),
        ));
    }
    if spec.credentials.is_empty() {
        errors.push(FieldError::new(
            "credentials",
            "name at least one Credential of type api-keys",
        ));
    }
    let mut keys = HashMap::new();
    for (i, name) in spec.credentials.iter().enumerate() {
        match ctx.credential(&format!("credentials[{i}]"), name, "api-keys") {
            Ok(CredentialSpec::ApiKeys { keys: entries }) => {
                for e in entries {
                    let digest: [u8; 32] = Sha256::digest(e.key.as_bytes()).into();
                    if let Some(other) = keys.insert(digest, Arc::from(e.consumer.as_str()))
                        && *other != *e.consumer
                    {
                        errors.push(FieldError::new(
                            format!("credentials[{i}]"),
                            format!(
                                "the same key is given to consumers {other:?} and {:?}",
                                e.consumer
                            ),
                        ));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(ApiKeyPolicy {
            header,
            query: spec.query.clone(),
            keys,
            hide: spec.hide_credentials,
        })
    } else {
        Err(errors)
    }
}

impl ApiKeyPolicy {
    pub fn on_request(&self, req: &mut RequestView<'_>, ex: &mut Exchange) -> Verdict {
        let mut presented: Option<Vec<u8>> = None;
        if let Some(h) = &self.header
            && let Some(v) = req.headers.get(h)
        {
            presented = Some(v.as_bytes().to_vec());
            if self.hide {
                req.headers.remove(h);
            }
        }
        if presented.is_none()
            && let Some(q) = &self.query
            && let Some(v) = query_param(req.uri, q)
        {
            presented = Some(v);
            if self.hide
                && let Some(stripped) = without_query_param(req.uri, q)
            {
                *req.uri = stripped;
            }
        }
        let Some(key) = presented else {
            return Verdict::Reply(Reply::deny(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                ApiKeySpec::TYPE,
                "an API key is required",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(&key).into();
        match self.keys.get(&digest) {
            Some(consumer) => {
                ex.consumer = Some(consumer.clone());
                Verdict::Continue
            }
            None => Verdict::Reply(Reply::deny(
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                ApiKeySpec::TYPE,
                "the API key is not valid",
            )),
        }
    }
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param(uri: &Uri, name: &str) -> Option<Vec<u8>> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn without_query_param(uri: &Uri, name: &str) -> Option<Uri> {
    let query = uri.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    let path = uri.path();
    let pq = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    Uri::from_parts(parts).ok()
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;

    use http::{HeaderMap, HeaderValue, Method};

    use super::*;
    use crate::runtime::policy::rate_limit::Limiters;
    use switchyard_config::manifest::ApiKeyEntry;

    fn creds() -> CredentialSpec {
        CredentialSpec::ApiKeys {
            keys: vec![
                ApiKeyEntry {
                    consumer: "acme".into(),
                    key: "k-acme".into(),
                },
                ApiKeyEntry {
                    consumer: "globex".into(),
                    key: "k-globex".into(),
                },
            ],
        }
    }

    fn policy(yaml_header: Option<&str>, query: Option<&str>) -> ApiKeyPolicy {
        let c = creds();
        let mut map = super::super::Credentials::new();
        map.insert("clients", &c);
        let limiters = Limiters::default();
        let ctx = CompileCtx {
            proxy: "p",
            credentials: &map,
            limiters: &limiters,
            rate_limit_ordinal: 0,
            authenticated: false,
        };
        compile(
            &ApiKeySpec {
                header: yaml_header.map(str::to_string),
                query: query.map(str::to_string),
                credentials: vec!["clients".into()],
                hide_credentials: true,
            },
            &ctx,
        )
        .unwrap()
    }

    fn run(
        p: &ApiKeyPolicy,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (Verdict, Exchange, HeaderMap, Uri) {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let mut uri: Uri = uri.parse().unwrap();
        let mut ex = Exchange::default();
        let v = p.on_request(
            &mut RequestView {
                method: &Method::GET,
                uri: &mut uri,
                headers: &mut h,
                peer: IpAddr::from([127, 0, 0, 1]),
                client_cert: None,
            },
            &mut ex,
        );
        (v, ex, h, uri)
    }

    #[test]
    fn header_keys_identify_consumers_and_are_hidden() {
        let p = policy(None, None);
        let (v, ex, h, _) = run(&p, "/x", &[("x-api-key", "k-globex")]);
        assert!(matches!(v, Verdict::Continue));
        assert_eq!(ex.consumer.as_deref(), Some("globex"));
        assert!(h.get("x-api-key").is_none());
    }

    #[test]
    fn missing_and_wrong_keys_are_401_with_stable_codes() {
        let p = policy(None, None);
        match run(&p, "/x", &[]).0 {
            Verdict::Reply(r) => {
                assert_eq!(r.status, 401);
                assert_eq!(r.code, "missing_api_key");
            }
            Verdict::Continue => panic!("let through"),
        }
        match run(&p, "/x", &[("x-api-key", "k-acmE")]).0 {
            Verdict::Reply(r) => {
                assert_eq!(r.code, "invalid_api_key");
                let body = String::from_utf8(r.body.to_vec()).unwrap();
                assert!(!body.contains("k-acmE"), "{body}");
            }
            Verdict::Continue => panic!("let through"),
        }
    }

    #[test]
    fn query_keys_are_decoded_and_removed() {
        let p = policy(None, Some("apikey"));
        let (v, ex, _, uri) = run(&p, "/x?a=1&apikey=k%2Dacme&b=2", &[]);
        assert!(matches!(v, Verdict::Continue));
        assert_eq!(ex.consumer.as_deref(), Some("acme"));
        assert_eq!(uri, "/x?a=1&b=2");
    }

    #[test]
    fn credentials_of_the_wrong_type_or_missing_are_named() {
        let c = CredentialSpec::Secret { value: "s".into() };
        let mut map = super::super::Credentials::new();
        map.insert("s", &c);
        let limiters = Limiters::default();
        let ctx = CompileCtx {
            proxy: "p",
            credentials: &map,
            limiters: &limiters,
            rate_limit_ordinal: 0,
            authenticated: false,
        };
        let spec = |name: &str| ApiKeySpec {
            header: None,
            query: None,
            credentials: vec![name.into()],
            hide_credentials: true,
        };
        let e = compile(&spec("s"), &ctx).unwrap_err();
        assert_eq!(e[0].field, "credentials[0]");
        assert!(e[0].message.contains("type \"secret\""), "{e:?}");
        let e = compile(&spec("nope"), &ctx).unwrap_err();
        assert!(
            e[0].message.contains("no Credential named \"nope\""),
            "{e:?}"
        );
    }
}
