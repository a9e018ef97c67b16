//! The route table: host, then path, then method.
//!
//! Precedence, most specific first:
//! 1. host: an exact host beats the longest matching `*.suffix` wildcard, which beats routes
//!    without hosts. A less specific host group is tried only if the more specific one has no
//!    route for the path and method.
//! 2. path: an exact `path` beats any `pathPrefix`; a longer prefix beats a shorter one.
//!    Prefixes match whole segments: `/pay` matches `/pay` and `/pay/x`, not `/payments`.
//! 3. method: a route listing the method beats a route without `methods`.
//!
//! The table is persistent: a clone shares everything with the original, and inserting or
//! removing one route copies only the O(log n) nodes on its way, so each snapshot's table
//! is the previous one plus the changed routes.

use std::sync::Arc;

use http::Method;

use super::PMap;
use super::methods::MethodSet;

/// One route's match rule: hosts, path and methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub hosts: Vec<HostPattern>,
    pub path: PathPattern,
    pub methods: Option<Vec<Method>>,
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

/// Routes by host, path and method, each leading to a `T`.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    exact_hosts: PMap<Arc<str>, Arc<PathTable<T>>>,
    /// By suffix: `*.example.com` is found under `.example.com`.
    wildcard_hosts: PMap<Arc<str>, Arc<PathTable<T>>>,
    any_host: PathTable<T>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            exact_hosts: PMap::default(),
            wildcard_hosts: PMap::default(),
            any_host: PathTable::default(),
        }
    }
}

/// The routes of one host group.
#[derive(Debug, Clone)]
struct PathTable<T> {
    exact: PathMap<T>,
    /// Grouped by prefix length, longest first (a short list: one per distinct length).
    prefixes: Vec<(usize, PathMap<T>)>,
}

impl<T> Default for PathTable<T> {
    fn default() -> Self {
        PathTable {
            exact: PMap::default(),
            prefixes: Vec::new(),
        }
    }
}

/// The routes of one host + path, method-specific ones first, each group in insertion order.
/// One route (the usual case) is held inline: no pointer to follow on a lookup.
#[derive(Debug, Clone)]
enum Entries<T> {
    One(Entry<T>),
    Many(Arc<[Entry<T>]>),
}

impl<T> Entries<T> {
    fn as_slice(&self) -> &[Entry<T>] {
        match self {
            Entries::One(e) => std::slice::from_ref(e),
            Entries::Many(list) => list,
        }
    }
}

impl<T> From<Vec<Entry<T>>> for Entries<T> {
    fn from(mut list: Vec<Entry<T>>) -> Self {
        match list.pop() {
            Some(e) if list.is_empty() => Entries::One(e),
            Some(e) => {
                list.push(e);
                Entries::Many(list.into())
            }
            None => Entries::Many(Arc::from([])),
        }
    }
}

type PathMap<T> = PMap<Arc<str>, Entries<T>>;

#[derive(Debug, Clone)]
struct Entry<T> {
    methods: MethodSet,
    target: T,
}

impl<T> Entry<T> {
    fn accepts(&self, method: &Method) -> bool {
        self.methods.accepts(method)
    }

    /// Whether this entry claims `method` (`None`: the "any method" claim).
    fn claims(&self, method: Option<&Method>) -> bool {
        match method {
            None => self.methods.is_any(),
            Some(m) => self.methods.lists(m),
        }
    }
}

impl<T: Clone> PathTable<T> {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// The map holding `path`'s entries, created when `create` is set.
    fn map_mut<'a, 'p>(
        &'a mut self,
        path: &'p PathPattern,
        create: bool,
    ) -> Option<(&'a mut PathMap<T>, &'p str)> {
        match path {
            PathPattern::Exact(p) => Some((&mut self.exact, p)),
            PathPattern::Prefix(p) => {
                let len = p.len();
                let pos = match self.prefixes.binary_search_by(|(l, _)| len.cmp(l)) {
                    Ok(i) => i,
                    Err(_) if !create => return None,
                    Err(i) => {
                        self.prefixes.insert(i, (len, PMap::default()));
                        i
                    }
                };
                Some((&mut self.prefixes[pos].1, p))
            }
        }
    }

