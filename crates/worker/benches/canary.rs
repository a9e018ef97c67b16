//! What a canary adds to each request: the choice of its generation (`Split::picks_canary`),
//! by a random draw, by a hash of a header, by a hash of the client's address. Everything
//! else a request does is the same on either generation. `cargo bench -p switchyard-worker
//! --bench canary`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName};
use switchyard_worker::canary::{Split, SplitKey};

fn choice(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-user-id",
        "user-4f1c2a9e-7d3b".parse().expect("a header value"),
    );
    headers.insert(
        "accept",
        "application/json".parse().expect("a header value"),
    );
    headers.insert("user-agent", "curl/8.5.0".parse().expect("a header value"));
    let client = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let splits = [
        ("random", Split::new(50_000, SplitKey::Random)),
        (
            "header",
            Split::new(
                50_000,
                SplitKey::Header(HeaderName::from_static("x-user-id")),
            ),
        ),
        ("client-ip", Split::new(50_000, SplitKey::ClientIp)),
    ];
    for (name, split) in splits {
        c.bench_function(&format!("canary choice by {name}"), |b| {
            b.iter(|| black_box(&split).picks_canary(black_box(&headers), black_box(client)));
        });
    }
}

criterion_group!(benches, choice);
criterion_main!(benches);
