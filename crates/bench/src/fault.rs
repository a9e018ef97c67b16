//! Fault injection for the benches and the tests that prove them: a TCP link between a
//! Worker and its Manager that can be cut, the way a network partition cuts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A cuttable TCP forwarder to `target`, listening on a port of its own on loopback. It
/// exists so that a bench (`bench swap --cut-worker`) and the e2e tests can lose a
/// Worker's notifications, pulls and reports mid-run without touching either process.
pub struct Link {
    /// Where to connect instead of `target`.
    pub addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    /// Bumped to close every open connection.
    cut: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl Link {
    /// Starts forwarding every connection made to [`Link::addr`] to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Link> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let blocked = Arc::new(AtomicBool::new(false));
        let (cut, cut_rx) = watch::channel(0u64);
        let b = blocked.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                // Seen before `blocked` is read: a cut between the two (which sets
                // `blocked` before it bumps) is then either seen blocked here or noticed
                // by the connection's task, never missed.
                let mut cut_rx = cut_rx.clone();
                cut_rx.mark_unchanged();
                if b.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Ok(Link {
            addr,
            blocked,
            cut,
            accept,
        })
    }

    /// Closes every open connection and refuses new ones until [`Link::restore`].
    pub fn cut(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Lets new connections through again.
    pub fn restore(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}
