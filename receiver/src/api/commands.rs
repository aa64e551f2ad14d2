//! The command API. Admin: `POST /api/dcmon/commands` (one host, or a
//! batch: a list of hosts or `"all"`), `GET
//! /api/dcmon/commands[?client=&status=&batch=&limit=]`, `GET
//! /api/dcmon/commands/{id}`, `POST /api/dcmon/commands/{id}/cancel`,
//! `GET /api/dcmon/commands/batches/{id}`, `POST
//! /api/dcmon/commands/batches/{id}/cancel`.
//! Hosts (client JWT): `GET /api/dcmon/commands/next` (long poll) and
//! `POST /api/dcmon/commands/{id}/result`, for their own commands only.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dcmon_protocol::commands::{Command, CommandResult, CommandStatus, DeliveredCommand};
use dcmon_protocol::duration::parse_duration;
use serde::Deserialize;
use serde_json::{Value, json};

use super::blocking;
use super::openapi::{BadRequest, Error, Forbidden, Internal, Unauthorized};
use crate::app::AppState;
use crate::auth::Principal;
use crate::commands::{BatchTargets, CommandRecord};
use crate::error::{ApiError, ErrorKind};

/// Default time a command waits for its host.
const DEFAULT_EXPIRY: Duration = Duration::from_secs(600);
/// Longest a command may wait for its host.
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 86_400);
/// Longest a host's poll is held open.
const MAX_POLL: Duration = Duration::from_secs(60);
/// Most hosts one batch may list.
const MAX_BATCH: usize = 10_000;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadData, message)
}

/// The client id of a host caller; admins and tokens are not hosts.
fn host(principal: &Principal) -> Result<&str, ApiError> {
    match principal {
        Principal::Client { id, .. } => Ok(id),
        _ => Err(ApiError::new(
            ErrorKind::Forbidden,
            "only an enrolled host polls and answers its commands",
        )),
    }
}

/// How long a command waits for its host: `"10m"` or a number of seconds,
/// 1 s to 7 d. Any JSON value is refused cleanly, however large.
pub fn parse_expiry(value: Option<Value>) -> Result<Duration, ApiError> {
    let expires_in = match value {
        None => DEFAULT_EXPIRY,
        Some(Value::String(text)) => parse_duration(&text).map_err(|e| bad(e.to_string()))?,
        Some(Value::Number(secs)) => secs
            .as_f64()
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| bad("\"expires_in\" must be between 1s and 7d"))?,
        Some(_) => return Err(bad("\"expires_in\" must be a duration like \"10m\"")),
    };
    if expires_in < Duration::from_secs(1) || expires_in > MAX_EXPIRY {
        return Err(bad("\"expires_in\" must be between 1s and 7d"));
    }
    Ok(expires_in)
}

