//! What happens when a request is over: in-flight counters, metrics, the access-log line.
//! Runs exactly once, when the `Completion` is dropped: after the response body ends, or
//! when the client goes away first (then the status is 499, as nginx logs it). Dropping it
//! releases the request's hold on its configuration generation.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, Uri};
use switchyard_engine::runtime::InFlight;

use super::age::StreamAge;
use super::error::{ErrorSource, UpstreamErrorKind};
use crate::access_log::AccessEntry;
use crate::connections::ActiveRequest;
use crate::metrics::{GatewayError, StreamKind};
use crate::runtime::{Proxy, Runtime};
use crate::trace::AttemptRecord;
use switchyard_telemetry::trace_context::{RequestTrace, hex16, hex32};

/// What the end of a request needs, and what it holds until then (its configuration
/// generation, its target's in-flight slot): carried by the response body so that the end
/// is recorded exactly once, however the request ends.
pub struct Completion {
    pub runtime: Arc<Runtime>,
    pub started: Instant,
    pub client: IpAddr,
    pub method: Method,
    pub uri: Uri,
    pub host: Option<http::HeaderValue>,
    pub proxy: Option<Arc<Proxy>>,
    pub route: Option<usize>,
    /// The target of the last upstream attempt.
    pub target: Option<usize>,
    /// The in-flight slot `Upstream::pick` claimed on that target, while this request
    /// still holds it.
    pub in_flight: Option<InFlight>,
    pub status: u16,
    pub bytes: u64,
    pub error: Option<&'static str>,
    /// Whose fault `error` is.
    pub source: Option<ErrorSource>,
    /// The consumer an authentication policy identified.
    pub consumer: Option<Arc<str>>,
    /// A gRPC request: gateway errors are answered in gRPC form.
    pub grpc: bool,
    /// The request's id (`x-request-id`), sent upstream and back to the client.
    pub request_id: http::HeaderValue,
    /// The request's trace context, when tracing is on.
    pub trace: Option<RequestTrace>,
    /// The upstream attempts of a sampled request, for their spans (empty otherwise).
    pub attempts: Vec<AttemptRecord>,
    /// Keeps the client connection counted as busy until the response ends.
    _active: ActiveRequest,
}

