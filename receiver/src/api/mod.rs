//! HTTP handlers, one module per API area, and [`blocking`], which they
//! share.

use crate::error::{ApiError, ErrorKind};

pub mod clients;
pub mod commands;
pub mod dcmon;
pub mod openapi;
pub mod query;
pub mod query_json;
pub mod query_params;
pub mod rules;
pub mod write;
pub mod write_limits;

/// Runs `work` (SQLite, mostly) on the blocking pool, so that it never
/// holds up the async threads, and turns its error into the API's. A
/// panic in `work` answers 500 "<task> task failed" (`"clients task
/// failed"`) and is not logged again: the panic hook already printed it.
pub async fn blocking<T, E>(
    task: &'static str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Send + 'static,
    ApiError: From<E>,
{
    let done = tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::new(ErrorKind::Internal, format!("{task} task failed")))?;
    Ok(done?)
}
