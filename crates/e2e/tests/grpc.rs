//! gRPC through a Worker with a real client and server (tonic, `proto/echo.proto`): the
//! proxy speaks HTTP/2 to its upstream (`protocol: http2`, h2c with prior knowledge), every
//! kind of call works, trailers (`grpc-status`) come back, the gateway's own errors are
//! answered in gRPC form, `grpc-timeout` is honoured, and calls keep working across swaps
//! while a stream opened before them stays on its generation.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use switchyard_e2e::{ConfigDir, DEADLINE, DeadPort, RunningWorker, eventually};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

#[allow(clippy::all, clippy::pedantic)]
mod echo {
    tonic::include_proto!("echo");
}

use echo::Msg;
use echo::echo_client::EchoClient;
use echo::echo_server::{Echo, EchoServer};

/// The release the Worker's configuration put in the call's `x-release` header.
fn release<T>(req: &Request<T>) -> String {
    req.metadata()
        .get("x-release")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string()
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// Echoes, tagging each answer with the release of the configuration the call ran on.
struct Server;

#[tonic::async_trait]
impl Echo for Server {
    async fn unary(&self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        let release = release(&req);
        let m = req.into_inner();
        if m.text == "not-found" {
            return Err(Status::not_found("the server's own status"));
        }
        Ok(Response::new(Msg { release, ..m }))
    }

    type ServerStreamStream = MsgStream;

    async fn server_stream(&self, req: Request<Msg>) -> Result<Response<MsgStream>, Status> {
        let release = release(&req);
        let m = req.into_inner();
        let out = (0..m.seq).map(move |seq| {
            Ok(Msg {
                text: m.text.clone(),
                release: release.clone(),
                seq,
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(out))))
    }

    async fn client_stream(&self, req: Request<Streaming<Msg>>) -> Result<Response<Msg>, Status> {
        let release = release(&req);
        let mut input = req.into_inner();
        let (mut text, mut seq) = (String::new(), 0);
        while let Some(m) = input.next().await {
            text.push_str(&m?.text);
            seq += 1;
        }
        Ok(Response::new(Msg { text, release, seq }))
    }

    type BidiStream = MsgStream;

    async fn bidi(&self, req: Request<Streaming<Msg>>) -> Result<Response<MsgStream>, Status> {
        let release = release(&req);
        let input = req.into_inner();
        let out = input.map(move |m| {
            m.map(|m| Msg {
                release: release.clone(),
                ..m
            })
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// A tonic server on port 0.
async fn grpc_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(Server))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

/// A proxy routing the `echo.Echo` service to `target` over HTTP/2, setting `x-release`.
fn manifest(release: &str, target: SocketAddr, policies: &str) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1
kind: Proxy
metadata: {{ name: echo }}
spec:
  routes:
    - pathPrefix: /echo.Echo/
  upstream:
    protocol: http2
    targets:
      - url: http://{target}
  policies:
    - type: headers
      request:
        set: {{ x-release: {release} }}
{policies}"#
    )
}

async fn client(worker: &RunningWorker) -> EchoClient<tonic::transport::Channel> {
    EchoClient::connect(format!("http://{}", worker.addr))
        .await
        .unwrap()
}

fn msg(text: &str, seq: u32) -> Msg {
    Msg {
        text: text.into(),
        release: String::new(),
        seq,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_call_goes_through_the_worker() {
    let cfg = ConfigDir::new();
    cfg.write("echo.yaml", &manifest("blue", grpc_upstream().await, ""));
    let worker = RunningWorker::start(cfg.path()).await;
    let mut c = client(&worker).await;

    let r = c.unary(msg("hello", 7)).await.unwrap().into_inner();
    assert_eq!(
        (r.text.as_str(), r.release.as_str(), r.seq),
        ("hello", "blue", 7)
    );

    let got: Vec<Msg> = c
        .server_stream(msg("s", 5))
        .await
        .unwrap()
        .into_inner()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );

    let parts = tokio_stream::iter(["a", "b", "c"].map(|t| msg(t, 0)));
    let r = c.client_stream(parts).await.unwrap().into_inner();
    assert_eq!((r.text.as_str(), r.seq), ("abc", 3));

    let (tx, rx) = mpsc::channel(4);
    let mut answers = c.bidi(ReceiverStream::new(rx)).await.unwrap().into_inner();
    for i in 0..3 {
        // Each message is answered before the next is sent: nothing waits for the end.
        tx.send(msg("ping", i)).await.unwrap();
        let a = answers.next().await.unwrap().unwrap();
        assert_eq!((a.seq, a.release.as_str()), (i, "blue"));
    }
    drop(tx);
    assert!(answers.next().await.is_none(), "the stream ends cleanly");

    // The server's own status comes back in its trailers, untouched.
    let e = c.unary(msg("not-found", 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "the server's own status");
}

/// A Worker (release `r0`) in front of a tonic server, and a bidirectional stream opened
/// through it, its first answer checked to be `r0`'s.
struct Opened {
    upstream: SocketAddr,
    cfg: ConfigDir,
    worker: RunningWorker,
    client: EchoClient<tonic::transport::Channel>,
    tx: mpsc::Sender<Msg>,
    stream: Streaming<Msg>,
}

async fn open_bidi() -> Opened {
    let upstream = grpc_upstream().await;
    let cfg = ConfigDir::new();
    cfg.write("echo.yaml", &manifest("r0", upstream, ""));
    let worker = RunningWorker::start(cfg.path()).await;
    let mut client = client(&worker).await;
    let (tx, rx) = mpsc::channel(4);
    let mut stream = client
        .bidi(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(msg("before", 0)).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().release, "r0");
    Opened {
        upstream,
        cfg,
        worker,
        client,
        tx,
        stream,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_succeed_across_fifty_swaps_and_a_stream_keeps_its_generation() {
    // A bidirectional stream opened before the swaps.
    let Opened {
        upstream,
        cfg,
        worker,
        client: mut c,
        tx,
        stream: mut pinned,
    } = open_bidi().await;

    // Unary calls all the while, on another connection.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let mut c = client(&worker).await;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.unary(msg("load", 0)).await {
                    Ok(r) if r.get_ref().release.starts_with('r') => {
                        ok.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    let first = worker.handle.revision();
    for i in 1..=50u32 {
        cfg.write("echo.yaml", &manifest(&format!("r{i}"), upstream, ""));
        worker.wait_for_revision(first + u64::from(i)).await;
        let r = c.unary(msg("after", i)).await.unwrap().into_inner();
        assert_eq!(
            r.release,
            format!("r{i}"),
            "a new call runs the new revision"
        );
        tx.send(msg("during", i)).await.unwrap();
        let a = pinned.next().await.unwrap().unwrap();
        assert_eq!(
            (a.seq, a.release.as_str()),
            (i, "r0"),
            "the stream keeps its generation"
        );
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no call failed across the swaps"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);

    // The stream pins its generation (beside the current one) until it ends.
    assert!(worker.handle.live_generations() >= 2);
    drop(tx);
    assert!(pinned.next().await.is_none(), "the stream ends cleanly");
    drop(pinned);
    eventually("the stream's generation is freed", || {
        worker.handle.live_generations() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_an_old_generation_past_max_stream_age_ends_with_unavailable() {
    let Opened {
        upstream,
        cfg,
        worker,
        client: mut c,
        tx,
        mut stream,
    } = open_bidi().await;

    // A new configuration with `maxStreamAge: 1s` on the route: the stream's generation is
    // now an old one, and the limit in force is the current configuration's.
    let aged = manifest("r1", upstream, "").replace(
        "    - pathPrefix: /echo.Echo/\n",
        "    - pathPrefix: /echo.Echo/\n      maxStreamAge: 1s\n",
    );
    assert!(aged.contains("maxStreamAge"));
    cfg.write("echo.yaml", &aged);
    worker.wait_for_revision(worker.handle.revision() + 1).await;
    let end = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("the stream was closed for its age");
    let e = end.expect("ended with a status").unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().starts_with("closed_for_age"), "{e:?}");
    // A new call runs on the current generation.
    let r = c.unary(msg("after", 1)).await.unwrap().into_inner();
    assert_eq!(r.release, "r1");
    drop((tx, stream));
    eventually("the old generation is freed", || {
        worker.handle.live_generations() == 1
    })
    .await;
}

/// An HTTP/2 upstream that accepts calls and never answers them (not even a head).
async fn silent_h2_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let never = hyper::service::service_fn(|_req| {
                std::future::pending::<Result<http::Response<String>, std::convert::Infallible>>()
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), never),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_answered_in_grpc_form() {
    let dead = DeadPort::new();
    let cfg = ConfigDir::new();
    let keys = r#"---
apiVersion: switchyard.dev/v1
kind: Credential
metadata: { name: grpc-clients }
spec:
  type: api-keys
  keys:
    - { consumer: acme, key: "acme-key-0001" }
"#;
    let policy =
        "    - type: api-key\n      header: x-api-key\n      credentials: [grpc-clients]\n";
    cfg.write(
        "echo.yaml",
        &format!("{}{keys}", manifest("blue", dead.addr, policy)),
    );
    let worker = RunningWorker::start(cfg.path()).await;
    let mut c = client(&worker).await;

    // A policy's denial.
    let e = c.unary(msg("x", 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().starts_with("missing_api_key: "), "{e:?}");

    // The upstream cannot be reached.
    let mut req = Request::new(msg("x", 0));
    req.metadata_mut()
        .insert("x-api-key", "acme-key-0001".parse().unwrap());
    let e = c.unary(req).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().starts_with("upstream_connect_failed"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_grpc_timeout_is_honoured_within_the_route_timeout() {
    let cfg = ConfigDir::new();
    cfg.write(
        "echo.yaml",
        &manifest("blue", silent_h2_upstream().await, ""),
    );
    let worker = RunningWorker::start(cfg.path()).await;
    // A raw HTTP/2 call: tonic's client would give up at the same deadline itself, and the
    // gateway's answer is what is under test.
    let mut sender = switchyard_e2e::upstream::h2c_client(worker.addr).await;
    // One length-prefixed message: not compressed, empty.
    let body = http_body_util::Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]));
    let req = http::Request::post(format!("http://{}/echo.Echo/Unary", worker.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        // The route's timeout is the default 30 s; the call allows 300 ms.
        .header("grpc-timeout", "300m")
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("the gateway answers at the call's deadline")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(h["grpc-status"], "4", "DEADLINE_EXCEEDED: {h:?}");
    let message = h["grpc-message"].to_str().unwrap();
    assert!(message.starts_with("upstream_timeout: "), "{message}");
    use http_body_util::BodyExt;
    let rest = resp.into_body().collect().await.unwrap();
    assert!(rest.to_bytes().is_empty(), "a trailers-only answer");
}

/// Unary calls per second, direct to the server and through a Worker (a number for
/// BENCHMARKS.md, not an assertion): `cargo test --release -p switchyard-e2e --test grpc --
/// --ignored --nocapture`. Client, Worker and server share the machine's cores.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run it in release, by hand"]
async fn unary_calls_per_second_direct_and_through_the_worker() {
    const CONNECTIONS: usize = 4;
    const IN_FLIGHT_PER_CONNECTION: usize = 8;
    const RUN: std::time::Duration = std::time::Duration::from_secs(5);
    let upstream = grpc_upstream().await;
    let cfg = ConfigDir::new();
    cfg.write("echo.yaml", &manifest("blue", upstream, ""));
    let worker = RunningWorker::start(cfg.path()).await;
    for (name, addr) in [("direct", upstream), ("through the Worker", worker.addr)] {
        let mut tasks = tokio::task::JoinSet::new();
        let until = tokio::time::Instant::now() + RUN;
        for _ in 0..CONNECTIONS {
            let c = EchoClient::connect(format!("http://{addr}")).await.unwrap();
            for _ in 0..IN_FLIGHT_PER_CONNECTION {
                let mut c = c.clone();
                tasks.spawn(async move {
                    let mut latencies = Vec::new();
                    while tokio::time::Instant::now() < until {
                        let t = std::time::Instant::now();
                        c.unary(msg("bench", 1)).await.unwrap();
                        latencies.push(t.elapsed());
                    }
                    latencies
                });
            }
        }
        let mut all: Vec<std::time::Duration> = Vec::new();
        while let Some(l) = tasks.join_next().await {
            all.extend(l.unwrap());
        }
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "{name}: {} calls in {:?} = {:.0} calls/s; latency p50 {:?} p99 {:?} ({CONNECTIONS} connections x {IN_FLIGHT_PER_CONNECTION} calls in flight)",
            all.len(),
            RUN,
            all.len() as f64 / RUN.as_secs_f64(),
            pct(0.50),
            pct(0.99),
        );
    }
}
