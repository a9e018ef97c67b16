//! The one fixture of the CLI's tests: the real `switchyard` binary as processes (a Manager
//! with its data dir and admin token, Workers, sample upstreams) and their JSON logs, the
//! CLI run to completion, the Manager's API through `switchyard_api`'s client, and plain
//! HTTP to a Worker's traffic port (what the gateway serves).

#![allow(clippy::unwrap_used, dead_code)]

pub mod traffic;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::{HeaderName, Method};
use serde::de::DeserializeOwned;
use switchyard_api::sync::WORKER_ID_HEADER;
use switchyard_api::{AdminClient, ManagerTls, Transport};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// A `switchyard` process, its stderr read as JSON log lines; killed when dropped.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_with(args, &[])
    }

    /// [`Proc::spawn`] with `env` added to the process's environment.
    pub fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn_exe(Path::new(env!("CARGO_BIN_EXE_switchyard")), args, env)
    }

    /// [`Proc::spawn_with`] of the binary at `exe` (a copy a test can break).
    pub fn spawn_exe(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(exe)
            .args(["--log-format", "json"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Proc { child, lines }
    }

    /// Waits for the log line whose message is `message` and returns its fields.
    pub fn wait_log(&self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line {message:?}"));
            if v["fields"]["message"] == message {
                return v["fields"].clone();
            }
        }
    }

    /// Waits for the log line whose message is `message` and returns it with every line
    /// read before it (whole lines: `level`, `target`, `fields`).
    pub fn log_until(&self, message: &str) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + DEADLINE;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line {message:?} after {lines:?}"));
            let last = v["fields"]["message"] == message;
            lines.push(v);
            if last {
                return lines;
            }
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn addr(v: &serde_json::Value, field: &str) -> SocketAddr {
    v[field].as_str().unwrap().parse().unwrap()
}

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `switchyard ARGS` to completion with `env` added to its environment.
fn output(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Runs `switchyard ARGS` to completion: (exit code, stdout, stderr).
pub fn run_code(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = output(args, env);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `switchyard ARGS` to completion: (exit success, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let (code, out, err) = run_code(args, env);
    (code == 0, out, err)
}

/// `switchyard up` over `data` with the manifests of `config`, on ports it picks and without
/// its sample upstreams, plus `extra` flags; returns the process and the fields of its
/// "switchyard is up" line (`manager`, `env`, `workers`).
pub fn spawn_up(data: &Path, config: &Path, extra: &[&str]) -> (Proc, serde_json::Value) {
    let mut args = vec![
        "up",
        "--data",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--manager-listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--no-sample-upstreams",
    ];
    args.extend_from_slice(extra);
    let up = Proc::spawn(&args);
    let fields = up.wait_log("switchyard is up");
    (up, fields)
}

/// A sample upstream process answering with `id`, and its address.
pub fn upstream(id: &str) -> (Proc, SocketAddr) {
    let p = Proc::spawn(&["upstream", "--listen", "127.0.0.1:0", "--id", id]);
    let a = addr(&p.wait_log("sample upstream listening"), "addr");
    (p, a)
}

/// A Worker process and its listeners.
pub struct Worker {
    pub proc: Proc,
    /// Traffic.
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

/// A `switchyard manager` process on port 0 with its data in a temporary directory, the
/// admin token it wrote on first start, and the admin API through the shared client.
pub struct Manager {
    pub proc: Proc,
    dir: tempfile::TempDir,
    pub url: String,
    /// The Manager's CA certificate file (DATA/ca.pem), what `SWITCHYARD_CA` names.
    pub ca: String,
    pub admin: String,
    /// The admin API as the admin token sees it; calls go through [`Manager::block_on`].
    pub api: AdminClient,
    runtime: tokio::runtime::Runtime,
    /// `--database`, when the Manager's store is not the one in its data directory.
    database: Option<String>,
    /// The flags it was started with beside `--data` and `--listen` (a restart reuses them).
    flags: Vec<String>,
}

/// A `switchyard manager` process on port 0 over `data` (HTTPS with its own CA,
/// `data/ca.pem`): the process, its URL and the admin token it wrote on first start.
pub fn spawn_manager(data: &Path) -> (Proc, String, String) {
    spawn_manager_with(data, &[])
}

/// [`spawn_manager`] with more flags.
pub fn spawn_manager_with(data: &Path, extra: &[&str]) -> (Proc, String, String) {
    let mut args = vec![
        "manager",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let proc = Proc::spawn(&args);
    let url = format!(
        "https://{}",
        addr(&proc.wait_log("manager listening"), "listen")
    );
    // A Manager joining a database that has tokens already writes none.
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap_or_default()
        .trim()
        .to_string();
    (proc, url, admin)
}

impl Manager {
    pub fn start() -> Manager {
        Manager::start_with(None, &[], None)
    }

    /// A Manager on the PostgreSQL database at `database` (sealing with the key in
    /// `key_file`, as every Manager of one database must), acting with `admin` when given
    /// (a Manager joining a database with tokens writes no admin token).
    pub fn on_database(database: &str, key_file: &Path, admin: Option<&str>) -> Manager {
        let key = key_file.to_str().unwrap();
        Manager::start_with(
            Some(database),
            &["--database", database, "--secret-key-file", key],
            admin,
        )
    }

    /// [`Manager::on_database`] with `dir` as its directory (its `data/` prepared by the
    /// test, e.g. with another Manager's CA).
    pub fn on_database_in(
        dir: tempfile::TempDir,
        database: &str,
        key_file: &Path,
        admin: Option<&str>,
    ) -> Manager {
        let key = key_file.to_str().unwrap();
        Manager::start_in(
            dir,
            Some(database),
            &["--database", database, "--secret-key-file", key],
            admin,
        )
    }

    fn start_with(database: Option<&str>, extra: &[&str], admin: Option<&str>) -> Manager {
        Manager::start_in(tempfile::tempdir().unwrap(), database, extra, admin)
    }

    fn start_in(
        dir: tempfile::TempDir,
        database: Option<&str>,
        extra: &[&str],
        admin: Option<&str>,
    ) -> Manager {
        let (proc, url, written) = spawn_manager_with(&dir.path().join("data"), extra);
        let admin = admin.map_or(written, str::to_string);
        // The tests are plain threads; the client's calls run on this runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ca = dir.path().join("data/ca.pem");
        let api = AdminClient::with_tls(&url, &admin, &ManagerTls::ca_file(&ca).unwrap()).unwrap();
        Manager {
            proc,
            dir,
            url,
            ca: ca.to_str().unwrap().to_string(),
            admin,
            api,
            runtime,
            database: database.map(str::to_string),
            flags: extra.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// Kills the process (SIGKILL: a crash, nothing said to anyone) and starts another over
    /// the same data directory and flags, on a new port.
    pub fn restart(self) -> Manager {
        let Manager {
            mut proc,
            dir,
            admin,
            database,
            flags,
            ..
        } = self;
        let _ = proc.child.kill();
        let _ = proc.child.wait();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Manager::start_in(dir, database.as_deref(), &flags, Some(&admin))
    }

    /// A Manager with environment `env`, created with `switchyard env create`.
    pub fn with_env(env: &str) -> Manager {
        let m = Manager::start();
        m.ok(&["env", "create", env], &[]);
        m
    }

    /// A temporary directory for the test's files (the Manager's data is in `data/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a call of the shared client (`m.block_on(m.api.envs())`) to completion.
    pub fn block_on<F: Future>(&self, call: F) -> F::Output {
        self.runtime.block_on(call)
    }

    /// GET `path` through the shared client: asserts a 200 answer and decodes it as `T`.
    pub fn get_200<T: DeserializeOwned>(&self, path: &str) -> T {
        let reply = self
            .block_on(self.api.raw(Method::GET, path, None))
            .unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.json());
        self.api.transport().decode(path, reply).unwrap()
    }

    /// The Manager's transport as Worker `id` calls it (its id in a header), with `token`.
    pub fn worker_transport(&self, token: &str, id: &str) -> Transport {
        Transport::builder(&self.url, token)
            .unwrap()
            .tls(&ManagerTls::ca_file(Path::new(&self.ca)).unwrap())
            .unwrap()
            .header(HeaderName::from_static(WORKER_ID_HEADER), id)
            .unwrap()
            .build()
    }

    /// `env`'s current revision.
    pub fn revision(&self, env: &str) -> u64 {
        self.block_on(self.api.env(env)).unwrap().revision
    }

    /// Whether Worker `id` is connected to `env`'s notification stream.
    pub fn connected(&self, env: &str, id: &str) -> bool {
        self.block_on(self.api.workers(env))
            .unwrap()
            .iter()
            .any(|w| w.id == id && w.connected)
    }

    /// `switchyard ARGS` with this Manager and the admin token in the environment.
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        self.cli_as(&self.admin, args, &[])
    }

    /// The same, with `env` added.
    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        self.cli_as(&self.admin, args, env)
    }

    /// The same with another token.
    pub fn cli_as(
        &self,
        token: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (bool, String, String) {
        let (code, out, err) = self.code_as(token, args, env);
        (code == 0, out, err)
    }

    /// `switchyard ARGS` as the admin, started and left running (stdout and stderr piped).
    pub fn cli_child(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env("SWITCHYARD_MANAGER", &self.url)
            .env("SWITCHYARD_CA", &self.ca)
            .env("SWITCHYARD_TOKEN", &self.admin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `switchyard ARGS` as the admin, with `env` added: (exit code, stdout, stderr).
    pub fn code(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        self.code_as(&self.admin, args, env)
    }

    /// `switchyard ARGS` with `token`, with `env` added: (exit code, stdout, stderr).
    pub fn code_as(
        &self,
        token: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let mut all = vec![
            ("SWITCHYARD_MANAGER", self.url.as_str()),
            ("SWITCHYARD_CA", self.ca.as_str()),
            ("SWITCHYARD_TOKEN", token),
        ];
        all.extend_from_slice(env);
        run_code(args, &all)
    }

    /// `switchyard ARGS` as the admin, expected to succeed; returns stdout.
    pub fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let (ok, out, err) = self.cli_with(args, env);
        assert!(ok, "switchyard {args:?} failed:\n{out}\n{err}");
        out
    }

    /// `switchyard ARGS` as the admin, expected to fail with a one-line error; returns it.
    pub fn fails(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let (ok, out, err) = self.cli_with(args, env);
        assert!(!ok, "switchyard {args:?} should fail:\n{out}\n{err}");
        let err = err.trim().to_string();
        assert!(!err.contains('\n'), "not one line: {err}");
        err
    }

    /// `switchyard ARGS --output json` as the admin: what it printed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&args, &[])).unwrap()
    }

    /// `switchyard manager token create --data DATA EXTRA…` (straight into the store);
    /// returns the secret.
    pub fn token(&self, extra: &[&str]) -> String {
        let data = self.data();
        let mut args = vec![
            "manager",
            "token",
            "create",
            "--data",
            data.to_str().unwrap(),
        ];
        if let Some(db) = &self.database {
            args.extend(["--database", db]);
        }
        args.extend_from_slice(extra);
        let (ok, out, err) = run(&args, &[]);
        assert!(ok, "{err}");
        out.trim().to_string()
    }

    /// A Manager-mode Worker process following `env` with a new worker token, as `id`.
    pub fn worker(&self, env: &str, id: &str) -> Worker {
        let token = self.token(&["--role", "worker", "--env", env, "--name", id]);
        self.spawn_worker(env, &token, Some(id))
    }

    /// A Manager-mode Worker process following `env` with `token`, as `id` (default: the
    /// Worker's own).
    pub fn spawn_worker(&self, env: &str, token: &str, id: Option<&str>) -> Worker {
        self.spawn_worker_with(env, token, id, &[])
    }

    /// [`Manager::spawn_worker`] with more Worker flags.
    pub fn spawn_worker_with(
        &self,
        env: &str,
        token: &str,
        id: Option<&str>,
        extra: &[&str],
    ) -> Worker {
        self.spawn_worker_exe(
            Path::new(env!("CARGO_BIN_EXE_switchyard")),
            env,
            token,
            id,
            extra,
        )
    }

    /// [`Manager::spawn_worker_with`] running the binary at `exe`.
    pub fn spawn_worker_exe(
        &self,
        exe: &Path,
        env: &str,
        token: &str,
        id: Option<&str>,
        extra: &[&str],
    ) -> Worker {
        let mut args = self.worker_args(env, token, id);
        // `--manager` in `extra` replaces this Manager's URL.
        if let Some(i) = extra.iter().position(|a| *a == "--manager")
            && let Some(urls) = extra.get(i + 1)
            && let Some(at) = args.iter().position(|a| a == "--manager")
        {
            args[at + 1] = urls.to_string();
        }
        let extra: Vec<&str> = match extra.iter().position(|a| *a == "--manager") {
            Some(i) => extra[..i]
                .iter()
                .chain(extra.iter().skip(i + 2))
                .copied()
                .collect(),
            None => extra.to_vec(),
        };
        args.extend(["--listen", "127.0.0.1:0"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = Proc::spawn_exe(exe, &args, &[]);
        let fields = proc.wait_log("worker listening");
        Worker {
            listen: addr(&fields, "listen"),
            admin: addr(&fields, "admin"),
            proc,
        }
    }

    /// A Manager-mode Worker as `id` that binds the environment's listeners (no
    /// `--listen`): `listen` is where its listener `listener` serves once it does.
    pub fn environment_worker(&self, env: &str, id: &str, listener: &str) -> Worker {
        let token = self.token(&["--role", "worker", "--env", env, "--name", id]);
        let args = self.worker_args(env, &token, Some(id));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = Proc::spawn_exe(Path::new(env!("CARGO_BIN_EXE_switchyard")), &args, &[]);
        let fields = proc.wait_log("worker listening");
        let admin = addr(&fields, "admin");
        let mut listen = None;
        wait_until("the Worker serves its listener", || {
            listen = traffic::listener(admin, listener, "serving");
            listen.is_some()
        });
        Worker {
            listen: listen.unwrap(),
            admin,
            proc,
        }
    }

    /// A Manager-mode Worker's arguments, without a traffic listener.
    fn worker_args(&self, env: &str, token: &str, id: Option<&str>) -> Vec<String> {
        let cache = self
            .dir()
            .join(format!("cache-{}", id.unwrap_or("default")));
        worker_args(&self.url, Path::new(&self.ca), env, token, id, &cache)
    }
}

/// The arguments of a Worker following `env` on the Manager at `url` (trusting `ca`), as
/// `id` (default: the Worker's own), without a traffic listener.
pub fn worker_args(
    url: &str,
    ca: &Path,
    env: &str,
    token: &str,
    id: Option<&str>,
    cache: &Path,
) -> Vec<String> {
    let mut args = vec![
        "worker",
        "--manager",
        url,
        "--manager-ca",
        ca.to_str().unwrap(),
        "--env",
        env,
        "--token",
        token,
        "--admin-listen",
        "127.0.0.1:0",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--access-log",
        "off",
    ];
    if let Some(id) = id {
        args.extend(["--worker-id", id]);
    }
    args.into_iter().map(String::from).collect()
}

/// One HTTP/1.1 exchange on an open connection: (status, head lowercased, body). The body
/// is read by its Content-Length, or chunk by chunk.
pub fn exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: gw.test\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let status = head[9..12].parse().unwrap();
    let mut body = Vec::new();
    if head.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        body.resize(len, 0);
        reader.read_exact(&mut body).unwrap();
    }
    (status, head, String::from_utf8(body).unwrap())
}

/// One request to a Worker's traffic port on a new connection: (status, head, body).
pub fn request(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(to).unwrap();
    exchange(&mut s, method, path, headers, body)
}

pub fn get(to: SocketAddr, path: &str) -> (u16, String, String) {
    request(to, "GET", path, &[], "")
}
