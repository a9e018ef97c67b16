//! One proxy manifest → one compiled `Proxy`: every field parsed and checked, each error
//! tagged with the proxy, the field path and the line it is written on.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use http::{HeaderName, HeaderValue, Method};
use serde_saphyr::Spanned;

use super::credentials::{self, Credentials};
use super::{MAX_CONNECT_TIMEOUT, MAX_REQUEST_TIMEOUT, MAX_RETRY_ATTEMPTS};
use crate::duration::HumanDuration;
use crate::error::{ConfigError, Position, SourceRef};
use crate::load::Located;
use crate::manifest::{
    HeaderOpsSpec, Manifest, PolicySpec, ProxyManifest, RouteSpec, TargetUrl, UpstreamSpec,
};
use crate::runtime::{
    Attachment, HeaderOps, HeadersPolicy, HostPattern, PathPattern, Pipeline, Policy, Proxy, Route,
    RouteRule, Target, Upstream,
};

/// Errors of one proxy, all tagged with its name.
struct ProxyErrors<'a> {
    source: &'a SourceRef,
    name: &'a str,
    fallback: Position,
    errors: Vec<ConfigError>,
}

impl ProxyErrors<'_> {
    fn push(&mut self, position: Option<Position>, field: String, message: String) {
        self.errors.push(
            ConfigError::new(self.source, position.unwrap_or(self.fallback), message)
                .entity("Proxy", self.name)
                .field(field),
        );
    }

    fn at<T>(&self, s: &Spanned<T>) -> Option<Position> {
        let p = Position::from_location(self.source, s.referenced);
        (p.line > 0).then_some(p)
    }
}

/// Compiles `m` (the proxy in `located`) at `version`; its credential references resolve
/// against `credentials`.
pub(crate) fn compile_proxy(
    located: &Located<Manifest>,
    m: &ProxyManifest,
    version: u64,
    credentials: &Credentials,
) -> Result<Proxy, Vec<ConfigError>> {
    let source = &located.source;
    let name: Arc<str> = m.metadata.name.value.as_str().into();
    let mut errs = ProxyErrors {
        source,
        name: &name,
        fallback: Position::from_location(source, m.metadata.name.referenced),
        errors: Vec::new(),
    };
    if let Err(msg) = check_name(&name) {
        errs.push(None, "metadata.name".into(), msg);
    }
    if m.spec.routes.value.is_empty() {
        errs.push(
            errs.at(&m.spec.routes),
            "spec.routes".into(),
            "a proxy needs at least one route".into(),
        );
    }
    let mut routes = Vec::with_capacity(m.spec.routes.value.len());
    for (i, r) in m.spec.routes.value.iter().enumerate() {
        match compile_route(&r.value) {
            Ok((rule, strip)) => routes.push(Route {
                id: format!("{name}#{i}").into(),
                strip,
                rule,
                position: Position::from_location(source, r.referenced),
            }),
            Err((field, msg)) => {
                let field = if field.is_empty() {
                    format!("spec.routes[{i}]")
                } else {
                    format!("spec.routes[{i}].{field}")
                };
                errs.push(errs.at(r), field, msg);
            }
        }
    }
    let upstream = compile_upstream(&m.spec.upstream, &mut errs);
    let mut policies = Vec::with_capacity(m.spec.policies.len());
    for (i, p) in m.spec.policies.iter().enumerate() {
        match p {
            PolicySpec::Headers(h) => {
                let request = compile_header_ops(
                    &h.request,
                    &format!("spec.policies[{i}].request"),
                    &mut errs,
                );
                let response = compile_header_ops(
                    &h.response,
                    &format!("spec.policies[{i}].response"),
                    &mut errs,
                );
                policies.push(Policy::Headers(HeadersPolicy { request, response }));
            }
        }
    }
    let refs = credentials::credential_refs(m);
    for r in &refs {
        if !credentials.contains_key(*r) {
            errs.push(
                None,
                "spec".into(),
                format!("references credential {r:?}, which does not exist"),
            );
        }
    }
    if !errs.errors.is_empty() {
        return Err(errs.errors);
    }
    let Some(upstream) = upstream else {
        return Err(errs.errors);
    };
    Ok(Proxy {
        name,
        version,
        digest: located.digest.clone(),
        labels: m.metadata.labels.clone(),
        routes,
        pipeline: Pipeline { policies },
        upstream,
        source: source.clone(),
        manifest: (!refs.is_empty()).then(|| Arc::new(located.clone())),
        attachment: Attachment::default(),
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
        })
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"
        ))
    }
}

type FieldError = (String, String);

