//! OTLP export of spans: the settings (flags over the standard `OTEL_*` environment
//! variables), and [`SpanQueue`], a batch span processor with a bounded queue that counts
//! what it drops.
//!
//! Why not the SDK's `BatchSpanProcessor`: it counts the spans it drops in a private field
//! (logged once at shutdown), and a Worker must expose that count as a metric
//! (`switchyard_trace_spans_dropped_total`). `SpanQueue` is the same design — spans handed
//! over a bounded channel with `try_send` (never blocks; a full queue drops), exported in
//! batches by a thread of its own — with the drops counted where they happen. The thread
//! runs its own single-threaded Tokio runtime for the exporter (tonic and hyper need one),
//! so exports never take time from the threads that serve requests.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _, SpanProcessor};
use prometheus_client::metrics::counter::Counter;

use crate::trace_context::Sampler;

/// `OTEL_EXPORTER_OTLP_PROTOCOL`'s values this build exports with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (`grpc`, usually port 4317).
    #[value(name = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`, usually port 4318): the
    /// OpenTelemetry default.
    #[default]
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }

    fn from_env(v: &str) -> Result<OtlpProtocol, String> {
        match v.trim() {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            other => Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL {other:?} is not supported (grpc, http/protobuf)"
            )),
        }
    }
}

/// What the command line says about traces (each overrides its environment variable).
#[derive(Debug, Clone, Default)]
pub struct TraceFlags {
    /// `--otlp-endpoint` (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: Option<String>,
    /// `--otlp-protocol` (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub protocol: Option<OtlpProtocol>,
    /// `--trace-sample-ratio`: `parentbased_traceidratio` with this ratio
    /// (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
    pub sample_ratio: Option<f64>,
    /// `--service-name` (`OTEL_SERVICE_NAME`).
    pub service_name: Option<String>,
}

/// Trace export settings, resolved. Without an endpoint, tracing is off.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// Where spans go: the traces URL for HTTP (`…/v1/traces`), the server for gRPC.
    /// `None`: tracing is off (nothing is sampled or exported).
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    pub sampler: Sampler,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Spans waiting for export at most; more are dropped (and counted)
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue: usize,
    /// Spans per export at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub max_batch: usize,
    /// How long a span waits for a batch to fill (`OTEL_BSP_SCHEDULE_DELAY`, ms).
    pub delay: Duration,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, ms).
    pub timeout: Duration,
}

impl TraceConfig {
    /// Tracing off.
    pub fn off(service_name: &str) -> TraceConfig {
        TraceConfig {
            endpoint: None,
            protocol: OtlpProtocol::default(),
            sampler: Sampler::default(),
            service_name: service_name.to_string(),
            max_queue: 2048,
            max_batch: 512,
            delay: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }

    /// Tracing to `endpoint` (a base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`) with `protocol`.
    pub fn to(endpoint: &str, protocol: OtlpProtocol, service_name: &str) -> TraceConfig {
        TraceConfig {
            endpoint: Some(signal_endpoint(endpoint, protocol)),
            protocol,
            ..TraceConfig::off(service_name)
        }
    }

    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
    }

    /// `flags` over the process environment.
    pub fn resolve(flags: &TraceFlags, default_service: &str) -> Result<TraceConfig, String> {
        Self::resolve_with(flags, default_service, |k| std::env::var(k).ok())
    }

