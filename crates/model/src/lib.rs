//! Switchyard's configuration model: the public manifest schema ([`manifest`]), loading with
//! precise errors ([`load`], [`error`]), whole-set validation and compilation ([`compile`])
//! into the immutable runtime [`runtime::Snapshot`] the Worker serves from.

pub mod compile;
pub mod duration;
pub mod env_refs;
pub mod error;
pub mod for_env;
pub mod load;
pub mod manifest;
pub mod plan;
pub mod protocol;
pub mod runtime;
pub mod secretbox;
pub mod size;
mod validate;

pub use compile::{
    ChangeKind, CompileOptions, Compiled, ProxyChange, compile, compile_changes, compile_refs,
    compile_with,
};
pub use error::{ConfigError, ConfigErrors};
pub use load::{Located, load_path, parse_str};
pub use manifest::Manifest;
pub use runtime::Snapshot;
