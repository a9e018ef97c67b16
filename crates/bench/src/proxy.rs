//! `switchyard bench proxy`: throughput, latency and CPU per request of one Worker against
//! a local upstream, beside the same load straight at the upstream and — when installed —
//! through nginx and HAProxy set up as equivalent reverse proxies with as many worker
//! processes (nginx) or threads (HAProxy) as the Worker has threads, keep-alive to the
//! upstream, and the access log off or (`--access-log`) to a file for all of them. Runs
//! are interleaved (upstream, Switchyard, nginx, HAProxy, repeated) so drift hits all alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchError;
use crate::load::{self, LoadPlan, Outcome};
use crate::procs::{Service, field_addr, spawn_logged, tree_cpu_ms};
use crate::stats::percentiles;

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub duration: Duration,
    pub connections: usize,
    pub rounds: usize,
    pub binary: PathBuf,
    /// Skip nginx even if it is installed.
    pub no_nginx: bool,
    /// Skip HAProxy even if it is installed.
    pub no_haproxy: bool,
    /// Also measure a proxy with a realistic pipeline (api-key + rate-limit + headers).
    pub pipeline: bool,
    /// The Worker's threads; nginx gets as many worker processes, HAProxy as many threads.
    pub threads: usize,
    /// Every proxy writes an access log line per request to a file.
    pub access_log: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub target: String,
    pub round: usize,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// User + system CPU time of the proxy's processes per answered request (null for the
    /// upstream measured directly).
    pub cpu_us_per_request: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub target: String,
    /// Medians over the rounds.
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu_us_per_request: Option<f64>,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyReport {
    pub connections: usize,
    pub duration_s: f64,
    pub threads: usize,
    pub access_log: bool,
    pub runs: Vec<Run>,
    pub summary: Vec<TargetSummary>,
    /// One target's throughput divided by another's, per round then median: ("a / b", r).
    pub ratios: Vec<(String, f64)>,
    /// What was compared with (versions), or why it was not (and how to install it).
    pub notes: Vec<String>,
}

impl ProxyReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "bench proxy: {} keep-alive connections, {:.0} s per run, {} runs, {} thread{} per proxy, access log {}\n",
            self.connections,
            self.duration_s,
            self.runs.len(),
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            if self.access_log { "to a file" } else { "off" }
        );
        s.push_str(
            "target                 req/s (median)   p50 ms   p99 ms   CPU µs/req   errors\n",
        );
        for t in &self.summary {
            let cpu = t
                .cpu_us_per_request
                .map_or_else(|| "-".to_string(), |c| format!("{c:.1}"));
            s.push_str(&format!(
                "{:<21}  {:>14.0}  {:>7.3}  {:>7.3}  {:>11}  {:>7}\n",
                t.target, t.requests_per_sec, t.p50_ms, t.p99_ms, cpu, t.errors
            ));
        }
        for (what, r) in &self.ratios {
            s.push_str(&format!("{what}: {r:.2}\n"));
        }
        for n in &self.notes {
            s.push_str(n);
            s.push('\n');
        }
        s
    }
}

/// One thing measured: where the load goes, what it asks, whose CPU is counted.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    load: Load,
    pid: Option<u32>,
}

