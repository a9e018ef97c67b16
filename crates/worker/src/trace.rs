//! Request traces (#19). A request's trace context is a few integers carried in its
//! [`Completion`] (`switchyard_telemetry::trace_context::RequestTrace`); when the request is
//! sampled, its spans — the request's and one per upstream attempt — are built as the
//! SDK's `SpanData` when it completes, with the ids the upstream was told, and handed to
//! the export queue without blocking. No `tracing` span machinery on the request path, and
//! nothing allocated for an unsampled request but its outgoing `traceparent`.
//!
//! (The SDK's `Tracer` picks span ids itself; a Worker's span id is decided when the
//! request arrives, sent upstream in `traceparent`, and must be the one exported: so the
//! spans are made as `SpanData` directly.)

use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prometheus_client::metrics::counter::Counter;
use switchyard_telemetry::otlp::{SpanQueue, TraceConfig};
use switchyard_telemetry::trace_context::{RequestTrace, Sampler, TRACEPARENT, new_span_id};

use crate::proxy::completion::Completion;
use crate::proxy::error::ErrorSource;

/// The name of a request's span.
pub const REQUEST_SPAN: &str = "switchyard.request";
/// The name of an upstream attempt's span (a child of the request's).
pub const ATTEMPT_SPAN: &str = "switchyard.upstream_attempt";

/// A Worker's tracing, when it is on.
pub struct Tracing {
    sampler: Sampler,
    queue: SpanQueue,
    scope: InstrumentationScope,
}

impl Tracing {
    /// Starts exporting as `config` says; `None` when tracing is off (no endpoint).
    pub fn start(config: &TraceConfig, dropped: Counter) -> Result<Option<Tracing>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let queue = SpanQueue::start(config, dropped)?;
        Ok(Some(Tracing {
            sampler: config.sampler,
            queue,
            scope: InstrumentationScope::builder("switchyard-worker")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }))
    }

    /// A new request's trace: its caller's continued, or a new one.
    pub fn begin(&self, headers: &HeaderMap) -> RequestTrace {
        RequestTrace::begin(headers.get(TRACEPARENT), &self.sampler)
    }

    /// Exports what queued spans remain (at most `timeout`): on shutdown.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.queue.flush(timeout)
    }

    /// Exports the spans of the sampled request `done`, over after `elapsed`.
    pub fn export(&self, done: &Completion, elapsed: Duration) {
        let Some(trace) = done.trace.filter(|t| t.sampled) else {
            return;
        };
        let now = Instant::now();
        let end = SystemTime::now();
        let at = |i: Instant| end - now.saturating_duration_since(i);
        let trace_id = TraceId::from(trace.trace_id);
        let request_span = SpanId::from(trace.span_id);
        let rt = &done.runtime;
        let proxy = done.proxy.as_deref();
        let target_url = |t: usize| {
            proxy
                .and_then(|p| p.upstream.targets.get(t))
                .map(|t| KeyValue::new("switchyard.upstream", t.url.to_string()))
        };
        for (i, a) in done.attempts.iter().enumerate() {
            let mut attributes = vec![KeyValue::new("switchyard.attempt", i as i64 + 1)];
            attributes.extend(target_url(a.target));
            let status = match a.outcome {
                Ok(code) => {
                    attributes.push(KeyValue::new("http.response.status_code", i64::from(code)));
                    if code >= 500 {
                        Status::error("upstream 5xx")
                    } else {
                        Status::Unset
                    }
                }
                Err(kind) => {
                    attributes.push(KeyValue::new("switchyard.error", kind));
                    Status::error(kind)
                }
            };
            self.queue.submit(self.span(
                (trace_id, SpanId::from(new_span_id())),
                (request_span, false),
                (SpanKind::Client, ATTEMPT_SPAN),
                (at(a.started), at(a.ended)),
                attributes,
                status,
            ));
        }

        let route = proxy.zip(done.route).and_then(|(p, r)| p.routes.get(r));
        let mut attributes = Vec::with_capacity(16);
        attributes.push(KeyValue::new(
            "http.request.method",
            done.method.as_str().to_string(),
        ));
        attributes.push(KeyValue::new("url.path", done.uri.path().to_string()));
        if let Some(h) = done.host.as_ref().and_then(|h| h.to_str().ok()) {
            attributes.push(KeyValue::new("server.address", h.to_string()));
        }
        attributes.push(KeyValue::new("client.address", done.client.to_string()));
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(done.status),
        ));
        if let Ok(id) = done.request_id.to_str() {
            attributes.push(KeyValue::new("switchyard.request_id", id.to_string()));
        }
        attributes.push(KeyValue::new(
            "switchyard.revision",
            i64::try_from(rt.snapshot.revision).unwrap_or(i64::MAX),
        ));
        if let Some(p) = proxy {
            attributes.push(KeyValue::new("switchyard.proxy", p.name.to_string()));
            attributes.push(KeyValue::new(
                "switchyard.proxy_version",
                i64::try_from(p.version).unwrap_or(i64::MAX),
            ));
        }
        if let Some(r) = route {
            attributes.push(KeyValue::new("switchyard.route", r.id.to_string()));
        }
        if let Some(c) = &done.consumer {
            attributes.push(KeyValue::new("switchyard.consumer", c.to_string()));
        }
        attributes.extend(done.target.and_then(target_url));
        attributes.push(KeyValue::new(
            "switchyard.upstream_attempts",
            done.attempts.len() as i64,
        ));
        if let Some(e) = done.error {
            attributes.push(KeyValue::new("switchyard.error", e));
        }
        if let Some(s) = done.source {
            attributes.push(KeyValue::new("switchyard.error_source", s.as_str()));
        }
        let status = if done.status >= 500 {
            Status::error(done.error.unwrap_or("server error"))
        } else if done.source == Some(ErrorSource::Internal) {
            Status::error(done.error.unwrap_or("internal error"))
        } else {
            Status::Unset
        };
        let parent = trace.parent.map_or(SpanId::INVALID, SpanId::from);
        self.queue.submit(self.span(
            (trace_id, request_span),
            (parent, trace.parent.is_some()),
            (SpanKind::Server, REQUEST_SPAN),
            (end - elapsed, end),
            attributes,
            status,
        ));
    }

    fn span(
        &self,
        (trace_id, span_id): (TraceId, SpanId),
        (parent_span_id, parent_span_is_remote): (SpanId, bool),
        (span_kind, name): (SpanKind, &'static str),
        (start_time, end_time): (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id,
            parent_span_is_remote,
            span_kind,
            name: Cow::Borrowed(name),
            start_time,
            end_time,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

/// One upstream attempt of a sampled request, for its span.
#[derive(Debug, Clone, Copy)]
pub struct AttemptRecord {
    /// The target's index in the proxy's upstream.
    pub target: usize,
    pub started: Instant,
    /// When its response head came, or when it failed.
    pub ended: Instant,
    /// The response status, or how the attempt failed.
    pub outcome: Result<u16, &'static str>,
}
