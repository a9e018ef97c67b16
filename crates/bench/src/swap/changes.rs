//! The hot changes the bench cycles through, and the manifests of the bench's entities at
//! each step. Every change also moves the `x-release` response header to the change's
//! sequence number, so each response names the configuration that served it, and each kind
//! of change shows in responses, so the load can check it against that configuration:
//! the upstream (`x-upstream-id`), the injected credential (the upstream echoes it), the
//! extra route (200 from the upstream while it exists; 404 from the fallback proxy, also
//! carrying `x-release`, while it does not), the rate limit (`RateLimit-Limit`).

use std::net::SocketAddr;

/// The kinds of hot change the bench cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Header,
    UpstreamSwitch,
    RouteAdd,
    RouteRemove,
    CredentialRotation,
    PolicyEdit,
}

impl ChangeKind {
    pub const CYCLE: [ChangeKind; 6] = [
        ChangeKind::Header,
        ChangeKind::UpstreamSwitch,
        ChangeKind::RouteAdd,
        ChangeKind::RouteRemove,
        ChangeKind::CredentialRotation,
        ChangeKind::PolicyEdit,
    ];

    /// The key of this kind in the JSON report (`kinds.<key>`).
    pub fn key(self) -> &'static str {
        match self {
            ChangeKind::Header => "response_header",
            ChangeKind::UpstreamSwitch => "upstream_switch",
            ChangeKind::RouteAdd => "route_addition",
            ChangeKind::RouteRemove => "route_removal",
            ChangeKind::CredentialRotation => "credential_rotation",
            ChangeKind::PolicyEdit => "policy_edit",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Header => "response header",
            ChangeKind::UpstreamSwitch => "upstream target switch",
            ChangeKind::RouteAdd => "route addition",
            ChangeKind::RouteRemove => "route removal",
            ChangeKind::CredentialRotation => "credential rotation",
            ChangeKind::PolicyEdit => "policy edit",
        }
    }
}

/// What the bench's entities are called, and the host its route answers.
#[derive(Debug, Clone)]
pub struct Names {
    pub proxy: String,
    /// The catch-all proxy that answers 404 (with `x-release`) where the extra route is
    /// absent.
    pub fallback: String,
    pub credential: String,
    /// `None`: any host (a cluster of the bench's own).
    pub host: Option<String>,
}

impl Names {
    /// The names in a cluster the bench started itself.
    pub fn own() -> Names {
        Names {
            proxy: "bench".into(),
            fallback: "bench-fallback".into(),
            credential: "bench-upstream-key".into(),
            host: None,
        }
    }

    /// Names that cannot collide with an existing cluster's entities or routes.
    pub fn unique(tag: &str) -> Names {
        Names {
            proxy: format!("swap-bench-{tag}"),
            fallback: format!("swap-bench-{tag}-fallback"),
            credential: format!("swap-bench-{tag}-key"),
            host: Some(format!("swap-bench-{tag}.bench.invalid")),
        }
    }

    /// The `hosts:` line of the bench's routes (nothing: any host).
    fn hosts_yaml(&self) -> String {
        self.host
            .as_ref()
            .map(|h| format!("\n      hosts: [\"{h}\"]"))
            .unwrap_or_default()
    }

    /// The Host header the load sends.
    pub fn request_host(&self) -> String {
        self.host.clone().unwrap_or_else(|| "bench.test".into())
    }
}

/// The bench proxy at one step.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The bench's change number (1 = the initial apply); the `x-release` header value.
    pub seq: u64,
    /// 0 → upstream "a", 1 → upstream "b".
    pub upstream: usize,
    pub extra_route: bool,
    /// Bumped by each credential rotation; the upstream sees `Bearer bench-secret-<n>`.
    pub credential: u64,
    /// Toggled by each policy edit (the rate limit's `limit`, far above the load).
    pub policy: bool,
}

impl Shape {
    pub fn initial() -> Shape {
        Shape {
            seq: 1,
            upstream: 0,
            extra_route: false,
            credential: 1,
            policy: false,
        }
    }

    /// The next step after applying `kind`.
    pub fn next(self, kind: ChangeKind) -> Shape {
        let mut s = self;
        s.seq += 1;
        match kind {
            ChangeKind::Header => {}
            ChangeKind::UpstreamSwitch => s.upstream ^= 1,
            ChangeKind::RouteAdd => s.extra_route = true,
            ChangeKind::RouteRemove => s.extra_route = false,
            ChangeKind::CredentialRotation => s.credential += 1,
            ChangeKind::PolicyEdit => s.policy = !s.policy,
        }
        s
    }

    /// The id byte of the upstream this step routes to.
    pub fn upstream_id(self) -> u8 {
        if self.upstream == 0 { b'a' } else { b'b' }
    }