    fn insert(&mut self, path: &PathPattern, entry: Entry<T>) {
        let Some((map, key)) = self.map_mut(path, true) else {
            return;
        };
        let mut list: Vec<Entry<T>> = map
            .get(key)
            .map_or_else(Vec::new, |l| l.as_slice().to_vec());
        list.push(entry);
        // Method-specific routes are tried before method-less ones.
        list.sort_by_key(|e| e.methods.is_any());
        map.insert(Arc::from(key), list.into());
    }

    fn remove(&mut self, path: &PathPattern, is_target: &impl Fn(&T) -> bool) {
        let Some((map, key)) = self.map_mut(path, false) else {
            return;
        };
        let Some(list) = map.get(key) else {
            return;
        };
        let before = list.as_slice().len();
        let kept: Vec<Entry<T>> = list
            .as_slice()
            .iter()
            .filter(|e| !is_target(&e.target))
            .cloned()
            .collect();
        if kept.is_empty() {
            map.remove(key);
            self.prefixes.retain(|(_, m)| !m.is_empty());
        } else if kept.len() < before {
            map.insert(Arc::from(key), kept.into());
        }
    }

    fn entries(&self, path: &PathPattern) -> Option<&Entries<T>> {
        match path {
            PathPattern::Exact(p) => self.exact.get(p.as_str()),
            PathPattern::Prefix(p) => {
                let len = p.len();
                let i = self.prefixes.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
                self.prefixes[i].1.get(p.as_str())
            }
        }
    }
}

impl<T> PathTable<T> {
    fn lookup(&self, path: &str, method: &Method) -> Option<&T> {
        if let Some(entries) = self.exact.get(path)
            && let Some(e) = entries.as_slice().iter().find(|e| e.accepts(method))
        {
            return Some(&e.target);
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
                && let Some(e) = entries.as_slice().iter().find(|e| e.accepts(method))
            {
                return Some(&e.target);
            }
        }
        None
    }
}

impl<T: Clone> RouteTable<T> {
    /// A table of `rules`, in order.
    pub fn build(rules: impl IntoIterator<Item = (RouteRule, T)>) -> RouteTable<T> {
        let mut table = RouteTable::default();
        for (rule, target) in rules {
            table.insert(&rule, target);
        }
        table
    }

    /// Adds a route after the routes already at its hosts and path.
    pub fn insert(&mut self, rule: &RouteRule, target: T) {
        let entry = Entry {
            methods: MethodSet::new(rule.methods.as_deref()),
            target,
        };
        self.for_each_host(rule, |t| t.insert(&rule.path, entry.clone()));
    }

    /// Removes the entries of `rule`'s hosts and path whose target `is_target` accepts.
    pub fn remove(&mut self, rule: &RouteRule, is_target: impl Fn(&T) -> bool) {
        self.for_each_host(rule, |t| t.remove(&rule.path, &is_target));
    }

    /// The first route already claiming exactly this host pattern, path pattern and method
    /// (`None`: any host, any method), in the order routes were inserted.
    pub fn claimant(
        &self,
        host: Option<&HostPattern>,
        path: &PathPattern,
        method: Option<&Method>,
    ) -> Option<&T> {
        let table = match host {
            None => &self.any_host,
            Some(HostPattern::Exact(h)) => self.exact_hosts.get(h.as_str())?,
            Some(HostPattern::Wildcard(s)) => self.wildcard_hosts.get(s.as_str())?,
        };
        table
            .entries(path)?
            .as_slice()
            .iter()
            .find(|e| e.claims(method))
            .map(|e| &e.target)
    }

    fn for_each_host(&mut self, rule: &RouteRule, mut f: impl FnMut(&mut PathTable<T>)) {
        if rule.hosts.is_empty() {
            f(&mut self.any_host);
        }
        for host in &rule.hosts {
            let (map, key) = match host {
                HostPattern::Exact(h) => (&mut self.exact_hosts, h),
                HostPattern::Wildcard(s) => (&mut self.wildcard_hosts, s),
            };
            let mut table = map
                .get(key.as_str())
                .map_or_else(PathTable::default, |t| PathTable::clone(t));
            f(&mut table);
            if table.is_empty() {
                map.remove(key.as_str());
            } else {
                map.insert(Arc::from(key.as_str()), Arc::new(table));
            }
        }
    }
}

