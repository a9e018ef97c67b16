//! How each field of each kind reaches the Workers: the one table. `hot` fields are swapped
//! atomically; `hot-with-drain` ones are applied by the running Worker while connections
//! move; `restart-required` ones only take effect in a process that starts with them, so
//! `apply` refuses them and `switchyard rollout` hands every Worker over to a successor.
//!
//! Every field path of every kind (as `switchyard_config::schema::field_paths` lists them)
//! has exactly one row; the test below walks them all, so a new field without a row fails
//! it. The path `""` is the entity itself (created or deleted). `docs/classification.md`
//! is this table for people.

use switchyard_config::Kind;
use switchyard_config::plan::{ChangeClass, FieldChange, Hotness};

use ChangeClass::{Hot, HotWithDrain, RestartRequired};

/// Rows of the table: fields of one kind that share a class and a reason.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub kind: Kind,
    pub class: ChangeClass,
    pub reason: &'static str,
    pub paths: &'static [&'static str],
}

const COMMON_HOT: &[&str] = &["apiVersion", "kind", "metadata", "metadata.name"];
const LABELS: &[&str] = &["metadata.annotations", "metadata.labels"];

const SWAPPED: &str = "swapped atomically: requests in flight finish on the version they \
                       started with, new requests get the new one; connections are kept";
const NOT_SERVED: &str = "not served: recorded with the entity's new version, nothing on a \
                          Worker changes";
const WRITTEN_AS: &str = "the document's header: every connected Worker reads this apiVersion \
                          and kind (a Worker that did not would make it restart-required)";

