//! The router: every route sits behind [`auth::require_principal`], so an
//! endpoint cannot be added unauthenticated by accident.

use axum::Router;
use axum::middleware;

use crate::auth::{self, Authenticator};
use crate::error::{ApiError, ErrorKind};

/// The receiver's HTTP application.
pub fn router(auth: Authenticator) -> Router {
    Router::new()
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            auth,
            auth::require_principal,
        ))
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "no such endpoint")
}