    /// `flags` over the environment `env` reads.
    pub fn resolve_with(
        flags: &TraceFlags,
        default_service: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<TraceConfig, String> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let protocol = match (flags.protocol, env("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            (Some(p), _) => p,
            (None, Some(v)) => OtlpProtocol::from_env(&v)?,
            (None, None) => OtlpProtocol::default(),
        };
        let endpoint = match (&flags.endpoint, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
            (Some(e), _) => Some(signal_endpoint(e, protocol)),
            // The per-signal variable is the traces URL as is.
            (None, Some(e)) => Some(e.trim().to_string()),
            (None, None) => {
                env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| signal_endpoint(&e, protocol))
            }
        };
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(format!(
                "the OTLP endpoint {e:?} is not an http:// or https:// URL"
            ));
        }
        let sampler = match flags.sample_ratio {
            Some(r) if (0.0..=1.0).contains(&r) => Sampler::parent_based_ratio(r),
            Some(r) => return Err(format!("--trace-sample-ratio {r} is not between 0 and 1")),
            None => match env("OTEL_TRACES_SAMPLER") {
                Some(name) => Sampler::from_otel(&name, env("OTEL_TRACES_SAMPLER_ARG").as_deref())?,
                None => Sampler::default(),
            },
        };
        let service_name = flags
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| default_service.to_string());
        let off = TraceConfig::off(&service_name);
        let number = |k: &str, default: u64| -> Result<u64, String> {
            match env(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{k} {v:?} is not a positive integer")),
            }
        };
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let max_queue = as_usize(number("OTEL_BSP_MAX_QUEUE_SIZE", off.max_queue as u64)?);
        let max_batch = as_usize(number(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            off.max_batch as u64,
        )?)
        .min(max_queue);
        let delay = Duration::from_millis(number(
            "OTEL_BSP_SCHEDULE_DELAY",
            u64::try_from(off.delay.as_millis()).unwrap_or(1000),
        )?);
        let timeout = Duration::from_millis(number(
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            u64::try_from(off.timeout.as_millis()).unwrap_or(10_000),
        )?);
        Ok(TraceConfig {
            endpoint,
            protocol,
            sampler,
            service_name,
            max_queue,
            max_batch,
            delay,
            timeout,
        })
    }

    /// The `service.name` (plus `OTEL_RESOURCE_ATTRIBUTES`) resource.
    pub fn resource(&self) -> Resource {
        Resource::builder()
            .with_service_name(self.service_name.clone())
            .build()
    }

    /// The SDK's sampler for spans made through an SDK tracer (the Manager's).
    pub fn sdk_sampler(&self) -> opentelemetry_sdk::trace::Sampler {
        use opentelemetry_sdk::trace::Sampler as S;
        let root = match self.sampler.ratio() {
            r if r >= 1.0 => S::AlwaysOn,
            r if r <= 0.0 => S::AlwaysOff,
            r => S::TraceIdRatioBased(r),
        };
        if self.sampler.parent_based() {
            S::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

/// The traces URL for a base `endpoint`: HTTP appends `/v1/traces` (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is specified) unless it is there already; gRPC takes the
/// server's URL as is.
pub fn signal_endpoint(endpoint: &str, protocol: OtlpProtocol) -> String {
    let e = endpoint.trim();
    match protocol {
        OtlpProtocol::Grpc => e.to_string(),
        OtlpProtocol::HttpProtobuf if e.ends_with("/v1/traces") => e.to_string(),
        OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", e.trim_end_matches('/')),
    }
}

enum Msg {
    Span(Box<SpanData>),
    Flush(SyncSender<()>),
    Stop(SyncSender<()>),
}

/// A batch span processor with a bounded queue whose drops are counted: spans are handed
/// over without blocking, and exported by a thread of its own (see the module's doc).
/// Spans whose export fails are counted as dropped too.
pub struct SpanQueue {
    tx: SyncSender<Msg>,
    dropped: Counter,
}

impl std::fmt::Debug for SpanQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanQueue")
            .field("dropped", &self.dropped.get())
            .finish_non_exhaustive()
    }
}

impl SpanQueue {
    /// Starts the export thread for `config` (which must have an endpoint); `dropped`
    /// counts the spans lost. Fails when the exporter cannot be built.
    pub fn start(config: &TraceConfig, dropped: Counter) -> Result<SpanQueue, String> {
        let Some(endpoint) = config.endpoint.clone() else {
            return Err("tracing is off: no OTLP endpoint".to_string());
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(config.max_queue.max(1));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let config = config.clone();
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("otlp-export".to_string())
            .spawn(move || export_thread(&config, &endpoint, &rx, &ready_tx, &counted))
            .map_err(|e| format!("cannot start the span export thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(SpanQueue { tx, dropped }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the span export thread stopped".to_string()),
        }
    }

    /// Queues `span` for export, or drops (and counts) it when the queue is full. Never
    /// blocks.
    pub fn submit(&self, span: SpanData) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(Msg::Span(Box::new(span)))
        {
            self.dropped.inc();
        }
    }

    /// Spans dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Exports what is queued; waits for it (at most `timeout`).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.ask(Msg::Flush, timeout)
    }

    /// Exports what is queued and stops the export thread (at most `timeout`).
    pub fn stop(&self, timeout: Duration) -> bool {
        self.ask(Msg::Stop, timeout)
    }

    fn ask(&self, msg: fn(SyncSender<()>) -> Msg, timeout: Duration) -> bool {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        self.tx.send(msg(ack)).is_ok() && done.recv_timeout(timeout).is_ok()
    }
}

impl SpanProcessor for SpanQueue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.submit(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        if self.flush(Duration::from_secs(10)) {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(Duration::from_secs(10)))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.stop(timeout) {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(timeout))
        }
    }
}

fn build_exporter(
    config: &TraceConfig,
    endpoint: &str,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let built = match config.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(config.timeout)
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(config.timeout)
            .with_headers(std::collections::HashMap::new())
            .build(),
    };
    built.map_err(|e| format!("cannot set up OTLP export to {endpoint}: {e}"))
}

