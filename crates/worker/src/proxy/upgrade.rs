//! WebSocket proxying: an HTTP/1.1 `Upgrade: websocket` request, once routed and let
//! through by the route's request-phase policies (auth included: a denied upgrade gets the
//! usual denial), is sent upstream on a **dedicated** HTTP/1.1 connection (never pooled)
//! with `Connection: upgrade` and `Upgrade: websocket` kept. On a `101` both connections
//! are upgraded and messages are relayed both ways until either side closes; any other
//! answer is passed to the client as a normal response.
//!
//! The relay reads frames on both sides (tokio-tungstenite: server role toward the client,
//! client role toward the upstream) so that it can close a WebSocket gracefully, with
//! close code 1001 (going away), when the Worker drains or when the generation it runs on
//! has been replaced for longer than its age limits (`age.rs`). Text, binary, ping, pong
//! and close (code and reason) messages are forwarded as they are. Because the relay
//! re-frames messages, `Sec-WebSocket-Extensions` is removed from the upgrade request (no
//! compression is negotiated), and a message or frame larger than [`MAX_MESSAGE`] ends the
//! WebSocket.
//!
//! The WebSocket keeps its request's [`Completion`] for its whole life: its configuration
//! generation stays pinned, it is counted as a request in flight on its client connection
//! (which stays in the connection table, so a drain waits for it and asks it to close),
//! and its access-log line is written when it ends. Upgrades to anything but `websocket`
//! are ignored (the request is proxied as an ordinary one, as RFC 9110 lets a server do);
//! HTTP/2 extended CONNECT is not offered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::Empty;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use switchyard_engine::runtime::policy::Exchange;
use switchyard_engine::runtime::{Pick, Route, Tried, remove_hop_by_hop};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::body::ResponseBody;
use super::completion::Completion;
use super::error::{GatewayError, UpstreamErrorKind};
use super::{error_response, forward};
use crate::connections::ConnState;
use crate::metrics::StreamKind;
use crate::runtime::{Proxy, ProxyExt};

/// The largest message (and frame) relayed, each way: a larger one ends the WebSocket (both
/// sides get close code 1009, message too big).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Each side's read buffer (grown as a larger message needs, up to [`MAX_MESSAGE`]).
const READ_BUFFER: usize = 4 * 1024;

/// How long each side gets to answer a close before its connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Whether `headers` ask for a WebSocket: `Connection` names `upgrade` and `Upgrade`
/// names `websocket` (tokens, any case, in any of the headers' values).
pub fn wants_websocket(version: Version, method: &Method, headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                // `Upgrade` tokens may carry a version (`websocket/13`).
                let t = t.trim();
                let t = t.split('/').next().unwrap_or(t);
                t.eq_ignore_ascii_case(token)
            })
    };
    version == Version::HTTP_11
        && method == Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

/// The client side's upgrade, when the request is a WebSocket upgrade the connection can
/// carry (taken out of the request's extensions).
pub fn take(parts: &mut http::request::Parts) -> Option<OnUpgrade> {
    if !wants_websocket(parts.version, &parts.method, &parts.headers) {
        return None;
    }
    parts.extensions.remove::<OnUpgrade>()
}

/// A WebSocket upgrade request as policies left it, and where it goes.
pub struct Upgrade<'a> {
    pub proxy: &'a Proxy,
    pub ext: &'a ProxyExt,
    pub route: &'a Route,
    pub uri: &'a Uri,
    /// Hop-by-hop headers already removed, `X-Forwarded-*` set, policies applied.
    pub headers: HeaderMap,
    pub key: u64,
    pub deadline: tokio::time::Instant,
    pub client: OnUpgrade,
    /// The client connection's state: its drain asks the WebSocket to close.
    pub conn: Arc<ConnState>,
}

