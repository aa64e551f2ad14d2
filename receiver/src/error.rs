//! One API error type for every endpoint, answered as Prometheus's JSON
//! error shape (`{"status":"error","errorType":…,"error":…}`) with the
//! status code Prometheus uses for each error type.
//!
//! Each domain error (the command queue's, the clients table's, a refused
//! registration's, storage's, the query engine's) becomes an [`ApiError`]
//! here and nowhere else, so a handler ends in `?`. An internal failure keeps its cause out of the
//! answer: the cause rides on the response and [`log_internal`], called
//! once on every answer leaving the router, logs it.

use std::fmt::Display;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dcmon_protocol::identity::RegistrationError;

use crate::auth::clients::ClientError;
use crate::commands::QueueError;
use crate::promql::{QueryError, QueryErrorKind};
use crate::storage::StorageError;

/// The kinds of error the API answers with.
// Also the OpenAPI document's `errorType` (as `ErrorType`), in the names
// `as_str` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = ErrorType, rename_all = "snake_case")]
pub enum ErrorKind {
    /// Missing, malformed or unknown credentials (401).
    Unauthorized,
    /// Valid credentials without the right to this endpoint (403).
    Forbidden,
    /// No such endpoint or object (404).
    NotFound,
    /// The request is malformed (400).
    BadData,
    /// The object is not in a state that allows this (409).
    Conflict,
    /// A query failed while it was evaluated (422).
    Execution,
    /// The client went away or cancelled the query (499).
    Canceled,
    /// A query ran out of time (503).
    Timeout,
    /// Something failed on our side (500); details stay in the log.
    Internal,
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::BadData => StatusCode::BAD_REQUEST,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_type(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::BadData => "bad_data",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Execution => "execution",
            ErrorKind::Canceled => "canceled",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error answered to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Message for the client (never secrets or internals).
    pub message: String,
    /// What is logged, and not answered, about an internal failure.
    cause: Option<Cause>,
}

/// The logged side of an internal failure: carried from the error to the
/// response's extensions, where [`log_internal`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The log line's message.
    pub logged: &'static str,
    /// The underlying error, as its `error` field.
    pub error: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            cause: None,
        }
    }

    /// An internal failure (500) answered with `answered` alone; `logged`
    /// and `cause` go to the log, at error level, once the answer is sent.
    pub fn internal(logged: &'static str, answered: &'static str, cause: impl Display) -> Self {
        Self {
            kind: ErrorKind::Internal,
            message: answered.to_owned(),
            cause: Some(Cause {
                logged,
                error: cause.to_string(),
            }),
        }
    }

    /// What will be logged about this error, if anything.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }
}

/// Turns any failure into an internal [`ApiError`], for the few causes
/// that have no `From` impl of their own (a token lookup, a thread that
/// did not start) or whose answer names the operation.
pub trait OrInternal<T> {
    /// On failure, an [`ApiError::internal`] answered with `answered` and
    /// logged as `logged`.
    fn or_internal(self, logged: &'static str, answered: &'static str) -> Result<T, ApiError>;
}

impl<T, E: Display> OrInternal<T> for Result<T, E> {
    fn or_internal(self, logged: &'static str, answered: &'static str) -> Result<T, ApiError> {
        self.map_err(|err| ApiError::internal(logged, answered, err))
    }
}

impl From<QueueError> for ApiError {
    fn from(err: QueueError) -> Self {
        let kind = match err {
            QueueError::NotFound(_) => ErrorKind::NotFound,
            QueueError::UnknownClient(_) | QueueError::BadResult | QueueError::BadExpiry => {
                ErrorKind::BadData
            }
            QueueError::WrongState { .. } => ErrorKind::Conflict,
            QueueError::Sqlite(err) => {
                return ApiError::internal("command queue failed", "command queue failed", err);
            }
        };
        ApiError::new(kind, err.to_string())
    }
}

impl From<ClientError> for ApiError {
    fn from(err: ClientError) -> Self {
        let kind = match err {
            // A replayed registration proves nothing, like a bad signature.
            ClientError::Replayed => ErrorKind::Unauthorized,
            ClientError::Unknown(_) => ErrorKind::NotFound,
            ClientError::NameTaken { .. } => ErrorKind::Conflict,
            ClientError::Sqlite(_) | ClientError::Random(_) | ClientError::BadStoredKey(_) => {
                return ApiError::internal("clients table failed", "clients table failed", err);
            }
        };
        ApiError::new(kind, err.to_string())
    }
}

