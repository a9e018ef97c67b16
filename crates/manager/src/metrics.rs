//! The Manager's Prometheus metrics: commits, reports, propagation time, completeness.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use switchyard_telemetry::exposition::Format;

type EnvLabel = [(&'static str, String); 1];
type StatusLabels = [(&'static str, String); 2];
type ReasonLabel = [(&'static str, &'static str); 1];
type ApiLabels = [(&'static str, String); 3];

/// The Manager's metrics registry and the handles that update it.
pub struct ManagerMetrics {
    registry: Registry,
    pub commits: Family<EnvLabel, Counter>,
    /// Refused tokens, by reason (`missing`, `malformed`, `unknown`, `revoked`, `expired`,
    /// `throttled`: refused unchecked, the peer had too many failures waiting).
    pub auth_failures: Family<ReasonLabel, Counter>,
    pub reports: Family<StatusLabels, Counter>,
    pub propagation: Family<EnvLabel, Histogram, fn() -> Histogram>,
    pub completeness: Family<EnvLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub connected: Family<EnvLabel, Gauge>,
    /// TLS handshakes with the admin/sync listener that failed or timed out (a Worker or
    /// client that does not trust the Manager's CA shows up here, and in its own log).
    pub tls_handshake_failures: Counter,
    /// Admin API requests answered, by method, route pattern and status code.
    api_requests: Family<ApiLabels, Counter>,
    /// The running canary's share of requests, in parts per million (0: none runs), as
    /// this Manager's judge last saw it.
    pub canary_share_ppm: Family<EnvLabel, Gauge>,
    /// Canaries this Manager ended, by outcome (`promoted`, `rolled-back`, `aborted`).
    pub canary_endings: Family<StatusLabels, Counter>,
}

fn propagation_buckets() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for ManagerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ManagerMetrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        switchyard_telemetry::process::register(&mut root);
        let registry = root.sub_registry_with_prefix("switchyard_manager");
        let commits = Family::<EnvLabel, Counter>::default();
        let reports = Family::<StatusLabels, Counter>::default();
        let propagation = Family::<EnvLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            propagation_buckets,
        );
        let completeness = Family::<EnvLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let connected = Family::<EnvLabel, Gauge>::default();
        let auth_failures = Family::<ReasonLabel, Counter>::default();
        let tls_handshake_failures = Counter::default();
        registry.register("commits", "Revisions committed", commits.clone());
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Admin API requests answered, by method, route (its pattern, or unmatched) and status code",
            api_requests.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the API listener that failed or timed out",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused for their bearer token, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "worker_reports",
            "Worker ACKs and NACKs received",
            reports.clone(),
        );
        registry.register(
            "propagation_seconds",
            "Commit to the last expected Worker's swap (from ACKs)",
            propagation.clone(),
        );
        registry.register(
            "audit_completeness",
            "ACK records / Workers connected at commit, for the latest revision",
            completeness.clone(),
        );
        registry.register(
            "connected_workers",
            "Workers on the notification stream",
            connected.clone(),
        );
        let canary_share_ppm = Family::<EnvLabel, Gauge>::default();
        registry.register(
            "canary_share_ppm",
            "The running canary's share of requests in parts per million (0: none runs)",
            canary_share_ppm.clone(),
        );
        let canary_endings = Family::<StatusLabels, Counter>::default();
        registry.register(
            "canary_endings",
            "Canaries this Manager ended, by outcome (promoted, rolled-back, aborted)",
            canary_endings.clone(),
        );
        ManagerMetrics {
            registry: root,
            commits,
            auth_failures,
            reports,
            propagation,
            completeness,
            connected,
            tls_handshake_failures,
            api_requests,
            canary_share_ppm,
            canary_endings,
        }
    }

    /// Counts a canary of `env` this Manager ended, and its share back to 0.
    pub fn canary_ended(&self, env: &str, outcome: switchyard_api::canary::CanaryState) {
        self.canary_endings
            .get_or_create(&[
                ("env", env.to_string()),
                ("outcome", outcome.as_str().to_string()),
            ])
            .inc();
        self.canary_share_ppm
            .get_or_create(&[("env", env.to_string())])
            .set(0);
    }

    /// Counts one admin API request.
    pub fn api_request(&self, method: &str, route: &str, code: u16) {
        self.api_requests
            .get_or_create(&[
                ("method", method.to_string()),
                ("route", route.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
    }

    /// Counts one refused token.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// The metrics in `format`.
    pub fn encode(&self, format: Format) -> String {
        format.render(&self.registry)
    }
}