/// The table. Order matters only for reading; lookups are by exact path.
pub const TABLE: &[Rule] = &[
    // ---- Proxy ----
    Rule {
        kind: Kind::Proxy,
        class: Hot,
        reason: "a proxy added or removed is swapped in or out atomically; requests in \
                 flight on a removed proxy finish on it",
        paths: &[""],
    },
    Rule {
        kind: Kind::Proxy,
        class: Hot,
        reason: WRITTEN_AS,
        paths: COMMON_HOT,
    },
    Rule {
        kind: Kind::Proxy,
        class: Hot,
        reason: NOT_SERVED,
        paths: LABELS,
    },
    Rule {
        kind: Kind::Proxy,
        class: Hot,
        reason: SWAPPED,
        paths: &[
            "spec",
            "spec.errors",
            "spec.errors.format",
            "spec.httpsRedirect",
            "spec.routes",
            "spec.routes[].hosts",
            "spec.routes[].methods",
            "spec.routes[].path",
            "spec.routes[].pathPrefix",
            "spec.routes[].stripPrefix",
        ],
    },
    Rule {
        kind: Kind::Proxy,
        class: Hot,
        reason: "swapped atomically; the value in force applies at once to the streams \
                 still open on older generations too (the same proxy's route at the same \
                 position), and a stream is closed for age only once its generation is no \
                 longer the current one",
        paths: &["spec.routes[].maxStreamAge"],
    },
    Rule {
        kind: Kind::Proxy,
        class: Hot,
        reason: "swapped atomically; each target keeps its health, ejection and in-flight \
                 count across the swap (kept per proxy and target URL), and idle upstream \
                 connections are reused when the target and its TLS settings are unchanged",
        paths: &[
            "spec.upstream",
            "spec.upstream.hashOn",
            "spec.upstream.loadBalancing",
            "spec.upstream.maxConcurrentRequests",
            "spec.upstream.targets",
            "spec.upstream.targets[].url",
            "spec.upstream.targets[].weight",
            "spec.upstream.timeouts",
            "spec.upstream.timeouts.connect",
            "spec.upstream.timeouts.request",
            "spec.upstream.retries",
            "spec.upstream.retries.attempts",
            "spec.upstream.retries.budget",
            "spec.upstream.retries.budget.minPerSecond",
            "spec.upstream.retries.budget.ratio",
            "spec.upstream.healthCheck",
            "spec.upstream.healthCheck.active",
            "spec.upstream.healthCheck.active.healthyThreshold",
            "spec.upstream.healthCheck.active.interval",
            "spec.upstream.healthCheck.active.path",
            "spec.upstream.healthCheck.active.timeout",
            "spec.upstream.healthCheck.active.unhealthyThreshold",
            "spec.upstream.healthCheck.passive",
            "spec.upstream.healthCheck.passive.consecutiveFailures",
            "spec.upstream.healthCheck.passive.coolOff",
        ],
    },
    Rule {
        kind: Kind::Proxy,
        class: Hot,
        reason: "swapped atomically; new upstream connections use the new TLS settings, \
                 pooled ones made with the old settings are not reused for the new version",
        paths: &[
            "spec.upstream.tls",
            "spec.upstream.tls.ca",
            "spec.upstream.tls.clientCertificate",
            "spec.upstream.tls.insecureSkipVerify",
            "spec.upstream.tls.serverName",
        ],
    },
    Rule {
        kind: Kind::Proxy,
        class: Hot,
        reason: "swapped atomically; requests of the new version use connections of the new \
                 protocol (HTTP/1.1 and HTTP/2 connections are pooled apart), requests and \
                 streams already running finish on the connection they started on",
        paths: &["spec.upstream.protocol"],
    },
    Rule {
        kind: Kind::Proxy,
        class: Hot,
        reason: "the proxy's pipeline is swapped atomically: a request runs every policy of \
                 the version it started on; rate-limit counters are kept when the limit's \
                 key and window are unchanged",
        paths: &[
            "spec.policies",
            "spec.policies[].algorithms",
            "spec.policies[].allow",
            "spec.policies[].allowCredentials",
            "spec.policies[].allowHeaders",
            "spec.policies[].allowMethods",
            "spec.policies[].allowOrigins",
            "spec.policies[].audiences",
            "spec.policies[].body",
            "spec.policies[].cas",
            "spec.policies[].consumerClaim",
            "spec.policies[].credential",
            "spec.policies[].credentials",
            "spec.policies[].deny",
            "spec.policies[].exposeHeaders",
            "spec.policies[].format",
            "spec.policies[].header",
            "spec.policies[].headers",
            "spec.policies[].hideCredentials",
            "spec.policies[].id",
            "spec.policies[].identity",
            "spec.policies[].issuer",
            "spec.policies[].jwks",
            "spec.policies[].key",
            "spec.policies[].leeway",
            "spec.policies[].limit",
            "spec.policies[].maxAge",
            "spec.policies[].maxBodyBytes",
            "spec.policies[].maxBytes",
            "spec.policies[].onUninspectable",
            "spec.policies[].paths",
            "spec.policies[].per",
            "spec.policies[].query",
            "spec.policies[].realm",
            "spec.policies[].request",
            "spec.policies[].request.add",
            "spec.policies[].request.remove",
            "spec.policies[].request.set",
            "spec.policies[].response",
            "spec.policies[].response.add",
            "spec.policies[].response.remove",
            "spec.policies[].response.set",
            "spec.policies[].rules",
            "spec.policies[].rules[].caseInsensitive",
            "spec.policies[].rules[].name",
            "spec.policies[].rules[].pattern",
            "spec.policies[].rules[].regex",
            "spec.policies[].secret",
            "spec.policies[].status",
            "spec.policies[].trustedProxies",
            "spec.policies[].type",
        ],
    },
    // ---- Credential ----
    Rule {
        kind: Kind::Credential,
        class: Hot,
        reason: "the proxies that use it are recompiled and swapped atomically with it (a \
                 credential still referenced cannot be deleted)",
        paths: &[""],
    },
    Rule {
        kind: Kind::Credential,
        class: Hot,
        reason: WRITTEN_AS,
        paths: COMMON_HOT,
    },
    Rule {
        kind: Kind::Credential,
        class: Hot,
        reason: NOT_SERVED,
        paths: LABELS,
    },
    Rule {
        kind: Kind::Credential,
        class: Hot,
        reason: "the proxies that use it are recompiled and swapped atomically: a request \
                 is checked against the keys, users or secret of the version it started on",
        paths: &[
            "spec",
            "spec.jwks",
            "spec.keys",
            "spec.keys[].consumer",
            "spec.keys[].key",
            "spec.type",
            "spec.users",
            "spec.users[].passwordHash",
            "spec.users[].username",
            "spec.value",
        ],
    },
    // ---- Environment ----
    Rule {
        kind: Kind::Environment,
        class: Hot,
        reason: "variables are resolved before anything reaches a Worker (the entities they \
                 change are listed on their own); gateway settings go back to their defaults, \
                 swapped atomically",
        paths: &[""],
    },
    Rule {
        kind: Kind::Environment,
        class: Hot,
        reason: WRITTEN_AS,
        paths: COMMON_HOT,
    },
    Rule {
        kind: Kind::Environment,
        class: Hot,
        reason: NOT_SERVED,
        paths: LABELS,
    },
    Rule {
        kind: Kind::Environment,
        class: Hot,
        reason: "resolved by the Manager before anything reaches a Worker: the entities a \
                 variable changes are listed (and classified) on their own",
        paths: &["spec", "spec.variables"],
    },
    Rule {
        kind: Kind::Environment,
        class: Hot,
        reason: "swapped atomically: requests accepted after the swap are normalised the new \
                 way, those in flight finish as they started",
        paths: &[
            "spec.gateway",
            "spec.gateway.paths",
            "spec.gateway.paths.encodedSlashes",
            "spec.gateway.paths.mergeSlashes",
        ],
    },
    Rule {
        kind: Kind::Environment,
        class: Hot,
        reason: "read when a connection is accepted and when a request starts: connections \
                 and requests after the swap wait the new times, those already open keep \
                 theirs",
        paths: &[
            "spec.gateway.timeouts",
            "spec.gateway.timeouts.idle",
            "spec.gateway.timeouts.requestBodyIdle",
            "spec.gateway.timeouts.send",
            "spec.gateway.timeouts.upstreamBodyIdle",
        ],
    },
    Rule {
        kind: Kind::Environment,
        class: Hot,
        reason: "checked when a connection is accepted: lowered, no open connection is cut \
                 (new ones shed the longest idle first or are refused); the ceiling it \
                 stays under is WorkerSettings' maxConnections",
        paths: &["spec.gateway.connections", "spec.gateway.connections.max"],
    },
    Rule {
        kind: Kind::Environment,
        class: Hot,
        reason: "swapped atomically: responses to requests accepted after the swap carry \
                 the new header (or none), those in flight finish as they started",
        paths: &["spec.gateway.revisionHeader"],
    },
    // ---- Certificate ----
    Rule {
        kind: Kind::Certificate,
        class: Hot,
        reason: "the SNI index is swapped atomically: handshakes after the swap see it, \
                 established TLS connections carry on untouched (a certificate a proxy's \
                 upstream still names cannot be deleted)",
        paths: &[""],
    },
    Rule {
        kind: Kind::Certificate,
        class: Hot,
        reason: WRITTEN_AS,
        paths: COMMON_HOT,
    },
    Rule {
        kind: Kind::Certificate,
        class: Hot,
        reason: NOT_SERVED,
        paths: LABELS,
    },
    Rule {
        kind: Kind::Certificate,
        class: Hot,
        reason: "handshakes after the swap get the new certificate; established TLS \
                 connections (and their resumable sessions) carry on untouched",
        paths: &[
            "spec",
            "spec.certificate",
            "spec.default",
            "spec.privateKey",
        ],
    },
    Rule {
        kind: Kind::Certificate,
        class: Hot,
        reason: "handshakes after the swap verify client certificates the new way; \
                 established connections keep the identity they were verified with",
        paths: &[
            "spec.clientAuth",
            "spec.clientAuth.ca",
            "spec.clientAuth.mode",
        ],
    },
    // ---- WorkerSettings ----
    Rule {
        kind: Kind::WorkerSettings,
        class: RestartRequired,
        reason: "a Worker process takes its settings when it starts: added or removed, they \
                 reach the Workers through `switchyard rollout` (a handover per Worker)",
        paths: &["", "spec"],
    },
    Rule {
        kind: Kind::WorkerSettings,
        class: Hot,
        reason: WRITTEN_AS,
        paths: COMMON_HOT,
    },
    Rule {
        kind: Kind::WorkerSettings,
        class: Hot,
        reason: NOT_SERVED,
        paths: LABELS,
    },
    Rule {
        kind: Kind::WorkerSettings,
        class: RestartRequired,
        reason: "each data-plane thread runs its own runtime, started with the process, and \
                 every connection stays on its thread",
        paths: &["spec.threads"],
    },
    Rule {
        kind: Kind::WorkerSettings,
        class: RestartRequired,
        reason: "the open-file limit (and with it the connection table's ceiling) is set \
                 when the process starts",
        paths: &["spec.maxConnections"],
    },
    // ---- Listener ----
    Rule {
        kind: Kind::Listener,
        class: HotWithDrain,
        reason: "added: each Worker binds its socket; removed: its socket stops accepting \
                 (after `drainAcceptingFor`, its queued connections served) and its \
                 connections drain: requests in flight finish, keep-alive clients are told \
                 `Connection: close` (HTTP/2: GOAWAY)",
        paths: &["", "spec"],
    },
    Rule {
        kind: Kind::Listener,
        class: Hot,
        reason: WRITTEN_AS,
        paths: COMMON_HOT,
    },
    Rule {
        kind: Kind::Listener,
        class: Hot,
        reason: NOT_SERVED,
        paths: LABELS,
    },
    Rule {
        kind: Kind::Listener,
        class: HotWithDrain,
        reason: "the listener moves: the new socket is bound first (a Worker that cannot \
                 bind it NACKs and keeps the old one), then the old one stops accepting and \
                 its connections drain as when a listener is removed",
        paths: &["spec.address", "spec.port"],
    },
    Rule {
        kind: Kind::Listener,
        class: Hot,
        reason: "connection-level: applies to the connections (and TLS handshakes) accepted \
                 after the change; open connections keep the settings they were accepted \
                 with, and nothing is closed",
        paths: &[
            "spec.protocol",
            "spec.http2",
            "spec.tls",
            "spec.tls.requireClientCertificate",
            "spec.connections",
            "spec.connections.max",
            "spec.timeouts",
            "spec.timeouts.header",
            "spec.timeouts.requestBodyIdle",
        ],
    },
    Rule {
        kind: Kind::Listener,
        class: Hot,
        reason: "read when the listener is removed or moved",
        paths: &["spec.drainAcceptingFor"],
    },
];

