//! The cluster a swap bench runs against: one it starts itself (a Manager in this process,
//! Worker processes), or an existing one named by URLs. Either way the bench applies its
//! own proxy and credential through the admin API and drives load through the Workers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use switchyard_api::admin::{ApplyRequest, CreateToken, EntityKey, RevisionView, WorkerView};
use switchyard_api::{AdminClient, ManagerTls};
use switchyard_config::Kind;
use switchyard_manager::{Manager, ManagerOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::changes::Names;
use super::setup;
use crate::BenchError;
use crate::fault::Link;
use crate::http::gauge;
use crate::procs::{WorkerProcess, WorkerSpec, rss_kb};

/// An existing cluster to measure (`--manager URL --env E --targets URL,…`).
#[derive(Debug, Clone)]
pub struct ExistingCluster {
    /// The Manager's admin API, e.g. `https://10.0.0.2:9000`.
    pub manager: String,
    /// How the Manager is verified.
    pub tls: ManagerTls,
    /// An admin or deployer token for `env`.
    pub token: String,
    pub env: String,
    /// Worker traffic listeners (`http://host:port`), load goes through each.
    pub targets: Vec<String>,
    /// Worker admin listeners, same order as `targets` (optional: memory and generations
    /// are read from them).
    pub admins: Vec<String>,
    /// Where the bench's upstreams listen, and the host Workers reach them by.
    pub upstream_bind: std::net::IpAddr,
    pub upstream_host: Option<String>,
}

/// One Worker under load.
#[derive(Debug, Clone)]
pub struct BenchWorker {
    /// Its id at the Manager (an existing cluster's Worker whose reported address does not
    /// match its target is named by the target).
    pub id: String,
    /// Its traffic listener as named (`http://host:port`).
    pub target: String,
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// Local Workers: read memory from /proc.
    pub pid: Option<u32>,
}

impl BenchWorker {
    /// Resident memory in KiB: from /proc for local Workers, from the admin `/metrics`
    /// otherwise.
    pub async fn rss_kb(&self) -> Option<u64> {
        if let Some(pid) = self.pid {
            return rss_kb(pid);
        }
        let admin = self.admin?;
        let bytes = gauge(admin, "process_resident_memory_bytes").await?;
        (bytes > 0.0).then_some((bytes / 1024.0) as u64)
    }
}

pub struct BenchCluster {
    /// The admin API, with the bench's token.
    pub client: AdminClient,
    pub env: String,
    pub names: Names,
    pub workers: Vec<BenchWorker>,
    /// The Manager's ids of the Workers that must ACK every change: every Worker connected
    /// to the environment when the bench started.
    pub ackers: Vec<String>,
    /// True when the bench owns the environment (nothing else writes to it).
    pub owned: bool,
    local: Option<Local>,
}

struct Local {
    /// How many Worker processes to start.
    count: usize,
    /// The Worker (0-based) whose link to the Manager goes through `link`.
    cut: Option<(usize, Link)>,
    processes: Vec<WorkerProcess>,
    binary: PathBuf,
    worker_token: String,
    stop: watch::Sender<bool>,
    manager_tasks: Vec<JoinHandle<Result<(), switchyard_manager::ManagerError>>>,
    /// Every Manager's address (one unless they share a database): Worker `i` follows
    /// `managers[i % n]` first and is given the others to fail over to.
    managers: Vec<SocketAddr>,
    dir: tempfile::TempDir,
}

/// Where the bench's own Managers keep their state.
#[derive(Debug, Clone, Default)]
pub struct ControlPlane {
    /// A database the Managers share (`postgres://…`); default: one Manager on SQLite in a
    /// temporary directory.
    pub database: Option<String>,
    /// Managers on `database` (1 without one).
    pub managers: usize,
}

const OWN_ENV: &str = "bench";

impl BenchCluster {
    /// A Manager in this process (embedded store in a temp dir); the Worker processes
    /// (run from `binary`) start with [`BenchCluster::start_workers`]. With `cut`, that
    /// Worker (1-based) reaches the Manager through a [`Link`] that [`BenchCluster::cut`]
    /// cuts.
    pub async fn start(
        workers: usize,
        binary: &Path,
        cut: Option<usize>,
        plane: &ControlPlane,
    ) -> Result<BenchCluster, BenchError> {
        let dir = tempfile::tempdir().map_err(setup)?;
        let (stop, _) = watch::channel(false);
        let mut manager_tasks = Vec::new();
        let mut managers = Vec::new();
        for i in 0..plane.managers.max(1) {
            let data = dir.path().join(if i == 0 {
                "manager".to_string()
            } else {
                format!("manager-{i}")
            });
            let mut options = ManagerOptions::new(&data);
            if let Some(url) = &plane.database {
                options.database = Some(url.clone());
                // One sealing key and one CA (the first Manager's) for all of them.
                options.secret_key = Some("55".repeat(32));
                options.name = Some(format!("bench-{i}"));
                if i > 0 {
                    std::fs::create_dir_all(&data).map_err(setup)?;
                    for f in ["ca.pem", "ca.key"] {
                        std::fs::copy(dir.path().join("manager").join(f), data.join(f))
                            .map_err(setup)?;
                    }
                }
            }
            let manager = Manager::open(options).await.map_err(setup)?;
            let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(setup)?;
            managers.push(listener.local_addr().map_err(setup)?);
            let mut mstop = stop.subscribe();
            manager_tasks.push(tokio::spawn(manager.serve(listener, async move {
                let _ = mstop.wait_for(|s| *s).await;
            })));
        }
        let maddr = managers[0];
        let admin_token =
            std::fs::read_to_string(dir.path().join("manager/admin.token")).map_err(setup)?;
        let admin_token = admin_token.trim().to_string();
        let tls = ManagerTls::ca_file(&dir.path().join("manager/ca.pem"))?;
        let client = AdminClient::with_tls(&format!("https://{maddr}"), &admin_token, &tls)?;
        let cut = match cut {
            None => None,
            Some(n) if (1..=workers).contains(&n) => {
                Some((n - 1, Link::start(maddr).await.map_err(setup)?))
            }
            Some(n) => {
                return Err(BenchError::Setup(format!(
                    "--cut-worker {n}: there are Workers 1 to {workers}"
                )));
            }
        };
        client.create_env(OWN_ENV).await?;
        let token = client
            .create_token(&CreateToken {
                name: "bench-workers".into(),
                role: "worker".into(),
                envs: vec![OWN_ENV.into()],
                ..CreateToken::default()
            })
            .await?;
        Ok(BenchCluster {
            client,
            env: OWN_ENV.into(),
            names: Names::own(),
            workers: Vec::new(),
            ackers: (1..=workers).map(worker_id).collect(),
            owned: true,
            local: Some(Local {
                count: workers,
                cut,
                processes: Vec::new(),
                binary: binary.to_path_buf(),
                worker_token: token.token,
                stop,
                manager_tasks,
                managers,
                dir,
            }),
        })
    }

    /// Connects to an existing cluster; checks the token and that every target answers.
    pub async fn existing(x: &ExistingCluster) -> Result<BenchCluster, BenchError> {
        socket(&x.manager, "--manager")?;
        if x.targets.is_empty() {
            return Err(BenchError::Setup(
                "--targets: name at least one Worker (http://host:port)".into(),
            ));
        }
        if !x.admins.is_empty() && x.admins.len() != x.targets.len() {
            return Err(BenchError::Setup(format!(
                "--worker-admins: {} given for {} targets (same order, one per target)",
                x.admins.len(),
                x.targets.len()
            )));
        }
        let client = AdminClient::with_tls(&x.manager, &x.token, &x.tls)?;
        client.env(&x.env).await?;
        let mut workers = Vec::new();
        for (i, t) in x.targets.iter().enumerate() {
            workers.push(BenchWorker {
                id: t.clone(),
                target: t.clone(),
                listen: socket(t, "--targets")?,
                admin: x
                    .admins
                    .get(i)
                    .map(|a| socket(a, "--worker-admins"))
                    .transpose()?,
                pid: None,
            });
        }
        // Workers that just started (or are reconnecting) get a few seconds to subscribe.
        let deadline = Instant::now() + Duration::from_secs(10);
        let connected = loop {
            let connected = connected_workers(&client, &x.env).await?;
            if connected.len() >= workers.len() {
                break connected;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!(
                    "only {} Workers are connected to {:?} but {} targets were named",
                    connected.len(),
                    x.env,
                    workers.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Name each target by the Worker whose reported traffic address it is.
        for w in &mut workers {
            if let Some(v) = connected.iter().find(|v| {
                v.address
                    .as_deref()
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                    == Some(w.listen)
            }) {
                w.id.clone_from(&v.id);
            }
        }
        let tag = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() % 0xffff)
        );
        Ok(BenchCluster {
            client,
            env: x.env.clone(),
            names: Names::unique(&tag),
            workers,
            ackers: connected.into_iter().map(|v| v.id).collect(),
            owned: false,
            local: None,
        })
    }

    /// Starts the local Worker processes (after the first apply, so they start on it) and
    /// waits until all are connected. Nothing to do in an existing cluster.
    pub async fn start_workers(&mut self) -> Result<(), BenchError> {
        let Some(l) = &mut self.local else {
            return Ok(());
        };
        let ca = l.dir.path().join("manager/ca.pem");
        for i in 0..l.count {
            let manager = match &l.cut {
                Some((n, link)) if *n == i => format!("https://{}", link.addr),
                _ => (0..l.managers.len())
                    .map(|k| format!("https://{}", l.managers[(i + k) % l.managers.len()]))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            l.processes.push(WorkerProcess::spawn(WorkerSpec {
                binary: &l.binary,
                manager: &manager,
                manager_ca: Some(&ca),
                env: OWN_ENV,
                token: &l.worker_token,
                id: worker_id(i + 1),
                cache_dir: &l.dir.path().join(format!("worker-{}", i + 1)),
            })?);
        }
        self.workers = l
            .processes
            .iter()
            .map(|p| BenchWorker {
                id: p.id.clone(),
                target: format!("http://{}", p.listen),
                listen: p.listen,
                admin: Some(p.admin),
                pid: Some(p.child.id()),
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = connected_workers(&self.client, &self.env).await?.len();
            if n >= l.count {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!(
                    "only {n} of {} Workers connected",
                    l.count
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cuts the `--cut-worker` Worker off the Manager (its stream, pulls and reports; its
    /// traffic listener is untouched). Returns its id, or `None` when no Worker is to be
    /// cut.
    pub fn cut(&self) -> Option<&str> {
        let (n, link) = self.local.as_ref()?.cut.as_ref()?;
        link.cut();
        Some(self.workers.get(*n)?.id.as_str())
    }

    /// Applies the bench's manifests; returns the Manager's revision.
    pub async fn apply(&self, manifests: &[String]) -> Result<u64, BenchError> {
        let applied = self
            .client
            .apply(
                &self.env,
                &ApplyRequest {
                    manifests: manifests.to_vec(),
                    ..ApplyRequest::default()
                },
            )
            .await?;
        Ok(applied.revision)
    }

    /// A revision's record (reports, propagation) from the Manager.
    pub async fn revision(&self, revision: u64) -> Result<RevisionView, BenchError> {
        Ok(self.client.revision(&self.env, revision).await?)
    }

    /// Stops what the bench started; in an existing cluster, deletes the bench's entities.
    pub async fn finish(mut self) -> Result<(), BenchError> {
        match self.local.take() {
            Some(mut l) => {
                for w in &mut l.processes {
                    w.stop();
                }
                let _ = l.stop.send(true);
                for task in l.manager_tasks {
                    let _ = task.await;
                }
                Ok(())
            }
            None => {
                let delete = vec![
                    EntityKey::new(Kind::Proxy, self.names.proxy.as_str()),
                    EntityKey::new(Kind::Proxy, self.names.fallback.as_str()),
                    EntityKey::new(Kind::Credential, self.names.credential.as_str()),
                ];
                let req = ApplyRequest {
                    delete,
                    ..ApplyRequest::default()
                };
                self.client.apply(&self.env, &req).await.map(|_| ())?;
                Ok(())
            }
        }
    }
}

/// The Workers connected to `env` now.
async fn connected_workers(client: &AdminClient, env: &str) -> Result<Vec<WorkerView>, BenchError> {
    let mut all = client.workers(env).await?;
    all.retain(|w| w.connected);
    Ok(all)
}

/// The id of the bench's own Worker `n` (1-based).
fn worker_id(n: usize) -> String {
    format!("bench-w{n}")
}

/// `http://host:port` (or `host:port`) → a socket address.
fn socket(url: &str, flag: &str) -> Result<SocketAddr, BenchError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs;
    authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            BenchError::Setup(format!(
                "{flag} {url}: not an http://host:port address that resolves"
            ))
        })
}
