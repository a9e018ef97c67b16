//! The authority a request is routed on (RFC 9112 §3.2, RFC 9113 §8.3.1): exactly one
//! valid `Host` on HTTP/1.1, agreeing with the target's authority when the request target
//! is in absolute form (or, on HTTP/2, with `:authority`). Anything else is a 400: a request
//! whose host the gateway and the upstream could read differently must not be routed.

use http::HeaderValue;

/// Why a request's authority is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// HTTP/1.1 without `Host`.
    Missing,
    /// More than one `Host` header.
    Duplicate,
    /// Not `host[:port]` (userinfo, spaces, a bad port, a bad IP literal…).
    Invalid,
    /// The absolute-form target (or `:authority`) names another host than `Host`.
    Mismatch,
}

impl HostError {
    /// Stable code, for the 400 answer and logs.
    pub fn code(self) -> &'static str {
        match self {
            HostError::Missing => "missing_host",
            HostError::Duplicate => "duplicate_host",
            HostError::Invalid => "invalid_host",
            HostError::Mismatch => "host_mismatch",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            HostError::Missing => "an HTTP/1.1 request needs a Host header",
            HostError::Duplicate => "the request has more than one Host header",
            HostError::Invalid => {
                "the Host header (or request target's authority) is not a valid host[:port]"
            }
            HostError::Mismatch => "the request target's authority and the Host header disagree",
        }
    }
}

/// What a request says about its authority.
pub struct HostInput<'a, I> {
    /// Every `Host` header value.
    pub host_headers: I,
    /// The request target's authority (absolute form, or HTTP/2 `:authority`).
    pub target: Option<&'a str>,
    /// `https` for a default port of 443, anything else 80.
    pub scheme_is_https: bool,
    /// HTTP/1.1 (where `Host` is required).
    pub requires_host: bool,
}

/// The request's authority (`Host`, or the target's when there is no `Host`), checked;
/// `None` when the request names none (HTTP/1.0, HTTP/2 without `:authority`).
pub fn request_host<'a, I>(input: HostInput<'a, I>) -> Result<Option<&'a str>, HostError>
where
    I: Iterator<Item = &'a HeaderValue>,
{
    let mut headers = input.host_headers;
    let header = headers.next();
    if headers.next().is_some() {
        return Err(HostError::Duplicate);
    }
    let header = match header {
        Some(v) => Some(v.to_str().map_err(|_| HostError::Invalid)?),
        None => None,
    };
    if let Some(h) = header {
        parse(h)?;
    }
    if let Some(t) = input.target {
        let target = parse(t)?;
        if let Some(h) = header {
            let default = if input.scheme_is_https { 443 } else { 80 };
            let host = parse(h)?;
            let same_name = host.name.eq_ignore_ascii_case(target.name);
            let same_port = host.port.unwrap_or(default) == target.port.unwrap_or(default);
            if !(same_name && same_port) {
                return Err(HostError::Mismatch);
            }
        }
    }
    match header.or(input.target) {
        Some(h) => Ok(Some(h)),
        None if input.requires_host => Err(HostError::Missing),
        None => Ok(None),
    }
}

/// `host[:port]`, split.
#[derive(Debug, PartialEq, Eq)]
struct Authority<'a> {
    /// Without a trailing dot.
    name: &'a str,
    port: Option<u16>,
}

/// RFC 3986 `host [ ":" port ]`: an IP literal in brackets, or a reg-name / IPv4 address
/// (unreserved, sub-delims, percent-escapes). No userinfo, no spaces.
fn parse(s: &str) -> Result<Authority<'_>, HostError> {
    let (name, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or(HostError::Invalid)?;
        let literal = &rest[..end];
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::Invalid);
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(HostError::Invalid),
        };
        (&s[..end + 2], port)
    } else {
        match s.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| HostError::Invalid)?)
        }
        Some(_) => return Err(HostError::Invalid),
    };
    if !name.starts_with('[') {
        let bytes = name.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let ok = bytes
                        .get(i + 1..i + 3)
                        .is_some_and(|d| d.iter().all(u8::is_ascii_hexdigit));
                    if !ok {
                        return Err(HostError::Invalid);
                    }
                    i += 3;
                    continue;
                }
                b if b.is_ascii_alphanumeric() => {}
                b'-' | b'.' | b'_' | b'~' => {}
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
                _ => return Err(HostError::Invalid),
            }
            i += 1;
        }
    }
    Ok(Authority {
        name: name.strip_suffix('.').unwrap_or(name),
        port,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(
        hosts: &[&str],
        target: Option<&str>,
        requires_host: bool,
    ) -> Result<Option<String>, HostError> {
        let values: Vec<HeaderValue> = hosts
            .iter()
            .map(|h| HeaderValue::from_str(h).unwrap())
            .collect();
        request_host(HostInput {
            host_headers: values.iter(),
            target,
            scheme_is_https: false,
            requires_host,
        })
        .map(|h| h.map(str::to_string))
    }

    #[test]
    fn one_valid_host_is_required_on_http_1_1() {
        assert_eq!(
            check(&["api.example.com"], None, true),
            Ok(Some("api.example.com".into()))
        );
        assert_eq!(check(&[], None, true), Err(HostError::Missing));
        assert_eq!(check(&[], None, false), Ok(None));
        assert_eq!(
            check(&["a.com", "b.com"], None, true),
            Err(HostError::Duplicate)
        );
        assert_eq!(
            check(&["a.com", "a.com"], None, true),
            Err(HostError::Duplicate)
        );
    }

    #[test]
    fn invalid_hosts_are_refused() {
        for h in [
            "user@a.com",
            "a .com",
            "a.com:80x",
            "a.com:123456",
            "a.com:99999",
            "[::1",
            "[zz::1]",
            "[::1]x",
            "a/b",
            "a%zz",
            "a.com:80:80",
        ] {
            assert_eq!(check(&[h], None, true), Err(HostError::Invalid), "{h}");
        }
        for h in [
            "[::1]:8080",
            "127.0.0.1:80",
            "API.Example.com.",
            "a.com:",
            "a%41b",
        ] {
            assert!(check(&[h], None, true).is_ok(), "{h}");
        }
    }

    #[test]
    fn an_absolute_form_target_must_agree_with_host() {
        assert_eq!(
            check(&["A.com"], Some("a.com:80"), true),
            Ok(Some("A.com".into()))
        );
        assert_eq!(
            check(&["a.com"], Some("b.com"), true),
            Err(HostError::Mismatch)
        );
        assert_eq!(
            check(&["a.com:8080"], Some("a.com"), true),
            Err(HostError::Mismatch)
        );
        assert_eq!(
            check(&["a.com"], Some("user@a.com"), true),
            Err(HostError::Invalid)
        );
        // HTTP/2: `:authority` alone names the host.
        assert_eq!(check(&[], Some("a.com"), false), Ok(Some("a.com".into())));
    }
}