/// Queue a command
///
/// Queues a command for one host (`client`) or, as a batch, for each host of `clients` (a list, or `"all"`). Typed: unknown types, actions or fields, out-of-range values and a duty below `--commands.min-duty` are refused and nothing is queued. In a batch, a host that cannot take the command (unknown, revoked, listed twice) is reported in its own entry and the others are queued.
//
// `{"client": "<id or host name>", "type": …, "params": {…}, "expires_in": "10m"}`,
// or for a batch `"clients": ["<id or name>", …]` or `"clients": "all"`
// in place of `"client"`. A client id is 24 lower-case hex digits;
// anything else is a host name. The command is validated once, before
// anything is queued.
#[utoipa::path(
    post,
    path = "/api/dcmon/commands",
    operation_id = "createCommand",
    tag = "commands",
    security(("adminToken" = [])),
    request_body(content = CreateCommandRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Queued, status pending: the command, or for a batch the batch id and one entry per host.", body = inline(Created)),
        (status = 400, description = "Not a JSON object, neither or both of `client` and `clients`, no active client by that id or host name (for a batch: no host at all could take it), invalid `expires_in`, or an invalid command.", body = Error),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
pub async fn create(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let mut fields: serde_json::Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body must be a JSON object: {e}")))?;
    let target = match (fields.remove("client"), fields.remove("clients")) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "give \"client\" (one host) or \"clients\" (a batch), not both",
            ));
        }
        (Some(Value::String(client)), None) if !client.is_empty() => Target::One(client),
        (None, Some(clients)) => Target::Batch(parse_targets(clients)?),
        _ => {
            return Err(bad(
                "\"client\" (client id or host name) or \"clients\" (a list, or \"all\") is required",
            ));
        }
    };
    let expires_in = parse_expiry(fields.remove("expires_in"))?;
    let command: Command = serde_json::from_value(Value::Object(fields))
        .map_err(|e| bad(format!("invalid command: {e}")))?;
    command
        .validate(state.min_duty)
        .map_err(|e| bad(format!("invalid command: {e}")))?;
    let queue = Arc::clone(&state.commands);
    let targets = match target {
        Target::One(client) => {
            let record = blocking("command", move || {
                queue.create(&client, &command, "admin", expires_in)
            })
            .await?;
            tracing::info!(
                id = record.id,
                client = record.client_id,
                command = %serde_json::to_string(&record.command).unwrap_or_default(),
                "command created"
            );
            return Ok((StatusCode::CREATED, Json(record)).into_response());
        }
        Target::Batch(targets) => targets,
    };
    let kind = command.kind();
    let (batch_id, entries) = blocking("command", move || {
        queue.create_batch(&targets, &command, "admin", expires_in)
    })
    .await?;
    let queued = entries.iter().filter(|e| e.command.is_some()).count();
    let refused = entries.len() - queued;
    let Some(batch_id) = batch_id else {
        let reasons: Vec<String> = entries
            .iter()
            .map(|e| format!("{}: {}", e.target, e.error.as_deref().unwrap_or("refused")))
            .collect();
        return Err(bad(if reasons.is_empty() {
            "no active hosts to send the batch to; nothing queued".to_owned()
        } else {
            format!(
                "no host could take the batch; nothing queued ({})",
                reasons.join("; ")
            )
        }));
    };
    tracing::info!(
        batch_id,
        command = kind,
        queued,
        refused,
        "command batch created"
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "batch_id": batch_id,
            "queued": queued,
            "refused": refused,
            "hosts": entries,
        })),
    )
        .into_response())
}

// The answers' and the request's shapes, as schemas: the handlers build
// and read them as JSON values.

/// What `create` answers: one command, or a batch.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Created {
    One(Box<CommandRecord>),
    Batch(BatchCreated),
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct BatchCreated {
    batch_id: i64,
    queued: u64,
    refused: u64,
    hosts: Vec<crate::commands::BatchEntry>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct CommandList {
    status: super::openapi::Success,
    data: Vec<CommandRecord>,
}

// Named apart from the shipping crate's `Batch` (samples on their way);
// the document keeps the name `Batch`.
#[derive(utoipa::ToSchema)]
#[schema(as = Batch)]
#[allow(dead_code)]
struct BatchAnswer {
    status: super::openapi::Success,
    #[schema(inline)]
    data: BatchData,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct BatchData {
    batch_id: i64,
    /// Commands per status.
    counts: std::collections::BTreeMap<String, u64>,
    commands: Vec<CommandRecord>,
}

/// A command plus its target(s) and expiry, in one object: `client` for
/// one host, or `clients` (a list of ids or host names, or `"all"`) for a
/// batch.
#[derive(utoipa::ToSchema)]
#[schema(examples(
    json!({"client": "gpu-07", "type": "fan_control", "params": {"action": "set_zone_duty", "zone": 0, "duty": 60}, "expires_in": "10m"}),
    json!({"clients": ["gpu-07", "gpu-08", "3f2a9c0d1e4b5a6978877665"], "type": "config_update", "params": {"action": "apply", "config": {"version": "2026-12-fans", "interval_s": 15}, "revert_after_s": 600}}),
))]
#[allow(dead_code)]
struct CreateCommandRequest {
    /// Client id or host name of an active (not revoked) client.
    #[schema(nullable = false, min_length = 1)]
    client: Option<String>,
    /// A batch: one command per host (1 to 10000 ids or host names), under
    /// one batch id. `all` is every active host.
    #[schema(nullable = false)]
    clients: Option<Clients>,
    /// How long the command waits for its host before it expires; 1s to
    /// 7d: a Prometheus duration (`10m`) or seconds.
    #[schema(nullable = false, default = "10m")]
    expires_in: Option<ExpiresIn>,
    #[serde(flatten)]
    command: Command,
}

#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Clients {
    All(AllHosts),
    List(Vec<String>),
}

/// Every active host.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum AllHosts {
    All,
}

#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ExpiresIn {
    Duration(String),
    Seconds(f64),
}

/// Whom a command is for.
enum Target {
    One(String),
    Batch(BatchTargets),
}

