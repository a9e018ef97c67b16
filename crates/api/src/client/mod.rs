//! The one HTTP client for the Manager's API. [`Transport`] is the connection pool, the
//! bearer token and the error handling; [`AdminClient`] (operators, the CLI, benches,
//! tests) and [`SyncClient`] (Workers) are typed facades over it.

mod admin;
mod sync;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::admin::{AdminClient, encode};
pub use self::sync::SyncClient;
pub use self::tls::ManagerTls;
use crate::error::{ErrorBody, ErrorCode};

/// How long one call (not an event stream's body) may take, unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to the Manager failed. Each says where it came from and whether the same
/// call may succeed later ([`ClientError::is_retryable`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A setting the client was built with cannot work (not a network problem).
    #[error("invalid Manager setting: {0}")]
    Config(String),
    /// No connection could be made: the request was never sent, nothing happened.
    #[error("cannot reach the Manager at {base}: {reason}")]
    Unreachable { base: String, reason: String },
    /// The TLS handshake with the Manager failed (its certificate is not trusted or does
    /// not name it, it does not speak TLS, it wants a client certificate): nothing was
    /// sent, the token included.
    #[error("cannot verify the Manager at {base}, nothing was sent: {reason}")]
    Tls { base: String, reason: String },
    /// The request was sent, then the connection broke before a (complete) answer: the
    /// Manager may or may not have acted on it ([`ClientError::outcome_unknown`]).
    #[error("no answer from {url} to {method}: the connection broke ({reason})")]
    NoAnswer {
        method: Method,
        url: String,
        reason: String,
    },
    /// No (complete) answer in time.
    #[error("no answer from {url} within {after:?}")]
    Timeout {
        method: Method,
        url: String,
        after: Duration,
    },
    /// None of several Managers of one control plane could be reached (each error is an
    /// [`ClientError::Unreachable`] or [`ClientError::Tls`], in the order they were
    /// tried): nothing was sent to any of them.
    #[error("none of the Managers could be reached, nothing was sent: {}", list(.tried))]
    NoneReachable { tried: Vec<ClientError> },
    /// The Manager answered with an error status.
    #[error("the Manager answered {} to {}: {} {}", .0.status, .0.url, .0.body.code, .0.body.message)]
    Api(Box<ApiFailure>),
    /// A success status with a body that is not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    /// Whether retrying the same call later may succeed: the Manager was unreachable, slow,
    /// or briefly unable to write (store, audit).
    pub fn is_retryable(&self) -> bool {
        match self {
            // A certificate problem is fixed on one side or the other while the caller
            // waits (a Worker keeps its reports for then).
            ClientError::Unreachable { .. }
            | ClientError::Tls { .. }
            | ClientError::NoneReachable { .. }
            | ClientError::NoAnswer { .. }
            | ClientError::Timeout { .. } => true,
            ClientError::Api(f) => f.status >= 500 || f.body.code.is_retryable(),
            ClientError::Config(_) | ClientError::Decode { .. } => false,
        }
    }

    /// Whether the request may have been acted on although no answer came: it was sent,
    /// then the connection broke or the time ran out. For a write the outcome is unknown
    /// (check before assuming either way); a refused connection is not (nothing was sent).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ClientError::NoAnswer { .. } | ClientError::Timeout { .. }
        )
    }

    /// The Manager's error code, for an error answer.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ClientError::Api(f) => Some(&f.body.code),
            _ => None,
        }
    }
}

/// Errors, one after the other.
fn list(errors: &[ClientError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error answer of the Manager's, and the call it answered.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: u16,
    pub url: String,
    /// The path asked for, e.g. `/v1/envs/dev/apply`.
    pub path: String,
    /// The error the Manager gave (a plain-text answer becomes code `error` with the text
    /// as its message).
    pub body: ErrorBody,
}

/// A raw answer: its status and whole body, whatever the status.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`null` when empty, a JSON string holding the text when it is not
    /// JSON): for tests and tools that look at error answers too.
    pub fn json(&self) -> serde_json::Value {
        if self.body.is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned())
        })
    }
}

