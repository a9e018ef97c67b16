//! systemd's readiness protocol (`sd_notify`), for `Type=notify` units: a Worker says
//! `READY=1` once it serves, and a successor that took its predecessor's sockets says it is
//! now the service's main process (`MAINPID=`, which needs `NotifyAccess=all`), so that
//! systemd follows the handover instead of taking the old process's exit for the
//! service's end. Nothing happens outside systemd (no `NOTIFY_SOCKET`).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Sends `state` to `$NOTIFY_SOCKET` if there is one; a failure is logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| {
        let path = path.as_encoded_bytes();
        match path.strip_prefix(b"@") {
            // An abstract socket (`@name`).
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(state.as_bytes(), &addr)
            }
            None => s.send_to(
                state.as_bytes(),
                std::path::Path::new(std::ffi::OsStr::from_bytes(path)),
            ),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// This process serves: `READY=1` with its pid as the service's main process.
pub fn ready() {
    notify(&format!("READY=1\nMAINPID={}\n", std::process::id()));
}
