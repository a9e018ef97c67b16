//! Traffic a test keeps flowing through a Worker while something changes under it: load
//! from keep-alive clients and new connections, a slow upload paused halfway, plain GETs
//! that never retry, and the Worker's `/status`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A 100 MiB upload to `addr`, paused halfway until [`Upload::finish`]: it starts on one
/// process and ends on it, whatever happened in between.
pub struct Upload {
    resume: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Result<String, String>>,
}

const UPLOAD: usize = 100 * 1024 * 1024;

impl Upload {
    /// Returns once half of it is sent.
    pub fn start(addr: SocketAddr) -> Upload {
        let (halfway_tx, halfway) = std::sync::mpsc::channel::<()>();
        let (resume, resume_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<String, String> {
            let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let head = format!(
                "POST /p/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {UPLOAD}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
            let chunk = vec![b'x'; 1024 * 1024];
            for i in 0..UPLOAD / chunk.len() {
                if i == UPLOAD / chunk.len() / 2 {
                    halfway_tx.send(()).unwrap();
                    resume_rx.recv().unwrap();
                }
                s.write_all(&chunk).map_err(|e| format!("upload: {e}"))?;
            }
            let mut answer = String::new();
            s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
            Ok(answer)
        });
        halfway.recv().unwrap();
        Upload { resume, thread }
    }

    /// Sends the rest; the upstream must have received every byte.
    pub fn finish(self) {
        self.resume.send(()).unwrap();
        let answer = self.thread.join().unwrap().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{}",
            &answer[..answer.len().min(300)]
        );
        assert!(
            answer.contains(&format!("\"body_bytes\":{UPLOAD}")),
            "{}",
            &answer[..answer.len().min(600)]
        );
    }
}

/// One GET on `conn` (opened on `addr` when `None`): the status, and whether the server
/// said it closes the connection (then `conn` is emptied). Any error is returned, never
/// retried: a retry is exactly what the handover must not need.
pub fn get(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: SocketAddr,
    path: &str,
) -> Result<u16, String> {
    if conn.is_none() {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        *conn = Some(BufReader::new(s));
    }
    let r = conn.as_mut().unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    r.get_mut()
        .write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed before an answer (after {head:?})"
            ));
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad head {head:?}"))?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
    if head.contains("connection: close") {
        *conn = None;
    }
    Ok(status)
}

/// Keep-alive clients (one connection each, reconnecting when told to close) and one
/// client opening a connection per request, until `stop`. Counts answers and failures.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, keep_alive: usize) -> Load {
        Load::start_on(&Target::new(addr), keep_alive)
    }

    /// The same, each new connection opened to where `target` points at the time.
    pub fn start_on(target: &Target, keep_alive: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..=keep_alive {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            let target = target.clone();
            threads.push(std::thread::spawn(move || {
                let mut conn = None;
                while !stop.load(Ordering::Relaxed) {
                    let addr = target.get();
                    // The last client opens a new connection for every request.
                    if i == keep_alive {
                        conn = None;
                    }
                    match get(&mut conn, addr, "/p/load") {
                        Ok(200) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(s) => failures.lock().unwrap().push(format!("status {s}")),
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            conn = None;
                        }
                    }
                }
            }));
        }
        Load {
            stop,
            ok,
            failures,
            threads,
        }
    }

    pub fn answered(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients: (answered, failures).
    /// [`Load::finish`], asserting that no request failed; how many were answered.
    pub fn finish_without_failure(self) -> u64 {
        let (ok, failures) = self.finish();
        assert!(
            failures.is_empty(),
            "{:?}",
            &failures[..failures.len().min(5)]
        );
        ok
    }

    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// Where new connections go: switched by the test (a listener moved).
#[derive(Clone)]
pub struct Target(Arc<std::sync::RwLock<SocketAddr>>);

impl Target {
    pub fn new(addr: SocketAddr) -> Target {
        Target(Arc::new(std::sync::RwLock::new(addr)))
    }

    pub fn get(&self) -> SocketAddr {
        *self.0.read().unwrap()
    }

    pub fn set(&self, addr: SocketAddr) {
        *self.0.write().unwrap() = addr;
    }
}

/// Kills a process this test did not start (a successor) when dropped.
pub struct Pid(pub u32);

impl Drop for Pid {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.to_string())
            .status();
    }
}

pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

pub fn status(admin: SocketAddr) -> serde_json::Value {
    let mut conn = TcpStream::connect(admin).unwrap();
    conn.write_all(b"GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}

/// The address of the Worker's listener `name` in state `state` (`serving`, `draining`),
/// as its `/status` shows it.
pub fn listener(admin: SocketAddr, name: &str, state: &str) -> Option<SocketAddr> {
    status(admin)["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name && l["state"] == state)
        .and_then(|l| l["address"].as_str()?.parse().ok())
}
