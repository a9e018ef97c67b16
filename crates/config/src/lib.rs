//! Switchyard's public configuration schema: what operators write. The manifest types
//! ([`manifest`]), reading YAML with file:line:column and field paths ([`load`],
//! [`error`]), `${env:…}` and `${NAME}` references ([`env_refs`], [`for_env`]), the
//! field-level diff of a plan ([`plan`]) and the sealing of secrets at rest
//! ([`secretbox`]). Nothing here knows the compiled runtime model (`switchyard-engine`).

pub mod duration;
pub mod env_refs;
pub mod error;
pub mod files;
pub mod for_env;
pub mod kind;
pub mod load;
pub mod manifest;
pub mod plan;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod secretbox;
pub mod size;

pub use error::{ConfigError, ConfigErrors};
pub use kind::Kind;
pub use load::{Located, load_path, parse_str};
pub use manifest::Manifest;
