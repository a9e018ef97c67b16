//! Nothing an operator can write may panic or wedge a Worker: header edits beyond what the
//! data plane carries are rejected when the configuration is compiled (naming the policy),
//! and whatever is accepted is served. A fuzz of the compile-then-serve path: shapes of
//! `headers` policies and mock responses (counts and sizes around and far beyond the
//! limits, spread over several policies) are each reloaded into a real Worker, then a
//! request is sent through it.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::net::SocketAddr;

use switchyard_e2e::{ConfigDir, Conn, Harness, RunningWorker};
use switchyard_worker::{ConfigSource, ReloadOutcome, WorkerOptions};

/// The limits the engine enforces (`runtime::policy::MAX_ADDED_HEADERS` and
/// `MAX_ADDED_HEADER_BYTES`): what a proxy's policies may add to one message.
const MAX_HEADERS: usize = 64;
const MAX_BYTES: usize = 8 * 1024;

/// One `headers` policy's edits on one side.
#[derive(Debug, Clone)]
struct Edits {
    response: bool,
    add: bool,
    count: usize,
    value_len: usize,
}

/// A configuration to try: the payments proxy with these headers policies, and a mock with
/// this many headers of this size on `/mock`.
#[derive(Debug, Clone)]
struct Shape {
    policies: Vec<Edits>,
    mock: (usize, usize),
}

fn name(policy: usize, add: bool, i: usize) -> String {
    format!("x-h{policy}-{}-{i}", if add { "a" } else { "s" })
}

impl Shape {
    fn yaml(&self, upstream: SocketAddr) -> String {
        let mut y = format!(
            "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: payments }}\nspec:\n  routes: [{{ pathPrefix: /payments }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n  policies:\n"
        );
        for (p, e) in self.policies.iter().enumerate() {
            let side = if e.response { "response" } else { "request" };
            let op = if e.add { "add" } else { "set" };
            if e.count == 0 {
                let _ = writeln!(y, "    - type: headers\n      {side}: {{ {op}: {{}} }}");
                continue;
            }
            let _ = writeln!(y, "    - type: headers\n      {side}:\n        {op}:");
            let value = "v".repeat(e.value_len);
            for i in 0..e.count {
                let _ = writeln!(y, "          {}: \"{value}\"", name(p, e.add, i));
            }
        }
        if self.policies.is_empty() {
            y.push_str("    - type: headers\n      response: { set: { x-base: \"1\" } }\n");
        }
        let _ = write!(
            y,
            "---\napiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: mock }}\nspec:\n  routes: [{{ pathPrefix: /mock }}]\n  upstream:\n    targets: [{{ url: \"http://{upstream}\" }}]\n  policies:\n    - type: mock-response\n      body: mocked\n      headers:\n"
        );
        let value = "m".repeat(self.mock.1);
        for i in 0..self.mock.0 {
            let _ = writeln!(y, "        x-m-{i}: \"{value}\"");
        }
        if self.mock.0 == 0 {
            y.push_str("        x-m-none: \"1\"\n");
        }
        y
    }

    /// (count, bytes) added to requests and to responses.
    fn totals(&self, response: bool) -> (usize, usize) {
        self.policies
            .iter()
            .enumerate()
            .filter(|(_, e)| e.response == response)
            .fold((0, 0), |(c, b), (p, e)| {
                let names: usize = (0..e.count).map(|i| name(p, e.add, i).len()).sum();
                (c + e.count, b + names + e.count * e.value_len)
            })
    }

    fn mock_totals(&self) -> (usize, usize) {
        let (n, len) = self.mock;
        let n = n.max(1);
        let names: usize = (0..n).map(|i| format!("x-m-{i}").len()).sum();
        (n, names + n * len.max(1))
    }

    fn fits(&self) -> bool {
        let ok = |(c, b): (usize, usize)| c <= MAX_HEADERS && b <= MAX_BYTES;
        ok(self.totals(false)) && ok(self.totals(true)) && ok(self.mock_totals())
    }
}

