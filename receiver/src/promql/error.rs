//! Query errors, typed like Prometheus's so the API can answer with the
//! same `errorType` and status code.

/// Why a query failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// The query is malformed or uses something unsupported (400).
    BadData,
    /// Evaluation failed, e.g. a many-to-many match (422).
    Execution,
    /// The query ran past its deadline (503).
    Timeout,
    /// The query was cancelled (499).
    Canceled,
    /// Storage failed (500).
    Internal,
}

/// A failed query.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// What kind of failure.
    pub kind: QueryErrorKind,
    /// Prometheus-style message.
    pub message: String,
}

impl QueryError {
    /// A malformed query.
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self {
            kind: QueryErrorKind::BadData,
            message: message.into(),
        }
    }

    /// A runtime evaluation error.
    pub fn execution(message: impl Into<String>) -> Self {
        Self {
            kind: QueryErrorKind::Execution,
            message: message.into(),
        }
    }

    /// Something the engine does not implement (yet): `bad_data`, naming it.
    pub fn unsupported(feature: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("unsupported by dcmon's PromQL engine: {feature}"))
    }

    /// The deadline passed.
    pub fn timeout() -> Self {
        Self {
            kind: QueryErrorKind::Timeout,
            message: "query timed out in query execution".to_owned(),
        }
    }

    /// The query was cancelled.
    pub fn canceled() -> Self {
        Self {
            kind: QueryErrorKind::Canceled,
            message: "query was canceled in query execution".to_owned(),
        }
    }

    /// The sample limit was hit.
    pub fn too_many_samples() -> Self {
        Self::execution(
            "query processing would load too many samples into memory in query execution",
        )
    }
}

impl From<crate::storage::StorageError> for QueryError {
    fn from(err: crate::storage::StorageError) -> Self {
        Self {
            kind: QueryErrorKind::Internal,
            message: format!("storage: {err}"),
        }
    }
}
