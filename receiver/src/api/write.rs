//! `POST /api/v1/write`: Prometheus Remote-Write 1.0 and 2.0.
//!
//! Status codes tell the sender whether a retry can help: 2xx stored; 400
//! (malformed, invalid, too old or too far in the future), 413 (too large)
//! and 415 (content type or encoding not spoken) never succeed on retry; 5xx
//! means "try again" and nothing was acknowledged. Remote-Write 2.0 answers,
//! errors included, carry the `X-Prometheus-Remote-Write-*-Written` headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dcmon_protocol::remote_write::{
    self, DecodeError, RequestView, UnsupportedContentType, Version, headers,
};

use super::openapi::{Forbidden, Unauthorized};
use super::write_limits::{BudgetError, LimitError};
use crate::app::AppState;
use crate::auth::Principal;
use crate::storage::{StorageError, now_ms};

/// How far ahead of the receiver's clock a sample may be (Prometheus: 10 min).
pub const MAX_AHEAD: Duration = Duration::from_secs(600);

/// Decompressed bodies may be this many times larger than the body limit.
const DECOMPRESSION_FACTOR: usize = 8;

/// A refused write: status, metric reason and message for the sender.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    reason: &'static str,
    message: String,
    /// `Retry-After` for a 429 whose cause passes with time.
    retry_after: Option<Duration>,
}

impl Rejection {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<LimitError> for Rejection {
    fn from(err: LimitError) -> Self {
        Rejection::new(StatusCode::BAD_REQUEST, err.reason, err.message)
    }
}

impl From<BudgetError> for Rejection {
    fn from(err: BudgetError) -> Self {
        match err {
            // More than a whole hour's budget in one request never passes.
            BudgetError::OverBudget { .. } => Rejection::new(
                StatusCode::BAD_REQUEST,
                "series_budget_exceeded",
                err.to_string(),
            ),
            BudgetError::Spent { retry_after, .. } => Rejection {
                retry_after: Some(retry_after),
                ..Rejection::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "series_budget_spent",
                    err.to_string(),
                )
            },
        }
    }
}

impl From<StorageError> for Rejection {
    /// Storage failures are the receiver's: the sender keeps the samples
    /// and retries (5xx, or 429 for the series limit, which an operator
    /// lifts by raising it or by retention dropping series).
    fn from(err: StorageError) -> Self {
        let status = match &err {
            StorageError::SeriesLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            StorageError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            StorageError::Busy(_) | StorageError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let reason = match &err {
            StorageError::SeriesLimit { .. } => "series_limit_reached",
            _ => "storage_error",
        };
        Rejection::new(status, reason, format!("storing samples: {err}"))
    }
}

impl From<DecodeError> for Rejection {
    fn from(err: DecodeError) -> Self {
        let reason = match &err {
            DecodeError::Snappy(_) => "bad_snappy",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Protobuf(_) => "bad_protobuf",
            DecodeError::MissingName { .. } => "missing_metric_name",
            DecodeError::EmptyLabelName { .. } => "invalid_label_name",
            DecodeError::DuplicateLabel { .. } => "duplicate_label",
            DecodeError::BadSymbolRef(_) => "bad_symbol_reference",
            DecodeError::NativeHistograms(_) => "native_histograms",
        };
        let status = match err {
            DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Rejection::new(status, reason, err.to_string())
    }
}

// A snappy-compressed protobuf message, as a schema.
#[derive(utoipa::ToSchema)]
#[schema(
    content_media_type = "application/x-protobuf",
    content_encoding = "binary"
)]
#[allow(dead_code)] // A schema only: `write` reads the body itself.
struct Protobuf(String);

