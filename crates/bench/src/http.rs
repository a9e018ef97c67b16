//! Reading a Worker's admin `/metrics` (not the Manager's API: that goes through
//! `switchyard_api::AdminClient`), over the same transport.

use std::net::SocketAddr;

use http::Method;
use switchyard_api::Transport;

/// Reads one unlabelled gauge from a Worker's `/metrics`.
pub async fn gauge(admin: SocketAddr, name: &str) -> Option<f64> {
    let transport = Transport::new(&format!("http://{admin}"), "").ok()?;
    let reply = transport
        .send(Method::GET, "/metrics", None::<&()>)
        .await
        .ok()?;
    if !reply.status.is_success() {
        return None;
    }
    let text = String::from_utf8_lossy(&reply.body);
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
