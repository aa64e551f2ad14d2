//! One API error type for every endpoint, answered as Prometheus's JSON
//! error shape (`{"status":"error","errorType":…,"error":…}`) with the
//! status code Prometheus uses for each error type.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The kinds of error the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
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
        response
    }
}
