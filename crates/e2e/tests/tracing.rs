//! Request ids and traces through a real Worker (#19): `x-request-id` kept or generated and
//! returned on every answer; W3C `traceparent` continued to the upstream; spans exported to
//! a real OTLP receiver (gRPC and HTTP/protobuf) with the attributes docs/tracing.md names.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use switchyard_e2e::upstream::serve_fn;
use switchyard_e2e::{
    ConfigDir, Conn, DEADLINE, Harness, RunningWorker, get_once, payments_manifest,
};
use switchyard_telemetry::otlp::{OtlpProtocol, TraceConfig};
use switchyard_worker::WorkerOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The spans an OTLP receiver got, with the service name of each.
#[derive(Clone, Default)]
struct Collected {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    changed: Arc<watch::Sender<usize>>,
}

impl Collected {
    fn add(&self, req: ExportTraceServiceRequest) {
        let mut all = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .map(|kv| value(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    all.push((service.clone(), s));
                }
            }
        }
        self.changed.send_replace(all.len());
    }

    /// Waits until the spans collected so far satisfy `pick` (which returns what the
    /// test wants from them); fails after [`DEADLINE`].
    async fn wait<T>(&self, what: &str, pick: impl Fn(&[(String, Span)]) -> Option<T>) -> T {
        let mut rx = self.changed.subscribe();
        let found = tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(t) = pick(&self.spans.lock().unwrap()) {
                    return t;
                }
                rx.changed().await.unwrap();
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            let names: Vec<_> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .map(|(_, s)| format!("{} {}", s.name, hex(&s.trace_id)))
                .collect();
            panic!("{what}: not collected; spans: {names:?}")
        })
    }
}

struct Grpc(Collected);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP receiver on port 0: gRPC (tonic, opentelemetry-proto's service) or HTTP
/// (`POST /v1/traces`, a protobuf `ExportTraceServiceRequest`).
async fn receiver(protocol: OtlpProtocol) -> (String, Collected) {
    let collected = Collected::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match protocol {
        OtlpProtocol::Grpc => {
            let svc = TraceServiceServer::new(Grpc(collected.clone()));
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming(incoming),
            );
        }
        OtlpProtocol::HttpProtobuf => {
            let c = collected.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let c = c.clone();
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let c = c.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            c.add(ExportTraceServiceRequest::decode(body).unwrap());
                            let out = ExportTraceServiceResponse::default().encode_to_vec();
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::from(out)))
                                    .unwrap(),
                            )
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        }
    }
    (format!("http://{addr}"), collected)
}