/// The connection pool to one Manager (or to one of several Managers of one control plane,
/// see [`TransportBuilder::fallbacks`]), with the token and the headers sent on every call.
/// Cheap to clone (shared pool).
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    /// The Managers' URLs, in the order given: calls go to `bases[current]`, and to the
    /// next ones in turn when it cannot be reached.
    bases: Vec<String>,
    /// The Manager that last answered (or was first given).
    current: AtomicUsize,
    headers: HeaderMap,
    timeout: Duration,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Transport")
            .field("bases", &self.inner.bases)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Transport`]: `Transport::builder(base, token)?.header(..)?.build()`.
pub struct TransportBuilder {
    /// The first Manager's URL, then the fallbacks'.
    bases: Vec<String>,
    headers: HeaderMap,
    timeout: Duration,
    connect_timeout: Duration,
    /// The TLS settings given ([`TransportBuilder::tls`]), and the configuration made of
    /// them once a URL is `https://`.
    manager_tls: Option<ManagerTls>,
    tls: Option<rustls::ClientConfig>,
}

impl TransportBuilder {
    /// A header sent on every call (e.g. the Worker's id).
    pub fn header(mut self, name: HeaderName, value: &str) -> Result<Self, ClientError> {
        let v = HeaderValue::from_str(value).map_err(|_| {
            ClientError::Config(format!("the {name} value contains invalid characters"))
        })?;
        self.headers.insert(name, v);
        Ok(self)
    }

    /// How long one call may take (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How an `https://` Manager is verified (default: the system's roots), and the client
    /// certificate to present, if any. Not used for an `http://` Manager.
    pub fn tls(mut self, tls: &ManagerTls) -> Result<Self, ClientError> {
        self.manager_tls = Some(tls.clone());
        self.tls = None;
        self.configure_tls()
    }

    /// Makes the TLS configuration of the settings given when some URL is `https://`
    /// (only then: the system's roots are read from disk).
    fn configure_tls(mut self) -> Result<Self, ClientError> {
        let https = self.bases.iter().any(|b| b.starts_with("https://"));
        if let (true, None, Some(settings)) = (https, &self.tls, &self.manager_tls) {
            self.tls = Some(settings.config()?);
        }
        Ok(self)
    }

    /// More URLs of the same control plane (Managers sharing one database), tried in
    /// order when the one a call is for cannot be reached: a refused connection, a name
    /// that does not resolve, a failed TLS handshake — before anything was sent. A call
    /// that may have reached a Manager (sent, then no answer) is never sent to another.
    /// The Manager that answers is kept for the following calls; when none can be
    /// reached, [`ClientError::NoneReachable`] names each one tried.
    pub fn fallbacks<S: AsRef<str>>(mut self, urls: &[S]) -> Result<Self, ClientError> {
        for url in urls {
            self.bases.push(checked_base(url.as_ref())?);
        }
        self.configure_tls()
    }

