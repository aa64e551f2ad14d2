//! dcmon's own JSON endpoints: `/api/dcmon/stats`, `/health`, and the
//! receiver's `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dcmon_protocol::exposition;
use serde_json::json;

use super::blocking;
use super::openapi::{Forbidden, Internal, Unauthorized};
use crate::app::AppState;
use crate::error::ApiError;

/// What is stored and how compactly.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: `stats` builds the answer.
pub(crate) struct Stats {
    series: u64,
    samples: u64,
    /// Samples not yet packed into chunks.
    head_samples: u64,
    /// Packed samples also held decoded in memory (--storage.recent-window).
    recent_samples: u64,
    db_bytes: u64,
    bytes_per_sample: f64,
    #[schema(required = true)]
    oldest_timestamp_ms: Option<i64>,
    #[schema(required = true)]
    newest_timestamp_ms: Option<i64>,
    retention_seconds: u64,
    #[schema(inline)]
    ingest: StatsIngest,
    compactions: u64,
    retention_runs: u64,
    chunks_dropped: u64,
    series_dropped: u64,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct StatsIngest {
    requests: u64,
    samples: u64,
    commits: u64,
    /// Refused write requests by reason.
    rejected: std::collections::BTreeMap<String, f64>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: `health` builds the answer.
pub(crate) struct Health {
    status: HealthStatus,
    /// `ok`, or what failed.
    database: String,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum HealthStatus {
    Ok,
    Error,
}

/// Storage and ingest statistics
///
/// Series and sample counts, database size, time bounds, ingest and maintenance counters.
#[utoipa::path(
    get,
    path = "/api/dcmon/stats",
    operation_id = "getStats",
    tag = "dcmon",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Statistics.", body = Stats),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    ),
    extensions(("x-dcmon-access" = json!("admin"))),
)]
pub async fn stats(
    State(state): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let storage = state.storage.clone();
    let bounds = blocking("stats", move || storage.time_bounds()).await?;
    let storage = &state.storage;
    let samples = storage.sample_count();
    let db_bytes = storage.disk_bytes();
    let counters = storage.counters();
    let rejected: serde_json::Map<String, serde_json::Value> = rejected_by_reason(&state);
    Ok(Json(json!({
        "series": storage.series_count(),
        "samples": samples,
        "head_samples": storage.head_samples(),
        "recent_samples": storage.recent_samples(),
        "db_bytes": db_bytes,
        "bytes_per_sample": if samples > 0 { db_bytes as f64 / samples as f64 } else { 0.0 },
        "oldest_timestamp_ms": bounds.map(|b| b.oldest_ms),
        "newest_timestamp_ms": bounds.map(|b| b.newest_ms),
        "retention_seconds": storage.options().retention.as_secs(),
        "ingest": {
            "requests": state.metrics.write_requests.get(),
            "samples": state.metrics.ingested_samples.get(),
            "commits": counters.commits.load(Ordering::Relaxed),
            "rejected": rejected,
        },
        "compactions": counters.compactions.load(Ordering::Relaxed),
        "compacted_samples": counters.compacted_samples.load(Ordering::Relaxed),
        "compaction_seconds": counters.compaction_micros.load(Ordering::Relaxed) as f64 / 1e6,
        "retention_runs": counters.retention_runs.load(Ordering::Relaxed),
        "chunks_dropped": counters.chunks_dropped.load(Ordering::Relaxed),
        "series_dropped": counters.series_dropped.load(Ordering::Relaxed),
    })))
}

fn rejected_by_reason(state: &AppState) -> serde_json::Map<String, serde_json::Value> {
    let text = exposition::encode(
        state
            .metrics
            .refreshed(&state.storage, &state.query.cache_stats()),
        exposition::Format::Text,
    );
    text.lines()
        .filter_map(|line| line.strip_prefix("dcmon_receiver_rejected_requests_total{reason=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .map(|(reason, value)| {
            (
                reason.to_owned(),
                json!(value.trim().parse::<f64>().unwrap_or(0.0)),
            )
        })
        .collect()
}

/// Liveness and database check
///
/// Any authenticated caller.
//
// 200 `ok` while the database answers and the writer's operations
// succeed; 503 `degraded` naming each failing operation and its cause (a
// full disk, a read-only file, …) while writes, compaction or retention
// fail; 503 `error` when the database does not answer.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "operations",
    security(("adminToken" = []), ("readToken" = []), ("writeToken" = []), ("hostJwt" = [])),
    responses(
        (status = 200, description = "The database answers.", body = Health),
        (status = 503, description = "The database does not answer.", body = Health),
        (status = 401, response = Unauthorized),
    ),
    extensions(("x-dcmon-access" = json!("any"))),
)]
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let storage = state.storage.clone();
    let check = tokio::task::spawn_blocking(move || storage.time_bounds()).await;
    let database = match check {
        Ok(Ok(_)) => None,
        Ok(Err(err)) => {
            tracing::error!(error = %err, "health check failed");
            Some(err.to_string())
        }
        Err(_) => Some("check failed".to_owned()),
    };
    if let Some(database) = database {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "database": database})),
        )
            .into_response();
    }
    let failing = state.storage.failing();
    if failing.is_empty() {
        return Json(json!({"status": "ok", "database": "ok"})).into_response();
    }
    let failing: Vec<serde_json::Value> = failing
        .iter()
        .map(|f| {
            json!({
                "operation": f.operation,
                "cause": f.cause,
                "error": f.error,
                "since_ms": f.since_ms,
                "failures": f.count,
            })
        })
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "degraded", "database": "ok", "failing": failing})),
    )
        .into_response()
}

/// The receiver's own metrics
///
/// `dcmon_receiver_*` and process metrics; Prometheus text 0.0.4 or OpenMetrics by `Accept`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    security(("adminToken" = []), ("readToken" = [])),
    responses(
        (status = 200, description = "Metrics.", content(
            (String = "text/plain; version=0.0.4; charset=utf-8"),
            (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
    extensions(("x-dcmon-access" = json!("read"))),
)]
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = exposition::negotiate(accept);
    let body = exposition::encode(
        state
            .metrics
            .refreshed(&state.storage, &state.query.cache_stats()),
        format,
    );
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}
