//! Client connections under pressure, through a real Worker: a flood of idle connections
//! at a low connection limit (set with `spec.gateway.connections.max`, so the test does not
//! depend on `ulimit`) sheds the oldest idle ones and new clients are served; with nothing
//! idle to shed, a new connection is refused at once with a 503; connections that send
//! nothing, or stay idle after a request, are closed after `timeouts.idle`.

#![allow(clippy::unwrap_used)]

use switchyard_e2e::raw::read_to_close;
use switchyard_e2e::{
    ConfigDir, Conn, DEADLINE, Harness, RunningWorker, environment_manifest, eventually,
    metric_value, metrics_text, payments_manifest, wait_metric,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(gateway: &str) -> (Harness, ConfigDir, RunningWorker) {
    let h = Harness::upstreams(&["a"]).await;
    let cfg = ConfigDir::new();
    cfg.write("p.yaml", &payments_manifest("blue", h.addr(0), ""));
    cfg.write("env.yaml", &environment_manifest(gateway));
    let w = RunningWorker::start(cfg.path()).await;
    (h, cfg, w)
}

/// Asserts the value of each series in the metrics text `m`.
fn expect(m: &str, series: &[(&str, f64)]) {
    for (name, value) in series {
        assert_eq!(metric_value(m, name), Some(*value), "{name}:\n{m}");
    }
}

/// Waits until the peer closes `s` (EOF or reset), failing after [`DEADLINE`].
async fn closed(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("{what} was not closed"));
}

#[tokio::test]
async fn a_flood_of_idle_connections_sheds_the_oldest_and_new_clients_are_served() {
    let (_h, _cfg, w) = start("    connections: { max: 20 }\n    timeouts: { idle: 1h }").await;
    // Twice the limit, none sending a byte (as the probe with `ulimit -n 1024` did).
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(w.addr).await.unwrap());
        // Each one admitted before the next, so "oldest" is well defined.
        let n = idle.len() as f64;
        wait_metric(w.admin, "switchyard_connections_open", |open| {
            open >= n.min(20.0)
        })
        .await;
    }
    // The first twenty were shed to make room for the next twenty.
    for (i, s) in idle.iter_mut().take(20).enumerate() {
        closed(s, &format!("idle connection {i}")).await;
    }
    // A normal client is served at once (shedding one more idle connection).
    let mut c = Conn::open(w.addr).await.unwrap();
    for i in 0..5 {
        let a = c.get(&format!("/payments/{i}"), &[]).await.unwrap();
        assert_eq!(a.status, 200);
    }
    closed(&mut idle[20], "idle connection 20").await;
    // The later idle ones are still open: nothing was closed that did not have to be.
    idle[39]
        .write_all(
            b"GET /payments/late HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let a = read_to_close(&mut idle[39]).await;
    assert_eq!(a.status, 200, "{}", a.text);

    let m = metrics_text(w.admin).await;
    expect(
        &m,
        &[
            ("switchyard_connections_limit", 20.0),
            ("switchyard_connections_shed_total", 21.0),
            ("switchyard_connections_refused_total", 0.0),
        ],
    );
    wait_metric(w.admin, "switchyard_connections_open", |n| n == 19.0).await;
    let m = metrics_text(w.admin).await;
    // 18 idle raw connections and the keep-alive client between requests.
    expect(&m, &[("switchyard_connections_idle", 19.0)]);
}

#[tokio::test]
async fn with_every_connection_busy_a_new_one_is_refused_at_once_with_a_503() {
    let (h, _cfg, w) = start("    connections: { max: 2 }").await;
    let mut arrivals = h.upstreams[0].hold.arrivals();
    let mut busy = Vec::new();
    for i in 0..2 {
        let mut c = Conn::open(w.addr).await.unwrap();
        busy.push(tokio::spawn(async move {
            c.get(&format!("/payments/held/{i}"), &[("x-hold", "1")])
                .await
        }));
    }
    tokio::time::timeout(DEADLINE, arrivals.wait_for(|n| *n == 2))
        .await
        .unwrap()
        .unwrap();
    // Nothing idle to shed: refused, answered and closed right away (not left queued).
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.write_all(b"GET /payments/x HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await
        .unwrap();
    let a = read_to_close(&mut s).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.json()["error"], "connection_limit");
    assert_eq!(a.header("connection"), Some("close"));
    let m = metrics_text(w.admin).await;
    expect(
        &m,
        &[
            ("switchyard_connections_refused_total", 1.0),
            ("switchyard_connections_open", 2.0),
            ("switchyard_connections_idle", 0.0),
        ],
    );
    // The held requests are unharmed.
    h.upstreams[0].hold.release();
    for b in busy {
        assert_eq!(b.await.unwrap().unwrap().status, 200);
    }
}

#[tokio::test]
async fn connections_that_send_nothing_or_stay_idle_are_closed_after_the_idle_timeout() {
    let (_h, _cfg, w) = start("    timeouts: { idle: 300ms }").await;
    // Not a byte.
    let mut silent = TcpStream::connect(w.addr).await.unwrap();
    // Half a request head, then nothing (slowloris).
    let mut partial = TcpStream::connect(w.addr).await.unwrap();
    partial
        .write_all(b"GET /payments/x HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // A keep-alive client after one request.
    let mut kept = Conn::open(w.addr).await.unwrap();
    assert_eq!(kept.get("/payments/1", &[]).await.unwrap().status, 200);
    closed(&mut silent, "the silent connection").await;
    closed(&mut partial, "the half-sent connection").await;
    eventually("the idle keep-alive connection is closed", || {
        kept.is_closed()
    })
    .await;
    wait_metric(w.admin, "switchyard_connections_open", |n| n == 0.0).await;
}

#[tokio::test]
async fn the_idle_timeout_does_not_cut_a_slow_request() {
    let (_h, _cfg, w) = start("    timeouts: { idle: 200ms }").await;
    let mut c = Conn::open(w.addr).await.unwrap();
    // The upstream takes longer than the idle timeout to answer: the connection is busy,
    // not idle.
    let a = c.get("/payments/slow?delay_ms=600", &[]).await.unwrap();
    assert_eq!(a.status, 200);
}
