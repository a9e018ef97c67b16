//! `switchyard bench proxy`: throughput and latency of one Worker against a local upstream,
//! beside the same load straight at the upstream and — when nginx is installed — through
//! nginx set up as an equivalent reverse proxy (one worker process, upstream keep-alive).
//! Runs are interleaved (upstream, Switchyard, nginx, repeated) so drift hits all alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchError;
use crate::load::{self, LoadPlan, Outcome};
use crate::procs::{Service, field_addr, spawn_logged};
use crate::stats::percentiles;

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub duration: Duration,
    pub connections: usize,
    pub rounds: usize,
    pub binary: PathBuf,
    /// Skip nginx even if it is installed.
    pub no_nginx: bool,
    /// Also measure a proxy with a realistic pipeline (api-key + rate-limit + headers).
    pub pipeline: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub target: String,
    pub round: usize,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub target: String,
    /// Medians over the rounds.
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyReport {
    pub connections: usize,
    pub duration_s: f64,
    pub runs: Vec<Run>,
    pub summary: Vec<TargetSummary>,
    /// Switchyard's median throughput divided by the other target's, per round then median.
    pub ratios: Vec<(String, f64)>,
    pub nginx: Option<String>,
}

impl ProxyReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "bench proxy: {} keep-alive connections, {:.0} s per run, {} runs\n",
            self.connections,
            self.duration_s,
            self.runs.len()
        );
        s.push_str("target                 req/s (median)   p50 ms   p99 ms   errors\n");
        for t in &self.summary {
            s.push_str(&format!(
                "{:<21}  {:>14.0}  {:>7.3}  {:>7.3}  {:>7}\n",
                t.target, t.requests_per_sec, t.p50_ms, t.p99_ms, t.errors
            ));
        }
        for (what, r) in &self.ratios {
            s.push_str(&format!("switchyard / {what}: {r:.2}\n"));
        }
        if let Some(why) = &self.nginx {
            s.push_str(&format!("nginx: {why}\n"));
        }
        s
    }
}

pub async fn run(o: ProxyOptions) -> Result<ProxyReport, BenchError> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(e.to_string()))?;
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
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut cmd = Command::new(&o.binary);
    cmd.args(["--log-format", "json", "worker", "--config"])
        .arg(dir.path().join("bench.yaml"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--access-log",
            "off",
            "--no-watch",
        ])
        .env("SWITCHYARD_LOG", "warn,switchyard=info");
    let (worker, fields) = spawn_logged(cmd, "worker listening")?;
    let _worker = Service(worker);
    let gateway = field_addr(&fields, "listen")?;

    let (nginx, nginx_note) = if o.no_nginx {
        (None, Some("skipped (--no-nginx)".to_string()))
    } else {
        match start_nginx(dir.path(), upstream).await {
            Ok((svc, addr, version)) => (Some((svc, addr)), Some(version)),
            Err(why) => (None, Some(why)),
        }
    };

    let mut targets: Vec<(&str, SocketAddr, Load)> = vec![
        ("upstream direct", upstream, Load::Plain),
        ("switchyard", gateway, Load::Plain),
    ];
    if o.pipeline {
        targets.push(("switchyard + pipeline", gateway, Load::Pipeline));
    }
    if let Some((_, addr)) = &nginx {
        targets.push(("nginx", *addr, Load::Plain));
    }
    // Warm-up: connections, pools, caches.
    for (_, addr, load) in &targets {
        measure(*addr, *load, o.connections, Duration::from_secs(1)).await;
    }
    let mut runs = Vec::new();
    for round in 1..=o.rounds.max(1) {
        for (name, addr, load) in &targets {
            let mut r = measure(*addr, *load, o.connections, o.duration).await;
            r.target = (*name).to_string();
            r.round = round;
            runs.push(r);
        }
    }
    let summary: Vec<TargetSummary> = targets
        .iter()
        .map(|(name, _, _)| {
            let mine: Vec<&Run> = runs.iter().filter(|r| r.target == *name).collect();
            TargetSummary {
                target: (*name).to_string(),
                requests_per_sec: median(mine.iter().map(|r| r.requests_per_sec).collect()),
                p50_ms: median(mine.iter().map(|r| r.p50_ms).collect()),
                p99_ms: median(mine.iter().map(|r| r.p99_ms).collect()),
                errors: mine.iter().map(|r| r.errors).sum(),
            }
        })
        .collect();
    let ratio = |other: &str| {
        let per_round: Vec<f64> = (1..=o.rounds.max(1))
            .filter_map(|round| {
                let sy = runs
                    .iter()
                    .find(|r| r.round == round && r.target == "switchyard")?;
                let ot = runs
                    .iter()
                    .find(|r| r.round == round && r.target == other)?;
                (ot.requests_per_sec > 0.0).then(|| sy.requests_per_sec / ot.requests_per_sec)
            })
            .collect();
        (!per_round.is_empty()).then(|| (other.to_string(), median(per_round)))
    };
    let ratios = ["nginx", "upstream direct"]
        .iter()
        .filter_map(|t| ratio(t))
        .collect();
    drop(nginx);
    Ok(ProxyReport {
        connections: o.connections,
        duration_s: o.duration.as_secs_f64(),
        runs,
        summary,
        ratios,
        nginx: nginx_note,
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

async fn measure(addr: SocketAddr, load: Load, connections: usize, duration: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let (path, headers) = match load {
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
        targets: vec![addr],
        connections,
        new_connections_per_sec: 0.0,
        paths: vec![path.into()],
        host: "bench.test".into(),
        headers,
    };
    let task = tokio::spawn(load::run(plan, start, stop.clone()));
    tokio::time::sleep(duration).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = task.await.unwrap_or_default();
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = samples
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Response { status: 200, .. }))
        .map(|s| f64::from(s.latency_ms))
        .collect();
    let ok = lat.len();
    let errors = (samples.len() - ok) as u64;
    let p = percentiles(&mut lat);
    Run {
        target: String::new(),
        round: 0,
        requests_per_sec: ok as f64 / elapsed,
        p50_ms: p.p50,
        // A run has thousands of responses; with fewer than 100, the worst one.
        p99_ms: p.p99.unwrap_or(p.max),
        errors,
    }
}

/// nginx as an equivalent reverse proxy: one worker process, keep-alive to the upstream,
/// the same response header, no access log.
async fn start_nginx(
    dir: &Path,
    upstream: SocketAddr,
) -> Result<(Service, SocketAddr, String), String> {
    let version = Command::new("nginx")
        .arg("-v")
        .output()
        .map_err(|_| "not installed (apt-get install nginx to compare)".to_string())?;
    let version = String::from_utf8_lossy(&version.stderr).trim().to_string();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map_err(|e| e.to_string())?.port()
    };
    let conf = dir.join("nginx.conf");
    let root = dir.join("nginx");
    std::fs::create_dir_all(root.join("logs")).map_err(|e| e.to_string())?;
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\nerror_log {}/logs/error.log warn;\npid {}/nginx.pid;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {r}/tmp; proxy_temp_path {r}/tmp; fastcgi_temp_path {r}/tmp; uwsgi_temp_path {r}/tmp; scgi_temp_path {r}/tmp;\n  keepalive_requests 1000000;\n  upstream up {{ server {upstream}; keepalive 64; keepalive_requests 1000000; }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://up;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      add_header x-release blue;\n    }}\n  }}\n}}\n",
            root.display(),
            root.display(),
            r = root.display(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    let svc = Service(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            return Err("nginx did not start listening".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((svc, addr, version))
}
