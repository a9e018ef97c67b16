//! The JSON schema of each manifest kind (from the `ToSchema` derives of the manifest types)
//! and the list of field paths a manifest of that kind can contain, so that tests can
//! enumerate every field and notice one that nothing classifies yet.
//!
//! Paths are written from the document root with the wire names (`spec.upstream.timeouts`),
//! the items of an array under `[]` (`spec.routes[].pathPrefix`), the `type` tag of a
//! tagged union beside the fields of all its variants (`spec.policies[].type`,
//! `spec.policies[].credentials`), and maps with free keys (`metadata.labels`) or free
//! values (a credential's `spec.jwks`) as leaves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::Kind;
use crate::manifest::{
    CertificateManifest, CredentialManifest, EnvironmentManifest, ListenerManifest, ProxyManifest,
    WorkerSettingsManifest,
};

/// Where the components of [`utoipa`] schemas are referred to.
const REF_PREFIX: &str = "#/components/schemas/";

/// The schema of a manifest of `kind`, every `$ref` inlined (a reference that would recur
/// into itself is left as it is, with the referenced schema under `$defs`).
pub fn schema_json(kind: Kind) -> Value {
    let (root, components) = match kind {
        Kind::Proxy => parts::<ProxyManifest>(),
        Kind::Credential => parts::<CredentialManifest>(),
        Kind::Environment => parts::<EnvironmentManifest>(),
        Kind::Certificate => parts::<CertificateManifest>(),
        Kind::WorkerSettings => parts::<WorkerSettingsManifest>(),
        Kind::Listener => parts::<ListenerManifest>(),
    };
    let mut recursive = BTreeSet::new();
    let mut inlined = inline(&root, &components, &mut Vec::new(), &mut recursive);
    if !recursive.is_empty()
        && let Value::Object(map) = &mut inlined
    {
        let defs = recursive
            .iter()
            .filter_map(|name| Some((name.clone(), components.get(name)?.clone())))
            .collect::<Map<_, _>>();
        map.insert("$defs".into(), Value::Object(defs));
    }
    merge_all_of(&mut inlined);
    inlined
}

/// Every field path a manifest of `kind` can contain (see the module's documentation),
/// sorted, each once.
pub fn field_paths(kind: Kind) -> Vec<String> {
    walk(&schema_json(kind)).paths.into_iter().collect()
}

/// The paths of [`field_paths`] whose value is free-form: a map with free keys or any
/// value. Their content is not described further.
#[cfg(test)]
fn free_form_paths(kind: Kind) -> BTreeSet<String> {
    walk(&schema_json(kind)).free_form
}

/// The root schema of `T` and the schemas it refers to, by name, as JSON.
fn parts<T: ToSchema>() -> (Value, BTreeMap<String, Value>) {
    let mut schemas = Vec::new();
    T::schemas(&mut schemas);
    let components = schemas
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or(Value::Null)))
        .collect();
    let root = serde_json::to_value(T::schema()).unwrap_or(Value::Null);
    (root, components)
}

