//! `GET /api/dcmon/openapi.json`: the OpenAPI 3.1 description of this API.
//!
//! The document is hand-written JSON compiled into the binary, so what a
//! receiver serves always describes that receiver. `tests/openapi.rs` keeps
//! it honest: every route of `app.rs` must be in it, and every operation in
//! it must answer as documented.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// The handler.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