/// xorshift: a fixed sequence of shapes, the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

fn shapes() -> Vec<Shape> {
    let one = |response, add, count, value_len| Shape {
        policies: vec![Edits {
            response,
            add,
            count,
            value_len,
        }],
        mock: (1, 1),
    };
    // The shape, and the edges.
    let mut out = vec![
        one(true, false, 33_000, 1),
        one(true, false, MAX_HEADERS, 1),
        one(true, false, MAX_HEADERS + 1, 1),
        one(false, true, MAX_HEADERS + 1, 1),
        one(true, true, 1, MAX_BYTES),
        one(false, false, 1, 100_000),
        Shape {
            policies: vec![],
            mock: (33_000, 1),
        },
        Shape {
            policies: vec![],
            mock: (2, 6000),
        },
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let counts = [0, 1, 2, 5, 10, 20, 30, 63, 64, 65, 1000];
    let lens = [0, 1, 10, 20, 50, 100, 300, 9000];
    for _ in 0..32 {
        let n = rng.pick(&[1usize, 1, 2, 3, 5]);
        let policies = (0..n)
            .map(|_| Edits {
                response: rng.pick(&[true, false]),
                add: rng.pick(&[true, false]),
                count: rng.pick(&counts),
                value_len: rng.pick(&lens),
            })
            .collect();
        let mock = (rng.pick(&counts), rng.pick(&lens));
        out.push(Shape { policies, mock });
    }
    out
}

fn added(headers: impl Iterator<Item = String>) -> usize {
    headers.filter(|n| n.starts_with("x-h")).count()
}

#[tokio::test]
async fn every_shape_is_rejected_naming_the_policy_or_served() {
    let h = Harness::upstreams(&["a"]).await;
    let cfg = ConfigDir::new();
    let good = Shape {
        policies: vec![],
        mock: (1, 1),
    };
    cfg.write("p.yaml", &good.yaml(h.addr(0)));
    let w = RunningWorker::start_with(WorkerOptions::with_source(ConfigSource::Files {
        path: cfg.path().to_path_buf(),
        watch: false,
    }))
    .await;
    let mut accepted = 0;
    for (i, shape) in shapes().into_iter().enumerate() {
        cfg.write("p.yaml", &shape.yaml(h.addr(0)));
        let handle = w.handle.clone();
        let outcome = tokio::task::spawn_blocking(move || handle.reload())
            .await
            .unwrap();
        match (&outcome, shape.fits()) {
            (ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged { .. }, true) => {
                accepted += 1
            }
            (ReloadOutcome::Rejected { errors, .. }, false) => {
                let text = errors.to_string();
                // Named by the policy, or (a very large shape) refused as a file first.
                let named = text.contains("headers added to one message")
                    && text.contains("spec.policies[");
                assert!(
                    named || text.contains("byte limit for a manifest file"),
                    "shape {i}: {text}"
                );
            }
            (other, fits) => panic!("shape {i} (fits: {fits}) {shape:?}: {other:?}"),
        }
        // Whatever is served (the new set, or the last good one) answers every request.
        let mut c = Conn::open(w.addr).await.unwrap();
        let a = c.get("/payments/x", &[]).await.unwrap();
        assert_eq!(a.status, 200, "shape {i}");
        let m = c.get("/mock", &[]).await.unwrap();
        assert_eq!((m.status, &m.body[..]), (200, &b"mocked"[..]), "shape {i}");
        if shape.fits() {
            let to_client = added(a.headers.keys().map(|k| k.as_str().to_string()));
            let to_upstream = added(
                a.json()["headers"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::clone),
            );
            assert_eq!(to_client, shape.totals(true).0, "shape {i}");
            assert_eq!(to_upstream, shape.totals(false).0, "shape {i}");
        }
    }
    assert!(accepted >= 8, "too few shapes fit: {accepted}");
}
