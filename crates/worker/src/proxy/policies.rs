//! The request phase of a proxy's pipeline, run by the Worker: each policy in order, with
//! the help some need — password hashes verified on the blocking pool (`basic-auth`), the
//! body read (`prompt-firewall`, bounded by its limit and the request deadline) or limited
//! as it streams (`request-size`).

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::BodyExt;
use switchyard_engine::runtime::Pipeline;
use switchyard_engine::runtime::policy::{
    Exchange, Reply, RequestView, Step, Verdict, request_size,
};

use switchyard_config::manifest::PromptFirewallSpec;
use switchyard_engine::tls::ClientIdentity;

use super::body::{ClientBody, ClientBodyError, ClientStream};

/// What the request phase decided.
pub enum Outcome {
    /// Go upstream with this body.
    Forward(ClientBody),
    /// Answer with this; `policy` is the type of the policy that answered.
    Reply { reply: Reply, policy: &'static str },
}

/// The body as far as policies have read it.
enum Held {
    Stream(ClientStream),
    Whole(Bytes),
    /// Read in part (more than an inspection limit), then streamed.
    Partial(Bytes, ClientStream),
}

/// The parts of a request the request phase may read and edit (the body is passed apart,
/// as policies may read or limit it).
pub struct RequestParts<'a> {
    pub method: &'a Method,
    pub uri: &'a mut Uri,
    pub headers: &'a mut HeaderMap,
    pub peer: IpAddr,
    /// The client certificate the connection's TLS handshake verified.
    pub client_cert: Option<&'a ClientIdentity>,
}

pub async fn request_phase(
    pipeline: &Pipeline,
    parts: RequestParts<'_>,
    body: ClientStream,
    ex: &mut Exchange,
    deadline: tokio::time::Instant,
) -> Outcome {
    let now = Instant::now();
    let wall = SystemTime::now();
    let mut held = Held::Stream(body);
    let mut limit: Option<u64> = None;
    for policy in &pipeline.policies {
        let mut view = RequestView {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            peer: parts.peer,
            client_cert: parts.client_cert,
        };
        let verdict = match policy.on_request(&mut view, ex, now, wall) {
            Step::Done(v) => v,
            Step::LimitBody(max) => {
                limit = Some(limit.map_or(max, |l| l.min(max)));
                Verdict::Continue
            }
            Step::VerifyPassword {
                policy: p,
                username,
                password,
            } => {
                let task = p.verify_task(username.clone(), password);
                let ok = tokio::task::spawn_blocking(task).await.unwrap_or(false);
                p.finish(&username, ok, ex)
            }
            Step::InspectBody(p) => {
                let (next, verdict) = inspect(held, p, limit, deadline).await;
                held = next;
                verdict
            }
        };
        if let Verdict::Reply(reply) = verdict {
            return Outcome::Reply {
                reply,
                policy: policy.type_name(),
            };
        }
    }
    let body = match held {
        Held::Stream(b) => ClientBody::streamed(b),
        Held::Whole(b) => ClientBody::buffered(b),
        Held::Partial(prefix, rest) => ClientBody::prefixed(prefix, rest),
    };
    Outcome::Forward(match limit {
        Some(max) => body.limit(max),
        None => body,
    })
}

/// Reads the body (up to the firewall's limit) and lets the firewall judge it.
async fn inspect(
    held: Held,
    firewall: &switchyard_engine::runtime::policy::prompt_firewall::PromptFirewallPolicy,
    size_limit: Option<u64>,
    deadline: tokio::time::Instant,
) -> (Held, Verdict) {
    let mut stream = match held {
        Held::Whole(bytes) => {
            let verdict = if bytes.len() as u64 > firewall.max_body_bytes {
                firewall.oversized()
            } else {
                firewall.inspect(&bytes)
            };
            return (Held::Whole(bytes), verdict);
        }
        partial @ Held::Partial(..) => {
            let verdict = firewall.oversized();
            return (partial, verdict);
        }
        Held::Stream(s) => s,
    };
    let read_max = size_limit.map_or(firewall.max_body_bytes, |l| l.min(firewall.max_body_bytes));
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, stream.frame()).await {
            Err(_) => {
                let reply = Reply::deny(
                    StatusCode::REQUEST_TIMEOUT,
                    "client_body_timeout",
                    PromptFirewallSpec::TYPE,
                    "the request body did not arrive in time",
                );
                return (Held::Whole(Bytes::new()), Verdict::Reply(reply));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                let reply = match super::body::client_body_error(&*e) {
                    Some(ClientBodyError::IdleTimeout) => Reply::deny(
                        StatusCode::REQUEST_TIMEOUT,
                        "client_body_timeout",
                        PromptFirewallSpec::TYPE,
                        "the request body stalled (no byte within requestBodyIdle)",
                    ),
                    _ => Reply::deny(
                        StatusCode::BAD_REQUEST,
                        "client_body_error",
                        PromptFirewallSpec::TYPE,
                        "the request body could not be read",
                    ),
                };
                return (Held::Whole(Bytes::new()), Verdict::Reply(reply));
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        if buf.len() as u64 > read_max {
            if let Some(l) = size_limit
                && buf.len() as u64 > l
            {
                return (
                    Held::Whole(Bytes::new()),
                    Verdict::Reply(request_size::too_large(l)),
                );
            }
            let verdict = firewall.oversized();
            return (Held::Partial(buf.freeze(), stream), verdict);
        }
    }
    let bytes = buf.freeze();
    let verdict = firewall.inspect(&bytes);
    (Held::Whole(bytes), verdict)
}
