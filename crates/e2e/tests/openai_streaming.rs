//! LLM streaming through the policies of `examples/chat.yaml` (`api-key`, `prompt-firewall`,
//! `upstream-credential` among them), with the official `openai` Python package in
//! streaming mode (`tests/openai/sdk_streaming.py`; ignored by default: it needs python3 and
//! PyPI; `.ci/run` runs it).
//!
//! The upstream is an OpenAI-compatible chat completions endpoint written here: it answers
//! `stream: true` with `text/event-stream` chunks (`data: {chat.completion.chunk}`), then
//! `data: [DONE]`. It sends each chunk only once the client has acknowledged the one before
//! (the client posts the acknowledgement to the upstream directly, not through the
//! Worker): a Worker that held the response back would leave the client with nothing to
//! acknowledge and the upstream with nothing to send, and the test fails. Between an
//! acknowledgement and the next chunk it waits 50 ms, so the client also sees the chunks
//! arrive spread over time. It records the credentials it received: the provider's key
//! that `upstream-credential` injects, never the client's.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use switchyard_e2e::upstream::Fed;
use switchyard_e2e::{ConfigDir, DEADLINE, Harness, RunningWorker, payments_manifest};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// The client's key for the gateway (`examples/chat.yaml`'s demo key for acme) and the
/// provider's key the gateway injects upstream.
const CLIENT_KEY: &str = "demo-acme-key-0001";
const PROVIDER_AUTHORIZATION: &str = "Bearer demo-provider-secret";
/// What the SDK sends as its own bearer token: must not reach the upstream either.
const SDK_API_KEY: &str = "sk-client-side-token-0001";

/// What the upstream saw of one chat completions request.
#[derive(Debug, Clone)]
struct Seen {
    authorization: Vec<String>,
    x_api_key: bool,
    /// Any header value carrying the client's gateway key or its SDK token.
    client_secret_leaked: bool,
    prompt: String,
    stream: bool,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    /// Per completion id, the highest chunk index the client has acknowledged.
    acks: watch::Sender<HashMap<String, usize>>,
    /// Streams that stopped because a chunk was never acknowledged (the client did not get
    /// it in time: held back on the way).
    unacknowledged: Mutex<Vec<String>>,
    next_id: Mutex<u64>,
}

fn chunk(id: &str, delta: serde_json::Value, finish: Option<&str>) -> Bytes {
    let v = serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1_764_892_800u64,
        "model": "echo-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {v}\n\n"))
}

/// Streams the prompt back word by word: chunk 0 the role, one chunk per word, a final
/// chunk with `finish_reason: stop`, then `[DONE]`; each after the previous was
/// acknowledged and 50 ms more.
async fn stream_words(state: Arc<State>, id: String, prompt: String, tx: mpsc::Sender<Bytes>) {
    let mut chunks = vec![chunk(
        &id,
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    )];
    for word in prompt.split_inclusive(' ') {
        chunks.push(chunk(&id, serde_json::json!({"content": word}), None));
    }
    chunks.push(chunk(&id, serde_json::json!({}), Some("stop")));
    let mut acks = state.acks.subscribe();
    for (i, c) in chunks.into_iter().enumerate() {
        if i > 0 {
            let acked = tokio::time::timeout(
                DEADLINE,
                acks.wait_for(|a| a.get(&id).is_some_and(|n| *n + 1 >= i)),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            if !acked {
                state
                    .unacknowledged
                    .lock()
                    .unwrap()
                    .push(format!("{id}: chunk {} never acknowledged", i - 1));
                return;
            }
            // The chunk's production pace (not a synchronisation: the acknowledgement is).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if tx.send(c).await.is_err() {
            return;
        }
    }
    let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<http_body_util::Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(v.to_string())))
        .unwrap()
}

type Answer = Response<http_body_util::Either<Fed, http_body_util::Full<Bytes>>>;

