//! The one HTTP client for the Manager's API. [`Transport`] is the connection pool, the
//! bearer token and the error handling; [`AdminClient`] (operators, the CLI, benches,
//! tests) and [`SyncClient`] (Workers) are typed facades over it.

mod admin;
mod sync;
mod tls;

use std::sync::Arc;
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

/// The connection pool to one Manager, with the token and the headers sent on every call.
/// Cheap to clone (shared pool).
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    headers: HeaderMap,
    timeout: Duration,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Transport")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Transport`]: `Transport::builder(base, token)?.header(..)?.build()`.
pub struct TransportBuilder {
    base: String,
    headers: HeaderMap,
    timeout: Duration,
    connect_timeout: Duration,
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
    /// certificate to present, if any. Ignored for an `http://` Manager.
    pub fn tls(mut self, tls: &ManagerTls) -> Result<Self, ClientError> {
        if self.base.starts_with("https://") {
            self.tls = Some(tls.config()?);
        }
        Ok(self)
    }

    pub fn build(self) -> Transport {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let https = self.base.starts_with("https://");
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
                base: self.base,
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
        let base = base.trim_end_matches('/').to_string();
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
        let mut headers = HeaderMap::new();
        let token = token.trim();
        if !token.is_empty() {
            let auth = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::Config("the token contains invalid characters".into()))?;
            headers.insert(header::AUTHORIZATION, auth);
        }
        Ok(TransportBuilder {
            base,
            headers,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: Duration::from_secs(3),
            tls: None,
        })
    }

    /// A transport with the defaults.
    pub fn new(base: &str, token: &str) -> Result<Transport, ClientError> {
        Ok(Transport::builder(base, token)?.build())
    }

    /// `https://host:port` (or `http://`), without a trailing slash.
    pub fn base(&self) -> &str {
        &self.inner.base
    }

    /// The same Manager and pool, another token (e.g. a test acting as a viewer).
    pub fn with_token(&self, token: &str) -> Result<Transport, ClientError> {
        let mut headers = self.inner.headers.clone();
        let auth = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::Config("the token contains invalid characters".into()))?;
        headers.insert(header::AUTHORIZATION, auth);
        Ok(Transport {
            inner: Arc::new(Inner {
                base: self.inner.base.clone(),
                headers,
                timeout: self.inner.timeout,
                http: self.inner.http.clone(),
            }),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.base)
    }

    /// Sends one request and returns the answer's head and streaming body, whatever the
    /// status (the head within the call timeout; the body is the caller's).
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<http::Response<Incoming>, ClientError> {
        let url = self.url(path);
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
            .body(Full::new(body))
            .map_err(|e| ClientError::Config(format!("bad request to {url}: {e}")))?;
        let after = self.inner.timeout;
        match tokio::time::timeout(after, self.inner.http.request(req)).await {
            Err(_) => Err(ClientError::Timeout { method, url, after }),
            // Connecting failed: nothing was sent.
            Ok(Err(e)) if e.is_connect() => Err(match tls::tls_failure(&e) {
                Some(reason) => ClientError::Tls {
                    base: self.inner.base.clone(),
                    reason,
                },
                None => ClientError::Unreachable {
                    base: self.inner.base.clone(),
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
