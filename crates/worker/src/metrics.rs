//! Prometheus metrics. Per-proxy handles are resolved when a snapshot is built, so the
//! request path only touches atomics it already holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use http::Method;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use switchyard_config::manifest::PromptFirewallSpec;
use switchyard_telemetry::exposition::Format;
use switchyard_telemetry::histogram::AtomicHistogram;
use switchyard_telemetry::labels::{method_index, method_name};

use crate::connections::ConnectionMetrics;
use crate::proxy::error::UpstreamErrorKind;

type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];
type Labels3 = [(&'static str, String); 3];

/// Request durations: observed on the request path, so lock-free (`AtomicHistogram`).
fn duration_buckets() -> AtomicHistogram {
    // 0.5 ms .. ~16 s
    AtomicHistogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn build_buckets() -> Histogram {
    // 0.1 ms .. ~3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The Worker's metrics registry (`/metrics`) and the handles that update it.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels3, Counter>,
    durations: Family<Labels1, AtomicHistogram, fn() -> AtomicHistogram>,
    upstream_errors: Family<Labels2, Counter>,
    pub revision: Gauge,
    pub swaps: Counter,
    pub rejected: Counter,
    pub build_seconds: Histogram,
    pub live_generations: Gauge,
    pub in_flight: Gauge,
    pub swap_allocated_bytes: Histogram,
    generation_requests: Family<Labels1, Counter>,
    generation_errors: Family<Labels2, Counter>,
    generation_upstream_5xx: Family<Labels1, Counter>,
    generation_policy_denials: Family<Labels1, Counter>,
    generation_durations: Family<Labels1, AtomicHistogram, fn() -> AtomicHistogram>,
    /// The revisions whose series `generation_*` export, oldest first (at most
    /// [`GENERATION_SERIES`]).
    generation_revisions: Mutex<VecDeque<u64>>,
    policy_denials: Family<Labels3, Counter>,
    prompt_matches: Family<Labels2, Counter>,
    target_healthy: Family<Labels2, Gauge>,
    pub connections: ConnectionMetrics,
    /// TLS handshakes on the HTTPS listener that failed (bad client hello, no shared
    /// protocol, timeout, no certificate) and those refused for want of a certificate.
    pub tls_handshake_failures: Counter,
    pub tls_no_certificate: Counter,
    certificate_expiry: Family<Labels1, Gauge>,
    /// Seconds since the oldest generation still pinned stopped being current (0: none).
    pub oldest_pinned_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Long-lived streams closed because their old generation outlived `maxStreamAge` or
    /// `--max-pinned-age`, by kind ([`StreamKind`]).
    pub streams_closed_for_age: [Counter; 2],
    /// WebSockets being relayed.
    pub websockets_open: Gauge,
    /// Requests by status class and gateway errors, all proxies and revisions together:
    /// the running totals a Worker sends its Manager for the dashboard (not exported here,
    /// where `requests` and `generation_errors` say the same by label).
    pub totals: Totals,
    /// Spans not exported: the export queue was full, or their export failed (#19).
    pub trace_spans_dropped: Counter,
    per_proxy: Mutex<HashMap<Arc<str>, Arc<ProxyMetrics>>>,
}

/// The kinds of long-lived stream `switchyard_streams_closed_for_age_total` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    WebSocket = 0,
    Response = 1,
}

impl StreamKind {
    pub const ALL: [StreamKind; 2] = [StreamKind::WebSocket, StreamKind::Response];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::WebSocket => "websocket",
            StreamKind::Response => "response",
        }
    }
}

/// How many revisions `switchyard_generation_*` keep series for: the newest ones (a
/// generation older than that still counts, but is no longer exported).
pub const GENERATION_SERIES: usize = 16;

/// The handles one proxy's requests update.
pub struct ProxyMetrics {
    name: Arc<str>,
    /// `switchyard_requests_total` for this proxy, by (method index, status): filled on
    /// first sight of a pair, so the request path only takes a read lock and an integer
    /// hash.
    by_code: RwLock<HashMap<(usize, u16), Counter, foldhash::fast::FixedState>>,
    requests: Family<Labels3, Counter>,
    pub duration: AtomicHistogram,
    pub upstream_errors: [Counter; UpstreamErrorKind::COUNT],
}

