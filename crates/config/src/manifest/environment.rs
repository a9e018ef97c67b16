//! `kind: Environment`: an environment's variables. `${NAME}` in the other manifests is
//! replaced by `spec.variables.NAME` of the Environment document named like the
//! environment being applied to, so one set of files serves dev, stage and prod.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Metadata;
use crate::Kind;
use crate::error::{ConfigError, Position, SourceRef};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: EnvironmentSpec,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// `NAME: value`; names are letters, digits and `_`, not starting with a digit.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

impl EnvironmentManifest {
    pub(crate) fn check(&self, source: &SourceRef) -> Result<(), ConfigError> {
        for name in self.spec.variables.keys() {
            let mut bytes = name.bytes();
            let ok = bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(ConfigError::new(
                    source,
                    Position::from_location(source, self.metadata.name.referenced),
                    format!(
                        "invalid variable name {name:?}: use letters, digits and '_', not starting with a digit"
                    ),
                )
                .entity(Kind::Environment, &self.metadata.name.value)
                .field(format!("spec.variables.{name}")));
            }
        }
        Ok(())
    }

    pub fn variable(&self, name: &str) -> Option<String> {
        self.spec.variables.get(name).cloned()
    }
}