/// `"clients"`: `"all"`, or a non-empty list of ids or host names.
fn parse_targets(value: Value) -> Result<BatchTargets, ApiError> {
    let invalid =
        || bad("\"clients\" must be \"all\" or a non-empty list of client ids or host names");
    match value {
        Value::String(all) if all == "all" => Ok(BatchTargets::All),
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_BATCH => items
            .into_iter()
            .map(|item| match item {
                Value::String(name) if !name.is_empty() && name.len() <= 255 => Ok(name),
                _ => Err(invalid()),
            })
            .collect::<Result<_, _>>()
            .map(BatchTargets::Listed),
        _ => Err(invalid()),
    }
}

/// One batch
///
/// The batch's commands, oldest first, and a count per status.
#[utoipa::path(
    get,
    path = "/api/dcmon/commands/batches/{id}",
    operation_id = "getCommandBatch",
    tag = "commands",
    security(("adminToken" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The batch.", body = BatchAnswer),
        (status = 404, description = "No such batch.", body = Error),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
pub async fn batch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let queue = Arc::clone(&state.commands);
    let records = blocking("command", move || queue.batch(id)).await?;
    batch_answer(id, records)
}

/// Cancel a batch
///
/// Cancels every still-pending command of the batch; delivered and finished ones keep their state. No body. Answers the batch as it then stands.
#[utoipa::path(
    post,
    path = "/api/dcmon/commands/batches/{id}/cancel",
    operation_id = "cancelCommandBatch",
    tag = "commands",
    security(("adminToken" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The batch after cancelling.", body = BatchAnswer),
        (status = 404, description = "No such batch.", body = Error),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
pub async fn cancel_batch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let queue = Arc::clone(&state.commands);
    let records = blocking("command", move || queue.cancel_batch(id)).await?;
    tracing::info!(batch_id = id, "command batch cancelled");
    batch_answer(id, records)
}

fn batch_answer(id: i64, records: Option<Vec<CommandRecord>>) -> Result<Json<Value>, ApiError> {
    let records =
        records.ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no batch {id}")))?;
    let mut counts = serde_json::Map::new();
    for record in &records {
        let count = counts
            .entry(record.status.name())
            .or_insert_with(|| json!(0));
        *count = json!(count.as_u64().unwrap_or(0) + 1);
    }
    Ok(Json(json!({
        "status": "success",
        "data": {"batch_id": id, "counts": counts, "commands": records},
    })))
}

/// Filters of the list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Client id or host name.
    #[param(nullable = false)]
    client: Option<String>,
    #[param(value_type = Option<CommandStatus>, nullable = false)]
    status: Option<String>,
    /// Only this batch's commands.
    #[param(nullable = false)]
    batch: Option<i64>,
    /// At most this many (values above 10000 are cut to 10000).
    #[param(nullable = false, value_type = Option<u64>, minimum = 0, maximum = 10000, default = 100)]
    limit: Option<usize>,
}

/// List commands
///
/// Newest first.
#[utoipa::path(
    get,
    path = "/api/dcmon/commands",
    operation_id = "listCommands",
    tag = "commands",
    security(("adminToken" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The commands.", body = CommandList),
        (status = 400, description = "Unknown status (or a non-numeric `limit`, answered in plain text).", body = Error),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(name) => Some(
            CommandStatus::parse(name).ok_or_else(|| bad(format!("unknown status {name:?}")))?,
        ),
    };
    let limit = query.limit.unwrap_or(100).min(10_000);
    let client = query.client.filter(|c| !c.is_empty());
    let queue = Arc::clone(&state.commands);
    let batch = query.batch;
    let records = blocking("command", move || {
        queue.list_in(client.as_deref(), status, batch, limit)
    })
    .await?;
    Ok(Json(json!({ "status": "success", "data": records })))
}

/// One command
///
/// The command with its lifecycle and the host's result.
#[utoipa::path(
    get,
    path = "/api/dcmon/commands/{id}",
    operation_id = "getCommand",
    tag = "commands",
    security(("adminToken" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The command.", body = CommandRecord),
        (status = 404, description = "No such command.", body = Error),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<CommandRecord>, ApiError> {
    let queue = Arc::clone(&state.commands);
    let record = blocking("command", move || queue.get(id)).await?;
    record
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no command {id}")))
}

/// Cancel a pending command
///
/// Only a pending command can be cancelled. No body.
#[utoipa::path(
    post,
    path = "/api/dcmon/commands/{id}/cancel",
    operation_id = "cancelCommand",
    tag = "commands",
    security(("adminToken" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "Cancelled.", body = CommandRecord),
        (status = 404, description = "No such command.", body = Error),
        (status = 409, description = "The command is no longer pending (`conflict`).", body = Error),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<CommandRecord>, ApiError> {
    let queue = Arc::clone(&state.commands);
    let record = blocking("command", move || queue.cancel(id)).await?;
    tracing::info!(id, "command cancelled");
    Ok(Json(record))
}

/// Long-poll parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// How long to wait, a Prometheus duration; at most 60s.
    #[param(nullable = false, default = "30s")]
    timeout: Option<String>,
}

/// Poll for this host's next command
///
/// Long poll: hands out the calling host's oldest pending command, marking it delivered (each command is delivered at most once), or answers 204 when none arrived within `timeout`. Host JWT only: the admin and scoped tokens get 403.
#[utoipa::path(
    get,
    path = "/api/dcmon/commands/next",
    operation_id = "nextCommand",
    tag = "commands",
    security(("hostJwt" = [])),
    params(PollQuery),
    responses(
        (status = 200, description = "A command to run.", body = DeliveredCommand),
        (status = 204, description = "No command within the timeout."),
        (status = 403, description = "The caller is not an enrolled host.", body = Error),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("host"))),
)]
pub async fn next(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<PollQuery>,
) -> Result<Response, ApiError> {
    let client_id = host(&principal)?;
    let timeout = match query.timeout.as_deref() {
        None => Duration::from_secs(30),
        Some(text) => parse_duration(text)
            .map_err(|e| bad(e.to_string()))?
            .min(MAX_POLL),
    };
    let delivered = state.commands.wait_next(client_id, timeout).await?;
    Ok(match delivered {
        Some(command) => {
            tracing::info!(id = command.id, client = client_id, "command delivered");
            Json(command).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Report a command's result
///
/// The calling host reports the result of a command delivered to it. Host JWT only.
#[utoipa::path(
    post,
    path = "/api/dcmon/commands/{id}/result",
    operation_id = "commandResult",
    tag = "commands",
    security(("hostJwt" = [])),
    params(("id" = i64, Path)),
    request_body(content = CommandResult, content_type = "application/json"),
    responses(
        (status = 200, description = "Recorded; the command is succeeded or failed.", body = CommandRecord),
        (status = 400, description = "Invalid body, or a status other than succeeded/failed.", body = Error),
        (status = 403, description = "The caller is not an enrolled host.", body = Error),
        (status = 404, description = "No such command for this host.", body = Error),
        (status = 409, description = "The command is not delivered (already finished, expired or cancelled).", body = Error),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("host"))),
)]
pub async fn result(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Json<CommandRecord>, ApiError> {
    let client_id = host(&principal)?.to_owned();
    let result: CommandResult =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid result: {e}")))?;
    let queue = Arc::clone(&state.commands);
    let record = blocking("command", move || queue.finish(&client_id, id, result)).await?;
    tracing::info!(id, status = record.status.name(), "command finished");
    Ok(Json(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expiries_outside_a_second_to_a_week_are_refused() {
        assert_eq!(parse_expiry(None).unwrap(), DEFAULT_EXPIRY);
        assert_eq!(
            parse_expiry(Some(json!("1h"))).unwrap(),
            Duration::from_secs(3600)
        );
        assert_eq!(
            parse_expiry(Some(json!(90))).unwrap(),
            Duration::from_secs(90)
        );
        for bad in [
            json!(1e20),
            json!(1.7976931348623157e308),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(-1),
            json!(0),
            json!(0.5),
            json!(604_801),
            json!("0"),
            json!("8d"),
            json!("99999999999999999y"),
            json!(true),
            json!([1]),
        ] {
            let err = parse_expiry(Some(bad.clone())).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadData, "{bad}");
        }
    }

    proptest! {
        /// Any number, integer or not, of any size: a duration within the
        /// bounds or a 400, never a panic.
        #[test]
        fn any_number_is_a_bounded_expiry_or_a_refusal(
            float in any::<f64>(),
            integer in any::<i64>(),
            unsigned in any::<u64>(),
        ) {
            for value in [json!(float), json!(integer), json!(unsigned)] {
                match parse_expiry(Some(value)) {
                    Ok(expiry) => prop_assert!(
                        (Duration::from_secs(1)..=MAX_EXPIRY).contains(&expiry)
                    ),
                    Err(err) => prop_assert_eq!(err.kind, ErrorKind::BadData),
                }
            }
        }
    }
}