impl ProxyMetrics {
    pub fn record(&self, method: &Method, status: u16, seconds: f64) {
        let key = (method_index(method), status);
        let seen = self
            .by_code
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .map(Counter::inc);
        if seen.is_none() {
            let counter = self
                .requests
                .get_or_create(&[
                    ("proxy", self.name.to_string()),
                    ("method", method_name(key.0).to_string()),
                    ("code", status.to_string()),
                ])
                .clone();
            counter.inc();
            self.by_code
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, counter);
        }
        self.duration.observe(seconds);
    }
}

/// What went wrong with a request in a way a configuration swap could be blamed for: the
/// gateway's own 502/503/504 answers, and responses cut before their end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    BadGateway = 0,
    Unavailable = 1,
    Timeout = 2,
    Reset = 3,
}

impl GatewayError {
    pub const ALL: [GatewayError; 4] = [
        GatewayError::BadGateway,
        GatewayError::Unavailable,
        GatewayError::Timeout,
        GatewayError::Reset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GatewayError::BadGateway => "502",
            GatewayError::Unavailable => "503",
            GatewayError::Timeout => "504",
            GatewayError::Reset => "reset",
        }
    }
}

/// See [`Metrics::totals`].
#[derive(Default)]
pub struct Totals {
    pub by_class: [Counter; 5],
    pub gateway_errors: Counter,
}

/// One configuration generation's numbers (`switchyard_generation_*{revision}`): requests
/// run on it, the gateway errors among them, the upstreams' own 5xx, the policy denials
/// (counted apart: a policy that denies more is not failing) and their durations — so errors
/// can be lined up with swaps, and a canary compared with the stable generation beside it.
pub struct GenerationMetrics {
    pub requests: Counter,
    pub errors: [Counter; 4],
    /// Responses with a 5xx status the upstream answered (not the gateway).
    pub upstream_5xx: Counter,
    pub policy_denials: Counter,
    pub duration: AtomicHistogram,
}

impl GenerationMetrics {
    /// The totals sent to the Manager for judging a canary: errors are the gateway's own
    /// and the upstreams' 5xx; denials apart.
    pub fn counters(&self, revision: u64) -> switchyard_api::canary::GenerationCounters {
        let (_, _, buckets) = self.duration.snapshot();
        let gateway: u64 = self.errors.iter().map(Counter::get).sum();
        switchyard_api::canary::GenerationCounters {
            revision,
            requests: self.requests.get(),
            errors: gateway + self.upstream_5xx.get(),
            denials: self.policy_denials.get(),
            duration_buckets: buckets.into_iter().map(|(_, c)| c).collect(),
        }
    }
}

