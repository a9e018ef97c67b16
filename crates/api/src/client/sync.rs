//! [`SyncClient`]: what a Worker asks of the Manager, for one environment.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderValue, Method};
use hyper::body::Incoming;

use super::{ClientError, ManagerTls, Transport, encode};
use crate::records::EnvInfo;
use crate::sync::{
    ReportBody, SyncPayload, WORKER_ADDRESS_HEADER, WORKER_ID_HEADER, WORKER_INSTANCE_HEADER,
    WORKER_VERSION_HEADER,
};

/// How long one sync call (not the event stream's body) may take.
pub const SYNC_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a Worker of this build says it is: its version and the manifest schemas it reads.
pub fn worker_version() -> String {
    format!(
        "{}; schemas={}; kinds={}",
        env!("CARGO_PKG_VERSION"),
        switchyard_config::manifest::API_VERSION,
        switchyard_config::Kind::ALL
            .map(switchyard_config::Kind::as_str)
            .join(",")
    )
}

/// One Worker's calls for one environment: the revision check, pulls, reports and the
/// notification stream, each naming the Worker (and its traffic address) in headers.
#[derive(Debug, Clone)]
pub struct SyncClient {
    transport: Transport,
    env: String,
}

impl SyncClient {
    pub fn new(
        base: &str,
        token: &str,
        env: &str,
        worker_id: &str,
        address: Option<&str>,
        tls: &ManagerTls,
    ) -> Result<SyncClient, ClientError> {
        Self::for_process(base, token, env, worker_id, address, None, tls)
    }

    /// [`SyncClient::new`] for a Worker process that names itself (`instance`, sent as
    /// `x-switchyard-instance`): the Manager can then address it alone — a rollout asks
    /// exactly that process to hand over.
    pub fn for_process(
        base: &str,
        token: &str,
        env: &str,
        worker_id: &str,
        address: Option<&str>,
        instance: Option<&str>,
        tls: &ManagerTls,
    ) -> Result<SyncClient, ClientError> {
        let mut b = Transport::builder(base, token)?
            .tls(tls)?
            .timeout(SYNC_CALL_TIMEOUT)
            .header(HeaderName::from_static(WORKER_ID_HEADER), worker_id)
            .map_err(|_| ClientError::Config("the worker id contains invalid characters".into()))?;
        if let Some(a) = address {
            b = b.header(HeaderName::from_static(WORKER_ADDRESS_HEADER), a)?;
        }
        if let Some(i) = instance {
            b = b.header(HeaderName::from_static(WORKER_INSTANCE_HEADER), i)?;
        }
        b = b.header(
            HeaderName::from_static(WORKER_VERSION_HEADER),
            &worker_version(),
        )?;
        Ok(SyncClient {
            transport: b.build(),
            env: env.to_string(),
        })
    }

    pub fn env(&self) -> &str {
        &self.env
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/envs/{}{rest}", encode(&self.env))
    }

    /// The environment's current revision.
    pub async fn revision(&self) -> Result<u64, ClientError> {
        let env: EnvInfo = self
            .transport
            .call(Method::GET, &self.path(""), None::<&()>)
            .await?;
        Ok(env.revision)
    }

    /// What changed after `since` (everything when `since` is 0).
    pub async fn pull(&self, since: u64) -> Result<SyncPayload, ClientError> {
        self.transport
            .call(
                Method::GET,
                &self.path(&format!("/sync?since={since}")),
                None::<&()>,
            )
            .await
    }

    /// The whole state at revision `at` (a canary's stable revision).
    pub async fn pull_at(&self, at: u64) -> Result<SyncPayload, ClientError> {
        self.transport
            .call(
                Method::GET,
                &self.path(&format!("/sync?since=0&at={at}")),
                None::<&()>,
            )
            .await
    }

    pub async fn report(&self, report: &ReportBody) -> Result<(), ClientError> {
        self.transport
            .call::<serde_json::Value>(Method::POST, &self.path("/reports"), Some(report))
            .await
            .map(|_| ())
    }

    /// Sends the Worker's running totals (`POST /v1/envs/{env}/stats`).
    pub async fn stats(&self, stats: &crate::sync::StatsBody) -> Result<(), ClientError> {
        self.transport
            .call::<serde_json::Value>(Method::POST, &self.path("/stats"), Some(stats))
            .await
            .map(|_| ())
    }

    /// Opens the notification stream, resuming after `last_event_id`; returns its body.
    pub async fn events(&self, last_event_id: u64) -> Result<Incoming, ClientError> {
        let path = self.path("/events");
        let mut extra = vec![(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        )];
        if let Ok(v) = HeaderValue::from_str(&last_event_id.to_string()) {
            extra.push((HeaderName::from_static("last-event-id"), v));
        }
        let resp = self
            .transport
            .open(Method::GET, &path, Bytes::new(), &extra)
            .await?;
        if resp.status().is_success() {
            return Ok(resp.into_body());
        }
        let status = resp.status();
        let collect = http_body_util::BodyExt::collect(resp.into_body());
        let body = tokio::time::timeout(SYNC_CALL_TIMEOUT, collect)
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(self
            .transport
            .decode::<()>(&path, super::Reply { status, body })
            .err()
            .unwrap_or_else(|| ClientError::Decode {
                url: path,
                reason: "an error status without an error".into(),
            }))
    }
}