    /// The rate limit's `limit` (and so the `RateLimit-Limit` header), far above the load.
    pub fn limit(self) -> u32 {
        if self.policy {
            999_999_999
        } else {
            1_000_000_000
        }
    }

    /// What a response served by this step must show.
    pub fn expect(self) -> Expect {
        Expect {
            upstream: self.upstream_id(),
            credential: u32::try_from(self.credential).unwrap_or(u32::MAX),
            extra_route: self.extra_route,
            limit: self.limit(),
        }
    }
}

/// What every response served by one configuration must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The id byte of the upstream (`x-upstream-id`).
    pub upstream: u8,
    /// The credential number the upstream saw (`Bearer bench-secret-<n>`).
    pub credential: u32,
    /// Whether `/extra` is routed to the upstream (200) or falls to the fallback (404).
    pub extra_route: bool,
    /// `RateLimit-Limit`.
    pub limit: u32,
}

/// The bench's manifests at one step: the proxy, the fallback and the credential.
pub fn manifests(names: &Names, shape: Shape, upstreams: &[String; 2]) -> [String; 3] {
    [
        proxy_manifest(names, shape, upstreams),
        fallback_manifest(names, shape, upstreams),
        format!(
            "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: {}, labels: {{ owner: switchyard-bench }} }}\nspec:\n  type: secret\n  value: \"bench-secret-{}\"\n",
            names.credential, shape.credential
        ),
    ]
}

fn proxy_manifest(names: &Names, shape: Shape, upstreams: &[String; 2]) -> String {
    let hosts = names.hosts_yaml();
    let extra = if shape.extra_route {
        format!("\n    - pathPrefix: /extra{hosts}")
    } else {
        String::new()
    };
    let limit = shape.limit();
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: {}, labels: {{ owner: switchyard-bench }} }}\nspec:\n  routes:\n    - pathPrefix: /bench{hosts}{extra}\n  upstream:\n    targets:\n      - url: http://{}\n  policies:\n    - type: rate-limit\n      key: client-ip\n      limit: {limit}\n      per: 1s\n    - type: upstream-credential\n      credential: {}\n      format: \"Bearer {{}}\"\n    - type: headers\n      response:\n        set: {{ x-release: r{} }}\n",
        names.proxy, upstreams[shape.upstream], names.credential, shape.seq
    )
}

/// The catch-all: `/` (on the bench's host) answers 404 with this step's `x-release`, so
/// a request to `/extra` while the route is absent is still a response of one known
/// configuration. It changes with every step, so each revision changes two proxies at once.
fn fallback_manifest(names: &Names, shape: Shape, upstreams: &[String; 2]) -> String {
    let hosts = names.hosts_yaml();
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: {}, labels: {{ owner: switchyard-bench }} }}\nspec:\n  routes:\n    - pathPrefix: /{hosts}\n  upstream:\n    targets:\n      - url: http://{}\n  policies:\n    - type: mock-response\n      status: 404\n      headers: {{ x-release: r{} }}\n      body: no such route in this revision\n",
        names.fallback, upstreams[0], shape.seq
    )
}

/// `host:port` for a manifest URL (IPv6 hosts bracketed).
pub fn authority(host: &str, addr: SocketAddr) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", addr.port())
    } else {
        format!("{host}:{}", addr.port())
    }
}

#[cfg(test)]
mod tests {
    use switchyard_config::parse_str;
    use switchyard_engine::compile;

    use super::*;

    #[test]
    fn every_step_of_the_cycle_compiles() {
        let ups = ["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        for names in [Names::own(), Names::unique("t1")] {
            let mut shape = Shape::initial();
            for kind in ChangeKind::CYCLE.iter().cycle().take(12) {
                shape = shape.next(*kind);
                let docs: Vec<_> = manifests(&names, shape, &ups)
                    .iter()
                    .flat_map(|t| parse_str("bench.yaml".into(), t).unwrap())
                    .collect();
                let c = compile(&docs, None).unwrap();
                let host = names.host.as_deref();
                let (_, proxy, _) = c
                    .snapshot
                    .route(host, "/bench/x", &http::Method::GET)
                    .unwrap();
                assert_eq!(&*proxy.name, names.proxy);
                let (_, extra, _) = c
                    .snapshot
                    .route(host, "/extra/item", &http::Method::GET)
                    .unwrap();
                let expected = if shape.extra_route {
                    &names.proxy
                } else {
                    &names.fallback
                };
                assert_eq!(&*extra.name, expected);
            }
        }
    }

    #[test]
    fn ipv6_authorities_are_bracketed() {
        let a: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(authority("::1", a), "[::1]:8080");
        assert_eq!(authority("10.0.0.5", a), "10.0.0.5:8080");
    }
}