impl<T> RouteTable<T> {
    /// Finds the route for a request. `host` may carry a port and any letter case.
    pub fn lookup(&self, host: Option<&str>, path: &str, method: &Method) -> Option<&T> {
        let host_routes = !self.exact_hosts.is_empty() || !self.wildcard_hosts.is_empty();
        if let Some(host) = host
            .filter(|_| host_routes)
            .map(strip_port)
            .filter(|h| !h.is_empty())
        {
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
            if !self.wildcard_hosts.is_empty() {
                // `*.example.com` matches `a.example.com` and `a.b.example.com`, never
                // `example.com`: suffixes start at a dot after the first character, and the
                // longest (leftmost) one is tried first.
                for (i, b) in host.bytes().enumerate().skip(1) {
                    if b == b'.'
                        && let Some(m) = self
                            .wildcard_hosts
                            .get(&host[i..])
                            .and_then(|t| t.lookup(path, method))
                    {
                        return Some(m);
                    }
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
    ) -> (RouteRule, usize) {
        let rule = RouteRule {
            hosts: hosts
                .iter()
                .map(|h| match h.strip_prefix('*') {
                    Some(s) => HostPattern::Wildcard(s.to_string()),
                    None => HostPattern::Exact(h.to_string()),
                })
                .collect(),
            path,
            methods: methods.map(|m| m.iter().map(|s| s.parse().unwrap()).collect()),
        };
        (rule, proxy)
    }

    fn prefix(p: &str) -> PathPattern {
        PathPattern::Prefix(p.into())
    }

    fn exact(p: &str) -> PathPattern {
        PathPattern::Exact(p.into())
    }

    fn proxy_for(
        t: &RouteTable<usize>,
        host: Option<&str>,
        path: &str,
        method: &str,
    ) -> Option<usize> {
        t.lookup(host, path, &method.parse().unwrap()).copied()
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
        assert_eq!(proxy_for(&t, Some(".example.com"), "/", "GET"), Some(1));
        assert_eq!(proxy_for(&t, None, "/", "GET"), Some(1));
    }

    #[test]
    fn a_longer_wildcard_without_the_path_falls_back_to_a_shorter_one() {
        let t = RouteTable::build([
            rule(1, &["*.example.com"], prefix("/a"), None),
            rule(2, &["*.eu.example.com"], prefix("/b"), None),
        ]);
        assert_eq!(
            proxy_for(&t, Some("x.eu.example.com"), "/a", "GET"),
            Some(1)
        );
        assert_eq!(
            proxy_for(&t, Some("x.eu.example.com"), "/b", "GET"),
            Some(2)
        );
        assert_eq!(proxy_for(&t, Some("x.example.com"), "/b", "GET"), None);
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
    fn removing_restores_the_previous_table_and_leaves_the_original_alone() {
        let (a, b) = (
            rule(1, &["api.example.com"], prefix("/x"), None),
            rule(2, &["*.example.com"], exact("/y"), Some(&["GET"])),
        );
        let before = RouteTable::build([a.clone()]);
        let mut after = before.clone();
        after.insert(&b.0, b.1);
        after.insert(&b.0, 3);
        assert_eq!(
            proxy_for(&after, Some("w.example.com"), "/y", "GET"),
            Some(2)
        );
        after.remove(&b.0, |t| *t == 2);
        assert_eq!(
            proxy_for(&after, Some("w.example.com"), "/y", "GET"),
            Some(3)
        );
        after.remove(&b.0, |t| *t == 3);
        assert_eq!(proxy_for(&after, Some("w.example.com"), "/y", "GET"), None);
        assert!(after.wildcard_hosts.is_empty());
        after.remove(&a.0, |t| *t == 1);
        assert!(after.exact_hosts.is_empty());
        assert_eq!(
            proxy_for(&before, Some("api.example.com"), "/x/1", "GET"),
            Some(1)
        );
    }

    #[test]
    fn claimants_are_per_host_path_kind_and_method() {
        let t = RouteTable::build([
            rule(1, &["a.com"], prefix("/x"), Some(&["GET", "POST"])),
            rule(2, &["a.com"], prefix("/x"), None),
        ]);
        let host = HostPattern::Exact("a.com".into());
        let post: Method = "POST".parse().unwrap();
        assert_eq!(
            t.claimant(Some(&host), &prefix("/x"), Some(&post)),
            Some(&1)
        );
        assert_eq!(t.claimant(Some(&host), &prefix("/x"), None), Some(&2));
        assert_eq!(t.claimant(Some(&host), &exact("/x"), None), None);
        assert_eq!(t.claimant(None, &prefix("/x"), None), None);
    }

    #[test]
    fn ipv6_hosts_and_ports() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