/// `schema` with every `$ref` to a known component replaced by that component (inlined in
/// turn). Keys beside a `$ref` (a description) are kept where the component has none.
/// `stack` holds the components being inlined; a reference to one of them is kept and its
/// name added to `recursive`.
fn inline(
    schema: &Value,
    components: &BTreeMap<String, Value>,
    stack: &mut Vec<String>,
    recursive: &mut BTreeSet<String>,
) -> Value {
    match schema {
        Value::Object(map) => {
            let target = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(REF_PREFIX))
                .and_then(|name| Some((name, components.get(name)?)));
            if let Some((name, component)) = target {
                if stack.iter().any(|n| n == name) {
                    recursive.insert(name.to_string());
                    return schema.clone();
                }
                stack.push(name.to_string());
                let mut resolved = inline(component, components, stack, recursive);
                stack.pop();
                if let Value::Object(out) = &mut resolved {
                    for (k, v) in map {
                        if k != "$ref" && !out.contains_key(k) {
                            out.insert(k.clone(), v.clone());
                        }
                    }
                }
                return resolved;
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), inline(v, components, stack, recursive)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| inline(v, components, stack, recursive))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Replaces each `allOf` whose branches are all plain objects with one object that has all
/// their properties. `utoipa` writes a `type`-tagged variant as `allOf: [variant, {type}]`;
/// when the variant refuses unknown fields (`additionalProperties: false`) a validator would
/// refuse its `type`, which the merged object allows.
fn merge_all_of(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.values_mut().for_each(merge_all_of);
            let Some(Value::Array(branches)) = map.get("allOf") else {
                return;
            };
            let Some(merged) = merged_objects(branches) else {
                return;
            };
            map.remove("allOf");
            for (k, v) in merged {
                map.entry(k).or_insert(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(merge_all_of),
        _ => {}
    }
}

/// The object with the properties (and requirements) of all `branches`, if each is an
/// object schema without composition and no property is described two different ways.
fn merged_objects(branches: &[Value]) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut closed = false;
    for branch in branches {
        let b = branch.as_object()?;
        if b.get("type").and_then(Value::as_str) != Some("object")
            || ["allOf", "oneOf", "anyOf", "$ref"]
                .iter()
                .any(|k| b.contains_key(*k))
        {
            return None;
        }
        for (k, v) in b {
            match k.as_str() {
                "properties" => {
                    for (name, p) in v.as_object()? {
                        match properties.get(name) {
                            Some(existing) if existing != p => return None,
                            Some(_) => {}
                            None => {
                                properties.insert(name.clone(), p.clone());
                            }
                        }
                    }
                }
                "required" => {
                    for r in v.as_array()? {
                        if !required.contains(r) {
                            required.push(r.clone());
                        }
                    }
                }
                "additionalProperties" => match v {
                    Value::Bool(false) => closed = true,
                    _ => return None,
                },
                _ => {
                    out.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    out.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        out.insert("required".into(), Value::Array(required));
    }
    if closed {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Some(out)
}

/// What [`walk`] found.
#[derive(Default)]
struct Walked {
    paths: BTreeSet<String>,
    free_form: BTreeSet<String>,
}

fn walk(schema: &Value) -> Walked {
    let mut out = Walked::default();
    walk_at(schema, "", &mut out, 0);
    out
}

/// The keys that say what a value is; a schema with none of them allows any value.
const SHAPE_KEYS: [&str; 9] = [
    "type",
    "properties",
    "items",
    "allOf",
    "oneOf",
    "anyOf",
    "$ref",
    "enum",
    "const",
];

/// Far deeper than any manifest goes; bounds the recursion whatever the schema.
const MAX_DEPTH: usize = 64;

/// Adds the fields below `prefix` (the path of the value `schema` describes; empty at the
/// root) to `out`.
fn walk_at(schema: &Value, prefix: &str, out: &mut Walked, depth: usize) {
    let Value::Object(map) = schema else {
        return;
    };
    if depth > MAX_DEPTH {
        return;
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for branch in map.get(key).and_then(Value::as_array).into_iter().flatten() {
            walk_at(branch, prefix, out, depth + 1);
        }
    }
    let properties = map.get("properties").and_then(Value::as_object);
    for (name, property) in properties.into_iter().flatten() {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        out.paths.insert(path.clone());
        walk_at(property, &path, out, depth + 1);
    }
    if let Some(items) = map.get("items") {
        walk_at(items, &format!("{prefix}[]"), out, depth + 1);
    }
    let free_map = properties.is_none()
        && map
            .get("additionalProperties")
            .is_some_and(|a| *a != Value::Bool(false));
    let any_value = !SHAPE_KEYS.iter().any(|k| map.contains_key(*k));
    if (free_map || any_value) && !prefix.is_empty() {
        out.free_form.insert(prefix.to_string());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn assert_has(kind: Kind, expected: &[&str]) {
        let paths = field_paths(kind);
        assert!(!paths.is_empty(), "{kind}: no field paths");
        for p in expected {
            assert!(
                paths.iter().any(|x| x == p),
                "{kind}: {p} missing from {paths:#?}"
            );
        }
    }

    #[test]
    fn every_kind_lists_its_fields() {
        for kind in Kind::ALL {
            let paths = field_paths(kind);
            assert!(!paths.is_empty(), "{kind}: no field paths");
            assert!(paths.windows(2).all(|w| w[0] < w[1]), "{kind}: {paths:?}");
            for common in ["apiVersion", "kind", "metadata", "metadata.name", "spec"] {
                assert!(paths.iter().any(|p| p == common), "{kind}: {common}");
            }
            // Every path's parent is listed too.
            for p in &paths {
                if let Some((parent, _)) = p.rsplit_once('.') {
                    let parent = parent.strip_suffix("[]").unwrap_or(parent);
                    assert!(
                        paths.iter().any(|x| x == parent),
                        "{kind}: {p} without {parent}"
                    );
                }
            }
        }
    }

    #[test]
    fn proxies_list_routes_upstreams_and_every_policy() {
        assert_has(
            Kind::Proxy,
            &[
                "metadata.labels",
                "metadata.annotations",
                "spec.routes",
                "spec.routes[].pathPrefix",
                "spec.routes[].stripPrefix",
                "spec.routes[].maxStreamAge",
                "spec.upstream",
                "spec.upstream.targets",
                "spec.upstream.targets[].url",
                "spec.upstream.targets[].weight",
                "spec.upstream.timeouts",
                "spec.upstream.timeouts.connect",
                "spec.upstream.retries.budget.ratio",
                "spec.upstream.retries.budget.minPerSecond",
                "spec.upstream.healthCheck.active.unhealthyThreshold",
                "spec.upstream.healthCheck.passive.coolOff",
                "spec.upstream.tls.clientCertificate",
                "spec.upstream.hashOn",
                "spec.errors.format",
                "spec.httpsRedirect",
                "spec.policies",
                "spec.policies[].type",
                // api-key, basic-auth, jwt, mtls-auth, ip-filter, rate-limit, request-size,
                // cors, prompt-firewall, mock-response, upstream-credential, headers.
                "spec.policies[].credentials",
                "spec.policies[].realm",
                "spec.policies[].consumerClaim",
                "spec.policies[].identity",
                "spec.policies[].trustedProxies",
                "spec.policies[].limit",
                "spec.policies[].per",
                "spec.policies[].maxBytes",
                "spec.policies[].allowOrigins",
                "spec.policies[].rules[].pattern",
                "spec.policies[].status",
                "spec.policies[].credential",
                "spec.policies[].request.set",
            ],
        );
    }

    #[test]
    fn credentials_list_the_tag_and_every_type() {
        assert_has(
            Kind::Credential,
            &[
                "spec.type",
                "spec.value",
                "spec.keys[].consumer",
                "spec.keys[].key",
                "spec.users[].username",
                "spec.users[].passwordHash",
                "spec.jwks",
            ],
        );
    }

    #[test]
    fn environments_and_certificates_list_their_fields() {
        assert_has(
            Kind::Environment,
            &[
                "spec.variables",
                "spec.gateway",
                "spec.gateway.paths.mergeSlashes",
                "spec.gateway.timeouts.upstreamBodyIdle",
                "spec.gateway.connections.max",
            ],
        );
        assert_has(
            Kind::Certificate,
            &[
                "spec.certificate",
                "spec.privateKey",
                "spec.default",
                "spec.clientAuth",
                "spec.clientAuth.ca",
                "spec.clientAuth.mode",
            ],
        );
    }

    #[test]
    fn free_form_values_are_leaves() {
        let free = |kind| free_form_paths(kind).into_iter().collect::<Vec<_>>();
        assert_eq!(
            free(Kind::Proxy),
            [
                "metadata.annotations",
                "metadata.labels",
                "spec.policies[].headers",
                "spec.policies[].request.add",
                "spec.policies[].request.set",
                "spec.policies[].response.add",
                "spec.policies[].response.set",
            ]
        );
        assert_eq!(
            free(Kind::Credential),
            ["metadata.annotations", "metadata.labels", "spec.jwks"]
        );
        assert_eq!(
            free(Kind::Environment),
            ["metadata.annotations", "metadata.labels", "spec.variables"]
        );
        assert_eq!(
            free(Kind::Certificate),
            ["metadata.annotations", "metadata.labels"]
        );
        assert_eq!(
            free(Kind::WorkerSettings),
            ["metadata.annotations", "metadata.labels"]
        );
        assert_eq!(
            free(Kind::Listener),
            ["metadata.annotations", "metadata.labels"]
        );
    }

    /// A manifest of each kind (four credentials, one per type) with every field written,
    /// none at a value its serializer leaves out.
    const RICH: &str = r#"
apiVersion: switchyard.dev/v1
kind: Proxy
metadata:
  name: rich
  labels: {team: payments}
  annotations: {owner: ops}
spec:
  httpsRedirect: true
  errors: {format: openai}
  routes:
    - pathPrefix: /api
      hosts: [api.example.com]
      methods: [GET]
      stripPrefix: true
      maxStreamAge: 10m
    - path: /exact
  upstream:
    targets:
      - url: https://10.0.0.1:8443
        weight: 3
    loadBalancing: consistent-hash
    hashOn: header:x-tenant
    maxConcurrentRequests: 100
    timeouts: {connect: 1s, request: 10s}
    retries:
      attempts: 2
      budget: {ratio: 0.5, minPerSecond: 7}
    healthCheck:
      active: {path: /healthz, interval: 2s, timeout: 500ms, healthyThreshold: 1, unhealthyThreshold: 4}
      passive: {consecutiveFailures: 2, coolOff: 10s}
    tls:
      ca: private-ca
      serverName: backend.internal
      insecureSkipVerify: true
      clientCertificate: gateway-client
  policies:
    - type: headers
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {set: {x-d: "1"}, add: {x-e: "2"}, remove: [server]}
    - type: api-key
      header: x-key
      query: key
      credentials: [keys]
      hideCredentials: false
    - type: basic-auth
      credentials: [users]
      realm: ops
      hideCredentials: false
    - type: jwt
      issuer: https://idp.example.com
      audiences: [api]
      algorithms: [RS256, HS256]
      jwks: idp-keys
      secret: hmac
      consumerClaim: email
      leeway: 5s
      header: x-token
    - type: mtls-auth
      identity: san-uri
      allow: [spiffe://example.com/a]
      cas: [client-ca]
    - type: ip-filter
      allow: [10.0.0.0/8]
      deny: [10.1.0.0/16]
      trustedProxies: [127.0.0.1/32]
    - type: rate-limit
      id: per-tenant
      key: header:x-tenant
      limit: 100
      per: 1m
    - type: request-size
      maxBytes: 1MiB
    - type: cors
      allowOrigins: [https://app.example.com]
      allowMethods: [GET]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      allowCredentials: true
      maxAge: 10m
    - type: prompt-firewall
      paths: [$.prompt]
      rules:
        - {name: secrets, pattern: "api[_-]?key", regex: true, caseInsensitive: true}
      maxBodyBytes: 64KiB
      onUninspectable: allow
    - type: mock-response
      status: 418
      headers: {content-type: text/plain}
      body: teapot
    - type: upstream-credential
      credential: openai-key
      header: x-api-key
      format: "Bearer {}"
---
apiVersion: switchyard.dev/v1
kind: Credential
metadata: {name: s, labels: {a: b}, annotations: {c: d}}
spec: {type: secret, value: s3cret}
---
apiVersion: switchyard.dev/v1
kind: Credential
metadata: {name: k}
spec:
  type: api-keys
  keys: [{consumer: a, key: k-aaaaaaaa}]
---
apiVersion: switchyard.dev/v1
kind: Credential
metadata: {name: u}
spec:
  type: basic-users
  users: [{username: alice, passwordHash: $argon2id$x}]
---
apiVersion: switchyard.dev/v1
kind: Credential
metadata: {name: j}
spec:
  type: jwks
  jwks: {keys: [{kty: EC, crv: P-256, x: xx, y: yy}]}
---
apiVersion: switchyard.dev/v1
kind: Environment
metadata: {name: prod, labels: {a: b}, annotations: {c: d}}
spec:
  variables: {HOST: api.example.com}
  gateway:
    paths: {mergeSlashes: false, encodedSlashes: keep}
    timeouts: {idle: 30s, send: 20s, requestBodyIdle: 10s, upstreamBodyIdle: 40s}
    connections: {max: 1000}
    revisionHeader: x-switchyard-revision
---
apiVersion: switchyard.dev/v1
kind: Certificate
metadata: {name: web, labels: {a: b}, annotations: {c: d}}
spec:
  certificate: "-----BEGIN CERTIFICATE-----"
  privateKey: "-----BEGIN PRIVATE KEY-----"
  default: true
  clientAuth: {ca: client-ca, mode: required}
---
apiVersion: switchyard.dev/v1
kind: WorkerSettings
metadata: {name: default, labels: {a: b}, annotations: {c: d}}
spec: {threads: 2, maxConnections: 10000}
---
apiVersion: switchyard.dev/v1
kind: Listener
metadata: {name: edge, labels: {a: b}, annotations: {c: d}}
spec:
  address: 127.0.0.1
  port: 8443
  protocol: https
  http2: false
  tls: {requireClientCertificate: true}
  connections: {max: 5000}
  timeouts: {header: 5s, requestBodyIdle: 20s}
  drainAcceptingFor: 10s
"#;

    /// The field paths serde writes in the canonical JSON of [`RICH`], by kind: array
    /// indexes as `[]`, free-form values (as the schema says) cut at their path.
    fn written_paths() -> BTreeMap<Kind, BTreeSet<String>> {
        fn collect(v: &Value, prefix: &str, free: &BTreeSet<String>, out: &mut BTreeSet<String>) {
            match v {
                Value::Object(map) => {
                    for (k, v) in map {
                        let path = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        out.insert(path.clone());
                        if !free.contains(&path) {
                            collect(v, &path, free, out);
                        }
                    }
                }
                Value::Array(items) => {
                    for item in items {
                        collect(item, &format!("{prefix}[]"), free, out);
                    }
                }
                _ => {}
            }
        }
        let docs = crate::parse_str("rich.yaml".into(), RICH).unwrap();
        let mut out: BTreeMap<Kind, BTreeSet<String>> = BTreeMap::new();
        for doc in docs {
            let kind = doc.value.kind();
            let json: Value = serde_json::from_str(&doc.value.canonical_json()).unwrap();
            let free = free_form_paths(kind);
            collect(&json, "", &free, out.entry(kind).or_default());
        }
        out
    }

    #[test]
    fn every_field_serde_writes_is_in_the_schema() {
        let written = written_paths();
        for kind in Kind::ALL {
            let listed: BTreeSet<String> = field_paths(kind).into_iter().collect();
            let seen = written
                .get(&kind)
                .unwrap_or_else(|| panic!("{kind}: add a manifest of this kind to RICH"));
            let missing: Vec<_> = seen.difference(&listed).collect();
            assert!(
                missing.is_empty(),
                "{kind}: written by serde but not in the schema: {missing:?}"
            );
        }
    }

    /// Keeps the check above complete: a field the schema lists but the rich manifests do
    /// not write is a field whose serde name nothing compares with the schema's.
    #[test]
    fn the_rich_manifests_write_every_field_of_the_schema() {
        let written = written_paths();
        for kind in Kind::ALL {
            let seen = written
                .get(&kind)
                .unwrap_or_else(|| panic!("{kind}: add a manifest of this kind to RICH"));
            let unwritten: Vec<_> = field_paths(kind)
                .into_iter()
                .filter(|p| !seen.contains(p))
                .collect();
            assert!(
                unwritten.is_empty(),
                "{kind}: add these fields to RICH (at values serde writes out): {unwritten:?}"
            );
        }
    }

    #[test]
    fn tagged_variants_are_one_object_each() {
        let schema = schema_json(Kind::Proxy);
        let variants = schema
            .pointer("/properties/spec/properties/policies/items/oneOf")
            .and_then(Value::as_array)
            .unwrap();
        assert_eq!(variants.len(), 12);
        for v in variants {
            assert!(v.get("allOf").is_none(), "{v}");
            assert_eq!(v["additionalProperties"], false, "{v}");
            assert!(v.pointer("/properties/type/enum/0").is_some(), "{v}");
            assert!(
                v["required"].as_array().unwrap().contains(&"type".into()),
                "{v}"
            );
        }
        let text = serde_json::to_string(&schema).unwrap();
        assert!(!text.contains("$ref"), "{text}");
    }
}
