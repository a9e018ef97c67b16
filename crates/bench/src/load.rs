//! The load generator: keep-alive connections sending continuously, plus a trickle of new
//! connections, every answer recorded with the configuration that served it and what it
//! showed of that configuration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What happened to one request. Kept small: a long run records tens of millions.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub worker: u16,
    /// The TCP connection it was sent on (numbered in the order they were opened), so the
    /// answers one connection saw can be read in order.
    pub conn: u32,
    /// Which of [`LoadPlan::paths`] it asked for.
    pub probe: u8,
    /// Seconds since the bench started, when the request was sent.
    pub at: f64,
    pub latency_ms: f32,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response: status, the configuration's number in `x-release` (0 if absent), the
    /// upstream id byte (0 if absent), the number of the upstream credential the upstream
    /// saw (0 if none), and `RateLimit-Limit` (0 if absent).
    Response {
        status: u16,
        release: u32,
        upstream: u8,
        credential: u32,
        limit: u32,
    },
    Refused,
    Reset,
    Timeout,
    Other,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct LoadPlan {
    pub targets: Vec<SocketAddr>,
    pub connections: usize,
    pub new_connections_per_sec: f64,
    /// Each connection asks for these in turn (at least one).
    pub paths: Vec<String>,
    pub host: String,
    /// Extra request headers (e.g. an API key).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Runs until `stop` is set; returns every sample.
pub async fn run(plan: LoadPlan, start: Instant, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let plan = Arc::new(plan);
    let conns = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for c in 0..plan.connections {
        let (plan, stop, conns) = (plan.clone(), stop.clone(), conns.clone());
        let worker = c % plan.targets.len();
        tasks.push(tokio::spawn(async move {
            keep_alive(plan, worker, start, stop, conns).await
        }));
    }
    if plan.new_connections_per_sec > 0.0 {
        let (plan, stop, conns) = (plan.clone(), stop.clone(), conns.clone());
        tasks.push(tokio::spawn(async move {
            churn(plan, start, stop, conns).await
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(mut s) = t.await {
            all.append(&mut s);
        }
    }
    all
}

/// Where one request went: the Worker, the connection, the path.
#[derive(Debug, Clone, Copy)]
struct Slot {
    worker: usize,
    conn: u32,
    probe: usize,
}

impl Slot {
    fn sample(self, at: f64, sent: Instant, outcome: Outcome) -> Sample {
        Sample {
            worker: u16::try_from(self.worker).unwrap_or(u16::MAX),
            conn: self.conn,
            probe: u8::try_from(self.probe).unwrap_or(u8::MAX),
            at,
            latency_ms: sent.elapsed().as_secs_f32() * 1000.0,
            outcome,
        }
    }
}

async fn keep_alive(
    plan: Arc<LoadPlan>,
    worker: usize,
    start: Instant,
    stop: Arc<AtomicBool>,
    conns: Arc<AtomicU32>,
) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(16 * 1024);
    let addr = plan.targets[worker];
    let mut conn = None;
    let mut slot = Slot {
        worker,
        conn: 0,
        probe: 0,
    };
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let at = sent.duration_since(start).as_secs_f64();
        slot.probe = n % plan.paths.len().max(1);
        n += 1;
        if conn.is_none() {
            slot.conn = conns.fetch_add(1, Ordering::Relaxed);
            match connect(addr).await {
                Ok(c) => conn = Some(c),
                Err(outcome) => {
                    samples.push(slot.sample(at, sent, outcome));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(sender) = conn.as_mut() else {
            continue;
        };
        let outcome = request(sender, &plan, slot.probe).await;
        if !matches!(outcome, Outcome::Response { .. }) {
            conn = None;
        }
        samples.push(slot.sample(at, sent, outcome));
    }
    samples
}

async fn churn(
    plan: Arc<LoadPlan>,
    start: Instant,
    stop: Arc<AtomicBool>,
    conns: Arc<AtomicU32>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let every = Duration::from_secs_f64(1.0 / plan.new_connections_per_sec);
    let mut tick = tokio::time::interval(every);
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let slot = Slot {
            worker: n % plan.targets.len(),
            conn: conns.fetch_add(1, Ordering::Relaxed),
            probe: n % plan.paths.len().max(1),
        };
        n += 1;
        let sent = Instant::now();
        let at = sent.duration_since(start).as_secs_f64();
        let outcome = match connect(plan.targets[slot.worker]).await {
            Ok(mut s) => request(&mut s, &plan, slot.probe).await,
            Err(o) => o,
        };
        samples.push(slot.sample(at, sent, outcome));
    }
    samples
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Empty<Bytes>>, Outcome> {
    let stream = match tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(Outcome::Timeout),
        Ok(Err(e)) => return Err(io_outcome(&e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Outcome::Other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn io_outcome(e: &std::io::Error) -> Outcome {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => Outcome::Reset,
        std::io::ErrorKind::TimedOut => Outcome::Timeout,
        _ => Outcome::Other,
    }
}

/// A response header's value as text.
fn header<'a>(resp: &'a http::Response<hyper::body::Incoming>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn request(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    plan: &LoadPlan,
    probe: usize,
) -> Outcome {
    let path = plan.paths.get(probe).map_or("/", String::as_str);
    let exchange = async {
        sender.ready().await.map_err(|_| Outcome::Reset)?;
        let mut req = Request::get(path)
            .header("host", plan.host.as_str())
            .body(Empty::new())
            .map_err(|_| Outcome::Other)?;
        for (name, value) in &plan.headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        let resp = sender.send_request(req).await.map_err(|e| {
            if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
                Outcome::Reset
            } else {
                Outcome::Other
            }
        })?;
        let status = resp.status().as_u16();
        let release = header(&resp, "x-release")
            .and_then(|v| v.strip_prefix('r'))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let upstream = header(&resp, "x-upstream-id")
            .and_then(|v| v.as_bytes().first().copied())
            .unwrap_or(0);
        let credential = header(&resp, "x-seen-authorization")
            .and_then(|v| v.rsplit('-').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let limit = header(&resp, "ratelimit-limit")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        resp.into_body()
            .collect()
            .await
            .map_err(|_| Outcome::Reset)?;
        Ok::<_, Outcome>(Outcome::Response {
            status,
            release,
            upstream,
            credential,
            limit,
        })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Err(_) => Outcome::Timeout,
        Ok(Err(o)) => o,
        Ok(Ok(o)) => o,
    }
}