/// A registration that does not prove what it claims (a bad signature, a
/// stale timestamp) is refused like a bad credential (401); anything else
/// wrong with it is a malformed request (400).
impl From<RegistrationError> for ApiError {
    fn from(err: RegistrationError) -> Self {
        let kind = match err {
            RegistrationError::BadSignature | RegistrationError::StaleTimestamp(_) => {
                ErrorKind::Unauthorized
            }
            RegistrationError::BadKey(_)
            | RegistrationError::KeySize(_)
            | RegistrationError::BadHostname(_)
            | RegistrationError::BadField(_) => ErrorKind::BadData,
        };
        ApiError::new(kind, err.to_string())
    }
}

/// Every storage failure seen by a handler is the receiver's fault; a
/// write's refusals (a full disk, the series limit) have their own
/// plain-text answers in the write handler.
impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        ApiError::internal("storage query failed", "storage query failed", err)
    }
}

/// The engine's kinds are Prometheus's, and so are its messages, which
/// are answered as they are. Its internal errors are not logged: their
/// message (a storage failure, quoted) is already in the answer.
impl From<QueryError> for ApiError {
    fn from(err: QueryError) -> Self {
        let kind = match err.kind {
            QueryErrorKind::BadData => ErrorKind::BadData,
            QueryErrorKind::Execution => ErrorKind::Execution,
            QueryErrorKind::Timeout => ErrorKind::Timeout,
            QueryErrorKind::Canceled => ErrorKind::Canceled,
            QueryErrorKind::Internal => ErrorKind::Internal,
        };
        ApiError::new(kind, err.message)
    }
}

/// Logs the cause of an internal failure that `response` answers, if
/// any. Called once per answer, by the router's outermost layer, so each
/// failure is logged exactly once whichever handler or middleware failed.
pub fn log_internal(response: &Response) {
    if let Some(cause) = response.extensions().get::<Cause>() {
        tracing::error!(error = %cause.error, "{}", cause.logged);
    }
}

/// The JSON error body Prometheus answers with.
fn json_body(error_type: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "status": "error",
        "errorType": error_type,
        "error": message,
    })
}

/// The `errorType` of an answer with `status` that no handler shaped:
/// extractor rejections, 405s, 413s.
fn error_type_of(status: StatusCode) -> &'static str {
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        422 => ErrorKind::Execution,
        499 => ErrorKind::Canceled,
        503 => ErrorKind::Timeout,
        500.. => ErrorKind::Internal,
        _ => ErrorKind::BadData,
    };
    kind.error_type()
}

/// Longest plain-text error message carried over into the JSON shape.
const MAX_PLAIN_MESSAGE: usize = 4096;

