//! `switchyard up`, the newcomer's first command, as a process: the embedded Manager and its
//! Workers on ports it picks (port 0), the manifests of `--config` applied through the admin
//! API, every Worker serving them — and the one log line that says where everything is.

#![allow(clippy::unwrap_used)]

mod common;

use common::{get, spawn_up, upstream};

#[test]
fn up_serves_its_config_on_every_worker_on_ports_it_picks() {
    let (_blue, blue) = upstream("blue-7");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("payments.yaml"),
        switchyard_e2e::payments_manifest("blue", blue, ""),
    )
    .unwrap();
    let (_up, fields) = spawn_up(&data, &config, &[]);
    assert_eq!(fields["env"], "dev");
    let manager = fields["manager"].as_str().unwrap();
    assert!(
        manager.starts_with("https://127.0.0.1:") && !manager.ends_with(":0"),
        "{fields}"
    );
    let workers: Vec<std::net::SocketAddr> = fields["workers"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(workers.len(), 2, "{fields}");
    assert_ne!(workers[0], workers[1]);
    for w in workers {
        assert_ne!(w.port(), 0);
        let (status, head, body) = get(w, "/payments/42");
        assert_eq!(status, 200, "{head}{body}");
        assert!(head.contains("x-release: blue"), "{head}");
        assert!(body.contains("blue-7"), "{body}");
    }
    // The admin token it wrote works with its CA.
    assert!(data.join("admin.token").is_file() && data.join("ca.pem").is_file());
}
