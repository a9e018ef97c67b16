//! A Worker process replaced by its successor under load (`switchyard worker upgrade`,
//! SIGUSR2): the listening sockets are handed over, so no connection is refused, no
//! request fails, and a slow request in flight finishes on the old process; a successor
//! that cannot start leaves the old process serving and the command says why.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::traffic::{Load, Pid, Upload, alive, get, status};
use common::{Proc, addr, run, upstream, wait_until};

/// Proxy `p` on `/p` to `up`, with `extra` spec lines.
fn proxy(up: SocketAddr, extra: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1\nkind: Proxy\nmetadata: {{ name: p }}\nspec:\n  routes: [{{ pathPrefix: /p }}]\n  upstream: {{ targets: [{{ url: \"http://{up}\" }}] }}\n{extra}"
    )
}

fn worker(dir: &std::path::Path, up: SocketAddr) -> (Proc, SocketAddr, SocketAddr) {
    worker_with(dir, up, &[])
}

fn worker_with(
    dir: &std::path::Path,
    up: SocketAddr,
    env: &[(&str, &str)],
) -> (Proc, SocketAddr, SocketAddr) {
    let cfg = dir.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("p.yaml"), proxy(up, "")).unwrap();
    let p = Proc::spawn_with(
        &[
            "worker",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--access-log",
            "off",
            "--threads",
            "1",
        ],
        env,
    );
    let fields = p.wait_log("worker listening");
    (p, addr(&fields, "listen"), addr(&fields, "admin"))
}

#[test]
fn a_worker_is_replaced_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, up) = upstream("u1");
    let (old, listen, admin) = worker(dir.path(), up);
    let first = old.child.id();

    let load = Load::start(listen, 4);
    wait_until("the load is running", || load.answered() > 200);
    // A slow request in flight when the handover starts.
    let slow = std::thread::spawn(move || {
        let mut conn = None;
        get(&mut conn, listen, "/p/slow?delay_ms=1500")
    });

    // A 100 MiB upload: half of it sent before the handover, the rest after the successor
    // serves, on the same request to the old process.
    let upload = Upload::start(listen);

    let admin_arg = admin.to_string();
    let (ok, _, err) = run(&["worker", "upgrade", "--admin-listen", &admin_arg], &[]);
    assert!(ok, "{err}");
    let second = status(admin)["pid"].as_u64().unwrap() as u32;
    let _second_guard = Pid(second);
    upload.finish();
    assert_ne!(second, first);
    assert!(
        err.contains(&format!("Worker pid {second} serves")),
        "{err}"
    );

    // The old process finishes the slow request, then exits; load keeps flowing.
    assert_eq!(slow.join().unwrap(), Ok(200), "the slow request");
    let mut old = old;
    wait_until("the old process exits", || {
        old.child.try_wait().unwrap().is_some()
    });
    let after = load.answered();
    wait_until("requests are answered by the successor", || {
        load.answered() > after + 200
    });

    // And again, by signal, from the successor.
    std::process::Command::new("kill")
        .args(["-USR2", &second.to_string()])
        .status()
        .unwrap();
    wait_until("a third process serves", || {
        status(admin)["pid"].as_u64() != Some(u64::from(second))
    });
    let third = status(admin)["pid"].as_u64().unwrap() as u32;
    let _third_guard = Pid(third);
    wait_until("the second process exits", || !alive(second));
    let after = load.answered();
    wait_until("requests are answered by the third process", || {
        load.answered() > after + 200
    });

    let (answered, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(answered > 600, "{answered}");
}

#[test]
fn a_successor_that_cannot_start_leaves_the_worker_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, up) = upstream("u1");
    let (old, listen, admin) = worker(dir.path(), up);
    let load = Load::start(listen, 2);
    wait_until("the load is running", || load.answered() > 100);

    // The successor reads the same files: broken, it exits before it is ready.
    std::fs::write(dir.path().join("cfg/p.yaml"), "kind: Nope\n").unwrap();
    // The running Worker watches the files too: it refuses them and keeps serving.
    let (ok, _, err) = run(
        &["worker", "upgrade", "--admin-listen", &admin.to_string()],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("the handover failed") && err.contains("exited before it was ready"),
        "{err}"
    );
    assert_eq!(
        status(admin)["pid"].as_u64(),
        Some(u64::from(old.child.id()))
    );
    assert_eq!(status(admin)["upgrade"]["state"], "failed");
    let after = load.answered();
    wait_until("the old process still answers", || {
        load.answered() > after + 100
    });
    load.finish_without_failure();
}

