//! A TCP forwarder between a Worker and its Manager that a test can cut: to lose
//! notifications and connections the way a flaky network does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Forwarder {
    pub addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    /// Bumped to close every open connection.
    cut: watch::Sender<u64>,
}

impl Forwarder {
    pub async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let blocked = Arc::new(AtomicBool::new(false));
        let (cut, cut_rx) = watch::channel(0u64);
        let b = blocked.clone();
        tokio::spawn(async move {
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
        Forwarder { addr, blocked, cut }
    }

    /// Closes every open connection and refuses new ones until [`Forwarder::restore`].
    pub fn cut(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}
