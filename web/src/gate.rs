//! The HTTP side of a web configuration: the exporter-toolkit gate
//! (every request but those to `basic_auth_excluded_paths` needs a
//! configured basic-auth user when there are any; 401 with a `Basic`
//! challenge otherwise) and the configured response
//! headers. The receiver, whose callers may instead carry bearer tokens,
//! uses only [`add_headers`] and checks users in its own auth.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::source::{WebConfig, WebConfigSource};

/// Refuses a request without valid basic-auth credentials when the web
/// config has users, and adds the configured headers to every answer.
pub async fn require_basic_auth(
    State(source): State<Arc<WebConfigSource>>,
    request: Request,
    next: Next,
) -> Response {
    let config = source.current();
    let open = config.users.is_empty()
        || config
            .basic_auth_excluded_paths
            .iter()
            .any(|p| p == request.uri().path());
    let mut response = if open || authorized(&config, &request) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic")],
            "Unauthorized\n",
        )
            .into_response()
    };
    add_headers(&config, &mut response);
    response
}

fn authorized(config: &WebConfig, request: &Request) -> bool {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| config.users.verify_header(v))
        .is_some()
}

/// Adds the configured headers to every answer (the receiver's layer: its
/// own auth decides who is let in).
pub async fn with_headers(
    State(source): State<Arc<WebConfigSource>>,
    request: Request,
    next: Next,
) -> Response {
    let config = source.current();
    let mut response = next.run(request).await;
    add_headers(&config, &mut response);
    response
}

/// Adds the web config's `http_server_config.headers` to a response.
pub fn add_headers(config: &WebConfig, response: &mut Response) {
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
}