pub async fn run(o: ProxyOptions) -> Result<ProxyReport, BenchError> {
    let setup = |e: std::io::Error| BenchError::Setup(e.to_string());
    let dir = tempfile::tempdir().map_err(setup)?;
    let threads = o.threads.max(1);
    let mut cmd = Command::new(&o.binary);
    cmd.args([
        "--log-format",
        "json",
        "upstream",
        "--listen",
        "127.0.0.1:0",
        "--id",
        "bench",
    ]);
    let (up, fields) = spawn_logged(cmd, "sample upstream listening")?;
    let _upstream = Service(up);
    let upstream = field_addr(&fields, "addr")?;

    let pipeline_proxy = if o.pipeline {
        PIPELINE_PROXY.replace("UPSTREAM", &upstream.to_string())
    } else {
        String::new()
    };
    std::fs::write(
        dir.path().join("bench.yaml"),
        format!(
            "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: bench }}\nspec:\n  routes: [{{ pathPrefix: / }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n  policies:\n    - type: headers\n      response: {{ set: {{ x-release: blue }} }}\n{pipeline_proxy}"
        ),
    )
    .map_err(setup)?;
    let access_log = if o.access_log {
        dir.path().join("switchyard-access.log")
    } else {
        PathBuf::from("off")
    };
    let mut cmd = Command::new(&o.binary);
    cmd.args(["--log-format", "json", "worker", "--config"])
        .arg(dir.path().join("bench.yaml"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--no-watch",
            "--threads",
            &threads.to_string(),
            "--access-log",
        ])
        .arg(&access_log)
        .env("SWITCHYARD_LOG", "warn,switchyard=info");
    let (worker, fields) = spawn_logged(cmd, "worker listening")?;
    let gateway = field_addr(&fields, "listen")?;
    let worker_pid = worker.id();
    let _worker = Service(worker);

    let mut targets = vec![
        Target {
            name: "upstream direct",
            addr: upstream,
            load: Load::Plain,
            pid: None,
        },
        Target {
            name: "switchyard",
            addr: gateway,
            load: Load::Plain,
            pid: Some(worker_pid),
        },
    ];
    if o.pipeline {
        targets.push(Target {
            name: "switchyard + pipeline",
            addr: gateway,
            load: Load::Pipeline,
            pid: Some(worker_pid),
        });
    }
    let mut notes = Vec::new();
    let mut others = Vec::new();
    for (other, skip) in [(Other::Nginx, o.no_nginx), (Other::Haproxy, o.no_haproxy)] {
        let name = other.name();
        if skip {
            notes.push(format!("{name}: skipped (--no-{name})"));
            continue;
        }
        match other
            .start(dir.path(), upstream, threads, o.access_log)
            .await
        {
            Ok((svc, addr, version)) => {
                notes.push(format!("{name}: {version}"));
                targets.push(Target {
                    name,
                    addr,
                    load: Load::Plain,
                    pid: Some(svc.0.id()),
                });
                others.push(svc);
            }
            Err(why) => notes.push(format!("{name}: {why}")),
        }
    }

    // Warm-up: connections, pools, caches.
    for t in &targets {
        measure(t, o.connections, Duration::from_secs(1)).await;
    }
    let mut runs = Vec::new();
    for round in 1..=o.rounds.max(1) {
        for t in &targets {
            let mut r = measure(t, o.connections, o.duration).await;
            r.round = round;
            runs.push(r);
        }
    }
    let summary: Vec<TargetSummary> = targets
        .iter()
        .map(|t| {
            let mine: Vec<&Run> = runs.iter().filter(|r| r.target == t.name).collect();
            let cpu: Vec<f64> = mine.iter().filter_map(|r| r.cpu_us_per_request).collect();
            TargetSummary {
                target: t.name.to_string(),
                requests_per_sec: median(mine.iter().map(|r| r.requests_per_sec).collect()),
                p50_ms: median(mine.iter().map(|r| r.p50_ms).collect()),
                p99_ms: median(mine.iter().map(|r| r.p99_ms).collect()),
                cpu_us_per_request: (!cpu.is_empty()).then(|| median(cpu)),
                errors: mine.iter().map(|r| r.errors).sum(),
            }
        })
        .collect();
    let ratio = |a: &str, b: &str| {
        let per_round: Vec<f64> = (1..=o.rounds.max(1))
            .filter_map(|round| {
                let find = |t: &str| runs.iter().find(|r| r.round == round && r.target == t);
                let (x, y) = (find(a)?, find(b)?);
                (y.requests_per_sec > 0.0).then(|| x.requests_per_sec / y.requests_per_sec)
            })
            .collect();
        (!per_round.is_empty()).then(|| (format!("{a} / {b}"), median(per_round)))
    };
    let ratios = [
        ("switchyard", "nginx"),
        ("switchyard", "haproxy"),
        ("switchyard + pipeline", "nginx"),
        ("switchyard", "upstream direct"),
    ]
    .iter()
    .filter_map(|(a, b)| ratio(a, b))
    .collect();
    drop(others);
    Ok(ProxyReport {
        connections: o.connections,
        duration_s: o.duration.as_secs_f64(),
        threads,
        access_log: o.access_log,
        runs,
        summary,
        ratios,
        notes,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The second proxy `bench proxy --pipeline` measures: an API key, a rate limit by
/// consumer far above the load, and header edits both ways.
const PIPELINE_PROXY: &str = "---\napiVersion: switchyard.dev/v1\nkind: Credential\nmetadata: { name: bench-clients }\nspec:\n  type: api-keys\n  keys: [{ consumer: bench, key: \"bench-live-key-0001\" }]\n---\napiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: { name: bench-pipeline }\nspec:\n  routes: [{ pathPrefix: /pipeline }]\n  upstream:\n    targets: [{ url: \"http://UPSTREAM\" }]\n  policies:\n    - type: api-key\n      credentials: [bench-clients]\n    - type: rate-limit\n      key: consumer\n      limit: 1000000000\n      per: 1s\n    - type: headers\n      request: { set: { x-gateway: switchyard } }\n      response: { set: { x-release: blue } }\n";

#[derive(Debug, Clone, Copy)]
enum Load {
    Plain,
    Pipeline,
}

async fn measure(t: &Target, connections: usize, duration: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let (path, headers) = match t.load {
        Load::Plain => ("/", Vec::new()),
        Load::Pipeline => (
            "/pipeline/item",
            vec![(
                http::HeaderName::from_static("x-api-key"),
                http::HeaderValue::from_static("bench-live-key-0001"),
            )],
        ),
    };
    let plan = LoadPlan {
        targets: vec![t.addr],
        connections,
        new_connections_per_sec: 0.0,
        paths: vec![path.into()],
        host: "bench.test".into(),
        headers,
    };
    let cpu_before = t.pid.and_then(tree_cpu_ms);
    let task = tokio::spawn(load::run(plan, start, stop.clone()));
    tokio::time::sleep(duration).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = task.await.unwrap_or_default();
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = t.pid.and_then(tree_cpu_ms);
    let mut lat: Vec<f64> = samples
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Response { status: 200, .. }))
        .map(|s| f64::from(s.latency_ms))
        .collect();
    let ok = lat.len();
    let errors = (samples.len() - ok) as u64;
    let p = percentiles(&mut lat);
    let cpu_us_per_request = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) if ok > 0 => Some(b.saturating_sub(a) as f64 * 1000.0 / ok as f64),
        _ => None,
    };
    Run {
        target: t.name.to_string(),
        round: 0,
        requests_per_sec: ok as f64 / elapsed,
        p50_ms: p.p50,
        // A run has thousands of responses; with fewer than 100, the worst one.
        p99_ms: p.p99.unwrap_or(p.max),
        errors,
        cpu_us_per_request,
    }
}