/// Prometheus Remote-Write 1.0 and 2.0
///
/// Snappy-compressed protobuf; the version is negotiated by `Content-Type`. Hosts may write only as their own `instance` (the receiver sets it). 4xx: the request can never succeed; 5xx: retry. Refusals are plain text. Remote-Write 2.0 answers carry the `X-Prometheus-Remote-Write-*-Written` headers.
#[utoipa::path(
    post,
    path = "/api/v1/write",
    operation_id = "remoteWrite",
    tag = "ingest",
    security(("adminToken" = []), ("writeToken" = []), ("hostJwt" = [])),
    request_body(content(
        (inline(Protobuf) = "application/x-protobuf"),
        (inline(Protobuf) = "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
    )),
    responses(
        (status = 200, description = "Stored (Remote-Write 2.0)."),
        (status = 204, description = "Stored (Remote-Write 1.0)."),
        (status = 400, description = "Malformed snappy or protobuf, invalid labels, samples more than 10 minutes ahead or past retention, native histograms.", body = String, content_type = "text/plain"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, description = "Body larger than `--web.max-request-bytes` (or decompresses too large).", body = String, content_type = "text/plain"),
        (status = 415, description = "Content type or encoding not spoken.", body = String, content_type = "text/plain"),
        (status = 500, description = "Storage failed; nothing was acknowledged.", body = String, content_type = "text/plain"),
    ),
    extensions(("x-dcmon-access" = json!("write"))),
)]
pub async fn write(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // Parsed once: the answer's shape depends on it even when it is refused.
    let negotiated = remote_write::version_from_content_type(content_type);
    let version = negotiated.clone().unwrap_or(Version::V2);
    let outcome = accept(&state, &principal, negotiated, &headers, body).await;
    let written = outcome.as_ref().map_or(0, |n| *n);
    let mut response = match outcome {
        Ok(_) => match version {
            // Prometheus answers 1.0 writes with 204; the 2.0 spec asks for 200.
            Version::V1 => StatusCode::NO_CONTENT.into_response(),
            Version::V2 => StatusCode::OK.into_response(),
        },
        Err(rejection) => {
            state.metrics.reject(rejection.reason);
            if rejection.status.is_server_error() {
                tracing::error!(reason = rejection.reason, error = %rejection.message, "write failed");
            } else {
                tracing::debug!(reason = rejection.reason, error = %rejection.message, "write refused");
            }
            let mut response = (
                rejection.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                rejection.message + "\n",
            )
                .into_response();
            if let Some(after) = rejection.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
            }
            response
        }
    };
    if version == Version::V2 {
        let h = response.headers_mut();
        h.insert(headers::SAMPLES_WRITTEN, HeaderValue::from(written));
        h.insert(headers::HISTOGRAMS_WRITTEN, HeaderValue::from(0));
        h.insert(headers::EXEMPLARS_WRITTEN, HeaderValue::from(0));
    }
    response
}

/// Decodes, validates and stores one request; the number of samples written.
async fn accept(
    state: &AppState,
    principal: &Principal,
    negotiated: Result<Version, UnsupportedContentType>,
    headers: &HeaderMap,
    body: Body,
) -> Result<usize, Rejection> {
    let version = negotiated.map_err(|e| {
        Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            e.to_string(),
        )
    })?;
    if let Some(encoding) = headers.get(headers::CONTENT_ENCODING)
        && !encoding
            .as_bytes()
            .eq_ignore_ascii_case(headers::SNAPPY.as_bytes())
    {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!("unsupported content encoding {encoding:?}: only snappy is accepted"),
        ));
    }
    let limit = state.limits.max_request_bytes;
    let compressed = axum::body::to_bytes(body, limit).await.map_err(|err| {
        let too_large = std::error::Error::source(&err)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body exceeds {limit} bytes"),
            )
        } else {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("reading request body: {err}"),
            )
        }
    })?;
    let raw = remote_write::decompress(&compressed, limit.saturating_mul(DECOMPRESSION_FACTOR))?;
    let mut batch = remote_write::decode_view(version, &raw)?;
    if let Principal::Client { instance, .. } = principal {
        claim_instance(&mut batch, instance);
    }
    state.limits.write.check(&batch)?;
    check_timestamps(&batch, now_ms(), state.storage.options().retention)?;
    let samples = batch.sample_count();
    if let Some(forward) = state.forward.as_ref().filter(|f| f.forward_only()) {
        return forward_only(state, forward, batch, samples).await;
    }
    // Forwarded as stored: after the host labels are enforced.
    let forward_copy = state.forward.as_ref().map(|_| batch.to_request());
    // New series are counted against the limits before anything is stored.
    let prepared = state.storage.prepare_view(&batch);
    drop(batch);
    state.storage.check_series_limit(prepared.new_series())?;
    state.series_budgets.charge(
        &state.limits.write,
        principal,
        prepared.new_series(),
        Instant::now(),
    )?;
    state.storage.commit(prepared).await?;
    if let (Some(forward), Some(copy)) = (&state.forward, forward_copy) {
        // Only a hand-over: the acknowledgement never waits on an upstream.
        forward.submit(copy, now_ms());
    }
    state.metrics.ingested_samples.inc_by(samples as u64);
    state.metrics.write_requests.inc();
    Ok(samples)
}