impl Default for GenerationMetrics {
    /// Numbers of a generation whose series are not exported.
    fn default() -> Self {
        GenerationMetrics {
            requests: Counter::default(),
            errors: Default::default(),
            upstream_5xx: Counter::default(),
            policy_denials: Counter::default(),
            duration: duration_buckets(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        switchyard_telemetry::process::register(&mut root);
        let registry = root.sub_registry_with_prefix("switchyard");
        let requests = Family::<Labels3, Counter>::default();
        let durations =
            Family::<Labels1, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(
                duration_buckets,
            );
        let upstream_errors = Family::<Labels2, Counter>::default();
        let revision = Gauge::default();
        let swaps = Counter::default();
        let rejected = Counter::default();
        let build_seconds = build_buckets();
        let live_generations = Gauge::default();
        let in_flight = Gauge::default();
        // 1 KiB .. 1 GiB
        let swap_allocated_bytes = Histogram::new(exponential_buckets(1024.0, 4.0, 11));
        let policy_denials = Family::<Labels3, Counter>::default();
        let prompt_matches = Family::<Labels2, Counter>::default();
        let target_healthy = Family::<Labels2, Gauge>::default();
        registry.register(
            "upstream_target_healthy",
            "1 when an upstream target is healthy (load balancing sends it requests), 0 when it is unhealthy (active checks) or ejected (passive checks)",
            target_healthy.clone(),
        );
        registry.register(
            "policy_denials",
            "Requests answered by a policy with an error, by proxy, policy and code",
            policy_denials.clone(),
        );
        registry.register(
            "prompt_firewall_matches",
            "Requests denied by a prompt-firewall rule, by proxy and rule",
            prompt_matches.clone(),
        );
        registry.register(
            "requests",
            "Requests answered, by proxy, method (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE or other) and status code (499: the client went away first)",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from accepting a request to the end of its response body",
            durations.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed upstream attempts, by proxy and kind",
            upstream_errors.clone(),
        );
        registry.register(
            "config_revision",
            "Configuration revision being served",
            revision.clone(),
        );
        registry.register(
            "config_swaps",
            "Configuration snapshots swapped in",
            swaps.clone(),
        );
        registry.register(
            "config_rejected",
            "Configuration sets rejected (the previous one kept serving)",
            rejected.clone(),
        );
        registry.register(
            "config_build_seconds",
            "Time to load, validate and compile a configuration set",
            build_seconds.clone(),
        );
        registry.register(
            "snapshot_generations_live",
            "Configuration generations still referenced (current plus those held by in-flight requests)",
            live_generations.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests accepted and not yet finished (response body still being sent included)",
            in_flight.clone(),
        );
        registry.register(
            "swap_allocated_bytes",
            "Bytes allocated to build and swap each applied generation (bench builds only)",
            swap_allocated_bytes.clone(),
        );
        let tls_handshake_failures = Counter::default();
        let tls_no_certificate = Counter::default();
        let certificate_expiry = Family::<Labels1, Gauge>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the HTTPS listener that failed or timed out",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "tls_no_certificate",
            "TLS handshakes refused because no certificate covers the SNI and there is no default",
            tls_no_certificate.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until each served certificate expires (negative once expired)",
            certificate_expiry.clone(),
        );
        let connections = ConnectionMetrics::default();
        registry.register(
            "connections_open",
            "Client connections open on the traffic listener",
            connections.open.clone(),
        );
        registry.register(
            "connections_idle",
            "Open client connections with no request in flight (keep-alive, or not sent a request yet)",
            connections.idle.clone(),
        );
        registry.register(
            "connections_limit",
            "The most client connections this Worker keeps open (spec.gateway.connections.max, and what its file descriptors allow)",
            connections.limit.clone(),
        );
        registry.register(
            "connections_shed",
            "Idle client connections closed to make room for new ones at the connection limit",
            connections.shed.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections refused at the connection limit (none idle to shed)",
            connections.refused.clone(),
        );
        let generation_requests = Family::<Labels1, Counter>::default();
        let generation_errors = Family::<Labels2, Counter>::default();
        registry.register(
            "generation_requests",
            "Requests run on each configuration revision (series kept for the newest 16)",
            generation_requests.clone(),
        );
        registry.register(
            "generation_errors",
            "Gateway errors among them, by revision and kind: 502, 503, 504 answered by the gateway itself, reset (a response cut before its end)",
            generation_errors.clone(),
        );
        let generation_upstream_5xx = Family::<Labels1, Counter>::default();
        registry.register(
            "generation_upstream_5xx",
            "Responses with a 5xx status answered by the upstream (not the gateway), by revision",
            generation_upstream_5xx.clone(),
        );
        let generation_policy_denials = Family::<Labels1, Counter>::default();
        registry.register(
            "generation_policy_denials",
            "Requests a policy answered (denied) on each revision, counted apart from errors",
            generation_policy_denials.clone(),
        );
        let generation_durations =
            Family::<Labels1, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(
                duration_buckets,
            );
        registry.register(
            "generation_request_duration_seconds",
            "Time from a request's arrival to its response's end, by the revision it ran on",
            generation_durations.clone(),
        );
        let oldest_pinned_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "pinned_generation_oldest_age_seconds",
            "Seconds since the oldest configuration generation still held by a request or stream stopped being the current one (0 when only the current one is live)",
            oldest_pinned_age.clone(),
        );
        let closed_for_age = Family::<Labels1, Counter>::default();
        registry.register(
            "streams_closed_for_age",
            "Long-lived streams on an old generation closed gracefully for maxStreamAge or --max-pinned-age, by kind (websocket, response)",
            closed_for_age.clone(),
        );
        let streams_closed_for_age = StreamKind::ALL.map(|k| {
            closed_for_age
                .get_or_create(&[("kind", k.as_str().to_string())])
                .clone()
        });
        let websockets_open = Gauge::default();
        registry.register(
            "websockets_open",
            "WebSocket connections being relayed",
            websockets_open.clone(),
        );
        let trace_spans_dropped = Counter::default();
        registry.register(
            "trace_spans_dropped",
            "Spans not exported: the export queue was full, or their export to the OTLP endpoint failed",
            trace_spans_dropped.clone(),
        );
        Metrics {
            registry: root,
            generation_requests,
            generation_errors,
            generation_upstream_5xx,
            generation_policy_denials,
            generation_durations,
            generation_revisions: Mutex::default(),
            trace_spans_dropped,
            oldest_pinned_age,
            streams_closed_for_age,
            websockets_open,
            totals: Totals::default(),
            policy_denials,
            prompt_matches,
            target_healthy,
            connections,
            tls_handshake_failures,
            tls_no_certificate,
            certificate_expiry,
            requests,
            durations,
            upstream_errors,
            revision,
            swaps,
            rejected,
            build_seconds,
            live_generations,
            in_flight,
            swap_allocated_bytes,
            per_proxy: Mutex::new(HashMap::new()),
        }
    }

