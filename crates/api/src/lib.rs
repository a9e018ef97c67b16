//! The contract between the Manager and everything that talks to it: the admin API's and
//! the sync protocol's request and response types, and the error codes the Manager
//! answers with.

pub mod sync;
