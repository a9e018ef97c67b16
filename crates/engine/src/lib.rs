//! Switchyard's compiled runtime model: what requests read. Manifests (`switchyard-config`)
//! are validated as a whole set and compiled ([`compile`], full or as a delta against the
//! served snapshot) into the immutable [`runtime::Snapshot`]: routes, policies, load
//! balancing and health. No I/O, no sockets.

pub mod classify;
pub mod compile;
pub mod entity_set;
pub mod runtime;
pub mod tls;
mod validate;

pub use compile::{
    Change, ChangeKind, Compiled, Compiler, Numbering, ProxyChange, compile, compile_changes,
    compile_refs,
};
pub use entity_set::EntitySet;
pub use runtime::Snapshot;
