//! A TCP forwarder between a Worker and its Manager that a test can cut: to lose
//! notifications and connections the way a flaky network does. The bench's
//! [`switchyard_bench::fault::Link`], started the way a test wants it (a failure to bind is
//! the test's failure).

use std::net::SocketAddr;
use std::ops::Deref;

use switchyard_bench::fault::Link;

/// A [`Link`] for tests: `addr`, `cut()` and `restore()` through `Deref`.
pub struct Forwarder(Link);

impl Forwarder {
    #[allow(clippy::unwrap_used)]
    pub async fn start(target: SocketAddr) -> Forwarder {
        Forwarder(Link::start(target).await.unwrap())
    }
}

impl Deref for Forwarder {
    type Target = Link;

    fn deref(&self) -> &Link {
        &self.0
    }
}