/// `--storage.mode forward-only`: the samples go only upstream, the
/// metadata is kept. The write is acknowledged once forwarding has taken
/// it; when forwarding is too far behind to take it, the answer is 503 so
/// the sender keeps it and retries.
async fn forward_only(
    state: &AppState,
    forward: &crate::forward::Forwarder,
    batch: RequestView<'_>,
    samples: usize,
) -> Result<usize, Rejection> {
    let copy = batch.to_request();
    drop(batch);
    if !copy.metadata.is_empty() {
        let prepared = state.storage.prepare(Vec::new(), copy.metadata.clone());
        state.storage.commit(prepared).await?;
    }
    if !forward.try_submit(copy, now_ms()) {
        return Err(Rejection {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "forwarding_behind",
            message:
                "forwarding to the upstreams is too far behind to take this write; retry later"
                    .into(),
            retry_after: Some(Duration::from_secs(1)),
        });
    }
    state.metrics.ingested_samples.inc_by(samples as u64);
    state.metrics.write_requests.inc();
    Ok(samples)
}

/// Sets `instance` (and `host`, where a sender added one) on every series
/// of an enrolled host to the host's own name: a host can only ever write
/// its own series, whatever it sends.
fn claim_instance<'a>(batch: &mut RequestView<'a>, instance: &'a str) {
    batch.set_label("instance", instance, true);
    batch.set_label("host", instance, false);
}

/// Refuses samples more than [`MAX_AHEAD`] in the future, as Prometheus
/// does, and samples already past the retention window (they would be
/// dropped at once). Late samples within the window are welcome.
fn check_timestamps(batch: &RequestView, now: i64, retention: Duration) -> Result<(), Rejection> {
    let newest_allowed = now + MAX_AHEAD.as_millis() as i64;
    let oldest_allowed = now - retention.as_millis() as i64;
    for series in batch.series() {
        for (ts, _) in series.samples {
            if *ts > newest_allowed {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "too_far_in_future",
                    format!(
                        "sample of {} at {ts} is more than {}s ahead of the receiver's clock ({now})",
                        remote_write::describe(series.labels),
                        MAX_AHEAD.as_secs()
                    ),
                ));
            }
            if *ts < oldest_allowed {
                return Err(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "too_old",
                    format!(
                        "sample of {} at {ts} is older than the retention window ({}s)",
                        remote_write::describe(series.labels),
                        retention.as_secs()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcmon_protocol::remote_write::SeriesSamples;

    #[test]
    fn a_host_writes_only_its_own_instance() {
        let series = |labels: &[(&str, &str)]| SeriesSamples {
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            samples: vec![(1, 1.0)],
        };
        let body = remote_write::encode_v1(&[
            series(&[("__name__", "up"), ("instance", "other"), ("job", "x")]),
            series(&[("__name__", "up"), ("job", "x")]),
            series(&[("__name__", "a"), ("host", "other")]),
        ]);
        let mut batch = remote_write::decode_view(Version::V1, &body).unwrap();
        claim_instance(&mut batch, "gpu-01");
        let labels: Vec<Vec<(&str, &str)>> = batch.series().map(|s| s.labels.to_vec()).collect();
        assert_eq!(
            labels,
            vec![
                vec![("__name__", "up"), ("instance", "gpu-01"), ("job", "x")],
                vec![("__name__", "up"), ("instance", "gpu-01"), ("job", "x")],
                vec![
                    ("__name__", "a"),
                    ("host", "gpu-01"),
                    ("instance", "gpu-01")
                ],
            ]
        );
    }
}
