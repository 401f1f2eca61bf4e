//! The error type of charm-lib's model layer.

use crate::databag::DatabagError;
use crate::tools::{RelationId, ToolError};
use std::fmt;

/// Why a model operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A hook tool failed; Juju retrying the hook may help.
    Tool(ToolError),
    /// A Juju rule forbids the operation (checked before any tool is called).
    Access(String),
    /// Relation data does not have the expected shape.
    Databag {
        /// The relation.
        relation: RelationId,
        /// Whose databag (a unit or app name).
        owner: String,
        /// What did not fit.
        problem: DatabagError,
    },
    /// The charm's config does not have the expected shape (names the option).
    Config(String),
    /// The relation asked for is not one of this unit's.
    UnknownRelation(String),
    /// Charm state (`state-get`) does not have the expected shape (names the key).
    State(DatabagError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Tool(e) => e.fmt(f),
            Error::Access(m) => f.write_str(m),
            Error::Databag {
                relation,
                owner,
                problem,
            } => write!(f, "relation {relation}: databag of {owner}: {problem}"),
            Error::Config(m) => write!(f, "config: {m}"),
            Error::UnknownRelation(m) => f.write_str(m),
            Error::State(problem) => write!(f, "charm state: {problem}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ToolError> for Error {
    fn from(e: ToolError) -> Self {
        Error::Tool(e)
    }
}

/// charm-lib's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
