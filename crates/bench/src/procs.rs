//! Workers as separate OS processes (so their memory is real), their addresses read from
//! their JSON logs, their RSS read from /proc.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchyard_api::ManagerTls;

use crate::BenchError;

/// Starts `cmd` (which must log JSON to stderr) and waits for the log line whose message is
/// `message`; returns the child and that line's fields. stderr keeps being drained.
pub fn spawn_logged(
    mut cmd: Command,
    message: &'static str,
) -> Result<(Child, serde_json::Value), BenchError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::Setup(format!("cannot start {program}: {e}")))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| BenchError::Setup(format!("no stderr from {program}")))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == message
            {
                let _ = tx.send(v["fields"].clone());
            }
            // Keep draining so the child never blocks on a full pipe.
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(fields) => Ok((child, fields)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(BenchError::Setup(format!(
                "{program} never logged {message:?}"
            )))
        }
    }
}

/// A socket address from a log line's field.
pub fn field_addr(fields: &serde_json::Value, name: &str) -> Result<SocketAddr, BenchError> {
    fields[name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BenchError::Setup(format!("no {name} address in {fields}")))
}

/// Any child process, stopped when dropped: SIGTERM first (so a master process such as
/// nginx's takes its workers down with it), SIGKILL if it has not exited within 5 s.
pub struct Service(pub Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct WorkerProcess {
    pub id: String,
    pub child: Child,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

pub struct WorkerSpec<'a> {
    pub binary: &'a Path,
    pub manager: &'a str,
    /// The Manager's CA file (`--manager-ca`), for an `https://` Manager.
    pub manager_ca: Option<&'a Path>,
    pub env: &'a str,
    pub token: &'a str,
    pub id: String,
    pub cache_dir: &'a Path,
}

impl WorkerProcess {
    pub fn spawn(spec: WorkerSpec<'_>) -> Result<WorkerProcess, BenchError> {
        let mut cmd = Command::new(spec.binary);
        cmd.args([
            "--log-format",
            "json",
            "worker",
            "--manager",
            spec.manager,
            "--env",
            spec.env,
        ])
        .args([
            "--worker-id",
            &spec.id,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--access-log", "off", "--cache-dir"])
        .arg(spec.cache_dir);
        if let Some(ca) = spec.manager_ca {
            cmd.arg("--manager-ca").arg(ca);
        }
        cmd.env("SWITCHYARD_TOKEN", spec.token)
            .env("SWITCHYARD_LOG", "warn,switchyard=info");
        let (child, fields) = spawn_logged(cmd, "worker listening")?;
        Ok(WorkerProcess {
            listen: field_addr(&fields, "listen")?,
            admin: field_addr(&fields, "admin")?,
            id: spec.id,
            child,
        })
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kb(&self) -> Option<u64> {
        rss_kb(self.child.id())
    }

    /// Asks the process to stop (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A Manager as its own process, so its CPU time can be read on its own.
pub struct ManagerProcess {
    pub child: Child,
    pub listen: SocketAddr,
    data: std::path::PathBuf,
}

impl ManagerProcess {
    /// A Manager serving HTTPS with its own CA (`data/ca.pem`), or plain HTTP.
    pub fn spawn(
        binary: &Path,
        data: &Path,
        insecure_http: bool,
    ) -> Result<ManagerProcess, BenchError> {
        Self::spawn_with(binary, data, insecure_http, &[])
    }

    /// [`ManagerProcess::spawn`] with more flags (`--database URL`, …).
    pub fn spawn_with(
        binary: &Path,
        data: &Path,
        insecure_http: bool,
        extra: &[&str],
    ) -> Result<ManagerProcess, BenchError> {
        let mut cmd = Command::new(binary);
        cmd.args([
            "--log-format",
            "json",
            "manager",
            "--listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .env("SWITCHYARD_LOG", "warn,switchyard=info");
        if insecure_http {
            cmd.arg("--insecure-http");
        }
        cmd.args(extra);
        let (child, fields) = spawn_logged(cmd, "manager listening")?;
        Ok(ManagerProcess {
            child,
            listen: field_addr(&fields, "listen")?,
            data: data.to_path_buf(),
        })
    }

    /// The URL clients use and how they verify it.
    pub fn client_settings(&self) -> Result<(String, ManagerTls), BenchError> {
        let ca = self.data.join("ca.pem");
        if ca.exists() {
            Ok((
                format!("https://{}", self.listen),
                ManagerTls::ca_file(&ca)?,
            ))
        } else {
            Ok((format!("http://{}", self.listen), ManagerTls::system()))
        }
    }

    /// Its data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    pub fn admin_token(&self) -> Result<String, BenchError> {
        std::fs::read_to_string(self.data.join("admin.token"))
            .map(|t| t.trim().to_string())
            .map_err(|e| BenchError::Setup(format!("admin token: {e}")))
    }

    /// User + system CPU time so far, in milliseconds.
    pub fn cpu_ms(&self) -> u64 {
        cpu_ms(self.child.id()).unwrap_or(0)
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process from /proc/PID/stat, in ms (assumes the usual 100 Hz ticks).
pub fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10)
}

/// CPU time (user + system, ms) of `root` and every process descended from it (nginx's
/// workers under its master), from /proc.
pub fn tree_cpu_ms(root: u32) -> Option<u64> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while let Some(&p) = tree.get(i) {
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    let mut total = cpu_ms(root)?;
    for pid in &tree[1..] {
        total += cpu_ms(*pid).unwrap_or(0);
    }
    Some(total)
}