/// Worker options exporting to `endpoint` quickly (batches every 20 ms).
fn traced(config: &std::path::Path, endpoint: &str, protocol: OtlpProtocol) -> WorkerOptions {
    let mut o = WorkerOptions::new(config);
    o.tracing = TraceConfig::to(endpoint, protocol, "edge-test");
    o.tracing.delay = Duration::from_millis(20);
    o
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn value(v: Option<&Value>) -> String {
    match v {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(s: &Span, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| value(kv.value.as_ref().and_then(|v| v.value.as_ref())))
}

/// The headers each upstream request came with, in order.
type Seen = Arc<Mutex<Vec<http::HeaderMap>>>;

/// An upstream that records each request's headers and answers 200.
async fn recording_upstream() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let s = seen.clone();
    let addr = serve_fn(move |req: Request<Incoming>| {
        s.lock().unwrap().push(req.headers().clone());
        Response::new(Full::new(Bytes::from_static(b"ok")))
    })
    .await;
    (addr, seen)
}

fn last_seen(seen: &Seen, name: &str) -> Option<String> {
    let all = seen.lock().unwrap();
    let h = all.last()?;
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

fn is_hex_id(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_generated_otherwise() {
    let (up, seen) = recording_upstream().await;
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", up, ""));
    let w = RunningWorker::start(cfg.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();

    // Well-formed: kept, sent upstream, returned.
    let a = c
        .get("/payments/1", &[("x-request-id", "client-id_42:abc")])
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-request-id"), Some("client-id_42:abc"));
    assert_eq!(
        last_seen(&seen, "x-request-id").as_deref(),
        Some("client-id_42:abc")
    );

    // None, or malformed (a space, a comma, too long): a new one, the same upstream and back.
    let long = "x".repeat(129);
    for given in [None, Some("has space"), Some("a,b"), Some(long.as_str())] {
        let headers: Vec<(&str, &str)> = given.iter().map(|g| ("x-request-id", *g)).collect();
        let a = c.get("/payments/2", &headers).await.unwrap();
        assert_eq!(a.status, 200);
        let id = a.header("x-request-id").unwrap().to_string();
        assert!(is_hex_id(&id, 32), "{given:?} -> {id}");
        assert_eq!(last_seen(&seen, "x-request-id"), Some(id));
    }
    let one = get_once(w.addr, "/payments/3").await;
    let two = get_once(w.addr, "/payments/3").await;
    assert_ne!(one.header("x-request-id"), two.header("x-request-id"));

    // Tracing off: `traceparent` and `tracestate` go through untouched.
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let a = c
        .get(
            "/payments/4",
            &[("traceparent", &tp), ("tracestate", "v=1")],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(last_seen(&seen, "traceparent"), Some(tp));
    assert_eq!(last_seen(&seen, "tracestate").as_deref(), Some("v=1"));
}

#[tokio::test]
async fn the_gateways_own_answers_carry_the_request_id() {
    let dead_port = switchyard_e2e::DeadPort::new();
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", dead_port.addr, ""));
    let w = RunningWorker::start(cfg.path()).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    // No route: a 404 from the gateway.
    let a = c
        .get("/nothing-here", &[("x-request-id", "mine-1")])
        .await
        .unwrap();
    assert_eq!(a.status, 404);
    assert_eq!(a.header("x-request-id"), Some("mine-1"));
    let a = c.get("/nothing-here", &[]).await.unwrap();
    assert_eq!(a.status, 404);
    assert!(is_hex_id(a.header("x-request-id").unwrap(), 32));
    // Upstream refused: a 502 from the gateway.
    let a = c
        .get("/payments/1", &[("x-request-id", "mine-2")])
        .await
        .unwrap();
    assert_eq!(a.status, 502);
    assert_eq!(a.header("x-request-id"), Some("mine-2"));
}

#[tokio::test]
async fn the_access_log_carries_the_request_and_trace_ids() {
    let (up, _seen) = recording_upstream().await;
    let (endpoint, _collected) = receiver(OtlpProtocol::HttpProtobuf).await;
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", up, ""));
    let log = cfg.path().join("access.log");
    let mut o = traced(cfg.path(), &endpoint, OtlpProtocol::HttpProtobuf);
    o.access_log = switchyard_worker::access_log::AccessLogTarget::File(log.clone());
    let w = RunningWorker::start_with(o).await;
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let mut c = Conn::open(w.addr).await.unwrap();
    let a = c
        .get(
            "/payments/1",
            &[("traceparent", &tp), ("x-request-id", "logged-1")],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let logged = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("logged-1"))
            .map(str::to_string)
    };
    switchyard_e2e::eventually("the access-log line", || logged().is_some()).await;
    let line: serde_json::Value = serde_json::from_str(&logged().unwrap()).unwrap();
    assert_eq!(line["request_id"], "logged-1");
    assert_eq!(line["trace_id"], CLIENT_TRACE);
    let span = line["span_id"].as_str().unwrap();
    assert!(is_hex_id(span, 16) && span != CLIENT_SPAN, "{line}");
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued_to_the_upstream_and_exported_over_grpc() {
    let (up, seen) = recording_upstream().await;
    let (endpoint, collected) = receiver(OtlpProtocol::Grpc).await;
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", up, ""));
    let w = RunningWorker::start_with(traced(cfg.path(), &endpoint, OtlpProtocol::Grpc)).await;
    let revision = w.handle.revision();
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let mut c = Conn::open(w.addr).await.unwrap();
    let a = c
        .get(
            "/payments/1",
            &[
                ("traceparent", &tp),
                ("tracestate", "vendor=opaque"),
                ("x-request-id", "req-1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);

    // The upstream: the same trace, the gateway's span as the parent, tracestate unchanged.
    let sent = last_seen(&seen, "traceparent").unwrap();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], CLIENT_TRACE);
    assert_ne!(parts[2], CLIENT_SPAN);
    assert_eq!(parts[3], "01");
    assert_eq!(
        last_seen(&seen, "tracestate").as_deref(),
        Some("vendor=opaque")
    );

    let (service, request, attempt) = collected
        .wait("the request span and its attempt", |spans| {
            let (service, r) = spans.iter().find(|(_, s)| {
                s.name == "switchyard.request" && hex(&s.trace_id) == CLIENT_TRACE
            })?;
            let a = spans.iter().find(|(_, s)| {
                s.name == "switchyard.upstream_attempt" && s.parent_span_id == r.span_id
            })?;
            Some((service.clone(), r.clone(), a.1.clone()))
        })
        .await;
    assert_eq!(service, "edge-test");
    // The client's span is the parent; the gateway's span is what the upstream saw.
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN);
    assert_eq!(hex(&request.span_id), parts[2]);
    assert_eq!(
        attr(&request, "switchyard.proxy").as_deref(),
        Some("payments")
    );
    assert_eq!(
        attr(&request, "switchyard.revision"),
        Some(revision.to_string())
    );
    assert!(attr(&request, "switchyard.route").is_some());
    assert!(attr(&request, "switchyard.proxy_version").is_some());
    assert_eq!(
        attr(&request, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(&request, "switchyard.request_id").as_deref(),
        Some("req-1")
    );
    assert_eq!(
        attr(&request, "switchyard.upstream"),
        Some(format!("http://{up}"))
    );
    assert_eq!(hex(&attempt.trace_id), CLIENT_TRACE);
    assert_eq!(
        attr(&attempt, "switchyard.upstream"),
        Some(format!("http://{up}"))
    );
    assert_eq!(
        attr(&attempt, "http.response.status_code").as_deref(),
        Some("200")
    );

    // Without a traceparent: a new trace, a root span; a malformed one: the same.
    for given in [None, Some("00-zz-nope-01")] {
        let headers: Vec<(&str, &str)> = given.iter().map(|g| ("traceparent", *g)).collect();
        let a = c.get("/payments/2", &headers).await.unwrap();
        assert_eq!(a.status, 200);
        let sent = last_seen(&seen, "traceparent").unwrap();
        let parts: Vec<String> = sent.split('-').map(str::to_string).collect();
        assert_ne!(parts[1], CLIENT_TRACE);
        let root = collected
            .wait("a root span", |spans| {
                spans
                    .iter()
                    .find(|(_, s)| s.name == "switchyard.request" && hex(&s.span_id) == parts[2])
                    .map(|(_, s)| s.clone())
            })
            .await;
        assert_eq!(hex(&root.trace_id), parts[1]);
        assert!(root.parent_span_id.is_empty() || root.parent_span_id == [0u8; 8]);
    }

    // An unsampled caller: followed (parent-based), nothing exported, still propagated.
    let unsampled = format!("00-{}-{CLIENT_SPAN}-00", "1".repeat(32));
    let a = c
        .get("/payments/3", &[("traceparent", &unsampled)])
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let sent = last_seen(&seen, "traceparent").unwrap();
    assert!(sent.starts_with(&format!("00-{}-", "1".repeat(32))) && sent.ends_with("-00"));
}

#[tokio::test]
async fn a_retried_request_shows_two_attempt_spans_over_http_protobuf() {
    let (up, _seen) = recording_upstream().await;
    let dead_port = switchyard_e2e::DeadPort::new();
    let (endpoint, collected) = receiver(OtlpProtocol::HttpProtobuf).await;
    let cfg = ConfigDir::new();
    // First target dead, second alive: round-robin starts on the dead one every other time.
    let extra = format!("      - url: http://{up}\n    retries: {{ attempts: 1 }}");
    cfg.write("p.yaml", &payments_manifest("blue", dead_port.addr, &extra));
    let o = traced(cfg.path(), &endpoint, OtlpProtocol::HttpProtobuf);
    let w = RunningWorker::start_with(o).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..2 {
        let a = c.get(&format!("/payments/{i}"), &[]).await.unwrap();
        assert_eq!(a.status, 200);
        ids.push(a.header("x-request-id").unwrap().to_string());
    }
    let (request, attempts) = collected
        .wait("a request span with two attempts", |spans| {
            spans.iter().find_map(|(_, r)| {
                if r.name != "switchyard.request" {
                    return None;
                }
                let mut a: Vec<Span> = spans
                    .iter()
                    .filter(|(_, s)| s.parent_span_id == r.span_id && s.trace_id == r.trace_id)
                    .map(|(_, s)| s.clone())
                    .collect();
                a.sort_by_key(|s| s.start_time_unix_nano);
                (a.len() == 2).then(|| (r.clone(), a))
            })
        })
        .await;
    assert!(ids.contains(&attr(&request, "switchyard.request_id").unwrap()));
    assert_eq!(
        attr(&request, "switchyard.upstream_attempts").as_deref(),
        Some("2")
    );
    assert_eq!(
        attr(&attempts[0], "switchyard.upstream"),
        Some(format!("http://{}", dead_port.addr))
    );
    assert_eq!(
        attr(&attempts[0], "switchyard.error").as_deref(),
        Some("connect_failed")
    );
    assert_eq!(
        attr(&attempts[0], "switchyard.attempt").as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(&attempts[1], "switchyard.upstream"),
        Some(format!("http://{up}"))
    );
    assert_eq!(
        attr(&attempts[1], "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(&attempts[1], "switchyard.attempt").as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_span_names_the_revision_it_ran_on_across_a_swap() {
    let h = Harness::upstreams(&["a", "b"]).await;
    let (endpoint, collected) = receiver(OtlpProtocol::Grpc).await;
    let cfg = ConfigDir::new();
    cfg.write("payments.yaml", &payments_manifest("blue", h.addr(0), ""));
    let w = RunningWorker::start_with(traced(cfg.path(), &endpoint, OtlpProtocol::Grpc)).await;
    let first = w.handle.revision();

    // A request held at upstream "a" across the swap.
    let mut slow_conn = Conn::open(w.addr).await.unwrap();
    let slow = tokio::spawn(async move {
        slow_conn
            .get(
                "/payments/slow",
                &[("x-hold", "1"), ("x-request-id", "held")],
            )
            .await
    });
    let mut arrivals = h.upstreams[0].hold.arrivals();
    tokio::time::timeout(DEADLINE, arrivals.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    cfg.write("payments.yaml", &payments_manifest("green", h.addr(1), ""));
    w.wait_for_revision(first + 1).await;
    let mut c = Conn::open(w.addr).await.unwrap();
    let after = c
        .get("/payments/fast", &[("x-request-id", "after")])
        .await
        .unwrap();
    assert_eq!(after.header("x-release"), Some("green"));
    h.upstreams[0].hold.release();
    let held = slow.await.unwrap().unwrap();
    assert_eq!(held.header("x-release"), Some("blue"));

    let by_id = |id: &'static str| {
        move |spans: &[(String, Span)]| {
            spans
                .iter()
                .find(|(_, s)| {
                    s.name == "switchyard.request"
                        && attr(s, "switchyard.request_id").as_deref() == Some(id)
                })
                .map(|(_, s)| s.clone())
        }
    };
    let held_span = collected
        .wait("the held request's span", by_id("held"))
        .await;
    let after_span = collected
        .wait("the later request's span", by_id("after"))
        .await;
    assert_eq!(
        attr(&held_span, "switchyard.revision"),
        Some(first.to_string())
    );
    assert_eq!(
        attr(&after_span, "switchyard.revision"),
        Some((first + 1).to_string())
    );
    assert_eq!(
        attr(&held_span, "switchyard.upstream"),
        Some(format!("http://{}", h.addr(0)))
    );
    assert_eq!(
        attr(&after_span, "switchyard.upstream"),
        Some(format!("http://{}", h.addr(1)))
    );
    // Exports never dropped a span here.
    let m = switchyard_e2e::metrics_text(w.admin).await;
    assert!(m.contains("switchyard_trace_spans_dropped_total 0"), "{m}");
}

/// POSTs `body` as JSON to a plain-HTTP Manager with `headers`; returns the status.
async fn post_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> u16 {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::post(path)
        .header("host", "manager.test")
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// The Manager's write path is traced: `switchyard.apply` continues the admin request's
/// `traceparent`, with `switchyard.validate`, `switchyard.commit` and `switchyard.publish`
/// under it. (The only test here that sets the process's global tracer provider.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_apply_is_traced_under_the_callers_traceparent() {
    use switchyard_e2e::cluster::RunningManager;
    let (endpoint, collected) = receiver(OtlpProtocol::Grpc).await;
    let mut config = TraceConfig::to(&endpoint, OtlpProtocol::Grpc, "manager-test");
    config.delay = Duration::from_millis(20);
    let queue = switchyard_telemetry::otlp::SpanQueue::start(
        &config,
        prometheus_client::metrics::counter::Counter::default(),
    )
    .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(queue)
        .with_sampler(config.sdk_sampler())
        .with_resource(config.resource())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());

    let h = Harness::upstreams(&["a"]).await;
    let data = tempfile::tempdir().unwrap();
    let m = RunningManager::start_with(
        &data.path().join("m"),
        "127.0.0.1:0".parse().unwrap(),
        |o| {
            o.tls = switchyard_manager::tls::ServeTls::InsecureHttp;
        },
    )
    .await;
    let (s, b) = m
        .call(
            http::Method::POST,
            "/v1/envs",
            Some(serde_json::json!({ "name": "dev" })),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{trace}-{CLIENT_SPAN}-01");
    let auth = format!("Bearer {}", m.admin_token);
    let body = serde_json::json!({ "manifests": [payments_manifest("blue", h.addr(0), "")] });
    let status = post_json(
        m.addr,
        "/v1/envs/dev/apply",
        &[("authorization", &auth), ("traceparent", &tp)],
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let (apply, steps) = collected
        .wait("the apply span and its steps", |spans| {
            let (_, apply) = spans
                .iter()
                .find(|(_, s)| s.name == "switchyard.apply" && hex(&s.trace_id) == trace)?;
            let steps: Vec<String> = spans
                .iter()
                .filter(|(_, s)| s.parent_span_id == apply.span_id)
                .map(|(_, s)| s.name.clone())
                .collect();
            (steps.len() >= 3).then(|| (apply.clone(), steps))
        })
        .await;
    assert_eq!(hex(&apply.parent_span_id), CLIENT_SPAN);
    assert_eq!(attr(&apply, "switchyard.env").as_deref(), Some("dev"));
    assert_eq!(
        attr(&apply, "switchyard.operation").as_deref(),
        Some("apply")
    );
    assert!(attr(&apply, "switchyard.revision").is_some());
    for step in [
        "switchyard.validate",
        "switchyard.commit",
        "switchyard.publish",
    ] {
        assert!(
            steps.iter().any(|s| s == step),
            "{step} missing from {steps:?}"
        );
    }
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
}