impl Completion {
    pub fn add_bytes(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    pub fn body_error(&mut self) {
        self.error.get_or_insert("response_body_interrupted");
    }

    /// The upstream's response body sent nothing for `upstreamBodyIdle` and was cut: an
    /// upstream error.
    pub fn upstream_body_stalled(&mut self) {
        self.error = Some("upstream_body_timeout");
        self.source = Some(ErrorSource::Upstream);
        if let Some(p) = self.proxy.as_deref() {
            self.runtime.ext(p).metrics.upstream_errors[UpstreamErrorKind::BodyTimeout.index()]
                .inc();
        }
    }

    /// The age watch of this request's stream (`age.rs`): opened when the request was
    /// accepted, on its generation, with its route's `maxStreamAge` and the Worker's cap.
    pub fn stream_age(&self) -> StreamAge {
        let proxy = self.proxy.as_deref();
        let route = self.route.unwrap_or(0);
        let pinned_age = proxy
            .and_then(|p| p.routes.get(route))
            .and_then(|r| r.max_stream_age);
        StreamAge::new(
            tokio::time::Instant::from_std(self.started),
            (proxy.map(|p| p.name.clone()), route, pinned_age),
            self.runtime.generation.clone(),
            self.runtime.obs.clone(),
        )
    }

    /// The stream was closed because its old generation outlived its age limits.
    pub fn closed_for_age(&mut self, kind: StreamKind) {
        self.error = Some("closed_for_age");
        self.runtime.obs.metrics.streams_closed_for_age[kind as usize].inc();
    }

    /// Records an error answer: its code and whose fault it is.
    pub fn failed(&mut self, status: u16, code: &'static str, source: ErrorSource) {
        self.status = status;
        self.error = Some(code);
        self.source = Some(source);
    }

    /// What went wrong that a swap could be blamed for: a 502/503/504 the gateway answered
    /// itself (an upstream's own pass through), or a response cut before its end.
    fn gateway_error(&self) -> Option<GatewayError> {
        let error = self.error?;
        match (self.source?, self.status) {
            (ErrorSource::Client | ErrorSource::Policy, _) => None,
            _ if matches!(error, "response_body_interrupted" | "upstream_body_timeout") => {
                Some(GatewayError::Reset)
            }
            (_, 502) => Some(GatewayError::BadGateway),
            (_, 503) => Some(GatewayError::Unavailable),
            (_, 504) => Some(GatewayError::Timeout),
            _ => None,
        }
    }

    /// Whether this request's upstream attempts are recorded for its spans (sampled).
    pub fn records_attempts(&self) -> bool {
        self.trace.is_some_and(|t| t.sampled)
    }

    /// Status logged for a request whose client went away before any response.
    pub const CLIENT_CLOSED: u16 = 499;

    /// Starts tracking a request (counted in `switchyard_requests_in_flight`).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        runtime: Arc<Runtime>,
        started: Instant,
        client: IpAddr,
        method: Method,
        uri: Uri,
        host: Option<http::HeaderValue>,
        active: ActiveRequest,
        request_id: http::HeaderValue,
        trace: Option<RequestTrace>,
    ) -> Completion {
        runtime.obs.metrics.in_flight.inc();
        Completion {
            runtime,
            started,
            client,
            method,
            uri,
            host,
            proxy: None,
            route: None,
            target: None,
            in_flight: None,
            status: Self::CLIENT_CLOSED,
            bytes: 0,
            error: None,
            source: None,
            consumer: None,
            grpc: false,
            request_id,
            trace,
            attempts: Vec::new(),
            _active: active,
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // No answer was written: the client went away first.
        if self.status == Self::CLIENT_CLOSED && self.source.is_none() {
            self.error.get_or_insert("client_aborted");
            self.source = Some(ErrorSource::Client);
        }
        let rt = &self.runtime;
        rt.obs.metrics.in_flight.dec();
        // The target's slot first, as soon as the request is over.
        drop(self.in_flight.take());
        let proxy = self.proxy.as_deref();
        let elapsed = self.started.elapsed();
        let metrics = match proxy {
            Some(p) => &rt.ext(p).metrics,
            None => &rt.unmatched,
        };
        metrics.record(&self.method, self.status, elapsed.as_secs_f64());
        let generation = &rt.generation.metrics;
        generation.requests.inc();
        generation.duration.observe(elapsed.as_secs_f64());
        let totals = &rt.obs.metrics.totals;
        totals.by_class[usize::from(self.status / 100).clamp(1, 5) - 1].inc();
        match (self.gateway_error(), self.source) {
            (Some(e), _) => {
                generation.errors[e as usize].inc();
                totals.gateway_errors.inc();
            }
            (None, Some(ErrorSource::Policy)) => {
                generation.policy_denials.inc();
            }
            // The upstream's own answer, passed through.
            (None, None | Some(ErrorSource::Upstream)) if self.status >= 500 => {
                generation.upstream_5xx.inc();
            }
            _ => {}
        }
        let log = &rt.obs.access_log;
        if log.enabled() {
            let trace_id = self.trace.map(|t| hex32(t.trace_id));
            let span_id = self.trace.map(|t| hex16(t.span_id));
            let route = proxy.zip(self.route).and_then(|(p, r)| p.routes.get(r));
            log.write(&AccessEntry {
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                client: self.client,
                method: self.method.as_str(),
                host: self.host.as_ref().and_then(|h| h.to_str().ok()),
                path: self.uri.path(),
                status: self.status,
                proxy: proxy.map(|p| &*p.name),
                route: route.map(|r| &*r.id),
                version: proxy.map(|p| p.version),
                revision: rt.snapshot.revision,
                upstream: proxy
                    .zip(self.target)
                    .and_then(|(p, t)| p.upstream.targets.get(t))
                    .map(|t| &*t.url),
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                bytes: self.bytes,
                error: self.error,
                source: self.source.map(ErrorSource::as_str),
                consumer: self.consumer.as_deref(),
                request_id: self.request_id.to_str().ok(),
                trace_id: trace_id.as_ref().and_then(|t| std::str::from_utf8(t).ok()),
                span_id: span_id.as_ref().and_then(|s| std::str::from_utf8(s).ok()),
            });
        }
        if let Some(tracing) = &rt.obs.tracing {
            tracing.export(self, elapsed);
        }
    }
}
