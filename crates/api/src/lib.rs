//! The contract between the Manager and everything that talks to it: the admin API's
//! ([`admin`]) and the sync protocol's ([`sync`]) request and response types, the records
//! the Manager keeps ([`records`]), the error codes it answers with ([`error`]), and the one
//! HTTP client every caller uses ([`client`]: [`AdminClient`] for operators and tests,
//! [`SyncClient`] for Workers, both over one [`Transport`]).

pub mod admin;
pub mod canary;
pub mod client;
pub mod error;
pub mod integral;
pub mod records;
pub mod sync;

pub use client::{AdminClient, ApiFailure, ClientError, ManagerTls, SyncClient, Transport};
pub use error::{ErrorBody, ErrorCode};
pub use switchyard_config::Kind;
