//! One proxy manifest → one compiled `Proxy`: every field parsed and checked, each error
//! tagged with the proxy, the field path and the line it is written on.

use std::sync::Arc;
use std::time::Duration;
use switchyard_config::Kind;
use switchyard_config::error::Reason;

use http::{HeaderValue, Method};
use serde_saphyr::Spanned;

use super::credentials::{self, Certificates, Credentials};
use super::{
    MAX_BUDGET_MIN_PER_SECOND, MAX_CHECK_INTERVAL, MAX_CHECK_TIMEOUT, MAX_CONNECT_TIMEOUT,
    MAX_COOL_OFF, MAX_HEALTH_THRESHOLD, MAX_REQUEST_TIMEOUT, MAX_RETRY_ATTEMPTS,
    MIN_CHECK_INTERVAL, Registries,
};
use crate::runtime::health::{ActiveCheck, HealthConfig, HealthRegistry, PassiveCheck};
use crate::runtime::policy::{self as policies, CompileCtx, HeaderBudget};
use crate::runtime::{
    Attachment, ErrorFormat, HeaderOps, HeadersPolicy, HostPattern, PathPattern, Pipeline, Policy,
    Proxy, Route, RouteRule, Target, Upstream, UpstreamConfig,
};
use switchyard_config::duration::HumanDuration;
use switchyard_config::error::{ConfigError, Position, SourceRef};
use switchyard_config::load::Located;
use switchyard_config::manifest::{
    BadRequestKey, ErrorsSpec, HeaderOpsSpec, HealthCheckSpec, LoadBalancing, Manifest, PolicySpec,
    ProxyManifest, RequestKey, RequestKeySpec, RouteSpec, TargetUrl, UpstreamSpec,
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
        self.push_because(position, field, message, Reason::Invalid);
    }

    fn push_because(
        &mut self,
        position: Option<Position>,
        field: String,
        message: String,
        reason: Reason,
    ) {
        self.errors.push(
            ConfigError::new(self.source, position.unwrap_or(self.fallback), message)
                .entity(Kind::Proxy, self.name)
                .field(field)
                .because(reason),
        );
    }

    fn at<T>(&self, s: &Spanned<T>) -> Option<Position> {
        let p = Position::from_location(self.source, s.referenced);
        (p.line > 0).then_some(p)
    }
}

/// Compiles `m` (the proxy in `located`) at `version`; its credential references resolve
/// against `credentials` (the new snapshot's), rate limits and target health against the
/// compiler's `registries`.
pub(crate) fn compile_proxy<X>(
    located: &Located<Manifest>,
    m: &ProxyManifest,
    version: u64,
    (credentials, certificates): (&Credentials, &Certificates),
    registries: &Registries,
) -> Result<Proxy<X>, Vec<ConfigError>> {
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
                max_stream_age: max_stream_age(r, i, &mut errs),
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
    let refs = credentials::credential_refs(m);
    // Policies see the credentials they name, looked up in the persistent map: O(refs · log n).
    let by_name: policies::Credentials<'_> = refs
        .iter()
        .filter_map(|r| credentials.get(*r).map(|c| (*r, &c.spec)))
        .collect();
    let upstream = compile_upstream(
        &m.spec.upstream,
        &name,
        &registries.health,
        (&by_name, certificates),
        &mut errs,
    );
    let mut policies = Vec::with_capacity(m.spec.policies.len());
    let mut rate_limits = 0;
    let mut authenticated = false;
    // What every `headers` policy adds to a request and to a response, in all.
    let (mut to_request, mut to_response) = (HeaderBudget::default(), HeaderBudget::default());
    for (i, p) in m.spec.policies.iter().enumerate() {
        let field = format!("spec.policies[{i}]");
        let compiled = match p {
            PolicySpec::Headers(h) => {
                let request =
                    compile_header_ops(&h.request, &format!("{field}.request"), &mut errs);
                let response =
                    compile_header_ops(&h.response, &format!("{field}.response"), &mut errs);
                for (ops, budget, side) in [
                    (&request, &mut to_request, "request"),
                    (&response, &mut to_response, "response"),
                ] {
                    if let Err(message) = budget.add(ops.set.iter().chain(&ops.add)) {
                        errs.push(None, format!("{field}.{side}"), message);
                    }
                }
                Ok(Policy::Headers(HeadersPolicy { request, response }))
            }
            other => {
                let ctx = CompileCtx {
                    proxy: &name,
                    credentials: &by_name,
                    limiters: &registries.limiters,
                    rate_limit_ordinal: rate_limits,
                    authenticated,
                };
                compile_policy(other, &ctx)
            }
        };
        match compiled {
            Ok(policy) => {
                if matches!(policy, Policy::RateLimit(_)) {
                    rate_limits += 1;
                }
                authenticated |= policy.authenticates();
                policies.push(policy);
            }
            Err(field_errors) => {
                for e in field_errors {
                    errs.push_because(None, format!("{field}.{}", e.field), e.message, e.reason);
                }
            }
        }
    }
    #[cfg(test)]
    for r in credentials::test_label_refs(m) {
        if !credentials.contains_key(r) {
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
        errors: match m.spec.errors {
            None | Some(ErrorsSpec::Switchyard {}) => ErrorFormat::Switchyard,
            Some(ErrorsSpec::Openai {}) => ErrorFormat::OpenAi,
        },
        https_redirect: m.spec.https_redirect,
        source: source.clone(),
        manifest: (!credentials::entity_refs(m).is_empty()).then(|| Arc::new(located.clone())),
        attachment: Attachment::default(),
    })
}