#[test]
fn a_worker_following_a_manager_is_replaced_and_its_successor_follows_and_acks() {
    let (_up, up) = upstream("u1");
    let m = common::Manager::with_env("dev");
    let release = |r: &str| {
        vec![proxy(
            up,
            &format!(
                "  policies:\n    - type: headers\n      response: {{ set: {{ x-release: {r} }} }}\n"
            ),
        )]
    };
    let apply = |r: &str| {
        let body = switchyard_api::admin::ApplyRequest {
            manifests: release(r),
            ..Default::default()
        };
        m.block_on(m.api.apply("dev", &body)).unwrap().revision
    };
    assert_eq!(apply("blue"), 1);
    let w = m.worker("dev", "edge-1");
    let load = Load::start(w.listen, 2);
    wait_until("the load is running", || load.answered() > 100);

    let (ok, _, err) = run(
        &["worker", "upgrade", "--admin-listen", &w.admin.to_string()],
        &[],
    );
    assert!(ok, "{err}");
    let successor = status(w.admin)["pid"].as_u64().unwrap() as u32;
    let _guard = Pid(successor);
    assert_ne!(successor, w.proc.child.id());

    // The successor follows the Manager under the same Worker id and ACKs what comes next.
    let revision = apply("green");
    wait_until("the successor serves revision 2", || {
        status(w.admin)["revision"].as_u64() == Some(revision)
    });
    wait_until("edge-1 ACKed revision 2", || {
        m.block_on(m.api.revision("dev", revision))
            .unwrap()
            .reports
            .iter()
            .any(|r| r.worker_id == "edge-1" && r.error.is_none())
    });
    assert!(m.connected("dev", "edge-1"));
    load.finish_without_failure();
}

/// Under systemd (`Type=notify`, `NotifyAccess=all`) the Worker says it is ready, and its
/// successor says it is the service's main process now.
#[test]
fn systemd_is_told_who_the_main_process_is() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    notify.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let next = || {
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let (_up, up) = upstream("u1");
    let (old, _, admin) = worker_with(
        dir.path(),
        up,
        &[("NOTIFY_SOCKET", socket.to_str().unwrap())],
    );
    assert_eq!(next(), format!("READY=1\nMAINPID={}\n", old.child.id()));
    let (ok, _, err) = run(
        &["worker", "upgrade", "--admin-listen", &admin.to_string()],
        &[],
    );
    assert!(ok, "{err}");
    let successor = status(admin)["pid"].as_u64().unwrap() as u32;
    let _guard = Pid(successor);
    assert_eq!(next(), format!("READY=1\nMAINPID={successor}\n"));
}

/// A successor that is not ready in time (its Manager does not answer: the process is
/// stopped) is killed; the old process carries on serving, and says why.
#[test]
fn a_successor_that_is_not_ready_in_time_is_killed_and_the_worker_carries_on() {
    let (_up, up) = upstream("u1");
    let m = common::Manager::with_env("dev");
    apply_proxy(&m, up);
    let token = m.token(&["--role", "worker", "--env", "dev", "--name", "edge-2"]);
    let w = m.spawn_worker_with("dev", &token, Some("edge-2"), &["--handover-timeout", "1s"]);
    let (old, listen, admin) = (w.proc, w.listen, w.admin);
    let load = Load::start(listen, 2);
    wait_until("the load is running", || load.answered() > 100);

    // The Manager stops answering (its socket still accepts): the successor waits on it.
    let manager = m.proc.child.id().to_string();
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &manager])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let (ok, _, err) = run(
        &["worker", "upgrade", "--admin-listen", &admin.to_string()],
        &[],
    );
    signal("-CONT");
    assert!(!ok);
    assert!(err.contains("was not ready within 1s"), "{err}");
    assert_eq!(
        status(admin)["pid"].as_u64(),
        Some(u64::from(old.child.id()))
    );
    let after = load.answered();
    wait_until("the old process still answers", || {
        load.answered() > after + 100
    });
    load.finish_without_failure();
}

