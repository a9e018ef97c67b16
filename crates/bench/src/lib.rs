//! `switchyard bench`: measures, on the operator's own machine, the numbers the
//! hot-deployment contract is about — dropped requests during swaps, propagation time,
//! Worker memory, audit completeness — and the proxy's speed.

pub mod canary;
pub mod fanout;
pub mod fault;
mod http;
pub mod load;
pub mod procs;
pub mod proxy;
pub mod report;
pub mod scale;
pub mod stats;
pub mod swap;

pub use canary::{CanaryOptions, CanaryReport, run as canary};
pub use fanout::{FanoutOptions, FanoutReport, run as fanout};
pub use proxy::{ProxyOptions, ProxyReport, run as proxy};
pub use report::SwapReport;
pub use scale::{ScaleReport, run as scale};
pub use swap::{ControlPlane, ExistingCluster, SwapOptions, run as swap};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("setup failed: {0}")]
    Setup(String),
    #[error("{0}")]
    Http(String),
    #[error(transparent)]
    Api(#[from] switchyard_api::ClientError),
}
