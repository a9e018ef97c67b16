//! Checks across entities: unique names, route ownership, credential contents.

/// Fast, seeded (DoS-resistant) hashing: request paths and hosts are attacker-chosen.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use http::Method;
use switchyard_config::Kind;

use crate::runtime::{HostPattern, PathPattern, Proxy, RouteMatch, RouteTable};
use switchyard_config::error::{ConfigError, Position, SourceRef};

/// Where a name was declared, to report duplicates against the first declaration.
#[derive(Debug)]
pub(crate) struct Declared<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub source: &'a SourceRef,
    pub position: Position,
}

/// Two documents of one kind may not share a name.
pub(crate) fn duplicate_names(decls: &[Declared<'_>]) -> Vec<ConfigError> {
    let mut seen: HashMap<(Kind, &str), &Declared<'_>> = HashMap::default();
    let mut errors = Vec::new();
    for d in decls {
        if let Some(first) = seen.get(&(d.kind, d.name)) {
            errors.push(
                ConfigError::new(
                    d.source,
                    d.position,
                    format!(
                        "duplicate name: {} {:?} is already defined at {}",
                        d.kind.lower(),
                        d.name,
                        place(first.source, first.position)
                    ),
                )
                .entity(d.kind, d.name)
                .field("metadata.name"),
            );
        } else {
            seen.insert((d.kind, d.name), d);
        }
    }
    errors
}

/// The first conflict of route `index` of `proxy` with a route already in `table`, or with
/// an earlier host + method of the same route: no two routes may claim the same host + path
/// + method, or the gateway could not tell which one a request belongs to.
pub(crate) fn route_conflict<X>(
    table: &RouteTable<RouteMatch<X>>,
    proxy: &Proxy<X>,
    index: usize,
) -> Option<ConfigError> {
    let route = proxy.routes.get(index)?;
    let rule = &route.rule;
    let hosts: Vec<Option<&HostPattern>> = if rule.hosts.is_empty() {
        vec![None]
    } else {
        rule.hosts.iter().map(Some).collect()
    };
    let methods: Vec<Option<&Method>> = match &rule.methods {
        None => vec![None],
        Some(ms) => ms.iter().map(Some).collect(),
    };
    let mut seen = Vec::new();
    for host in &hosts {
        for method in &methods {
            let owner = match table.claimant(*host, &rule.path, *method) {
                Some(m) => Some((&*m.proxy, m.route)),
                None if seen.contains(&(*host, *method)) => Some((proxy, index)),
                None => None,
            };
            if let Some((owner, owner_index)) = owner {
                let owner_position = owner
                    .routes
                    .get(owner_index)
                    .map_or(Position::UNKNOWN, |r| r.position);
                return Some(
                    ConfigError::new(
                        &proxy.source,
                        route.position,
                        format!(
                            "route conflict: {} is already claimed by proxy {:?} \
                             (spec.routes[{}] at {})",
                            describe(*host, &rule.path, method.map(Method::as_str)),
                            owner.name,
                            owner_index,
                            place(&owner.source, owner_position)
                        ),
                    )
                    .entity(Kind::Proxy, &proxy.name)
                    .field(format!("spec.routes[{index}]")),
                );
            }
            seen.push((*host, *method));
        }
    }
    None
}

fn describe(host: Option<&HostPattern>, path: &PathPattern, method: Option<&str>) -> String {
    let host = match host {
        None => "any host".to_string(),
        Some(HostPattern::Exact(h)) => format!("host {h}"),
        Some(HostPattern::Wildcard(s)) => format!("host *{s}"),
    };
    let path = match path {
        PathPattern::Exact(p) => format!("path {p}"),
        PathPattern::Prefix(p) => format!("pathPrefix {p}"),
    };
    let method = method.unwrap_or("any method");
    format!("{host} + {path} + {method}")
}

fn place(source: &SourceRef, position: Position) -> String {
    if position.line > 0 {
        format!("{}:{}:{}", source.file, position.line, position.column)
    } else {
        format!("{} document {}", source.file, source.document)
    }
}

/// A credential must hold something, and its keys must tell consumers apart. Messages never
/// contain a secret value.
pub(crate) fn credential(
    source: &SourceRef,
    c: &switchyard_config::manifest::CredentialManifest,
) -> Vec<ConfigError> {
    use switchyard_config::manifest::CredentialSpec;
    let name = &c.metadata.name.value;
    let at = Position::from_location(source, c.metadata.name.referenced);
    let err = |field: String, message: &str| {
        ConfigError::new(source, at, message)
            .entity(Kind::Credential, name)
            .field(field)
    };
    let mut errors = Vec::new();
    match &c.spec {
        CredentialSpec::Secret { value } if value.is_empty() => {
            errors.push(err("spec.value".into(), "empty secret"));
        }
        CredentialSpec::Secret { .. } => {}
        CredentialSpec::BasicUsers { users } => {
            if users.is_empty() {
                errors.push(err(
                    "spec.users".into(),
                    "a basic-users credential needs at least one user",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, u) in users.iter().enumerate() {
                if u.username.is_empty() || u.username.contains(':') {
                    errors.push(err(
                        format!("spec.users[{i}].username"),
                        "a username must be non-empty and cannot contain ':'",
                    ));
                }
                if !seen.insert(u.username.as_str()) {
                    errors.push(err(
                        format!("spec.users[{i}].username"),
                        "the same username is listed twice",
                    ));
                }
                if let Err(why) =
                    crate::runtime::policy::basic_auth::check_password_hash(&u.password_hash)
                {
                    errors.push(err(format!("spec.users[{i}].passwordHash"), &why));
                }
            }
        }
        CredentialSpec::Jwks { jwks } => {
            let set = match jwks {
                serde_json::Value::String(text) => serde_json::from_str(text).ok(),
                other => Some(other.clone()),
            };
            let has_keys = set
                .as_ref()
                .and_then(|s| s.get("keys"))
                .and_then(|k| k.as_array())
                .is_some_and(|k| !k.is_empty());
            if !has_keys {
                errors.push(err(
                    "spec.jwks".into(),
                    "expected a JSON Web Key Set: {\"keys\": [ … ]} with at least one key",
                ));
            }
        }
        CredentialSpec::ApiKeys { keys } => {
            if keys.is_empty() {
                errors.push(err(
                    "spec.keys".into(),
                    "an api-keys credential needs at least one key",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, k) in keys.iter().enumerate() {
                if k.consumer.is_empty() {
                    errors.push(err(
                        format!("spec.keys[{i}].consumer"),
                        "empty consumer name",
                    ));
                }
                if k.key.len() < 8 {
                    errors.push(err(
                        format!("spec.keys[{i}].key"),
                        "a key must be at least 8 characters",
                    ));
                }
                if !seen.insert(k.key.as_str()) {
                    errors.push(err(
                        format!("spec.keys[{i}].key"),
                        "the same key is listed twice (it could not tell consumers apart)",
                    ));
                }
            }
        }
    }
    errors
}
