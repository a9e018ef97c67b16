//! Per-request cost of the request phase: no policies, the realistic pipeline the policies
//! issue names (api-key + rate-limit + headers + prompt-firewall on a 2 KB chat body), and
//! each of those policies alone. `cargo bench -p switchyard-engine --bench pipeline`.

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Uri};
use switchyard_config::parse_str;
use switchyard_engine::runtime::policy::{Exchange, Policy, RequestView, Step, Verdict};
use switchyard_engine::{Snapshot, compile};

const CONFIG: &str = r#"apiVersion: switchyard.dev/v1
kind: Credential
metadata: { name: clients }
spec:
  type: api-keys
  keys:
    - { consumer: acme, key: "acme-live-key-0001" }
    - { consumer: globex, key: "globex-live-key-0001" }
---
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: plain }
spec:
  routes: [{ pathPrefix: /plain }]
  upstream: { targets: [{ url: "http://127.0.0.1:9" }] }
---
apiVersion: switchyard.dev/v1
kind: Proxy
metadata: { name: chat }
spec:
  routes: [{ pathPrefix: /v1/chat }]
  upstream: { targets: [{ url: "http://127.0.0.1:9" }] }
  policies:
    - type: api-key
      credentials: [clients]
    - type: rate-limit
      key: consumer
      limit: 1000000000
      per: 1s
    - type: headers
      request: { set: { x-gateway: switchyard } }
      response: { set: { x-release: blue } }
    - type: prompt-firewall
      rules:
        - { name: ignore-previous, pattern: "ignore (all )?previous instructions", regex: true, caseInsensitive: true }
        - { name: no-secrets, pattern: "BEGIN PRIVATE KEY" }
        - { name: no-dan, pattern: "dan mode", caseInsensitive: true }
"#;

/// A ~2 KB OpenAI-style chat body that matches no rule.
fn chat_body() -> Vec<u8> {
    let sentence = "Summarise the quarterly figures for the board and keep it short. ";
    let user = sentence.repeat(30);
    let body = serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            { "role": "system", "content": "You are a helpful assistant for finance teams." },
            { "role": "user", "content": user },
        ],
        "temperature": 0.2,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn snapshot() -> Snapshot {
    let docs = parse_str("bench.yaml".into(), CONFIG).unwrap_or_default();
    compile(&docs, None)
        .map(|c| c.snapshot)
        .unwrap_or_else(|e| panic!("bench config: {e}"))
}

/// The request phase as the Worker runs it (the body inspection is inline here).
fn run(policies: &[Policy], headers: &HeaderMap, body: &[u8]) -> bool {
    let mut headers = headers.clone();
    let mut uri = Uri::from_static("/v1/chat/completions");
    let mut ex = Exchange::default();
    let now = Instant::now();
    let wall = SystemTime::now();
    for p in policies {
        let mut view = RequestView {
            method: &Method::POST,
            uri: &mut uri,
            headers: &mut headers,
            peer: [127, 0, 0, 1].into(),
            client_cert: None,
        };
        let verdict = match p.on_request(&mut view, &mut ex, now, wall) {
            Step::Done(v) => v,
            Step::InspectBody(f) => f.inspect(body),
            Step::LimitBody(_) => Verdict::Continue,
            Step::VerifyPassword { .. } => Verdict::Continue,
        };
        if let Verdict::Reply(_) = verdict {
            return false;
        }
    }
    let mut response = HeaderMap::new();
    for p in policies {
        if let Policy::Headers(h) = p {
            h.response.apply(&mut response);
        }
    }
    black_box(&response);
    true
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let body = chat_body();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-api-key", HeaderValue::from_static("acme-live-key-0001"));
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    let plain = &snap
        .proxy("plain")
        .map(|p| &p.pipeline.policies[..])
        .unwrap_or(&[]);
    let chat = &snap
        .proxy("chat")
        .map(|p| &p.pipeline.policies[..])
        .unwrap_or(&[]);
    assert!(
        run(chat, &headers, &body),
        "the realistic pipeline must let the request through"
    );

    let mut g = c.benchmark_group("request_phase");
    g.bench_function("no policies", |b| {
        b.iter(|| run(black_box(plain), &headers, &body))
    });
    g.bench_function(
        "api-key + rate-limit + headers + prompt-firewall (2 KB chat body)",
        |b| b.iter(|| run(black_box(chat), &headers, black_box(&body))),
    );
    for (i, name) in ["api-key", "rate-limit", "headers", "prompt-firewall"]
        .iter()
        .enumerate()
    {
        let one = &chat[i..=i];
        // rate-limit keys on the consumer api-key found: run api-key before it, untimed
        // differences aside (the api-key cost is shown on its own line).
        let policies = if *name == "rate-limit" {
            &chat[..=i]
        } else {
            one
        };
        g.bench_function(*name, |b| {
            b.iter(|| run(black_box(policies), &headers, black_box(&body)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
