//! The Worker's HTTP client for the Manager API.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use switchyard_api::sync::{ReportBody, SyncPayload, WORKER_ADDRESS_HEADER, WORKER_ID_HEADER};

use super::ManagedOptions;

/// How long one API call (not the event stream) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the Manager at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the Manager answered {status} to {url}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
    #[error("invalid Manager setting: {0}")]
    Config(String),
}

pub struct ManagerClient {
    base: String,
    env: String,
    auth: HeaderValue,
    worker_id: HeaderValue,
    address: Option<HeaderValue>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ManagerClient {
    pub fn new(opts: &ManagedOptions) -> Result<ManagerClient, ClientError> {
        let base = opts.manager.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ClientError::Config(format!(
                "--manager {base:?}: expected http://host:port"
            )));
        }
        let auth = HeaderValue::from_str(&format!("Bearer {}", opts.token))
            .map_err(|_| ClientError::Config("the token contains invalid characters".into()))?;
        let worker_id = HeaderValue::from_str(&opts.worker_id)
            .map_err(|_| ClientError::Config("the worker id contains invalid characters".into()))?;
        let address = opts
            .address
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok());
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        Ok(ManagerClient {
            base,
            env: opts.env.clone(),
            auth,
            worker_id,
            address,
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/envs/{}{path}", self.base, self.env)
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut b = Request::builder()
            .method(method)
            .uri(url)
            .header(header::AUTHORIZATION, self.auth.clone())
            .header(WORKER_ID_HEADER, self.worker_id.clone());
        if let Some(a) = &self.address {
            b = b.header(WORKER_ADDRESS_HEADER, a.clone());
        }
        if !body.is_empty() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(body))
            .map_err(|e| ClientError::Config(format!("bad request to {url}: {e}")))
    }

    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        url: &str,
    ) -> Result<http::Response<Incoming>, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = tokio::time::timeout(CALL_TIMEOUT, resp.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(ClientError::Status {
            url: url.to_string(),
            status,
            body,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Option<T>, ClientError> {
        let url = self.url(path);
        let req = self.request(method, &url, body)?;
        let fut = async {
            let resp = self.send(req, &url).await?;
            if resp.status() == StatusCode::NO_CONTENT {
                return Ok(None);
            }
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ClientError::Decode {
                    url: url.clone(),
                    reason: e.to_string(),
                })
        };
        tokio::time::timeout(CALL_TIMEOUT, fut)
            .await
            .map_err(|_| ClientError::Unreachable {
                url: url.clone(),
                reason: format!("no answer within {CALL_TIMEOUT:?}"),
            })?
    }

    /// The environment's current revision.
    pub async fn revision(&self) -> Result<u64, ClientError> {
        #[derive(serde::Deserialize)]
        struct Env {
            revision: u64,
        }
        let env: Option<Env> = self.call(Method::GET, "", Bytes::new()).await?;
        env.map(|e| e.revision).ok_or_else(|| ClientError::Decode {
            url: self.url(""),
            reason: "empty answer".into(),
        })
    }

    /// What changed after `since` (everything when `since` is 0).
    pub async fn pull(&self, since: u64) -> Result<SyncPayload, ClientError> {
        let path = format!("/sync?since={since}");
        self.call(Method::GET, &path, Bytes::new())
            .await?
            .ok_or_else(|| ClientError::Decode {
                url: self.url(&path),
                reason: "empty answer".into(),
            })
    }

    pub async fn report(&self, report: &ReportBody) -> Result<(), ClientError> {
        let body = serde_json::to_vec(report).map_err(|e| ClientError::Config(e.to_string()))?;
        self.call::<serde_json::Value>(Method::POST, "/reports", body.into())
            .await
            .map(|_| ())
    }

    /// Opens the notification stream; returns its body.
    pub async fn events(&self, last_event_id: u64) -> Result<Incoming, ClientError> {
        let url = self.url("/events");
        let mut req = self.request(Method::GET, &url, Bytes::new())?;
        req.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        if let Ok(v) = HeaderValue::from_str(&last_event_id.to_string()) {
            req.headers_mut().insert("last-event-id", v);
        }
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.send(req, &url))
            .await
            .map_err(|_| ClientError::Unreachable {
                url: url.clone(),
                reason: "no answer".into(),
            })??;
        Ok(resp.into_body())
    }
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
