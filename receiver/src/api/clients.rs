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
use super::openapi::{Forbidden, Internal, Unauthorized};
use crate::app::AppState;
use crate::error::{ApiError, ErrorKind};
use crate::storage::now_ms;
use dcmon_protocol::excerpt::excerpt;

/// Enrol a host
///
/// Verifies the host's proof of possession and stores its key. Sent by `dcmon-exporter register` with the admin token. Registering a known host name again replaces its key and keeps its id.
//
// A bad proof, a stale timestamp or a replayed nonce is a 401: the
// request does not prove what it claims.
#[utoipa::path(
    post,
    path = "/api/dcmon/register",
    operation_id = "register",
    tag = "clients",
    security(("adminToken" = [])),
    request_body(content = RegisterRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Registered.", body = RegisterResponse),
        (status = 400, description = "Body is not a registration, a field is malformed, or the key is not RSA SPKI PEM of 2048 to 8192 bits.", body = super::openapi::Error),
        (status = 401, description = "No admin credential, or the proof does not hold: bad signature, timestamp more than 300 s off, or a replayed nonce.", body = super::openapi::Error),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
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

// The answer of [`list`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: `list` builds the answer.
pub(crate) struct ClientList {
    status: super::openapi::Success,
    data: Vec<ClientInfo>,
}

// The answer of [`revoke`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: `revoke` builds the answer.
pub(crate) struct RevokeResponse {
    status: super::openapi::Success,
    #[schema(inline)]
    data: Revoked,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Revoked {
    /// The revoked client's id.
    id: String,
}

/// List enrolled hosts
///
/// Every enrolled host with its status, last activity and key fingerprint.
#[utoipa::path(
    get,
    path = "/api/dcmon/clients",
    operation_id = "listClients",
    tag = "clients",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The clients.", body = ClientList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let clients = Arc::clone(&state.clients);
    let interval = state.push_interval;
    let listed: Vec<ClientInfo> =
        blocking("clients", move || clients.list(now_ms(), interval)).await?;
    Ok(Json(json!({ "status": "success", "data": listed })))
}

/// Revoke a host
///
/// Refuses the host's next request. No body.
//
// `id` is a client id (24 lower-case hex digits) or else a host name; no
// string can be both.
#[utoipa::path(
    post,
    path = "/api/dcmon/clients/{id}/revoke",
    operation_id = "revokeClient",
    tag = "clients",
    security(("adminToken" = [])),
    params(("id" = String, Path, description = "Client id or host name.")),
    responses(
        (status = 200, description = "Revoked.", body = RevokeResponse),
        (status = 404, description = "No active (not yet revoked) client with this id or host name.", body = super::openapi::Error),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
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