/// Every policy type but `headers` (compiled here, with positions).
fn compile_policy(
    spec: &PolicySpec,
    ctx: &CompileCtx<'_>,
) -> Result<Policy, Vec<policies::FieldError>> {
    Ok(match spec {
        PolicySpec::Headers(_) => {
            return Err(vec![policies::FieldError::new(
                "type",
                "internal: headers compiled elsewhere",
            )]);
        }
        PolicySpec::ApiKey(s) => Policy::ApiKey(policies::api_key::compile(s, ctx)?),
        PolicySpec::BasicAuth(s) => Policy::BasicAuth(policies::basic_auth::compile(s, ctx)?),
        PolicySpec::Jwt(s) => Policy::Jwt(policies::jwt::compile(s, ctx)?),
        PolicySpec::MtlsAuth(s) => Policy::MtlsAuth(policies::mtls_auth::compile(s, ctx)?),
        PolicySpec::IpFilter(s) => Policy::IpFilter(policies::ip_filter::compile(s)?),
        PolicySpec::RateLimit(s) => Policy::RateLimit(policies::rate_limit::compile(s, ctx)?),
        PolicySpec::RequestSize(s) => Policy::RequestSize(policies::request_size::compile(s)),
        PolicySpec::Cors(s) => Policy::Cors(policies::cors::compile(s)?),
        PolicySpec::PromptFirewall(s) => {
            Policy::PromptFirewall(Box::new(policies::prompt_firewall::compile(s)?))
        }
        PolicySpec::MockResponse(s) => Policy::MockResponse(policies::mock_response::compile(s)?),
        PolicySpec::UpstreamCredential(s) => {
            Policy::UpstreamCredential(policies::upstream_credential::compile(s, ctx)?)
        }
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

fn compile_upstream(
    u: &UpstreamSpec,
    proxy: &Arc<str>,
    registry: &HealthRegistry,
    refs: (&policies::Credentials<'_>, &Certificates),
    errs: &mut ProxyErrors<'_>,
) -> Option<Upstream> {
    let before = errs.errors.len();
    if u.targets.value.is_empty() {
        errs.push(
            errs.at(&u.targets),
            "spec.upstream.targets".into(),
            "an upstream needs at least one target".into(),
        );
    }
    let health = compile_health(u.health_check.as_ref(), errs);
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
                let url: Arc<str> = t.url.0.as_str().into();
                let state = registry.get(proxy, &url);
                let Some(target) = Target::new(url, &uri, t.weight, state) else {
                    errs.push(
                        errs.at(&u.targets),
                        format!("{field}.url"),
                        format!("invalid URL {:?}", t.url.0),
                    );
                    continue;
                };
                targets.push(match health.as_ref().and_then(|h| h.active.as_ref()) {
                    Some(active) => target.with_check(&active.path),
                    None => target,
                });
            }
            Err(msg) => errs.push(errs.at(&u.targets), format!("{field}.url"), msg),
        }
    }
    for (field, value, max) in [
        ("connect", u.timeouts.connect, MAX_CONNECT_TIMEOUT),
        ("request", u.timeouts.request, MAX_REQUEST_TIMEOUT),
    ] {
        if let Some(message) = check_duration(value, Duration::from_millis(1), max) {
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
    let budget = u.retries.budget;
    if !(budget.ratio.is_finite() && (0.0..=1.0).contains(&budget.ratio)) {
        errs.push(
            None,
            "spec.upstream.retries.budget.ratio".into(),
            format!(
                "{} is not between 0 and 1 (retries allowed per request)",
                budget.ratio
            ),
        );
    }
    if budget.min_per_second > MAX_BUDGET_MIN_PER_SECOND {
        errs.push(
            None,
            "spec.upstream.retries.budget.minPerSecond".into(),
            format!("at most {MAX_BUDGET_MIN_PER_SECOND}"),
        );
    }
    let hash_on = match (&u.hash_on, u.load_balancing) {
        (None, LoadBalancing::ConsistentHash) => {
            errs.push(
                None,
                "spec.upstream.hashOn".into(),
                "required with `loadBalancing: consistent-hash`: client-ip or header:<name>".into(),
            );
            None
        }
        (None, _) => None,
        (Some(_), lb) if lb != LoadBalancing::ConsistentHash => {
            errs.push(
                None,
                "spec.upstream.hashOn".into(),
                "only used with `loadBalancing: consistent-hash`".into(),
            );
            None
        }
        (Some(on), _) => match hash_on(on) {
            Ok(h) => Some(h),
            Err(message) => {
                errs.push(None, "spec.upstream.hashOn".into(), message);
                None
            }
        },
    };
    if u.max_concurrent_requests == Some(0) {
        errs.push(
            None,
            "spec.upstream.maxConcurrentRequests".into(),
            "must be at least 1 (leave it out for no limit)".into(),
        );
    }
    let tls = compile_upstream_tls(u, &targets, refs, errs);
    if errs.errors.len() > before {
        return None;
    }
    Some(Upstream::new(
        targets,
        UpstreamConfig {
            load_balancing: u.load_balancing,
            hash_on,
            connect_timeout: u.timeouts.connect.0,
            request_timeout: u.timeouts.request.0,
            retry_attempts: u.retries.attempts,
            budget_ratio: budget.ratio,
            budget_min_per_second: budget.min_per_second,
            health: health.unwrap_or_default(),
            max_concurrent_requests: u
                .max_concurrent_requests
                .map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            tls,
            protocol: u.protocol,
        },
    ))
}

/// `spec.upstream.tls`, compiled when a target is `https://` (and refused without one).
fn compile_upstream_tls(
    u: &UpstreamSpec,
    targets: &[Target],
    (credentials, certificates): (&policies::Credentials<'_>, &Certificates),
    errs: &mut ProxyErrors<'_>,
) -> Option<Arc<crate::tls::UpstreamTls>> {
    let https = targets.iter().any(|t| t.scheme == http::uri::Scheme::HTTPS);
    if !https {
        if u.tls.is_some() {
            errs.push(
                None,
                "spec.upstream.tls".into(),
                "no target is https://; remove `tls` or use https:// targets".into(),
            );
        }
        return None;
    }
    let spec = u.tls.as_ref();
    let ca = match spec.and_then(|t| t.ca.as_deref()) {
        None => None,
        Some(name) => match credentials.get(name) {
            Some(switchyard_config::manifest::CredentialSpec::Secret { value }) => {
                Some((name, value.as_str()))
            }
            Some(other) => {
                errs.push(
                    None,
                    "spec.upstream.tls.ca".into(),
                    format!(
                        "Credential {name:?} is of type {:?}; a CA bundle is a `secret` holding PEM certificates",
                        other.type_name()
                    ),
                );
                return None;
            }
            None => {
                errs.push_because(
                    None,
                    "spec.upstream.tls.ca".into(),
                    format!("no Credential named {name:?} in this environment"),
                    switchyard_config::error::Reason::UnknownCredential,
                );
                return None;
            }
        },
    };
    let client = match spec.and_then(|t| t.client_certificate.as_deref()) {
        None => None,
        Some(name) => match certificates.get(name) {
            Some(c) => Some(c.clone()),
            None => {
                errs.push_because(
                    None,
                    "spec.upstream.tls.clientCertificate".into(),
                    format!("no Certificate named {name:?} in this environment"),
                    switchyard_config::error::Reason::UnknownCredential,
                );
                return None;
            }
        },
    };
    match crate::tls::UpstreamTls::compile(spec, ca, client.as_deref()) {
        Ok(t) => Some(Arc::new(t)),
        Err((field, message)) => {
            errs.push(None, field, message);
            None
        }
    }
}

/// The shortest and longest `maxStreamAge` accepted.
const MIN_STREAM_AGE: Duration = Duration::from_millis(100);
const MAX_STREAM_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Route `i`'s `maxStreamAge`, checked against its bounds.
fn max_stream_age(
    r: &Spanned<RouteSpec>,
    i: usize,
    errs: &mut ProxyErrors<'_>,
) -> Option<Duration> {
    let age = r.value.max_stream_age?;
    if let Some(message) = check_duration(age, MIN_STREAM_AGE, MAX_STREAM_AGE) {
        errs.push(
            errs.at(r),
            format!("spec.routes[{i}].maxStreamAge"),
            message,
        );
        return None;
    }
    Some(age.0)
}

/// `None` when the duration is within `min..=max`, else why not.
fn check_duration(value: HumanDuration, min: Duration, max: Duration) -> Option<String> {
    if value.0.is_zero() {
        Some("must be greater than 0".to_string())
    } else if value.0 < min {
        Some(format!(
            "{value} is less than the {} minimum",
            HumanDuration(min)
        ))
    } else if value.0 > max {
        Some(format!(
            "{value} is more than the {} maximum",
            HumanDuration(max)
        ))
    } else {
        None
    }
}

/// `hashOn`: `client-ip` or `header:<name>`, the name exactly as written (unlike a
/// rate-limit key, no spaces around it).
fn hash_on(on: &RequestKeySpec) -> Result<RequestKey, String> {
    let exact = |name: &str| name.trim() == name;
    match (on.key(), on.header_as_written()) {
        (Ok(RequestKey::ClientIp), _) => Ok(RequestKey::ClientIp),
        (Ok(RequestKey::Header(h)), Some(name)) if exact(name) => Ok(RequestKey::Header(h.clone())),
        (Ok(RequestKey::Header(_)) | Err(BadRequestKey::HeaderName(_)), Some(name)) => {
            Err(format!("invalid header name {name:?}"))
        }
        _ => Err(format!(
            "invalid value {:?}: use client-ip or header:<name>",
            on.as_str()
        )),
    }
}

/// `healthCheck`, checked; `None` when absent or invalid (errors pushed).
fn compile_health(
    spec: Option<&HealthCheckSpec>,
    errs: &mut ProxyErrors<'_>,
) -> Option<HealthConfig> {
    let spec = spec?;
    const FIELD: &str = "spec.upstream.healthCheck";
    if spec.active.is_none() && spec.passive.is_none() {
        errs.push(
            None,
            FIELD.into(),
            "set `active`, `passive` or both (leave healthCheck out for no checks)".into(),
        );
        return None;
    }
    let threshold = |errs: &mut ProxyErrors<'_>, field: &str, n: u32| {
        if n == 0 || n > MAX_HEALTH_THRESHOLD {
            errs.push(
                None,
                format!("{FIELD}.{field}"),
                format!("must be between 1 and {MAX_HEALTH_THRESHOLD}"),
            );
        }
    };
    let mut config = HealthConfig::default();
    if let Some(a) = &spec.active {
        let path = if !a.path.starts_with('/')
            || a.path.contains('#')
            || a.path.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            None
        } else {
            a.path.parse::<http::uri::PathAndQuery>().ok()
        };
        if path.is_none() {
            errs.push(
                None,
                format!("{FIELD}.active.path"),
                format!(
                    "invalid path {:?}: must start with '/', no fragment, spaces or control characters",
                    a.path
                ),
            );
        }
        if let Some(m) = check_duration(a.interval, MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL) {
            errs.push(None, format!("{FIELD}.active.interval"), m);
        }
        if let Some(m) = check_duration(a.timeout, Duration::from_millis(1), MAX_CHECK_TIMEOUT) {
            errs.push(None, format!("{FIELD}.active.timeout"), m);
        }
        threshold(errs, "active.healthyThreshold", a.healthy_threshold);
        threshold(errs, "active.unhealthyThreshold", a.unhealthy_threshold);
        config.active = path.map(|path| ActiveCheck {
            path,
            interval: a.interval.0,
            timeout: a.timeout.0,
            healthy_threshold: a.healthy_threshold,
            unhealthy_threshold: a.unhealthy_threshold,
        });
    }
    if let Some(p) = &spec.passive {
        threshold(errs, "passive.consecutiveFailures", p.consecutive_failures);
        if let Some(m) = check_duration(p.cool_off, Duration::from_millis(1), MAX_COOL_OFF) {
            errs.push(None, format!("{FIELD}.passive.coolOff"), m);
        }
        config.passive = Some(PassiveCheck {
            consecutive_failures: p.consecutive_failures,
            cool_off: p.cool_off.0,
        });
    }
    Some(config)
}

fn compile_header_ops(spec: &HeaderOpsSpec, field: &str, errs: &mut ProxyErrors<'_>) -> HeaderOps {
    let mut ops = HeaderOps::default();
    let name = |n: &str, f: String, errs: &mut ProxyErrors<'_>| match policies::settable_header_name(
        &f, n,
    ) {
        Ok(h) => Some(h),
        Err(e) => {
            errs.push(None, f, e.message);
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