    /// The handles for one proxy; created once per proxy name, shared across versions.
    pub fn proxy(&self, name: &Arc<str>) -> Arc<ProxyMetrics> {
        let mut map = self
            .per_proxy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(name.clone())
            .or_insert_with(|| {
                let duration = self
                    .durations
                    .get_or_create(&[("proxy", name.to_string())])
                    .clone();
                let upstream_errors = UpstreamErrorKind::ALL.map(|k| {
                    self.upstream_errors
                        .get_or_create(&[
                            ("proxy", name.to_string()),
                            ("kind", k.as_str().to_string()),
                        ])
                        .clone()
                });
                Arc::new(ProxyMetrics {
                    name: name.clone(),
                    by_code: RwLock::default(),
                    requests: self.requests.clone(),
                    duration,
                    upstream_errors,
                })
            })
            .clone()
    }

    /// Counts a request denied by a policy (`detail`: the prompt-firewall rule, if any).
    pub fn policy_denial(
        &self,
        proxy: &str,
        policy: &'static str,
        code: &str,
        detail: Option<&str>,
    ) {
        self.policy_denials
            .get_or_create(&[
                ("proxy", proxy.to_string()),
                ("policy", policy.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
        if let (Some(rule), PromptFirewallSpec::TYPE) = (detail, policy) {
            self.prompt_matches
                .get_or_create(&[("proxy", proxy.to_string()), ("rule", rule.to_string())])
                .inc();
        }
    }

    /// Sets `switchyard_upstream_target_healthy` to exactly these (proxy, target, healthy)
    /// (targets no longer configured disappear).
    pub fn set_target_health<'a>(&self, targets: impl Iterator<Item = (&'a str, &'a str, bool)>) {
        self.target_healthy.clear();
        for (proxy, target, healthy) in targets {
            self.target_healthy
                .get_or_create(&[("proxy", proxy.to_string()), ("target", target.to_string())])
                .set(i64::from(healthy));
        }
    }

    /// Sets `switchyard_certificate_expiry_seconds` to exactly these (certificate, seconds).
    pub fn set_certificate_expiry<'a>(&self, certificates: impl Iterator<Item = (&'a str, i64)>) {
        self.certificate_expiry.clear();
        for (name, seconds) in certificates {
            self.certificate_expiry
                .get_or_create(&[("certificate", name.to_string())])
                .set(seconds);
        }
    }

    /// The counters of the generation serving `revision`. Series of revisions older than
    /// the newest [`GENERATION_SERIES`] are dropped from the export.
    pub fn generation(&self, revision: u64) -> GenerationMetrics {
        let label = revision.to_string();
        let by_revision = [("revision", label.clone())];
        let metrics = GenerationMetrics {
            requests: self.generation_requests.get_or_create(&by_revision).clone(),
            upstream_5xx: self
                .generation_upstream_5xx
                .get_or_create(&by_revision)
                .clone(),
            policy_denials: self
                .generation_policy_denials
                .get_or_create(&by_revision)
                .clone(),
            duration: self
                .generation_durations
                .get_or_create(&by_revision)
                .clone(),
            errors: GatewayError::ALL.map(|k| {
                self.generation_errors
                    .get_or_create(&[
                        ("revision", label.clone()),
                        ("kind", k.as_str().to_string()),
                    ])
                    .clone()
            }),
        };
        let mut recent = self
            .generation_revisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !recent.contains(&revision) {
            recent.push_back(revision);
        }
        while recent.len() > GENERATION_SERIES {
            let Some(old) = recent.pop_front() else { break };
            let old = old.to_string();
            let by_revision = [("revision", old.clone())];
            self.generation_requests.remove(&by_revision);
            self.generation_upstream_5xx.remove(&by_revision);
            self.generation_policy_denials.remove(&by_revision);
            self.generation_durations.remove(&by_revision);
            for k in GatewayError::ALL {
                self.generation_errors
                    .remove(&[("revision", old.clone()), ("kind", k.as_str().to_string())]);
            }
        }
        metrics
    }

    /// The metrics in `format`.
    pub fn encode(&self, format: Format) -> String {
        format.render(&self.registry)
    }
}