async fn answer(state: Arc<State>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    use http_body_util::Either;
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match (parts.method.as_str(), parts.uri.path()) {
        // The client's acknowledgement of a chunk (sent here directly, not via the Worker).
        ("POST", "/ack") => {
            let id = v["id"].as_str().unwrap_or_default().to_string();
            let index = v["index"].as_u64().unwrap_or_default() as usize;
            state.acks.send_modify(|a| {
                let n = a.entry(id).or_insert(index);
                *n = (*n).max(index);
            });
            Ok(json(StatusCode::OK, serde_json::json!({"ok": true})).map(Either::Right))
        }
        ("POST", "/v1/chat/completions") => {
            let secret_in = |value: &[u8]| {
                let s = String::from_utf8_lossy(value);
                s.contains(CLIENT_KEY) || s.contains(SDK_API_KEY)
            };
            let prompt = v["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let seen = Seen {
                authorization: parts
                    .headers
                    .get_all("authorization")
                    .iter()
                    .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
                    .collect(),
                x_api_key: parts.headers.contains_key("x-api-key"),
                client_secret_leaked: parts.headers.values().any(|v| secret_in(v.as_bytes())),
                prompt: prompt.clone(),
                stream: v["stream"] == true,
            };
            let credentials_right = seen.authorization == [PROVIDER_AUTHORIZATION]
                && !seen.x_api_key
                && !seen.client_secret_leaked;
            let stream = seen.stream;
            state.seen.lock().unwrap().push(seen);
            if !credentials_right {
                return Ok(json(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"error": {"message": "the upstream got the wrong credentials", "type": "upstream_test", "code": "wrong_credentials", "param": null}}),
                )
                .map(Either::Right));
            }
            if !stream {
                return Ok(json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": {"message": "this upstream only streams", "type": "upstream_test", "code": "stream_required", "param": null}}),
                )
                .map(Either::Right));
            }
            let id = {
                let mut n = state.next_id.lock().unwrap();
                *n += 1;
                format!("chatcmpl-{n}")
            };
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(stream_words(state.clone(), id, prompt, tx));
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Either::Left(Fed(Some(rx))))
                .unwrap())
        }
        _ => Ok(json(StatusCode::NOT_FOUND, serde_json::json!({"error": "no"})).map(Either::Right)),
    }
}

/// The OpenAI-compatible upstream on port 0, serving HTTP/1.1 as long as the test runs.
async fn upstream() -> (SocketAddr, Arc<State>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(State::default());
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let state = shared.clone();
            let svc = service_fn(move |req| answer(state.clone(), req));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (addr, state)
}

/// `examples/chat.yaml` with its upstream at `upstream`, beside a payments proxy.
async fn worker(upstream: SocketAddr, other: SocketAddr) -> (ConfigDir, RunningWorker) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chat.yaml");
    let chat = std::fs::read_to_string(example)
        .unwrap()
        .replace("127.0.0.1:18082", &upstream.to_string());
    for policy in [
        "type: api-key",
        "type: prompt-firewall",
        "type: upstream-credential",
    ] {
        assert!(chat.contains(policy), "examples/chat.yaml lost {policy}");
    }
    let cfg = ConfigDir::new();
    cfg.write("chat.yaml", &chat);
    cfg.write("p.yaml", &payments_manifest("blue", other, ""));
    let w = RunningWorker::start(cfg.path()).await;
    (cfg, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with venv and PyPI (the official openai package); run by .ci/run"]
async fn openai_sdk_streams_a_chat_completion_through_the_policies() {
    let h = Harness::upstreams(&["a"]).await;
    let (llm, state) = upstream().await;
    let (_cfg, w) = worker(llm, h.addr(0)).await;
    let venv = tempfile::tempdir().unwrap();
    let dir = venv.path().to_str().unwrap().to_string();
    let (ok, text) = run("python3", &["-m", "venv", &dir]).await;
    assert!(ok, "python3 -m venv: {text}");
    let bin = venv.path().join("bin");
    let pip = bin.join("pip");
    let (ok, text) = run(pip.to_str().unwrap(), &["install", "--quiet", "openai"]).await;
    assert!(ok, "pip install openai: {text}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai/sdk_streaming.py");
    let python = bin.join("python");
    let gateway = format!("http://{}", w.addr);
    let direct = format!("http://{llm}");
    let (ok, text) = run(
        python.to_str().unwrap(),
        &[
            script.to_str().unwrap(),
            &gateway,
            &direct,
            CLIENT_KEY,
            SDK_API_KEY,
        ],
    )
    .await;
    eprintln!("{text}");
    assert!(ok, "{text}");
    assert!(text.contains("5 passed, 0 failed"), "{text}");

    // What the upstream saw: only the prompts the firewall let through (the script streams
    // two), each a streaming request with the provider's credential alone.
    let unacknowledged = state.unacknowledged.lock().unwrap().clone();
    assert!(unacknowledged.is_empty(), "{unacknowledged:?}");
    let seen = state.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(s.authorization, [PROVIDER_AUTHORIZATION], "{s:?}");
        assert!(!s.x_api_key, "the client's key reached the upstream: {s:?}");
        assert!(
            !s.client_secret_leaked,
            "a client secret reached the upstream"
        );
        assert!(s.stream, "{s:?}");
        assert!(
            !s.prompt.to_lowercase().contains("ignore previous"),
            "a denied prompt reached the upstream"
        );
    }
}

/// Runs `program` off the async threads (the Worker keeps serving); its success and output.
async fn run(program: &str, args: &[&str]) -> (bool, String) {
    let program = program.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(&program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .unwrap()
}
