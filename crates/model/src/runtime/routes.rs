//! The route table: host, then path, then method.
//!
//! Precedence, most specific first:
//! 1. host: an exact host beats the longest matching `*.suffix` wildcard, which beats routes
//!    without hosts. A less specific host group is tried only if the more specific one has no
//!    route for the path and method.
//! 2. path: an exact `path` beats any `pathPrefix`; a longer prefix beats a shorter one.
//!    Prefixes match whole segments: `/pay` matches `/pay` and `/pay/x`, not `/payments`.
//! 3. method: a route listing the method beats a route without `methods`.

/// Fast, seeded (DoS-resistant) hashing: request paths and hosts are attacker-chosen.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use http::Method;

/// Where a matched route points: indices into the snapshot's proxies and that proxy's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    pub proxy: usize,
    pub route: usize,
}

/// One route as the table needs it.
#[derive(Debug, Clone)]
pub struct RouteRule {
    pub hosts: Vec<HostPattern>,
    pub path: PathPattern,
    pub methods: Option<Vec<Method>>,
    pub target: RouteMatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Wildcard(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathPattern {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Default)]
pub struct RouteTable {
    exact_hosts: HashMap<String, PathTable>,
    /// Longest suffix first.
    wildcard_hosts: Vec<(String, PathTable)>,
    any_host: PathTable,
}

#[derive(Debug, Default)]
struct PathTable {
    exact: HashMap<String, Vec<Entry>>,
    /// Grouped by prefix length, longest first.
    prefixes: Vec<(usize, HashMap<String, Vec<Entry>>)>,
}

#[derive(Debug, Clone)]
struct Entry {
    methods: Option<Vec<Method>>,
    target: RouteMatch,
}

impl Entry {
    fn accepts(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}

impl PathTable {
    fn insert(&mut self, path: &PathPattern, entry: Entry) {
        let list = match path {
            PathPattern::Exact(p) => self.exact.entry(p.clone()).or_default(),
            PathPattern::Prefix(p) => {
                let len = p.len();
                let pos = match self.prefixes.binary_search_by(|(l, _)| len.cmp(l)) {
                    Ok(i) => i,
                    Err(i) => {
                        self.prefixes.insert(i, (len, HashMap::default()));
                        i
                    }
                };
                self.prefixes[pos].1.entry(p.clone()).or_default()
            }
        };
        list.push(entry);
        // Method-specific routes are tried before method-less ones.
        list.sort_by_key(|e| e.methods.is_none());
    }

    fn lookup(&self, path: &str, method: &Method) -> Option<RouteMatch> {
        if let Some(entries) = self.exact.get(path)
            && let Some(e) = entries.iter().find(|e| e.accepts(method))
        {
            return Some(e.target);
        }
        for (len, map) in &self.prefixes {
            let len = *len;
            if path.len() < len || !path.is_char_boundary(len) {
                continue;
            }
            let candidate = &path[..len];
            let on_boundary =
                candidate.ends_with('/') || path.len() == len || path.as_bytes()[len] == b'/';
            if !on_boundary {
                continue;
            }
            if let Some(entries) = map.get(candidate)
                && let Some(e) = entries.iter().find(|e| e.accepts(method))
            {
                return Some(e.target);
            }
        }
        None
    }
}

impl RouteTable {
    pub fn build(rules: impl IntoIterator<Item = RouteRule>) -> RouteTable {
        let mut table = RouteTable::default();
        let mut wildcards: HashMap<String, PathTable> = HashMap::default();
        for rule in rules {
            let entry = Entry {
                methods: rule.methods.clone(),
                target: rule.target,
            };
            if rule.hosts.is_empty() {
                table.any_host.insert(&rule.path, entry);
                continue;
            }
            for host in &rule.hosts {
                match host {
                    HostPattern::Exact(h) => table
                        .exact_hosts
                        .entry(h.clone())
                        .or_default()
                        .insert(&rule.path, entry.clone()),
                    HostPattern::Wildcard(s) => wildcards
                        .entry(s.clone())
                        .or_default()
                        .insert(&rule.path, entry.clone()),
                }
            }
        }
        table.wildcard_hosts = wildcards.into_iter().collect();
        table
            .wildcard_hosts
            .sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        table
    }