/// Sends the upgrade upstream and answers the client: a `101` (the relay then runs on a
/// task of its own, holding `done`), the upstream's other answer, or a gateway error.
pub async fn forward(
    up: Upgrade<'_>,
    ex: &Exchange,
    mut done: Completion,
) -> Response<ResponseBody> {
    let upstream = &up.proxy.upstream;
    let slot = match upstream.pick(Tried::default(), up.key, Instant::now()) {
        Pick::Target(slot) => slot,
        Pick::Overloaded => {
            return error_response(GatewayError::Overloaded, Some((up.proxy, ex)), done);
        }
        Pick::Exhausted => {
            let e = GatewayError::Upstream(UpstreamErrorKind::ConnectFailed);
            return error_response(e, Some((up.proxy, ex)), done);
        }
    };
    let t = slot.target();
    done.target = Some(t);
    done.in_flight = Some(slot);
    let (Some(target), Some(pool)) = (upstream.targets.get(t), up.ext.pools.get(t)) else {
        return error_response(
            GatewayError::Internal("no target"),
            Some((up.proxy, ex)),
            done,
        );
    };
    let Some(path) = forward::upstream_path(target, up.route, up.uri) else {
        let e = GatewayError::Internal("cannot build upstream URI");
        return error_response(e, Some((up.proxy, ex)), done);
    };
    let fail = |kind: UpstreamErrorKind, done: Completion| {
        if upstream.report(t, false, Instant::now()) {
            tracing::warn!(proxy = %up.proxy.name, target = %target.url, "upstream target ejected after consecutive failures");
        }
        up.ext.metrics.upstream_errors[kind.index()].inc();
        error_response(GatewayError::Upstream(kind), Some((up.proxy, ex)), done)
    };
    let (io, host) = match tokio::time::timeout_at(up.deadline, pool.connect_dedicated()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(UpstreamErrorKind::from_connect(&e), done),
        Err(_) => return fail(UpstreamErrorKind::Timeout, done),
    };
    let mut headers = up.headers;
    headers.insert(header::HOST, host);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    // The relay re-frames messages: no extension (compression) it could not carry.
    headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = path;
    *req.headers_mut() = headers;
    let sent = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        // The connection's own task: it carries the exchange, then hands the socket over
        // (a 101) or ends with the response body (any other answer).
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended with an error");
            }
        });
        sender.send_request(req).await
    };
    let mut resp = match tokio::time::timeout_at(up.deadline, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return fail(UpstreamErrorKind::classify(&e), done),
        Err(_) => return fail(UpstreamErrorKind::Timeout, done),
    };
    let ok = !resp.status().is_server_error();
    if upstream.report(t, ok, Instant::now()) {
        tracing::warn!(proxy = %up.proxy.name, target = %target.url, "upstream target ejected after consecutive failures");
    }
    done.status = resp.status().as_u16();
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Declined (a 4xx, a redirect…): an ordinary response.
        let (mut parts, body) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        up.proxy.pipeline.on_response(ex, &mut parts.headers);
        let idle = done.runtime.snapshot.gateway().timeouts.upstream_body_idle;
        return Response::from_parts(parts, ResponseBody::unpooled(body, idle, done));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    up.proxy.pipeline.on_response(ex, &mut parts.headers);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let client = up.client;
    let conn = up.conn;
    // Counted before the client hears the 101.
    let live = Live::new(done, conn);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::join!(client, upstream_upgrade) {
            (Ok(c), Ok(u)) => (c, u),
            (c, u) => {
                tracing::debug!(
                    client = c.is_ok(),
                    upstream = u.is_ok(),
                    "WebSocket upgrade did not complete"
                );
                return;
            }
        };
        live.run(client, upstream).await;
    });
    Response::from_parts(parts, ResponseBody::full(Bytes::new(), None))
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// How a relayed WebSocket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Either side closed (or went away).
    Closed,
    /// Its old generation outlived `maxStreamAge` / `--max-pinned-age`.
    Age,
    /// The Worker drains (shutdown, handover, a retired listener).
    Drain,
}

/// A WebSocket being relayed: holds its request's completion (the pinned generation, the
/// connection counted busy, the access-log line) and counts itself in
/// `switchyard_websockets_open` until it ends; then lets the client connection's task
/// know that the connection is free.
struct Live {
    done: Option<Completion>,
    conn: Arc<ConnState>,
}

impl Live {
    fn new(done: Completion, conn: Arc<ConnState>) -> Live {
        done.runtime.obs.metrics.websockets_open.inc();
        conn.take_over();
        Live {
            done: Some(done),
            conn,
        }
    }