/// Applies the plain proxy to `dev`; the revision.
fn apply_proxy(m: &common::Manager, up: SocketAddr) -> u64 {
    let body = switchyard_api::admin::ApplyRequest {
        manifests: vec![proxy(up, "")],
        ..Default::default()
    };
    m.block_on(m.api.apply("dev", &body)).unwrap().revision
}

/// Waits until every Worker of `ids` has its event stream open on `dev`.
fn wait_connected(m: &common::Manager, ids: &[&str]) {
    for id in ids {
        wait_until("the Worker is connected", || m.connected("dev", id));
    }
}

/// The files of a rollout: the proxy and `kind: WorkerSettings` with `threads`.
fn rollout_files(dir: &std::path::Path, up: SocketAddr, threads: u16) -> String {
    std::fs::write(dir.join("proxy.yaml"), proxy(up, "")).unwrap();
    std::fs::write(
        dir.join("settings.yaml"),
        format!(
            "apiVersion: switchyard.dev/v1\nkind: WorkerSettings\nmetadata: {{ name: default }}\n\
             spec: {{ threads: {threads} }}\n"
        ),
    )
    .unwrap();
    dir.to_str().unwrap().to_string()
}

/// Three Workers under load; a restart-required change is refused by `apply` and changes
/// nothing, then `switchyard rollout` commits it and hands each Worker over in turn: every
/// Worker ends up a new process serving and ACKing the rollout's revision, with no failed
/// request and no refused connection on any of them; each step is audited.
#[test]
fn a_rollout_hands_three_workers_over_under_load_without_a_failed_request() {
    let (_up, up) = upstream("u1");
    let m = common::Manager::with_env("dev");
    let files = tempfile::tempdir().unwrap();
    assert_eq!(apply_proxy(&m, up), 1);
    // The "new" binary: a copy of this one, in the directory the Workers take binaries from.
    let binaries = tempfile::tempdir().unwrap();
    let next = binaries.path().join("switchyard-next");
    std::fs::copy(env!("CARGO_BIN_EXE_switchyard"), &next).unwrap();
    let allowed = ["--upgrade-binaries", binaries.path().to_str().unwrap()];
    let workers: Vec<common::Worker> = ["edge-1", "edge-2", "edge-3"]
        .iter()
        .map(|id| {
            let token = m.token(&["--role", "worker", "--env", "dev", "--name", id]);
            m.spawn_worker_with("dev", &token, Some(id), &allowed)
        })
        .collect();
    wait_connected(&m, &["edge-1", "edge-2", "edge-3"]);
    let loads: Vec<Load> = workers.iter().map(|w| Load::start(w.listen, 2)).collect();
    wait_until("the load is running", || {
        loads.iter().all(|l| l.answered() > 50)
    });
    // On edge-1's old process: a slow request and half an upload, in flight when the
    // rollout starts.
    let edge1 = workers[0].listen;
    let slow = std::thread::spawn(move || get(&mut None, edge1, "/p/slow?delay_ms=2000"));
    let upload = Upload::start(edge1);

    let dir = rollout_files(files.path(), up, 1);
    let (code, _, refused) = m.code(&["apply", "--env", "dev", &dir], &[]);
    assert_eq!(code, 1, "{refused}");
    assert!(
        refused.contains("restart-required")
            && refused.contains("switchyard rollout")
            && refused.contains("workersettings/default created"),
        "{refused}"
    );
    assert_eq!(m.revision("dev"), 1, "apply changed nothing");

    let started = std::time::Instant::now();
    let rollout = {
        let (url, ca, admin) = (m.url.clone(), m.ca.clone(), m.admin.clone());
        let (dir, next) = (dir.clone(), next.to_str().unwrap().to_string());
        std::thread::spawn(move || {
            common::run_code(
                &["rollout", "--env", "dev", &dir, "--binary", &next],
                &[
                    ("SWITCHYARD_MANAGER", url.as_str()),
                    ("SWITCHYARD_CA", ca.as_str()),
                    ("SWITCHYARD_TOKEN", admin.as_str()),
                ],
            )
        })
    };
    // edge-1 is handed over while its upload is half-way: the rest goes to the old process.
    let edge1_admin = workers[0].admin;
    wait_until("edge-1 is handed over", || {
        status(edge1_admin)["pid"].as_u64() != Some(u64::from(workers[0].proc.child.id()))
    });
    upload.finish();
    assert_eq!(slow.join().unwrap(), Ok(200), "the slow request");
    let (code, out, err) = rollout.join().unwrap();
    let took = started.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("every Worker (3) serves r2"), "{out}");
    let mut successors = Vec::new();
    for w in &workers {
        let now = status(w.admin);
        let pid = now["pid"].as_u64().unwrap() as u32;
        // Killed when the test ends (not before: the load still runs on them).
        successors.push(Pid(pid));
        assert_ne!(pid, w.proc.child.id(), "a new process serves");
        assert_eq!(now["revision"], 2, "{now}");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(exe, next.canonicalize().unwrap(), "the new binary runs");
    }
    let view = m.block_on(m.api.revision("dev", 2)).unwrap();
    for id in ["edge-1", "edge-2", "edge-3"] {
        assert!(
            view.reports
                .iter()
                .any(|r| r.worker_id == id && r.error.is_none()),
            "{id} ACKed r2: {:?}",
            view.reports
        );
    }
    let shown = m.ok(&["status", "--env", "dev"], &[]);
    assert!(
        shown.contains("r2, succeeded") && shown.contains("edge-3: handed over in"),
        "{shown}"
    );
    let audit = m.json(&["audit", "--env", "dev"]);
    let steps = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "rollout")
        .count();
    // The commit (one record per entity: the proxy is unchanged, so one), the start, three
    // Workers, the end.
    assert!(steps >= 5, "{audit}");
    let mut total = 0;
    for load in loads {
        let (ok, failures) = load.finish();
        total += ok;
        assert!(
            failures.is_empty(),
            "{:?}",
            &failures[..failures.len().min(5)]
        );
    }
    eprintln!("rollout of 3 Workers under load: {total} requests answered, 0 failed, {took:?}");
}