/// Turns an error answer that is not JSON (axum's extractor rejections,
/// method-not-allowed, body limits) into Prometheus's JSON error shape,
/// keeping its status, its other headers and its text as the message.
/// Successful and JSON answers pass unchanged.
pub async fn into_json_error(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_MESSAGE)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let body = json_body(error_type_of(status), &message).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json_body(self.kind.error_type(), &self.message);
        let mut response = (self.kind.status(), Json(body)).into_response();
        if self.kind == ErrorKind::Unauthorized {
            response
                .headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status, `errorType`, message and logged cause of `err`, as answered.
    fn answered(err: impl Into<ApiError>) -> (u16, &'static str, String, Option<Cause>) {
        let err = err.into();
        (
            err.kind.status().as_u16(),
            err.kind.error_type(),
            err.message.clone(),
            err.cause().cloned(),
        )
    }

    fn database() -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            Some("disk I/O error".to_owned()),
        )
    }

    fn logged(logged: &'static str, error: impl Display) -> Option<Cause> {
        Some(Cause {
            logged,
            error: error.to_string(),
        })
    }

    #[test]
    fn queue_errors_keep_their_statuses() {
        let cases = [
            (QueueError::NotFound(7), 404, "not_found", "no command 7"),
            (
                QueueError::UnknownClient("\"web-1\"".to_owned()),
                400,
                "bad_data",
                "no active client with \"web-1\"",
            ),
            (
                QueueError::BadResult,
                400,
                "bad_data",
                "a result must be succeeded or failed",
            ),
            (
                QueueError::BadExpiry,
                400,
                "bad_data",
                "the expiry is out of range",
            ),
            (
                QueueError::WrongState {
                    id: 3,
                    status: "succeeded",
                    expected: "pending",
                },
                409,
                "conflict",
                "command 3 is succeeded, not pending",
            ),
        ];
        for (err, status, error_type, message) in cases {
            assert_eq!(
                answered(err),
                (status, error_type, message.to_owned(), None)
            );
        }
    }

    #[test]
    fn a_failing_queue_database_is_answered_500_and_logged() {
        let cause = QueueError::Sqlite(database()).to_string();
        assert_eq!(
            answered(QueueError::Sqlite(database())),
            (
                500,
                "internal",
                "command queue failed".to_owned(),
                logged(
                    "command queue failed",
                    cause.strip_prefix("database: ").unwrap()
                )
            )
        );
    }

    #[test]
    fn client_errors_keep_their_statuses() {
        let cases = [
            (ClientError::Replayed, 401, "unauthorized"),
            (ClientError::Unknown("abc".to_owned()), 404, "not_found"),
            (
                ClientError::NameTaken {
                    name: "web-1".to_owned(),
                    why: "is taken",
                },
                409,
                "conflict",
            ),
        ];
        for (err, status, error_type) in cases {
            let message = err.to_string();
            assert_eq!(answered(err), (status, error_type, message, None));
        }
    }

    #[test]
    fn registrations_that_prove_nothing_are_401_and_malformed_ones_400() {
        let cases = [
            (RegistrationError::BadSignature, 401, "unauthorized"),
            (RegistrationError::StaleTimestamp(900), 401, "unauthorized"),
            (
                RegistrationError::BadKey("no PEM".to_owned()),
                400,
                "bad_data",
            ),
            (RegistrationError::KeySize(512), 400, "bad_data"),
            (RegistrationError::BadField("nonce"), 400, "bad_data"),
        ];
        for (err, status, error_type) in cases {
            let message = err.to_string();
            assert_eq!(answered(err), (status, error_type, message, None));
        }
    }

    #[test]
    fn failing_client_stores_are_answered_500_and_logged() {
        for err in [
            ClientError::Sqlite(database()),
            ClientError::Random("no entropy".to_owned()),
            ClientError::BadStoredKey("abc".to_owned()),
        ] {
            let cause = err.to_string();
            assert_eq!(
                answered(err),
                (
                    500,
                    "internal",
                    "clients table failed".to_owned(),
                    logged("clients table failed", cause)
                )
            );
        }
    }

    #[test]
    fn storage_errors_are_answered_500_and_logged() {
        for err in [
            StorageError::Sqlite(database()),
            StorageError::Corrupt("chunk 9".to_owned()),
            StorageError::Closed,
        ] {
            let cause = err.to_string();
            assert_eq!(
                answered(err),
                (
                    500,
                    "internal",
                    "storage query failed".to_owned(),
                    logged("storage query failed", cause)
                )
            );
        }
    }

    #[test]
    fn query_errors_keep_prometheus_statuses_and_messages() {
        let cases = [
            (QueryErrorKind::BadData, 400, "bad_data"),
            (QueryErrorKind::Execution, 422, "execution"),
            (QueryErrorKind::Timeout, 503, "timeout"),
            (QueryErrorKind::Canceled, 499, "canceled"),
            (QueryErrorKind::Internal, 500, "internal"),
        ];
        for (kind, status, error_type) in cases {
            let err = QueryError {
                kind,
                message: format!("{kind:?} happened"),
            };
            assert_eq!(
                answered(err),
                (status, error_type, format!("{kind:?} happened"), None)
            );
        }
    }

    #[test]
    fn or_internal_answers_its_message_and_logs_the_cause() {
        let failed: Result<(), std::io::Error> = Err(std::io::Error::other("no threads"));
        let err = failed
            .or_internal("starting a query thread", "starting the query failed")
            .unwrap_err();
        assert_eq!(
            answered(err),
            (
                500,
                "internal",
                "starting the query failed".to_owned(),
                logged("starting a query thread", "no threads")
            )
        );
    }

    #[tokio::test]
    async fn the_cause_rides_on_the_response_but_stays_out_of_the_body() {
        let response =
            ApiError::from(StorageError::Corrupt("secret path".to_owned())).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get::<Cause>(),
            logged("storage query failed", "corrupt data: secret path").as_ref()
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "status": "error",
                "errorType": "internal",
                "error": "storage query failed",
            })
        );
        let refused = ApiError::from(ClientError::Replayed).into_response();
        assert!(refused.extensions().get::<Cause>().is_none());
        assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    }

    /// Records every event as `LEVEL message field=value…`.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    struct Line<'a>(&'a mut String);

    impl tracing::field::Visit for Line<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0.push_str(&format!(" {value:?}"));
            } else {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
    }

    impl tracing::Subscriber for Recorder {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut line = event.metadata().level().to_string();
            event.record(&mut Line(&mut line));
            self.0.lock().unwrap().push(line);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn only_internal_failures_are_logged_at_error_level_with_their_cause() {
        let recorder = std::sync::Arc::new(Recorder::default());
        tracing::subscriber::with_default(std::sync::Arc::clone(&recorder), || {
            log_internal(&ApiError::from(QueueError::Sqlite(database())).into_response());
            log_internal(&ApiError::from(QueueError::NotFound(1)).into_response());
            log_internal(&ApiError::new(ErrorKind::Internal, "query task failed").into_response());
        });
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [format!("ERROR command queue failed error={}", database())]
        );
    }
}