    async fn run(mut self, client: Upgraded, upstream: Upgraded) {
        let Some(done) = self.done.as_mut() else {
            return;
        };
        let mut age = done.stream_age();
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE))
            // tungstenite allocates its read buffer up front (128 KiB by default, per
            // side): an idle WebSocket would cost a quarter of a megabyte.
            .read_buffer_size(READ_BUFFER)
            // Each message is written as it is relayed (no batching of a relay's writes).
            .write_buffer_size(0);
        let client =
            WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(config))
                .await;
        let upstream =
            WebSocketStream::from_raw_socket(TokioIo::new(upstream), Role::Client, Some(config))
                .await;
        let ended = relay(client, upstream, &mut age, &self.conn).await;
        if ended == Ended::Age {
            done.closed_for_age(StreamKind::WebSocket);
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done.runtime.obs.metrics.websockets_open.dec();
            // The request ends (its connection no longer counted busy) before the
            // connection's task is told.
            drop(done);
        }
        self.conn.give_back();
    }
}

/// Relays messages both ways until either side closes, the age watch fires, or the client
/// connection is asked to close; in the last two cases both sides get close code 1001.
async fn relay(
    client: Ws,
    upstream: Ws,
    age: &mut super::age::StreamAge,
    conn: &ConnState,
) -> Ended {
    let (mut c_tx, mut c_rx) = client.split();
    let (mut u_tx, mut u_rx) = upstream.split();
    let ended = {
        let up = pump(&mut c_rx, &mut u_tx);
        let down = pump(&mut u_rx, &mut c_tx);
        tokio::pin!(up, down);
        tokio::select! {
            () = &mut up => {
                // The client closed: the upstream's answer to the close goes back to it.
                let _ = tokio::time::timeout(CLOSE_GRACE, down).await;
                return Ended::Closed;
            }
            () = &mut down => {
                let _ = tokio::time::timeout(CLOSE_GRACE, up).await;
                return Ended::Closed;
            }
            () = age.expired() => Ended::Age,
            () = conn.close.notified() => Ended::Drain,
        }
    };
    let away = CloseFrame {
        code: CloseCode::Away,
        reason: match ended {
            Ended::Age => "configuration replaced; reconnect".into(),
            _ => "gateway shutting down; reconnect".into(),
        },
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = c_tx.send(Message::Close(Some(away.clone()))).await;
        let _ = u_tx.send(Message::Close(Some(away))).await;
        // Each side answers the close; what else they send now is dropped.
        tokio::join!(drain(&mut c_rx), drain(&mut u_rx));
    })
    .await;
    ended
}

/// Forwards every message from `rx` to `tx` until `rx` ends, then closes `tx` (a close
/// frame if none was forwarded, and the flush). A message over [`MAX_MESSAGE`] closes `tx`
/// with 1009 (message too big), which the other side's answer carries back to the sender.
async fn pump(rx: &mut SplitStream<Ws>, tx: &mut SplitSink<Ws, Message>) {
    loop {
        match rx.next().await {
            Some(Ok(message)) => {
                if tx.send(message).await.is_err() {
                    break;
                }
            }
            Some(Err(WsError::Capacity(_))) => {
                let too_big = CloseFrame {
                    code: CloseCode::Size,
                    reason: "message too big".into(),
                };
                let _ = tx.send(Message::Close(Some(too_big))).await;
                break;
            }
            Some(Err(_)) | None => break,
        }
    }
    let _ = tx.close().await;
}

/// Reads `rx` to its end.
async fn drain(rx: &mut SplitStream<Ws>) {
    while let Some(Ok(_)) = rx.next().await {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_websocket_upgrade_is_recognised_by_its_tokens() {
        let get = Method::GET;
        let v11 = Version::HTTP_11;
        let ws = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(wants_websocket(v11, &get, &ws));
        let split = headers(&[
            ("connection", "keep-alive"),
            ("connection", "upgrade"),
            ("upgrade", "websocket/13"),
        ]);
        assert!(wants_websocket(v11, &get, &split));
        // Other protocols, other methods, other versions, a missing token: not a WebSocket.
        let h2c = headers(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(!wants_websocket(v11, &get, &h2c));
        assert!(!wants_websocket(v11, &Method::POST, &ws));
        assert!(!wants_websocket(Version::HTTP_2, &get, &ws));
        assert!(!wants_websocket(Version::HTTP_10, &get, &ws));
        let no_connection = headers(&[("upgrade", "websocket")]);
        assert!(!wants_websocket(v11, &get, &no_connection));
        let upgrader = headers(&[("connection", "upgraders"), ("upgrade", "websocket")]);
        assert!(!wants_websocket(v11, &get, &upgrader));
    }
}