/// A rollout whose second Worker's successor crashes at start (its binary was replaced by
/// a broken one): that Worker carries on serving with no client error, the rollout stops
/// there and says which Worker failed and why, and the third is not touched.
#[test]
fn a_rollout_stops_at_a_worker_whose_successor_crashes() {
    rollout_stops_at_edge_2(
        "#!/bin/sh\necho broken upgrade >&2\nexit 3\n",
        &[],
        "exited before it was ready: exit status: 3",
    );
}

/// The same with a successor that never becomes ready (it hangs): the Worker kills it after
/// its `--handover-timeout` and carries on; the rollout stops there.
#[test]
fn a_rollout_stops_at_a_worker_whose_successor_never_becomes_ready() {
    rollout_stops_at_edge_2(
        "#!/bin/sh\nexec sleep 600\n",
        &["--handover-timeout", "2s"],
        "not ready",
    );
}

/// Three Workers; edge-2 runs from a copy of the binary replaced by `script` once it runs
/// (with `extra` flags). A rollout stops at edge-2 with `reason`, no client of edge-2 sees
/// an error, edge-1 was handed over and edge-3 not touched.
fn rollout_stops_at_edge_2(script: &str, extra: &[&str], reason: &str) {
    let (_up, up) = upstream("u1");
    let m = common::Manager::with_env("dev");
    let files = tempfile::tempdir().unwrap();
    apply_proxy(&m, up);
    // edge-2 runs from a copy of the binary, replaced by a broken one once it runs.
    let copy = files.path().join("switchyard-copy");
    std::fs::copy(env!("CARGO_BIN_EXE_switchyard"), &copy).unwrap();
    let token = |id: &str| m.token(&["--role", "worker", "--env", "dev", "--name", id]);
    let first = m.worker("dev", "edge-1");
    let broken = m.spawn_worker_exe(&copy, "dev", &token("edge-2"), Some("edge-2"), extra);
    let third = m.worker("dev", "edge-3");
    wait_connected(&m, &["edge-1", "edge-2", "edge-3"]);
    std::fs::remove_file(&copy).unwrap();
    std::fs::write(&copy, script).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let load = Load::start(broken.listen, 2);
    wait_until("the load is running", || load.answered() > 50);

    let dir = rollout_files(files.path(), up, 1);
    let (code, stdout, stderr) = m.code(&["rollout", "--env", "dev", &dir], &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("edge-2: FAILED")
            && stdout.contains("handover failed")
            && stdout.contains(reason),
        "{stdout}"
    );
    let now = m.json(&["rollout", "status", "--env", "dev"]);
    assert_eq!(now["state"], "failed", "{now}");
    assert_eq!(now["workers"][0]["state"], "done", "{now}");
    assert_eq!(now["workers"][1]["state"], "failed", "{now}");
    assert_eq!(now["workers"][2]["state"], "waiting", "{now}");
    let _successor = Pid(status(first.admin)["pid"].as_u64().unwrap() as u32);
    assert_eq!(
        status(broken.admin)["pid"].as_u64(),
        Some(u64::from(broken.proc.child.id())),
        "edge-2's old process serves"
    );
    assert_eq!(
        status(third.admin)["pid"].as_u64(),
        Some(u64::from(third.proc.child.id())),
        "edge-3 was not touched"
    );
    assert_eq!(status(third.admin)["revision"], 1);
    let (ok, failures) = load.finish();
    assert!(ok > 0);
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(5)]
    );
}