/// The row of `path` (as `plan` writes it: `spec.routes[0].path`; `""` for the entity) of
/// an entity of `kind`. A path inside a free-form value (`metadata.labels.team`, an added
/// `spec.routes[1]`) takes the row of the field it is in.
pub fn rule(kind: Kind, path: &str) -> Option<&'static Rule> {
    let mut p = normalise(path);
    loop {
        if let Some(r) = TABLE
            .iter()
            .find(|r| r.kind == kind && r.paths.contains(&p.as_str()))
        {
            return Some(r);
        }
        match p.strip_suffix("[]") {
            Some(parent) => p.truncate(parent.len()),
            // A top-level name that is no field is not the entity.
            None => p.truncate(p.rfind('.')?),
        }
    }
}

/// `spec.routes[0].path` → `spec.routes[].path`.
fn normalise(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Fills in each field's class and reason, and returns the change's: the strictest of its
/// fields (the entity's own row when it is created or deleted, or when no field is listed —
/// a change of how a document is written).
pub fn classify(kind: Kind, created_or_deleted: bool, fields: &mut [FieldChange]) -> Hotness {
    let entity = rule(kind, "");
    let mut worst: Option<(ChangeClass, &'static str)> = None;
    let mut note = |class: ChangeClass, reason: &'static str| {
        if worst.is_none_or(|(c, _)| class > c) {
            worst = Some((class, reason));
        }
    };
    if (created_or_deleted || fields.is_empty())
        && let Some(r) = entity
    {
        note(r.class, r.reason);
    }
    for f in fields.iter_mut() {
        // A path that names no field (a template note) is the entity's.
        let r = rule(kind, &f.path).or(entity);
        if let Some(r) = r {
            f.class = r.class;
            f.reason = r.reason.to_string();
            note(r.class, r.reason);
        }
    }
    match worst {
        Some((class, reason)) => Hotness::new(class, reason),
        // Unreachable while the table is exhaustive (tested): the safe answer.
        None => Hotness::new(RestartRequired, "not classified"),
    }
}

/// Whether some field of `kind` is not hot: a change of such a kind is classified field by
/// field even when no diff is shown.
pub fn has_cold_fields(kind: Kind) -> bool {
    TABLE.iter().any(|r| r.kind == kind && r.class != Hot)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use switchyard_config::plan::field_changes;
    use switchyard_config::schema::field_paths;

    #[test]
    fn every_field_of_every_kind_has_exactly_one_row() {
        for kind in Kind::ALL {
            let fields = field_paths(kind);
            let mut missing = Vec::new();
            for f in fields.iter().map(String::as_str).chain([""]) {
                let rows = TABLE
                    .iter()
                    .filter(|r| r.kind == kind && r.paths.contains(&f))
                    .count();
                match rows {
                    1 => {}
                    0 => missing.push(f.to_string()),
                    n => panic!("{kind} {f:?} has {n} rows"),
                }
            }
            assert!(
                missing.is_empty(),
                "{kind}: fields without a classification (add them to classify::TABLE and \
                 docs/classification.md): {missing:?}"
            );
            // And no row names a field that does not exist (renamed or removed).
            for r in TABLE.iter().filter(|r| r.kind == kind) {
                for p in r.paths.iter().filter(|p| !p.is_empty()) {
                    assert!(fields.iter().any(|f| f == p), "{kind}: stale row {p:?}");
                }
            }
        }
    }

    #[test]
    fn the_documentation_lists_every_row() {
        let doc = include_str!("../../../docs/classification.md");
        for r in TABLE {
            for p in r.paths {
                let shown = if p.is_empty() { "(entity)" } else { p };
                let row = format!("| {} | `{shown}` | {} |", r.kind, r.class);
                let row_plain = format!("| {} | {shown} | {} |", r.kind, r.class);
                assert!(
                    doc.contains(&row) || doc.contains(&row_plain),
                    "docs/classification.md lacks {row}"
                );
            }
        }
    }

    #[test]
    fn paths_in_plans_find_their_rows() {
        assert!(
            rule(Kind::Proxy, "spec.upstream.targets[3].url")
                .unwrap()
                .paths
                .contains(&"spec.upstream.targets[].url")
        );
        assert!(
            rule(Kind::Proxy, "spec.routes[1]")
                .unwrap()
                .paths
                .contains(&"spec.routes")
        );
        assert!(
            rule(Kind::Proxy, "metadata.labels.team")
                .unwrap()
                .paths
                .contains(&"metadata.labels")
        );
        assert!(rule(Kind::Proxy, "no.such.field").is_none());
    }

    #[test]
    fn a_change_is_as_cold_as_its_coldest_field() {
        let old = r#"{"metadata":{"name":"default","labels":{"a":"1"}},"spec":{"threads":2}}"#;
        let labels = r#"{"metadata":{"name":"default","labels":{"a":"2"}},"spec":{"threads":2}}"#;
        let threads = r#"{"metadata":{"name":"default","labels":{"a":"2"}},"spec":{"threads":4}}"#;
        let mut f = field_changes(Kind::WorkerSettings, Some(old), Some(labels));
        let h = classify(Kind::WorkerSettings, false, &mut f);
        assert_eq!((h.class, h.hot), (Hot, true));
        let mut f = field_changes(Kind::WorkerSettings, Some(old), Some(threads));
        let h = classify(Kind::WorkerSettings, false, &mut f);
        assert_eq!(h.class, RestartRequired);
        assert!(!h.hot && h.how.contains("thread"), "{h:?}");
        let threads_field = f.iter().find(|f| f.path == "spec.threads").unwrap();
        assert_eq!(threads_field.class, RestartRequired);
        let label_field = f.iter().find(|f| f.path == "metadata.labels.a").unwrap();
        assert_eq!(label_field.class, Hot);
        let created = classify(Kind::WorkerSettings, true, &mut []);
        assert_eq!(created.class, RestartRequired);
        let proxy = classify(Kind::Proxy, true, &mut []);
        assert_eq!(proxy.class, Hot);
    }
}
