//! Running the real `switchyard` binary in tests: processes, their JSON logs, raw HTTP.

#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["--log-format", "json"])
            .args(args)
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

/// A minimal HTTP/1.1 exchange on an open connection; returns (status, headers, body).
pub fn exchange(stream: &mut TcpStream, path: &str, extra: &str) -> (u16, String, String) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: gw.test\r\n{extra}\r\n"
    )
    .unwrap();
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
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

pub fn get(to: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(to).unwrap();
    exchange(&mut s, path, "")
}

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `switchyard ARGS` to completion: (exit success, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `switchyard manager` process on port 0 keeping its data in `data`: the process, its
/// URL and the admin token it wrote on first start.
pub fn spawn_manager(data: &std::path::Path) -> (Proc, String, String) {
    let manager = Proc::spawn(&[
        "manager",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let url = format!(
        "http://{}",
        addr(&manager.wait_log("manager listening"), "listen")
    );
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    (manager, url, admin)
}