/// `--max-unavailable 2`: two Workers handed over at once, under load, with no failed
/// request; a rollout without files rolls out the current revision (here: the same
/// binary again, as after a package upgrade) and every Worker is a new process after it.
#[test]
fn a_rollout_without_files_hands_workers_over_two_at_a_time() {
    let (_up, up) = upstream("u1");
    let m = common::Manager::with_env("dev");
    apply_proxy(&m, up);
    let workers: Vec<common::Worker> = ["edge-1", "edge-2"]
        .iter()
        .map(|id| m.worker("dev", id))
        .collect();
    wait_connected(&m, &["edge-1", "edge-2"]);
    let loads: Vec<Load> = workers.iter().map(|w| Load::start(w.listen, 2)).collect();
    wait_until("the load is running", || {
        loads.iter().all(|l| l.answered() > 50)
    });
    let out = m.ok(&["rollout", "--env", "dev", "--max-unavailable", "2"], &[]);
    assert!(out.contains("every Worker (2) serves r1"), "{out}");
    let now = m.json(&["rollout", "status", "--env", "dev"]);
    assert_eq!(
        now["commit"],
        serde_json::Value::Null,
        "nothing committed: {now}"
    );
    let mut successors = Vec::new();
    for w in &workers {
        let pid = status(w.admin)["pid"].as_u64().unwrap() as u32;
        successors.push(Pid(pid));
        assert_ne!(pid, w.proc.child.id());
    }
    assert_eq!(m.revision("dev"), 1);
    for load in loads {
        load.finish_without_failure();
    }
}