/// A proxy to compare with.
#[derive(Debug, Clone, Copy)]
enum Other {
    Nginx,
    Haproxy,
}

impl Other {
    fn name(self) -> &'static str {
        match self {
            Other::Nginx => "nginx",
            Other::Haproxy => "haproxy",
        }
    }

    /// Starts it in `dir` in front of `upstream`: its service, its address and its
    /// version, or why it could not be started (how to install it, when it is missing).
    async fn start(
        self,
        dir: &Path,
        upstream: SocketAddr,
        threads: usize,
        access_log: bool,
    ) -> Result<(Service, SocketAddr, String), String> {
        match self {
            Other::Nginx => start_nginx(dir, upstream, threads, access_log).await,
            Other::Haproxy => start_haproxy(dir, upstream, threads, access_log).await,
        }
    }
}

/// A free port on loopback for a comparison proxy.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// The first line a `-v` of `program` prints (on stdout or stderr), or how to install it.
fn version(program: &str) -> Result<String, String> {
    let out = Command::new(program).arg("-v").output().map_err(|_| {
        "not installed (apt-get install nginx haproxy to compare with both)".to_string()
    })?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// Starts `cmd` (a comparison proxy told to listen on `port` of loopback, its stderr
/// dropped) and waits until it accepts connections.
async fn serve(mut cmd: Command, port: u16) -> Result<(Service, SocketAddr), String> {
    let what = cmd.get_program().to_string_lossy().into_owned();
    let child = cmd
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let svc = Service(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not start listening"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((svc, addr))
}

/// nginx as an equivalent reverse proxy: `threads` worker processes, keep-alive to the
/// upstream, the same response header, the access log off or to a file.
async fn start_nginx(
    dir: &Path,
    upstream: SocketAddr,
    threads: usize,
    access_log: bool,
) -> Result<(Service, SocketAddr, String), String> {
    let version = version("nginx")?;
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    let root = dir.join("nginx");
    std::fs::create_dir_all(root.join("logs")).map_err(|e| e.to_string())?;
    let log = if access_log {
        format!("access_log {}/logs/access.log;", root.display())
    } else {
        "access_log off;".to_string()
    };
    std::fs::write(
        &conf,
        format!(
            "worker_processes {threads};\ndaemon off;\nerror_log {r}/logs/error.log warn;\npid {r}/nginx.pid;\nevents {{ worker_connections 4096; }}\nhttp {{\n  {log}\n  client_body_temp_path {r}/tmp; proxy_temp_path {r}/tmp; fastcgi_temp_path {r}/tmp; uwsgi_temp_path {r}/tmp; scgi_temp_path {r}/tmp;\n  keepalive_requests 1000000;\n  upstream up {{ server {upstream}; keepalive 64; keepalive_requests 1000000; }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://up;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      add_header x-release blue;\n    }}\n  }}\n}}\n",
            r = root.display(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&root)
        .stdout(Stdio::null());
    let (svc, addr) = serve(cmd, port).await?;
    Ok((svc, addr, version))
}

/// HAProxy as an equivalent reverse proxy: `threads` threads, connections to the upstream
/// reused, the same response header, the access log off or (to stdout, kept in a file).
async fn start_haproxy(
    dir: &Path,
    upstream: SocketAddr,
    threads: usize,
    access_log: bool,
) -> Result<(Service, SocketAddr, String), String> {
    let version = version("haproxy")?;
    let port = free_port()?;
    let conf = dir.join("haproxy.cfg");
    let (global_log, log) = if access_log {
        (
            "  log stdout format raw local0\n",
            "  log global\n  option httplog\n",
        )
    } else {
        ("", "")
    };
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread {threads}\n  maxconn 4096\n{global_log}defaults\n  mode http\n{log}  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n  http-response set-header x-release blue\nbackend be\n  server up {upstream}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let out = if access_log {
        Stdio::from(
            std::fs::File::create(dir.join("haproxy-access.log")).map_err(|e| e.to_string())?,
        )
    } else {
        Stdio::null()
    };
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db").arg("-f").arg(&conf).stdout(out);
    let (svc, addr) = serve(cmd, port).await?;
    Ok((svc, addr, version))
}
