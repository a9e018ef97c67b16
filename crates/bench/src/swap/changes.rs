//! The hot changes the bench cycles through, and the manifests of the bench proxy at each
//! step. Every change also moves the `x-release` response header to the change's sequence
//! number, so each response names the configuration that served it.

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
    pub credential: String,
    /// `None`: any host (a cluster of the bench's own).
    pub host: Option<String>,
}

impl Names {
    /// The names in a cluster the bench started itself.
    pub fn own() -> Names {
        Names {
            proxy: "bench".into(),
            credential: "bench-upstream-key".into(),
            host: None,
        }
    }

    /// Names that cannot collide with an existing cluster's entities or routes.
    pub fn unique(tag: &str) -> Names {
        Names {
            proxy: format!("swap-bench-{tag}"),
            credential: format!("swap-bench-{tag}-key"),
            host: Some(format!("swap-bench-{tag}.bench.invalid")),
        }
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
}

/// The bench's manifests at one step: the proxy and the credential it rotates.
pub fn manifests(names: &Names, shape: Shape, upstreams: &[String; 2]) -> [String; 2] {
    [
        proxy_manifest(names, shape, upstreams),
        format!(
            "apiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: {{ name: {}, labels: {{ owner: switchyard-bench }} }}\nspec:\n  type: secret\n  value: \"bench-secret-{}\"\n",
            names.credential, shape.credential
        ),
    ]
}

fn proxy_manifest(names: &Names, shape: Shape, upstreams: &[String; 2]) -> String {
    let hosts = names
        .host
        .as_ref()
        .map(|h| format!("\n      hosts: [\"{h}\"]"))
        .unwrap_or_default();
    let extra = if shape.extra_route {
        format!("\n    - pathPrefix: /extra{hosts}")
    } else {
        String::new()
    };
    let limit = if shape.policy {
        999_999_999
    } else {
        1_000_000_000
    };
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: {}, labels: {{ owner: switchyard-bench }} }}\nspec:\n  routes:\n    - pathPrefix: /bench{hosts}{extra}\n  upstream:\n    targets:\n      - url: http://{}\n  policies:\n    - type: rate-limit\n      key: client-ip\n      limit: {limit}\n      per: 1s\n    - type: upstream-credential\n      credential: {}\n      format: \"Bearer {{}}\"\n    - type: headers\n      response:\n        set: {{ x-release: r{} }}\n",
        names.proxy, upstreams[shape.upstream], names.credential, shape.seq
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
                assert_eq!(
                    c.snapshot
                        .route(host, "/extra", &http::Method::GET)
                        .is_some(),
                    shape.extra_route
                );
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