fn compile_route(r: &RouteSpec) -> Result<(RouteRule, Option<String>), FieldError> {
    let path = match (&r.path, &r.path_prefix) {
        (Some(_), Some(_)) => {
            return Err((
                String::new(),
                "set either `path` or `pathPrefix`, not both".into(),
            ));
        }
        (None, None) => {
            return Err((String::new(), "a route needs `path` or `pathPrefix`".into()));
        }
        (Some(p), None) => PathPattern::Exact(check_path(p).map_err(|m| ("path".into(), m))?),
        (None, Some(p)) => {
            PathPattern::Prefix(check_path(p).map_err(|m| ("pathPrefix".into(), m))?)
        }
    };
    let hosts = match &r.hosts {
        None => Vec::new(),
        Some(hs) if hs.is_empty() => {
            return Err((
                "hosts".into(),
                "empty list: omit `hosts` to match any host".into(),
            ));
        }
        Some(hs) => hs
            .iter()
            .enumerate()
            .map(|(i, h)| check_host(h).map_err(|m| (format!("hosts[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let methods = match &r.methods {
        None => None,
        Some(ms) if ms.is_empty() => {
            return Err((
                "methods".into(),
                "empty list: omit `methods` to match any method".into(),
            ));
        }
        Some(ms) => Some(
            ms.iter()
                .enumerate()
                .map(|(i, m)| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| (format!("methods[{i}]"), format!("invalid method {m:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let strip = match (&path, r.strip_prefix) {
        (_, false) => None,
        (PathPattern::Exact(p) | PathPattern::Prefix(p), true) => {
            Some(p.trim_end_matches('/').to_string())
        }
    };
    Ok((
        RouteRule {
            hosts,
            path,
            methods,
        },
        strip,
    ))
}

fn check_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("invalid path {p:?}: must start with '/'"));
    }
    if p.contains(['?', '#']) || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid path {p:?}: no query, fragment, spaces or control characters"
        ));
    }
    Ok(p.to_string())
}

fn check_host(h: &str) -> Result<HostPattern, String> {
    let lower = h.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    let (wildcard, rest) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower),
    };
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if rest.is_empty() || !rest.split('.').all(valid_label) {
        return Err(format!(
            "invalid host {h:?}: expected a host name such as api.example.com or *.example.com (no port)"
        ));
    }
    Ok(if wildcard {
        HostPattern::Wildcard(format!(".{rest}"))
    } else {
        HostPattern::Exact(rest.to_string())
    })
}

fn compile_upstream(u: &UpstreamSpec, errs: &mut ProxyErrors<'_>) -> Option<Upstream> {
    let before = errs.errors.len();
    if u.targets.value.is_empty() {
        errs.push(
            errs.at(&u.targets),
            "spec.upstream.targets".into(),
            "an upstream needs at least one target".into(),
        );
    }
    let mut targets = Vec::with_capacity(u.targets.value.len());
    for (i, t) in u.targets.value.iter().enumerate() {
        let field = format!("spec.upstream.targets[{i}]");
        if t.weight == 0 {
            errs.push(
                errs.at(&u.targets),
                format!("{field}.weight"),
                "weight must be at least 1".into(),
            );
        }
        match TargetUrl::parse(&t.url.0) {
            Ok(uri) => {
                let (Some(scheme), Some(authority)) =
                    (uri.scheme().cloned(), uri.authority().cloned())
                else {
                    errs.push(
                        errs.at(&u.targets),
                        format!("{field}.url"),
                        format!("invalid URL {:?}", t.url.0),
                    );
                    continue;
                };
                targets.push(Target {
                    url: t.url.0.as_str().into(),
                    scheme,
                    authority,
                    base_path: uri.path().trim_end_matches('/').to_string(),
                    weight: t.weight,
                    in_flight: AtomicUsize::new(0),
                });
            }
            Err(msg) => errs.push(errs.at(&u.targets), format!("{field}.url"), msg),
        }
    }
    for (field, value, max) in [
        ("connect", u.timeouts.connect, MAX_CONNECT_TIMEOUT),
        ("request", u.timeouts.request, MAX_REQUEST_TIMEOUT),
    ] {
        let message = if value.0.is_zero() {
            Some("must be greater than 0".to_string())
        } else if value.0 > max {
            Some(format!(
                "{value} is more than the {} maximum",
                HumanDuration(max)
            ))
        } else {
            None
        };
        if let Some(message) = message {
            errs.push(None, format!("spec.upstream.timeouts.{field}"), message);
        }
    }
    if u.retries.attempts > MAX_RETRY_ATTEMPTS {
        errs.push(
            None,
            "spec.upstream.retries.attempts".into(),
            format!("at most {MAX_RETRY_ATTEMPTS}"),
        );
    }
    if errs.errors.len() > before {
        return None;
    }
    Some(Upstream::new(
        targets,
        u.load_balancing,
        u.timeouts.connect.0,
        u.timeouts.request.0,
        u.retries.attempts,
    ))
}

fn compile_header_ops(spec: &HeaderOpsSpec, field: &str, errs: &mut ProxyErrors<'_>) -> HeaderOps {
    let mut ops = HeaderOps::default();
    let name =
        |n: &str, f: String, errs: &mut ProxyErrors<'_>| match HeaderName::from_bytes(n.as_bytes())
        {
            Ok(h) if is_hop_by_hop(&h) => {
                errs.push(
                    None,
                    f,
                    format!("{n:?} is a hop-by-hop header and cannot be changed by a policy"),
                );
                None
            }
            Ok(h) => Some(h),
            Err(_) => {
                errs.push(None, f, format!("invalid header name {n:?}"));
                None
            }
        };
    let pairs =
        |map: &std::collections::BTreeMap<String, String>, op: &str, errs: &mut ProxyErrors<'_>| {
            let mut out = Vec::new();
            for (n, v) in map {
                let f = format!("{field}.{op}.{n}");
                let hn = name(n, f.clone(), errs);
                let hv = match HeaderValue::from_str(v) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        errs.push(None, f, format!("invalid header value {v:?}"));
                        None
                    }
                };
                if let (Some(n), Some(v)) = (hn, hv) {
                    out.push((n, v));
                }
            }
            out
        };
    ops.set = pairs(&spec.set, "set", errs);
    ops.add = pairs(&spec.add, "add", errs);
    for (i, n) in spec.remove.iter().enumerate() {
        if let Some(h) = name(n, format!("{field}.remove[{i}]"), errs) {
            ops.remove.push(h);
        }
    }
    ops
}

/// Connection-level headers (RFC 9110 §7.6.1): never forwarded, never set by policies.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    use http::header::*;
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == PROXY_AUTHORIZATION
        || name == PROXY_AUTHENTICATE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}