    /// Finds the route for a request. `host` may carry a port and any letter case.
    pub fn lookup(&self, host: Option<&str>, path: &str, method: &Method) -> Option<RouteMatch> {
        if let Some(host) = host.map(strip_port).filter(|h| !h.is_empty()) {
            let lowered;
            let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                lowered = host.to_ascii_lowercase();
                lowered.as_str()
            } else {
                host
            };
            let host = host.strip_suffix('.').unwrap_or(host);
            if let Some(m) = self
                .exact_hosts
                .get(host)
                .and_then(|t| t.lookup(path, method))
            {
                return Some(m);
            }
            for (suffix, t) in &self.wildcard_hosts {
                if host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && let Some(m) = t.lookup(path, method)
                {
                    return Some(m);
                }
            }
        }
        self.any_host.lookup(path, method)
    }
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(
        proxy: usize,
        hosts: &[&str],
        path: PathPattern,
        methods: Option<&[&str]>,
    ) -> RouteRule {
        RouteRule {
            hosts: hosts
                .iter()
                .map(|h| match h.strip_prefix('*') {
                    Some(s) => HostPattern::Wildcard(s.to_string()),
                    None => HostPattern::Exact(h.to_string()),
                })
                .collect(),
            path,
            methods: methods.map(|m| m.iter().map(|s| s.parse().unwrap()).collect()),
            target: RouteMatch { proxy, route: 0 },
        }
    }

    fn prefix(p: &str) -> PathPattern {
        PathPattern::Prefix(p.into())
    }

    fn exact(p: &str) -> PathPattern {
        PathPattern::Exact(p.into())
    }

    fn proxy_for(t: &RouteTable, host: Option<&str>, path: &str, method: &str) -> Option<usize> {
        t.lookup(host, path, &method.parse().unwrap())
            .map(|m| m.proxy)
    }

    #[test]
    fn longest_prefix_wins_and_exact_beats_prefix() {
        let t = RouteTable::build([
            rule(1, &[], prefix("/"), None),
            rule(2, &[], prefix("/payments"), None),
            rule(3, &[], prefix("/payments/refunds"), None),
            rule(4, &[], exact("/payments/health"), None),
        ]);
        assert_eq!(proxy_for(&t, None, "/other", "GET"), Some(1));
        assert_eq!(proxy_for(&t, None, "/payments", "GET"), Some(2));
        assert_eq!(proxy_for(&t, None, "/payments/42", "GET"), Some(2));
        assert_eq!(proxy_for(&t, None, "/payments/refunds/1", "GET"), Some(3));
        assert_eq!(proxy_for(&t, None, "/payments/health", "GET"), Some(4));
        assert_eq!(proxy_for(&t, None, "/payments/health/x", "GET"), Some(2));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let t = RouteTable::build([rule(1, &[], prefix("/pay"), None)]);
        assert_eq!(proxy_for(&t, None, "/pay", "GET"), Some(1));
        assert_eq!(proxy_for(&t, None, "/pay/x", "GET"), Some(1));
        assert_eq!(proxy_for(&t, None, "/payments", "GET"), None);
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let t = RouteTable::build([
            rule(1, &[], prefix("/"), None),
            rule(2, &["*.example.com"], prefix("/"), None),
            rule(3, &["api.example.com"], prefix("/"), None),
            rule(4, &["*.eu.example.com"], prefix("/"), None),
        ]);
        assert_eq!(proxy_for(&t, Some("api.example.com"), "/", "GET"), Some(3));
        assert_eq!(
            proxy_for(&t, Some("API.Example.com:8443"), "/", "GET"),
            Some(3)
        );
        assert_eq!(proxy_for(&t, Some("web.example.com"), "/", "GET"), Some(2));
        assert_eq!(proxy_for(&t, Some("a.eu.example.com"), "/", "GET"), Some(4));
        assert_eq!(proxy_for(&t, Some("example.com"), "/", "GET"), Some(1));
        assert_eq!(proxy_for(&t, None, "/", "GET"), Some(1));
    }

    #[test]
    fn less_specific_host_is_a_fallback_for_unmatched_paths() {
        let t = RouteTable::build([
            rule(1, &[], prefix("/static"), None),
            rule(2, &["api.example.com"], prefix("/payments"), None),
        ]);
        assert_eq!(
            proxy_for(&t, Some("api.example.com"), "/static/a.css", "GET"),
            Some(1)
        );
    }

    #[test]
    fn method_specific_beats_any_and_unlisted_methods_do_not_match() {
        let t = RouteTable::build([
            rule(1, &[], prefix("/payments"), None),
            rule(2, &[], prefix("/payments"), Some(&["POST"])),
            rule(3, &[], exact("/admin"), Some(&["GET"])),
        ]);
        assert_eq!(proxy_for(&t, None, "/payments", "POST"), Some(2));
        assert_eq!(proxy_for(&t, None, "/payments", "GET"), Some(1));
        assert_eq!(proxy_for(&t, None, "/admin", "GET"), Some(3));
        assert_eq!(proxy_for(&t, None, "/admin", "DELETE"), None);
    }

    #[test]
    fn ipv6_hosts_and_ports() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
