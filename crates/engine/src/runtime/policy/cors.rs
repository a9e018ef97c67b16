//! `cors`: preflight requests (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//! are answered at the gateway; actual requests from an allowed origin get the CORS
//! response headers on the way back. Requests from other origins pass without CORS headers
//! (the browser then refuses the response), as the CORS protocol intends.

use std::time::Duration;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::{Exchange, FieldError, Reply, RequestView, Verdict, header_name};
use switchyard_config::manifest::CorsSpec;

#[derive(Debug)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Vec<String>,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    /// Lowercase; empty means "whatever the preflight asks for".
    headers: Vec<String>,
    headers_value: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

pub fn compile(spec: &CorsSpec) -> Result<CorsPolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut any_origin = false;
    let mut origins = Vec::new();
    if spec.allow_origins.is_empty() {
        errors.push(FieldError::new(
            "allowOrigins",
            "list the allowed origins (e.g. https://app.example.com) or \"*\"",
        ));
    }
    for (i, o) in spec.allow_origins.iter().enumerate() {
        if o == "*" {
            any_origin = true;
        } else if let Some(rest) = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
            && !rest.is_empty()
            && !rest.contains('/')
        {
            origins.push(o.to_ascii_lowercase());
        } else {
            errors.push(FieldError::new(
                format!("allowOrigins[{i}]"),
                format!(
                    "invalid origin {o:?}: expected scheme://host[:port] without a path, or \"*\""
                ),
            ));
        }
    }
    if any_origin && spec.allow_credentials {
        errors.push(FieldError::new(
            "allowCredentials",
            "browsers refuse credentials with a \"*\" origin: list the origins instead",
        ));
    }
    let method_names: Vec<String> = if spec.allow_methods.is_empty() {
        vec!["GET".into(), "HEAD".into(), "POST".into()]
    } else {
        spec.allow_methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect()
    };
    let mut methods = Vec::new();
    for (i, m) in method_names.iter().enumerate() {
        match Method::from_bytes(m.as_bytes()) {
            Ok(m) => methods.push(m),
            Err(_) => errors.push(FieldError::new(
                format!("allowMethods[{i}]"),
                format!("invalid method {m:?}"),
            )),
        }
    }
    let mut headers = Vec::new();
    for (i, h) in spec.allow_headers.iter().enumerate() {
        match header_name(&format!("allowHeaders[{i}]"), h) {
            Ok(n) => headers.push(n.as_str().to_string()),
            Err(e) => errors.push(e),
        }
    }
    for (i, h) in spec.expose_headers.iter().enumerate() {
        if let Err(e) = header_name(&format!("exposeHeaders[{i}]"), h) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let join = |l: &[String]| HeaderValue::from_str(&l.join(", ")).ok();
    Ok(CorsPolicy {
        any_origin,
        origins,
        methods_value: join(&method_names).unwrap_or(HeaderValue::from_static("GET")),
        methods,
        headers_value: if headers.is_empty() {
            None
        } else {
            join(&headers)
        },
        headers,
        expose: if spec.expose_headers.is_empty() {
            None
        } else {
            join(&spec.expose_headers)
        },
        credentials: spec.allow_credentials,
        max_age: spec
            .max_age
            .map(|d| HeaderValue::from(d.as_duration().max(Duration::ZERO).as_secs())),
    })
}

