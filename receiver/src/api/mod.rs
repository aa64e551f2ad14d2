//! HTTP handlers, one module per API area, and [`blocking`], which they
//! share.

use crate::error::{ApiError, ErrorKind};

/// Declares `$get` and `$post`, the GET and POST operations of one route of
/// the Prometheus-compatible API, both answered by `$handler`: each method
/// is its own operation in the OpenAPI document (`queryGet`, `queryPost`),
/// POST with its form body.
macro_rules! get_and_post {
    // The answers every query-API data route gives, as Prometheus's do.
    (
        $handler:ident($($arg:ident: $ty:ty),*) -> $answer:ty;
        $get:ident = $get_id:literal, $post:ident = $post_id:literal;
        path = $path:literal, summary = $summary:literal, description = $description:expr,
        params($($params:tt)*), responses = query_answers
    ) => {
        get_and_post! {
            $handler($($arg: $ty),*) -> $answer;
            $get = $get_id, $post = $post_id;
            path = $path, summary = $summary, description = $description,
            params($($params)*), responses(
                (status = 200, response = PromSuccess),
                (status = 400, response = PromBadData),
                (status = 401, response = Unauthorized),
                (status = 403, response = Forbidden),
                (status = 422, response = PromExecution),
                (status = 503, response = PromTimeout),
            )
        }
    };
    (
        $handler:ident($($arg:ident: $ty:ty),*) -> $answer:ty;
        $get:ident = $get_id:literal, $post:ident = $post_id:literal;
        path = $path:literal, summary = $summary:literal, description = $description:expr,
        params($($params:tt)*), responses($($responses:tt)*)
    ) => {
        #[utoipa::path(
            get, path = $path, operation_id = $get_id, tag = "prometheus",
            summary = $summary, description = $description,
            security(("adminToken" = []), ("readToken" = [])),
            params($($params)*), responses($($responses)*),
            extensions(("x-dcmon-access" = json!("read"))),
        )]
        pub async fn $get($($arg: $ty),*) -> $answer {
            $handler($($arg),*).await
        }

        #[utoipa::path(
            post, path = $path, operation_id = $post_id, tag = "prometheus",
            summary = $summary, description = $description,
            security(("adminToken" = []), ("readToken" = [])),
            params($($params)*),
            request_body(
                content = Object,
                content_type = "application/x-www-form-urlencoded",
                description = "The same parameters as GET, as a form (at most 4 MiB).",
            ),
            responses($($responses)*),
            extensions(("x-dcmon-access" = json!("read"))),
        )]
        pub async fn $post($($arg: $ty),*) -> $answer {
            $handler($($arg),*).await
        }
    };
}

pub mod clients;
pub mod commands;
pub mod dcmon;
pub mod openapi;
pub mod query;
pub mod query_json;
pub mod query_params;
pub mod query_threads;
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
