//! Host enrolment and the clients registry (all admin-only):
//! `POST /api/dcmon/register`, `GET /api/dcmon/clients`,
//! `POST /api/dcmon/clients/{id}/revoke`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use dcmon_protocol::identity::{ClientInfo, RegisterRequest, RegisterResponse};
use serde_json::{Value, json};

use super::blocking;
use crate::app::AppState;
use crate::error::{ApiError, ErrorKind};
use crate::storage::now_ms;
use dcmon_protocol::excerpt::excerpt;

/// `POST /api/dcmon/register`: verifies the host's proof of possession and
/// stores its key. A bad proof, a stale timestamp or a replayed nonce is a
/// 401: the request does not prove what it claims.
pub async fn register(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<RegisterResponse>, ApiError> {
    let request: RegisterRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorKind::BadData,
            format!("invalid registration body: {e}"),
        )
    })?;
    // Refusals are logged at warn level, naming the host: an operator
    // enrolling a host with a skewed clock finds why here.
    let verified = request.verify(now_ms() / 1000).inspect_err(|err| {
        let hostname = excerpt(&request.hostname);
        tracing::warn!(hostname = %hostname, error = %err, "registration refused");
    })?;
    let clients = Arc::clone(&state.clients);
    let hostname = request.hostname.clone();
    let fingerprint = verified.fingerprint.clone();
    let response = blocking("clients", move || clients.register(&request, &verified)).await?;
    tracing::info!(
        hostname,
        client_id = response.client_id,
        key = fingerprint,
        replaced = response.replaced,
        "client registered"
    );
    Ok(Json(response))
}

/// `GET /api/dcmon/clients`.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let clients = Arc::clone(&state.clients);
    let interval = state.push_interval;
    let listed: Vec<ClientInfo> =
        blocking("clients", move || clients.list(now_ms(), interval)).await?;
    Ok(Json(json!({ "status": "success", "data": listed })))
}

/// `POST /api/dcmon/clients/{id}/revoke`: a client id (24 lower-case hex
/// digits) or else a host name; no string can be both.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let clients = Arc::clone(&state.clients);
    let revoked = blocking("clients", move || clients.revoke(&id)).await?;
    tracing::info!(client_id = revoked, "client revoked");
    Ok(Json(
        json!({ "status": "success", "data": { "id": revoked } }),
    ))
}