impl CorsPolicy {
    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any_origin
            || origin
                .to_str()
                .is_ok_and(|o| self.origins.iter().any(|a| a.eq_ignore_ascii_case(o)))
    }

    /// The `Access-Control-Allow-Origin` value for an allowed origin.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    pub fn on_request(&self, req: &mut RequestView<'_>, ex: &mut Exchange) -> Verdict {
        let Some(origin) = req.headers.get(ORIGIN).cloned() else {
            return Verdict::Continue;
        };
        let preflight = req.method == Method::OPTIONS
            && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if !preflight {
            if self.allows(&origin) {
                ex.cors_origin = Some(origin);
            }
            return Verdict::Continue;
        }
        let method_ok = req
            .headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .is_some_and(|m| self.methods.contains(&m));
        let requested = req
            .headers
            .get(ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let headers_ok = self.headers.is_empty()
            || requested.as_deref().is_none_or(|r| {
                r.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .all(|h| self.headers.contains(&h))
            });
        if !self.allows(&origin) || !method_ok || !headers_ok {
            return Verdict::Reply(Reply::deny(
                StatusCode::FORBIDDEN,
                "cors_preflight_rejected",
                CorsSpec::TYPE,
                "this origin, method or header is not allowed by the CORS policy",
            ));
        }
        let mut reply = Reply {
            status: StatusCode::NO_CONTENT,
            headers: vec![
                (ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(&origin)),
                (ACCESS_CONTROL_ALLOW_METHODS, self.methods_value.clone()),
                (VARY, HeaderValue::from_static("Origin")),
            ],
            body: bytes::Bytes::new(),
            code: "cors_preflight",
            detail: None,
            message: None,
        };
        let allow_headers = match (&self.headers_value, requested) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(r)) => HeaderValue::from_str(&r).ok(),
            (None, None) => None,
        };
        if let Some(h) = allow_headers {
            reply.headers.push((ACCESS_CONTROL_ALLOW_HEADERS, h));
        }
        if self.credentials {
            reply.headers.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(age) = &self.max_age {
            reply.headers.push((ACCESS_CONTROL_MAX_AGE, age.clone()));
        }
        Verdict::Reply(reply)
    }

    /// CORS headers on the response to an actual request from an allowed origin.
    pub fn on_response(&self, ex: &Exchange, headers: &mut HeaderMap) {
        let Some(origin) = &ex.cors_origin else {
            return;
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(origin));
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(e) = &self.expose {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::Uri;

    use super::*;
    use switchyard_config::duration::HumanDuration;

    fn policy() -> CorsPolicy {
        compile(&CorsSpec {
            allow_origins: vec!["https://app.example.com".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["content-type".into(), "x-api-key".into()],
            expose_headers: vec![],
            allow_credentials: false,
            max_age: Some(HumanDuration::from_secs(600)),
        })
        .unwrap()
    }

    fn request(p: &CorsPolicy, method: Method, headers: &[(&str, &str)]) -> (Verdict, Exchange) {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let mut uri: Uri = "/v1/chat".parse().unwrap();
        let mut ex = Exchange::default();
        let v = p.on_request(
            &mut RequestView {
                method: &method,
                uri: &mut uri,
                headers: &mut h,
                peer: [127, 0, 0, 1].into(),
                client_cert: None,
            },
            &mut ex,
        );
        (v, ex)
    }

    #[test]
    fn preflight_is_answered_at_the_gateway() {
        let p = policy();
        let (v, _) = request(
            &p,
            Method::OPTIONS,
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "Content-Type, X-Api-Key"),
            ],
        );
        let Verdict::Reply(r) = v else {
            panic!("not answered")
        };
        assert_eq!(r.status, 204);
        let get = |n: http::HeaderName| {
            r.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get(ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://app.example.com"
        );
        assert_eq!(get(ACCESS_CONTROL_ALLOW_METHODS).unwrap(), "GET, POST");
        assert_eq!(get(ACCESS_CONTROL_MAX_AGE).unwrap(), "600");
    }

    #[test]
    fn disallowed_preflights_are_refused_and_actual_requests_tagged() {
        let p = policy();
        for headers in [
            vec![
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ],
            vec![
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "DELETE"),
            ],
            vec![
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "x-secret"),
            ],
        ] {
            let (v, _) = request(&p, Method::OPTIONS, &headers);
            assert!(
                matches!(v, Verdict::Reply(ref r) if r.status == 403),
                "{headers:?}"
            );
        }
        let (v, ex) = request(&p, Method::POST, &[("origin", "https://app.example.com")]);
        assert!(matches!(v, Verdict::Continue));
        let mut out = HeaderMap::new();
        p.on_response(&ex, &mut out);
        assert_eq!(
            out.get(ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://app.example.com"
        );
        let (_, ex) = request(&p, Method::POST, &[("origin", "https://evil.example")]);
        let mut out = HeaderMap::new();
        p.on_response(&ex, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn wildcard_with_credentials_is_refused() {
        let e = compile(&CorsSpec {
            allow_origins: vec!["*".into()],
            allow_methods: vec![],
            allow_headers: vec![],
            expose_headers: vec![],
            allow_credentials: true,
            max_age: None,
        })
        .unwrap_err();
        assert_eq!(e[0].field, "allowCredentials");
    }
}
