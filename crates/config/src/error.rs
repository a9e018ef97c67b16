//! Configuration errors that point at the place to fix: file, line, column, document, field.

use std::fmt;

use crate::Kind;
use std::sync::Arc;

/// Where a manifest document came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// The file as the operator named it (or `<inline>`).
    pub file: Arc<str>,
    /// 1-based index of the document within the file.
    pub document: usize,
    /// Number of lines before the document within the file; added to in-document lines.
    pub line_offset: u32,
}

/// A line/column pair, 1-based; `line == 0` means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    pub const UNKNOWN: Position = Position { line: 0, column: 0 };

    /// Converts an in-document location from the YAML parser into a file position.
    pub fn from_location(source: &SourceRef, loc: serde_saphyr::Location) -> Position {
        if loc.line() == 0 {
            return Position::UNKNOWN;
        }
        Position {
            line: u32::try_from(loc.line())
                .unwrap_or(u32::MAX)
                .saturating_add(source.line_offset),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

/// Why an error was reported, for callers that act on some of them (never on message text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reason {
    /// The configuration is wrong as written.
    #[default]
    Invalid,
    /// A policy names a credential the set being compiled does not hold (the environment
    /// on the Manager may: `switchyard apply` leaves these to it).
    UnknownCredential,
    /// A `${NAME}` variable is used where no `kind: Environment` document defines
    /// variables (the Manager may keep them: `switchyard apply` asks for them).
    NoEnvironmentDocument,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Arc<str>,
    pub document: usize,
    pub position: Position,
    /// `proxy "payments"` when the entity is known.
    pub entity: Option<String>,
    /// Field path inside the document, e.g. `spec.upstream.timeouts.connect`; may be empty.
    pub field: String,
    pub message: String,
    pub reason: Reason,
}

impl ConfigError {
    pub fn new(source: &SourceRef, position: Position, message: impl Into<String>) -> Self {
        ConfigError {
            file: source.file.clone(),
            document: source.document,
            position,
            entity: None,
            field: String::new(),
            message: message.into(),
            reason: Reason::Invalid,
        }
    }

    pub fn because(mut self, reason: Reason) -> Self {
        self.reason = reason;
        self
    }

    pub fn entity(mut self, kind: Kind, name: &str) -> Self {
        self.entity = Some(format!("{} {name:?}", kind.lower()));
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.position.line > 0 {
            write!(f, ":{}:{}", self.position.line, self.position.column)?;
        }
        match &self.entity {
            Some(entity) => write!(f, ": {entity}")?,
            None if self.document > 0 => write!(f, ": document {}", self.document)?,
            None => {}
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration set. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn single(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }

    pub fn first(&self) -> Option<&ConfigError> {
        self.0.first()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors::single(e)
    }
}