fn export_thread(
    config: &TraceConfig,
    endpoint: &str,
    rx: &Receiver<Msg>,
    ready: &SyncSender<Result<(), String>>,
    dropped: &Counter,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start the span export runtime: {e}")));
            return;
        }
    };
    // tonic's channel spawns its worker on the runtime it is made in: this one, driven
    // while each export runs.
    let exporter = {
        let _in = rt.enter();
        build_exporter(config, endpoint)
    };
    let mut exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    exporter.set_resource(&config.resource());
    let _ = ready.send(Ok(()));
    let max_batch = config.max_batch.max(1);
    let mut batch: Vec<SpanData> = Vec::with_capacity(max_batch);
    let export = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(max_batch));
        let n = spans.len() as u64;
        if let Err(e) = rt.block_on(exporter.export(spans)) {
            dropped.inc_by(n);
            tracing::debug!(error = %e, spans = n, "span export failed");
        }
    };
    let mut due = Instant::now() + config.delay;
    loop {
        let wait = due.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Msg::Span(span)) => {
                batch.push(*span);
                if batch.len() >= max_batch {
                    export(&mut batch);
                    due = Instant::now() + config.delay;
                }
            }
            Ok(Msg::Flush(ack)) => {
                export(&mut batch);
                let _ = ack.send(());
            }
            Ok(Msg::Stop(ack)) => {
                export(&mut batch);
                let _ = ack.send(());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                export(&mut batch);
                due = Instant::now() + config.delay;
            }
            Err(RecvTimeoutError::Disconnected) => {
                export(&mut batch);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn off_without_an_endpoint() {
        let c = TraceConfig::resolve_with(&TraceFlags::default(), "switchyard-worker", env(&[]))
            .expect("valid");
        assert!(!c.enabled());
        assert_eq!(c.service_name, "switchyard-worker");
        assert_eq!(c.sampler, Sampler::default());
    }

    #[test]
    fn the_standard_variables() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ];
        let c = TraceConfig::resolve_with(&TraceFlags::default(), "w", env(&vars)).expect("valid");
        assert_eq!(
            c.endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(c.sampler, Sampler::parent_based_ratio(0.1));
        assert_eq!(c.service_name, "edge");
        assert_eq!(c.delay, Duration::from_millis(200));

        let grpc = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        let c = TraceConfig::resolve_with(&TraceFlags::default(), "w", env(&grpc)).expect("valid");
        assert_eq!(c.endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(c.protocol, OtlpProtocol::Grpc);

        let bad = [("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")];
        assert!(TraceConfig::resolve_with(&TraceFlags::default(), "w", env(&bad)).is_err());
        let bad = [("OTEL_TRACES_SAMPLER", "xray")];
        assert!(TraceConfig::resolve_with(&TraceFlags::default(), "w", env(&bad)).is_err());
        let bad = [("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")];
        assert!(TraceConfig::resolve_with(&TraceFlags::default(), "w", env(&bad)).is_err());
    }

    #[test]
    fn flags_override_the_environment() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_TRACES_SAMPLER", "always_off"),
        ];
        let flags = TraceFlags {
            endpoint: Some("http://flag:4317".to_string()),
            protocol: Some(OtlpProtocol::Grpc),
            sample_ratio: Some(0.01),
            service_name: None,
        };
        let c = TraceConfig::resolve_with(&flags, "w", env(&vars)).expect("valid");
        assert_eq!(c.endpoint.as_deref(), Some("http://flag:4317"));
        assert_eq!(c.protocol, OtlpProtocol::Grpc);
        assert_eq!(c.sampler, Sampler::parent_based_ratio(0.01));
        let flags = TraceFlags {
            sample_ratio: Some(1.5),
            ..TraceFlags::default()
        };
        assert!(TraceConfig::resolve_with(&flags, "w", env(&[])).is_err());
    }

    #[test]
    fn signal_endpoints() {
        let h = OtlpProtocol::HttpProtobuf;
        assert_eq!(
            signal_endpoint("http://c:4318", h),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            signal_endpoint("http://c:4318/v1/traces", h),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            signal_endpoint("http://c/otel/", h),
            "http://c/otel/v1/traces"
        );
        assert_eq!(
            signal_endpoint("http://c:4317", OtlpProtocol::Grpc),
            "http://c:4317"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        // A collector that takes the connection and never answers: the first export hangs
        // until its timeout, and the queue behind it fills.
        let collector = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = collector.local_addr().expect("addr");
        let mut config =
            TraceConfig::to(&format!("http://{addr}"), OtlpProtocol::HttpProtobuf, "t");
        config.max_queue = 4;
        config.max_batch = 1;
        config.timeout = Duration::from_millis(300);
        let dropped = Counter::default();
        let q = SpanQueue::start(&config, dropped.clone()).expect("starts");
        q.submit(span());
        // The export of that span is under way once its connection is made.
        let (_conn, _) = collector.accept().expect("accept");
        for _ in 0..10 {
            q.submit(span());
        }
        assert_eq!(dropped.get(), 6, "4 queued, 6 dropped without waiting");
        // The exports fail (nothing answers): those spans are counted as dropped too.
        assert!(q.flush(Duration::from_secs(30)));
        assert_eq!(dropped.get(), 11);
        assert!(q.stop(Duration::from_secs(10)));
    }

    fn span() -> SpanData {
        use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId};
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(1u64),
                TraceFlags::SAMPLED,
                false,
                opentelemetry::trace::TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "test".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: opentelemetry_sdk::trace::SpanEvents::default(),
            links: opentelemetry_sdk::trace::SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: opentelemetry::InstrumentationScope::builder("test").build(),
        }
    }
}