    pub fn build(self) -> Transport {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let https = self.bases.iter().any(|b| b.starts_with("https://"));
        let config = match self.tls {
            Some(config) => config,
            // `https://` without settings: the system's roots. Plain `http://`: never used.
            None if https => {
                let fallback = ManagerTls::system().config();
                fallback.unwrap_or_else(|_| tls::empty_config())
            }
            None => tls::empty_config(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Transport {
            inner: Arc::new(Inner {
                bases: self.bases,
                current: AtomicUsize::new(0),
                headers: self.headers,
                timeout: self.timeout,
                http: Client::builder(TokioExecutor::new()).build(connector),
            }),
        }
    }
}

impl Transport {
    /// `base` is the Manager's address (`https://host:port`, or `http://host:port` for
    /// one started with `--insecure-http`); `token` its bearer token.
    pub fn builder(base: &str, token: &str) -> Result<TransportBuilder, ClientError> {
        let base = checked_base(base)?;
        let mut headers = HeaderMap::new();
        let token = token.trim();
        if !token.is_empty() {
            let auth = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::Config("the token contains invalid characters".into()))?;
            headers.insert(header::AUTHORIZATION, auth);
        }
        Ok(TransportBuilder {
            bases: vec![base],
            headers,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(3),
            manager_tls: None,
            tls: None,
        })
    }

    /// A transport with the defaults.
    pub fn new(base: &str, token: &str) -> Result<Transport, ClientError> {
        Ok(Transport::builder(base, token)?.build())
    }

    /// `https://host:port` (or `http://`), without a trailing slash: of the Manager calls
    /// go to (the one that last answered).
    pub fn base(&self) -> &str {
        self.base_at(self.inner.current.load(Ordering::Relaxed))
    }

    /// Every Manager URL this transport may call, in the order given.
    pub fn bases(&self) -> &[String] {
        &self.inner.bases
    }

    fn base_at(&self, i: usize) -> &str {
        self.inner
            .bases
            .get(i)
            .or(self.inner.bases.first())
            .map_or("", String::as_str)
    }

    /// The same Manager and pool, another token (e.g. a test acting as a viewer).
    pub fn with_token(&self, token: &str) -> Result<Transport, ClientError> {
        let mut headers = self.inner.headers.clone();
        let auth = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::Config("the token contains invalid characters".into()))?;
        headers.insert(header::AUTHORIZATION, auth);
        Ok(Transport {
            inner: Arc::new(Inner {
                bases: self.inner.bases.clone(),
                current: AtomicUsize::new(self.inner.current.load(Ordering::Relaxed)),
                headers,
                timeout: self.inner.timeout,
                http: self.inner.http.clone(),
            }),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Sends one request and returns the answer's head and streaming body, whatever the
    /// status (the head within the call timeout; the body is the caller's). With several
    /// Managers, to the one that last answered, else the next that can be reached (see
    /// [`TransportBuilder::fallbacks`]).
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<http::Response<Incoming>, ClientError> {
        let count = self.inner.bases.len();
        let first = self.inner.current.load(Ordering::Relaxed);
        let mut tried = Vec::new();
        for n in 0..count {
            let i = (first + n) % count;
            match self.open_at(i, method.clone(), path, &body, extra).await {
                // Nothing was sent: the next Manager may take it.
                Err(e @ (ClientError::Unreachable { .. } | ClientError::Tls { .. }))
                    if count > 1 =>
                {
                    tried.push(e);
                }
                // Answered, or reached (an answer lost is never asked of another).
                other => {
                    self.inner.current.store(i, Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(ClientError::NoneReachable { tried })
    }

    /// [`Transport::open`] to the Manager at `bases[i]`.
    async fn open_at(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: &Bytes,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<http::Response<Incoming>, ClientError> {
        let base = self.base_at(i);
        let url = format!("{base}{path}");
        let mut req = Request::builder().uri(&url);
        for (name, value) in &self.inner.headers {
            req = req.header(name, value);
        }
        for (name, value) in extra {
            req = req.header(name, value);
        }
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .method(method.clone())
            .body(Full::new(body.clone()))
            .map_err(|e| ClientError::Config(format!("bad request to {url}: {e}")))?;
        let after = self.inner.timeout;
        match tokio::time::timeout(after, self.inner.http.request(req)).await {
            Err(_) => Err(ClientError::Timeout { method, url, after }),
            // Connecting failed: nothing was sent.
            Ok(Err(e)) if e.is_connect() => Err(match tls::tls_failure(&e) {
                Some(reason) => ClientError::Tls {
                    base: base.to_string(),
                    reason,
                },
                None => ClientError::Unreachable {
                    base: base.to_string(),
                    reason: error_chain(&e),
                },
            }),
            // Connected, and the connection broke before the answer's head.
            Ok(Err(e)) => Err(ClientError::NoAnswer {
                method,
                url,
                reason: error_chain(&e),
            }),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// One call, its whole answer whatever the status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Reply, ClientError> {
        self.send_with(method, path, body, &[]).await
    }

    /// [`Transport::send`] with more headers (e.g. a test's malformed `Authorization` on a
    /// transport built without a token).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Reply, ClientError> {
        let bytes = match body {
            Some(b) => Bytes::from(
                serde_json::to_vec(b)
                    .map_err(|e| ClientError::Config(format!("cannot encode the request: {e}")))?,
            ),
            None => Bytes::new(),
        };
        let resp = self.open(method.clone(), path, bytes, extra).await?;
        let status = resp.status();
        let url = self.url(path);
        let after = self.inner.timeout;
        let body = match tokio::time::timeout(after, resp.into_body().collect()).await {
            Err(_) => return Err(ClientError::Timeout { method, url, after }),
            Ok(Err(e)) => {
                return Err(ClientError::NoAnswer {
                    method,
                    url,
                    reason: error_chain(&e),
                });
            }
            Ok(Ok(b)) => b.to_bytes(),
        };
        Ok(Reply { status, body })
    }

    /// One call that must succeed: the answer decoded as `T` (`()` for an empty answer),
    /// or the Manager's error.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let reply = self.send(method, path, body).await?;
        self.decode(path, reply)
    }

    /// `reply` as `T` when it is a success, else the Manager's error.
    pub fn decode<T: DeserializeOwned>(&self, path: &str, reply: Reply) -> Result<T, ClientError> {
        let url = self.url(path);
        if !reply.status.is_success() {
            return Err(ClientError::Api(Box::new(ApiFailure {
                status: reply.status.as_u16(),
                url,
                path: path.to_string(),
                body: error_body(&reply.body),
            })));
        }
        let bytes: &[u8] = if reply.body.is_empty() {
            b"null"
        } else {
            &reply.body
        };
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }
}

/// `base` as a Manager URL (`https://host:port` or `http://host:port`), without a
/// trailing slash; an error naming `--manager` otherwise.
fn checked_base(base: &str) -> Result<String, ClientError> {
    let base = base.trim().trim_end_matches('/').to_string();
    let expected = || {
        ClientError::Config(format!(
            "--manager {base:?}: expected https://host:port (or http://host:port)"
        ))
    };
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .ok_or_else(expected)?;
    if rest.is_empty() || rest.contains('/') {
        return Err(expected());
    }
    Ok(base)
}

/// The Manager's error body; a plain-text answer (axum's own rejections) becomes code
/// `error` with the text as its message.
fn error_body(body: &[u8]) -> ErrorBody {
    serde_json::from_slice(body).unwrap_or_else(|_| ErrorBody {
        code: ErrorCode::Other("error".into()),
        message: String::from_utf8_lossy(body).trim().to_string(),
        details: Vec::new(),
    })
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::Method;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::{ClientError, Transport};

    /// How a test Manager treats each request it reads.
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Answers `200 {}`.
        Answer,
        /// Reads the request, then closes the connection without an answer.
        Swallow,
    }

    /// A Manager stand-in on a port of its own: its URL and how many requests it read.
    async fn manager(behaviour: Behaviour) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    while read_request(&mut conn).await {
                        count.fetch_add(1, Ordering::SeqCst);
                        match behaviour {
                            Behaviour::Answer => {
                                let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                                if conn.write_all(answer.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            Behaviour::Swallow => return,
                        }
                    }
                });
            }
        });
        (url, requests)
    }

    /// Reads one request (head and `content-length` body); false at the end of the
    /// connection.
    async fn read_request(conn: &mut tokio::net::TcpStream) -> bool {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte).await {
                Ok(1) => buf.push(byte[0]),
                _ => return false,
            }
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.is_ok()
    }

    /// A URL nothing listens on (a port the system gave, then closed).
    async fn dead() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    fn transport(urls: &[String]) -> Transport {
        Transport::builder(&urls[0], "t")
            .unwrap()
            .fallbacks(&urls[1..])
            .unwrap()
            .build()
    }

    #[tokio::test]
    async fn a_call_goes_to_the_next_manager_and_stays_with_the_one_that_answered() {
        let (b, to_b) = manager(Behaviour::Answer).await;
        let (c, to_c) = manager(Behaviour::Answer).await;
        let t = transport(&[dead().await, b.clone(), c]);
        for _ in 0..3 {
            t.call::<serde_json::Value>(Method::GET, "/v1/envs", None::<&()>)
                .await
                .unwrap();
        }
        assert_eq!(t.base(), b);
        assert_eq!(to_b.load(Ordering::SeqCst), 3);
        assert_eq!(
            to_c.load(Ordering::SeqCst),
            0,
            "the one that answered is kept"
        );
    }

    #[tokio::test]
    async fn a_request_that_reached_a_manager_is_never_sent_to_another() {
        let (a, to_a) = manager(Behaviour::Swallow).await;
        let (b, to_b) = manager(Behaviour::Answer).await;
        let t = transport(&[a.clone(), b]);
        let e = t
            .call::<serde_json::Value>(Method::POST, "/v1/envs/dev/apply", Some(&"{}"))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::NoAnswer { .. }), "{e:?}");
        assert!(e.outcome_unknown());
        assert_eq!(to_a.load(Ordering::SeqCst), 1);
        assert_eq!(to_b.load(Ordering::SeqCst), 0, "not replayed elsewhere");
        assert_eq!(t.base(), a);
    }

    #[tokio::test]
    async fn when_none_can_be_reached_the_error_names_each_one_tried() {
        let urls = [dead().await, dead().await];
        let e = transport(&urls)
            .call::<serde_json::Value>(Method::GET, "/v1/envs", None::<&()>)
            .await
            .unwrap_err();
        let ClientError::NoneReachable { tried } = &e else {
            panic!("{e:?}");
        };
        let bases: Vec<&str> = tried
            .iter()
            .map(|e| match e {
                ClientError::Unreachable { base, .. } => base.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(bases, [urls[0].as_str(), urls[1].as_str()]);
        assert!(e.is_retryable() && !e.outcome_unknown());
        // One URL: the error it always was.
        let e = transport(&urls[..1])
            .call::<serde_json::Value>(Method::GET, "/v1/envs", None::<&()>)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
        // A bad fallback is refused when the client is built, naming it.
        let e = Transport::builder(&urls[0], "t")
            .unwrap()
            .fallbacks(&["ftp://x"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("--manager \"ftp://x\""), "{e}");
    }
}
