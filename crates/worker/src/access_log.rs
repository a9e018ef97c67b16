//! One JSON line per request, written off the request path by a background writer thread.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Where access-log lines go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessLogTarget {
    #[default]
    Off,
    Stdout,
    File(PathBuf),
}

impl std::str::FromStr for AccessLogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "off" | "" => AccessLogTarget::Off,
            "stdout" | "-" => AccessLogTarget::Stdout,
            path => AccessLogTarget::File(PathBuf::from(path)),
        })
    }
}

/// The writer. Lines are queued to a dedicated thread; when the queue is full the request
/// waits rather than losing the line.
pub struct AccessLog {
    writer: Option<NonBlocking>,
    _guard: Option<WorkerGuard>,
}

impl AccessLog {
    pub fn open(target: &AccessLogTarget) -> std::io::Result<AccessLog> {
        let builder = || {
            NonBlockingBuilder::default()
                .lossy(false)
                .buffered_lines_limit(64 * 1024)
        };
        // Buffered: the writer thread writes what is queued in one go and flushes as soon
        // as the queue is empty, so a line waits for at most the lines queued before it,
        // and a busy Worker makes one write call per batch rather than per request.
        let buffered = |w| std::io::BufWriter::with_capacity(64 * 1024, w);
        let (writer, guard) = match target {
            AccessLogTarget::Off => return Ok(AccessLog::off()),
            AccessLogTarget::Stdout => builder().finish(buffered(
                Box::new(std::io::stdout()) as Box<dyn Write + Send>
            )),
            AccessLogTarget::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                builder().finish(buffered(Box::new(file) as Box<dyn Write + Send>))
            }
        };
        Ok(AccessLog {
            writer: Some(writer),
            _guard: Some(guard),
        })
    }

    pub fn off() -> AccessLog {
        AccessLog {
            writer: None,
            _guard: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    pub fn write(&self, entry: &AccessEntry<'_>) {
        let Some(writer) = &self.writer else { return };
        let mut line = Vec::with_capacity(320);
        if serde_json::to_writer(&mut line, entry).is_ok() {
            line.push(b'\n');
            let mut w = writer.clone();
            let _ = w.write_all(&line);
        }
    }
}

/// The fields of one access-log line.
#[derive(Serialize)]
pub struct AccessEntry<'a> {
    pub time: String,
    pub client: std::net::IpAddr,
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub status: u16,
    pub proxy: Option<&'a str>,
    pub route: Option<&'a str>,
    /// The proxy version the request ran under.
    pub version: Option<u64>,
    /// The configuration revision the request ran under.
    pub revision: u64,
    pub upstream: Option<&'a str>,
    pub duration_ms: f64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// Whose fault `error` is: `client`, `policy`, `upstream` or `internal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
    /// The consumer an authentication policy identified (never the credential).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<&'a str>,
    /// The request's id (`x-request-id`: the client's when well-formed, generated
    /// otherwise).
    pub request_id: Option<&'a str>,
    /// The request's trace (32 hex digits) and its span on this Worker (16), when tracing
    /// is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<&'a str>,
}
