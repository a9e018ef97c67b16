//! `ip-filter`: CIDR allow and deny lists, IPv4 and IPv6. Deny wins over allow; with an
//! allow list, anything not on it is denied. When the peer is a trusted proxy, the client
//! is the right-most address of `X-Forwarded-For` that is not itself a trusted proxy (the
//! left part of that header is whatever the client wrote and cannot be trusted).

use std::net::IpAddr;

use http::StatusCode;
use ipnet::IpNet;

use super::{Exchange, FieldError, Reply, RequestView, Verdict};
use switchyard_config::manifest::IpFilterSpec;

#[derive(Debug)]
pub struct IpFilterPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    trusted: Vec<IpNet>,
}

fn nets(field: &str, list: &[String], errors: &mut Vec<FieldError>) -> Vec<IpNet> {
    list.iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    errors.push(FieldError::new(
                        format!("{field}[{i}]"),
                        format!("invalid address or CIDR range {s:?} (e.g. 10.0.0.0/8, ::1/128)"),
                    ))
                })
                .ok()
        })
        .collect()
}

pub fn compile(spec: &IpFilterSpec) -> Result<IpFilterPolicy, Vec<FieldError>> {
    let mut errors = Vec::new();
    let allow = nets("allow", &spec.allow, &mut errors);
    let deny = nets("deny", &spec.deny, &mut errors);
    let trusted = nets("trustedProxies", &spec.trusted_proxies, &mut errors);
    if spec.allow.is_empty() && spec.deny.is_empty() {
        errors.push(FieldError::new("allow", "give an `allow` or a `deny` list"));
    }
    if errors.is_empty() {
        Ok(IpFilterPolicy {
            allow,
            deny,
            trusted,
        })
    } else {
        Err(errors)
    }
}

impl IpFilterPolicy {
    /// The client address: the peer, or through trusted proxies, from `X-Forwarded-For`.
    pub fn client_ip(&self, req: &RequestView<'_>) -> IpAddr {
        let peer = canonical(req.peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
                break;
            };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    pub fn on_request(&self, req: &mut RequestView<'_>, ex: &mut Exchange) -> Verdict {
        let ip = self.client_ip(req);
        ex.client_ip = Some(ip);
        let denied = self.deny.iter().any(|n| n.contains(&ip))
            || (!self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)));
        if denied {
            Verdict::Reply(Reply::deny(
                StatusCode::FORBIDDEN,
                "ip_denied",
                IpFilterSpec::TYPE,
                format!("requests from {ip} are not allowed"),
            ))
        } else {
            Verdict::Continue
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method, Uri};

    use super::*;

    fn spec(allow: &[&str], deny: &[&str], trusted: &[&str]) -> IpFilterSpec {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        IpFilterSpec {
            allow: v(allow),
            deny: v(deny),
            trusted_proxies: v(trusted),
        }
    }

    fn check(p: &IpFilterPolicy, peer: &str, xff: Option<&str>) -> (bool, IpAddr) {
        let mut h = HeaderMap::new();
        if let Some(x) = xff {
            h.insert("x-forwarded-for", HeaderValue::from_str(x).unwrap());
        }
        let mut uri: Uri = "/".parse().unwrap();
        let mut ex = Exchange::default();
        let v = p.on_request(
            &mut RequestView {
                method: &Method::GET,
                uri: &mut uri,
                headers: &mut h,
                peer: peer.parse().unwrap(),
                client_cert: None,
            },
            &mut ex,
        );
        (matches!(v, Verdict::Continue), ex.client_ip.unwrap())
    }

    #[test]
    fn allow_and_deny_v4_and_v6() {
        let p = compile(&spec(
            &["127.0.0.0/8", "::1/128", "10.0.0.0/8"],
            &["10.6.6.0/24"],
            &[],
        ))
        .unwrap();
        assert!(check(&p, "127.0.0.1", None).0);
        assert!(check(&p, "::1", None).0);
        assert!(check(&p, "::ffff:127.0.0.9", None).0);
        assert!(check(&p, "10.1.2.3", None).0);
        assert!(!check(&p, "10.6.6.6", None).0);
        assert!(!check(&p, "192.168.1.1", None).0);
        assert!(!check(&p, "2001:db8::1", None).0);
        let deny_only = compile(&spec(&[], &["192.168.0.0/16"], &[])).unwrap();
        assert!(check(&deny_only, "8.8.8.8", None).0);
        assert!(!check(&deny_only, "192.168.4.4", None).0);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let p = compile(&spec(&["203.0.113.0/24"], &[], &["10.0.0.0/8"])).unwrap();
        // Through a trusted proxy: the right-most untrusted hop is the client.
        assert_eq!(
            check(&p, "10.0.0.2", Some("1.2.3.4, 203.0.113.7, 10.0.0.9")),
            (true, "203.0.113.7".parse().unwrap())
        );
        // Spoofed header from an untrusted peer: ignored.
        assert_eq!(
            check(&p, "198.51.100.1", Some("203.0.113.7")),
            (false, "198.51.100.1".parse().unwrap())
        );
    }

    #[test]
    fn bad_ranges_are_named() {
        let e = compile(&spec(&["10.0.0.0/33", "nope"], &[], &[])).unwrap_err();
        assert_eq!(e[0].field, "allow[0]");
        assert_eq!(e[1].field, "allow[1]");
        assert!(compile(&spec(&[], &[], &[])).is_err());
    }
}
