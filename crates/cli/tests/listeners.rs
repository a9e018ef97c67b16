//! `kind: Listener` on Workers that follow a Manager without `--listen`: the environment's
//! listeners are bound, moved under load (hot-with-drain: the new socket bound first, the
//! old one draining) without a failed request, a refused connection or a restart, and
//! removed with their connections told to close; a listener a Worker cannot bind is
//! NACKed and changes nothing there; a listener's settings apply to the connections it
//! accepts next.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::traffic::{Load, Target, Upload, get, listener, status};
use common::{upstream, wait_until};
use switchyard_api::admin::{ApplyRequest, BatchResponse, EntityKey};
use switchyard_config::Kind;

/// Proxy `p` on `/p` to `up`.
fn proxy(up: SocketAddr) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: p }}\nspec:\n  routes: [{{ pathPrefix: /p }}]\n  upstream: {{ targets: [{{ url: \"http://{up}\" }}] }}\n"
    )
}

/// `kind: Listener` `name` with `spec` (YAML flow mapping content).
fn listener_doc(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Listener\nmetadata: {{ name: {name} }}\nspec: {{ {spec} }}\n"
    )
}

fn apply(m: &common::Manager, manifests: Vec<String>, delete: Vec<EntityKey>) -> BatchResponse {
    let body = ApplyRequest {
        manifests,
        delete,
        ..Default::default()
    };
    m.block_on(m.api.apply("dev", &body)).unwrap()
}

/// Waits for `id`'s report on `revision`: `None` for an ACK, the NACK's error otherwise.
fn report(m: &common::Manager, revision: u64, id: &str) -> Option<String> {
    let mut found = None;
    wait_until("the Worker reports on the revision", || {
        found = m
            .block_on(m.api.revision("dev", revision))
            .unwrap()
            .reports
            .into_iter()
            .find(|r| r.worker_id == id)
            .map(|r| r.error);
        found.is_some()
    });
    found.unwrap()
}

/// Under load (keep-alive clients and a client opening a connection per request), with
/// a slow request and a 100 MiB upload in flight, the Worker's listener moves to another
/// address: the new socket serves before the old one stops, the load follows it (new
/// connections go where the test points them once the Worker shows the new address;
/// kept-alive ones are told `Connection: close`), the slow request and the upload finish
/// on the old socket, and nothing fails, is refused or reset; same process throughout.
#[test]
fn a_listener_moves_under_load_without_a_failed_request() {
    let (_up, up) = upstream("u1");
    let m = common::Manager::with_env("dev");
    // The old socket goes on accepting for a while after the move: clients that have not
    // learned the new address yet are served, not refused.
    let edge = |ip: &str| {
        listener_doc(
            "edge",
            &format!("address: {ip}, port: 0, drainAcceptingFor: 60s"),
        )
    };
    let first = apply(&m, vec![proxy(up), edge("127.0.0.1")], vec![]);
    assert_eq!(first.revision, 1);
    let w = m.environment_worker("dev", "edge-1", "edge");
    let pid = status(w.admin)["pid"].as_u64().unwrap();
    let old = w.listen;
    assert_eq!(old.ip().to_string(), "127.0.0.1");

    let target = Target::new(old);
    let load = Load::start_on(&target, 4);
    wait_until("the load is running", || load.answered() > 200);
    let slow = std::thread::spawn(move || {
        let mut conn = None;
        get(&mut conn, old, "/p/slow?delay_ms=1500")
    });
    let upload = Upload::start(old);

    let moved = apply(&m, vec![edge("127.0.0.2")], vec![]);
    assert!(
        serde_json::to_string(&moved.changes)
            .unwrap()
            .contains("\"hot-with-drain\""),
        "{:?}",
        moved.changes
    );
    let mut new = None;
    wait_until("the listener serves on its new address", || {
        new = listener(w.admin, "edge", "serving");
        new.is_some_and(|a| a.ip().to_string() == "127.0.0.2")
    });
    let new = new.unwrap();
    assert_eq!(listener(w.admin, "edge", "draining"), Some(old));
    target.set(new);
    assert_eq!(report(&m, moved.revision, "edge-1"), None, "ACK");

    upload.finish();
    assert_eq!(slow.join().unwrap(), Ok(200), "the slow request");
    // Every kept-alive client was told to close and came back on the new socket.
    let after = load.answered();
    wait_until("the load flows through the new address", || {
        load.answered() > after + 300
    });
    wait_until("no connection is left on the old socket", || {
        status(w.admin)["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["state"] == "draining")
            .all(|l| l["open_connections"] == 0)
    });
    let answered = load.finish_without_failure();
    assert!(answered > 500, "{answered}");
    assert_eq!(status(w.admin)["pid"].as_u64(), Some(pid), "no restart");
}

/// A listener added is bound (hot); one the Worker cannot bind is NACKed with the reason
/// and changes nothing there; one removed stops accepting, and a connection kept alive on
/// it gets `Connection: close` on its next answer instead of being cut.
#[test]
fn listeners_are_added_refused_when_they_cannot_be_bound_and_removed_with_a_drain() {
    let (_up, up) = upstream("u1");
    let m = common::Manager::with_env("dev");
    apply(
        &m,
        vec![
            proxy(up),
            listener_doc("edge", "address: 127.0.0.1, port: 0"),
        ],
        vec![],
    );
    let w = m.environment_worker("dev", "edge-1", "edge");

    // Added: bound and serving, the first listener untouched.
    let added = apply(
        &m,
        vec![listener_doc("second", "address: 127.0.0.1, port: 0")],
        vec![],
    );
    assert_eq!(report(&m, added.revision, "edge-1"), None, "ACK");
    let second = listener(w.admin, "second", "serving").unwrap();
    let mut kept = None;
    assert_eq!(get(&mut kept, second, "/p/a"), Ok(200));
    assert!(kept.is_some(), "kept alive");

    // A port some other process holds: NACKed, nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let refused = apply(
        &m,
        vec![listener_doc(
            "third",
            &format!("address: 127.0.0.1, port: {port}"),
        )],
        vec![],
    );
    let error = report(&m, refused.revision, "edge-1").expect("a NACK");
    assert!(
        error.contains("listener \"third\"") && error.contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert_eq!(status(w.admin)["revision"].as_u64(), Some(added.revision));
    assert_eq!(get(&mut None, w.listen, "/p/a"), Ok(200));

    // Removed (with the impossible one): the kept-alive connection is answered and told
    // to close; the socket stops accepting.
    let removed = apply(
        &m,
        vec![],
        vec![
            EntityKey::new(Kind::Listener, "second"),
            EntityKey::new(Kind::Listener, "third"),
        ],
    );
    assert_eq!(report(&m, removed.revision, "edge-1"), None, "ACK");
    assert_eq!(get(&mut kept, second, "/p/b"), Ok(200));
    assert!(kept.is_none(), "told to close");
    wait_until("the removed listener refuses connections", || {
        TcpStream::connect(second).is_err()
    });
    assert_eq!(get(&mut None, w.listen, "/p/c"), Ok(200));
}

/// A listener's settings apply to the connections it accepts after the change: its own
/// connection limit (a connection past it answered 503 `connection_limit`), and HTTP/2
/// turned off (a prior-knowledge HTTP/2 client gets no HTTP/2), while an open connection
/// keeps what it was accepted with.
#[test]
fn a_listeners_settings_apply_to_the_connections_it_accepts_next() {
    let (_up, up) = upstream("u1");
    let m = common::Manager::with_env("dev");
    apply(
        &m,
        vec![
            proxy(up),
            listener_doc("edge", "address: 127.0.0.1, port: 0"),
        ],
        vec![],
    );
    let w = m.environment_worker("dev", "edge-1", "edge");
    let h2 = |addr: SocketAddr| -> Vec<u8> {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .unwrap();
        // The first 9 bytes (a frame header), or what came before the server closed.
        let mut first = Vec::new();
        s.take(9).read_to_end(&mut first).unwrap();
        first
    };
    // HTTP/2 with prior knowledge: the server's first frame is SETTINGS (type 4).
    assert_eq!(h2(w.listen)[3], 4);
    let mut open = None;
    assert_eq!(get(&mut open, w.listen, "/p/a"), Ok(200));

    let changed = apply(
        &m,
        vec![listener_doc(
            "edge",
            "address: 127.0.0.1, port: 0, http2: false, connections: { max: 2 }",
        )],
        vec![],
    );
    assert!(
        serde_json::to_string(&changed.changes)
            .unwrap()
            .contains("\"class\":\"hot\""),
        "{:?}",
        changed.changes
    );
    assert_eq!(report(&m, changed.revision, "edge-1"), None, "ACK");
    // The same socket (port 0 kept), the new settings.
    assert_eq!(listener(w.admin, "edge", "serving"), Some(w.listen));
    let answer = h2(w.listen);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "no HTTP/2: {answer:?}"
    );
    // The limit counts the connection accepted before the change: once the probes are
    // gone, one is open, one more fits, and the next is refused with a 503 the client can
    // read.
    wait_until("only the kept-alive connection is open", || {
        status(w.admin)["listeners"][0]["open_connections"] == 1
    });
    let mut second = None;
    assert_eq!(get(&mut second, w.listen, "/p/b"), Ok(200));
    let mut third = None;
    assert_eq!(get(&mut third, w.listen, "/p/c"), Ok(503));
    // The connection accepted before the change still works.
    assert_eq!(get(&mut open, w.listen, "/p/d"), Ok(200));
}

/// A Worker bound to its environment's listeners hands them over like any other socket:
/// the successor serves the same addresses (port 0 included: the very sockets, not new
/// ones), and the load sees no failure.
#[test]
fn a_handover_passes_the_environments_listeners_to_the_successor() {
    let (_up, up) = upstream("u1");
    let m = common::Manager::with_env("dev");
    apply(
        &m,
        vec![
            proxy(up),
            listener_doc("edge", "address: 127.0.0.1, port: 0"),
            listener_doc("other", "address: 127.0.0.1, port: 0, http2: false"),
        ],
        vec![],
    );
    let w = m.environment_worker("dev", "edge-1", "edge");
    let other = listener(w.admin, "other", "serving").unwrap();
    let before = status(w.admin)["pid"].as_u64().unwrap();
    let load = Load::start(w.listen, 2);
    let other_load = Load::start(other, 1);
    wait_until("the load is running", || {
        load.answered() > 100 && other_load.answered() > 50
    });

    let (ok, _, err) = common::run(
        &["worker", "upgrade", "--admin-listen", &w.admin.to_string()],
        &[],
    );
    assert!(ok, "{err}");
    let after = status(w.admin)["pid"].as_u64().unwrap();
    let _successor = common::traffic::Pid(u32::try_from(after).unwrap());
    assert_ne!(after, before);
    assert_eq!(listener(w.admin, "edge", "serving"), Some(w.listen));
    assert_eq!(listener(w.admin, "other", "serving"), Some(other));
    let (a, b) = (load.answered(), other_load.answered());
    wait_until("the successor answers on both listeners", || {
        load.answered() > a + 100 && other_load.answered() > b + 50
    });
    load.finish_without_failure();
    other_load.finish_without_failure();
}
