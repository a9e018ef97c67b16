//! One module per command: its clap arguments and its `run`.
//!
//! Log lines keep the target they had before the commands moved here (`switchyard`,
//! `switchyard::up`, `switchyard::demo`), so log filters and pipelines see no change.

pub mod apply;
pub mod audit;
pub mod bench;
pub mod canary;
pub mod certificate;
pub mod credential;
pub mod demo;
pub mod dump;
pub mod env;
pub mod manager;
pub mod plan;
pub mod promote;
pub mod rollback;
pub mod rollout;
pub mod status;
pub mod token;
pub mod up;
pub mod upstream;
pub mod validate;
pub mod worker;
