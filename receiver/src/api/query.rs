//! The Prometheus HTTP query API (`/api/v1/query`, `query_range`, `series`,
//! `labels`, label values, `metadata`, `query_exemplars`,
//! `status/buildinfo`, `format_query`), answering in Prometheus's JSON
//! shapes so Grafana's stock Prometheus data source works unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Request, State};
use dcmon_protocol::exposition;
use promql_parser::parser::Expr;
use serde_json::{Value as JsonValue, json};
use tokio::sync::{Semaphore, oneshot, watch};

use super::blocking;
use super::openapi::{
    Forbidden, PromBadData, PromExecution, PromSuccess, PromTimeout, Unauthorized,
};
use super::query_json::{self, QueryAnswer};
use super::query_params::{MAX_TIME_MS, MIN_TIME_MS, Params, bad_param};
use super::query_threads::QueryThreads;
use crate::app::AppState;
use crate::error::{ApiError, ErrorKind, OrInternal};
use crate::promql::cache::CacheStats;
use crate::promql::{Engine, QueryCache, QueryError, QueryErrorKind};
use crate::storage::index::{Labels, Matcher};
use crate::storage::now_ms;

/// The engine as the API uses it: a bound on queries run at once, each on
/// a thread of its own with a stack sized for the deepest query accepted,
/// and a switch that cancels them all at shutdown.
#[derive(Debug, Clone)]
pub struct QueryService {
    engine: Engine,
    cache: Arc<QueryCache>,
    slots: Arc<Semaphore>,
    threads: Arc<QueryThreads>,
    shutdown: Arc<Shutdown>,
}

/// Set once the receiver shuts down: the flag stops evaluations at their
/// next check, the channel wakes the requests waiting for them.
#[derive(Debug)]
struct Shutdown {
    flag: Arc<AtomicBool>,
    started: watch::Sender<bool>,
}

impl QueryService {
    /// At most `max_concurrency` queries evaluate at once; the others wait
    /// (within their timeout) for a slot. Range queries use `cache`.
    pub fn new(engine: Engine, max_concurrency: usize, cache: QueryCache) -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        let max_concurrency = max_concurrency.max(1);
        Self {
            engine: engine.with_cancel(Arc::clone(&flag)),
            cache: Arc::new(cache),
            slots: Arc::new(Semaphore::new(max_concurrency)),
            threads: QueryThreads::new(max_concurrency, crate::promql::QUERY_STACK_BYTES),
            shutdown: Arc::new(Shutdown {
                flag,
                started: watch::Sender::new(false),
            }),
        }
    }

    /// The range-query cache's figures, for `/metrics`.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Cancels every running and waiting query, and refuses new ones: they
    /// answer `canceled` at once, and each evaluation thread stops at its
    /// next check (within one evaluation step, or once a parse ends).
    /// Call it when shutdown begins, so that draining in-flight requests
    /// does not wait for long queries.
    pub fn shut_down(&self) {
        self.shutdown.flag.store(true, Ordering::Relaxed);
        self.shutdown.started.send_replace(true);
    }

    /// Runs `f` on a query thread once a slot is free. The request's
    /// deadline (its `timeout`, at most `--query.timeout`) covers the wait
    /// for a slot, parsing and evaluation: past it the request is answered
    /// at once, and the evaluation stops at its next check.
    async fn run<T: Send + 'static>(
        &self,
        timeout: Option<i64>,
        f: impl FnOnce(Engine) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let default = self.engine.options().timeout;
        let timeout = timeout.map_or(default, |ms| {
            default.min(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
        });
        let deadline = tokio::time::Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(far_future);
        let mut shutdown = self.shutdown.started.subscribe();
        if *shutdown.borrow_and_update() {
            return Err(shutting_down().into());
        }
        tokio::select! {
            result = self.evaluate(deadline, f) => result,
            () = tokio::time::sleep_until(deadline) => Err(QueryError::timeout().into()),
            _ = shutdown.wait_for(|down| *down) => Err(shutting_down().into()),
        }
    }

    async fn evaluate<T: Send + 'static>(
        &self,
        deadline: tokio::time::Instant,
        f: impl FnOnce(Engine) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::new(ErrorKind::Internal, "query slots closed"))?;
        // Dropped with this future when the client goes away, the deadline
        // passes or shutdown begins, which stops the evaluation at its next
        // step instead of letting it run out.
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let engine = self
            .engine
            .with_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .with_cancel(Arc::clone(&cancel.0));
        let (answer, answered) = oneshot::channel();
        self.threads
            .run(move || {
                // The slot stays taken until the work really ends.
                let _permit = permit;
                let _ = answer.send(f(engine));
            })
            .or_internal("starting a query thread", "starting the query failed")?;
        // A panic drops the sender: the request fails, the receiver lives.
        let evaluated = answered
            .await
            .map_err(|_| ApiError::new(ErrorKind::Internal, "query task failed"))?;
        Ok(evaluated?)
    }
}

/// A deadline no request reaches (a `timeout` too long to represent).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(365 * 86_400)
}

fn shutting_down() -> QueryError {
    QueryError {
        kind: QueryErrorKind::Canceled,
        message: "query was canceled in query execution: the receiver is shutting down".to_owned(),
    }
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `{"status":"success","data":…}` plus non-empty `warnings`/`infos`.
fn success(data: JsonValue, warnings: &[String], infos: &[String]) -> Json<JsonValue> {
    let mut body = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    if !infos.is_empty() {
        body["infos"] = json!(infos);
    }
    Json(body)
}

fn labels_json(labels: &[(String, String)]) -> JsonValue {
    JsonValue::Object(
        labels
            .iter()
            .map(|(n, v)| (n.clone(), JsonValue::String(v.clone())))
            .collect(),
    )
}

fn required_query(params: &Params) -> Result<String, ApiError> {
    params
        .get("query")
        .map(str::to_owned)
        .ok_or_else(|| bad_param("query", "missing parameter"))
}

/// How the operations answered by an upstream (`--query.upstream.url`) are
/// described.
const UPSTREAM_DESCRIPTION: &str = "As in Prometheus's HTTP API (parameters, response `data`); see the linked documentation. GET with query parameters or POST with a form body. With `--query.upstream.url`, answered by that upstream unless every selector names the receiver's own series (503 `unavailable` when the upstream cannot be reached; its own errors come back with its status, the message naming it).";

/// How the operations always answered here are described.
const LOCAL_DESCRIPTION: &str = "As in Prometheus's HTTP API (parameters, response `data`); see the linked documentation. GET with query parameters or POST with a form body.";

/// How `query` is described: as [`UPSTREAM_DESCRIPTION`], with how its
/// answers are encoded.
const QUERY_DESCRIPTION: &str = "As in Prometheus's HTTP API (parameters, response `data`); see the linked documentation. GET with query parameters or POST with a form body. An answer evaluated here is gzipped when `Accept-Encoding` allows it. With `--query.upstream.url`, answered by that upstream unless every selector names the receiver's own series (503 `unavailable` when the upstream cannot be reached; its own errors come back with its status, the message naming it).";

get_and_post! {
    query(state: State<Arc<AppState>>, request: Request) -> Result<QueryAnswer, ApiError>;
    query_get = "queryGet", query_post = "queryPost";
    path = "/api/v1/query", summary = "Instant query", description = QUERY_DESCRIPTION,
    params(), responses = query_answers
}

get_and_post! {
    query_range(state: State<Arc<AppState>>, request: Request) -> Result<QueryAnswer, ApiError>;
    query_range_get = "queryRangeGet", query_range_post = "queryRangePost";
    path = "/api/v1/query_range", summary = "Range query",
    description = "As in Prometheus's HTTP API (parameters, response `data`); see the linked documentation. GET with query parameters or POST with a form body. `nocache=1` bypasses the range-query cache (`--query.cache-size`). An answer evaluated here is gzipped when `Accept-Encoding` allows it. With `--query.upstream.url`, answered by that upstream unless every selector names the receiver's own series (503 `unavailable` when the upstream cannot be reached; its own errors come back with its status, the message naming it).",
    params(), responses = query_answers
}

get_and_post! {
    series(state: State<Arc<AppState>>, request: Request) -> Result<Json<JsonValue>, ApiError>;
    series_get = "seriesGet", series_post = "seriesPost";
    path = "/api/v1/series", summary = "Series by label matchers", description = UPSTREAM_DESCRIPTION,
    params(), responses = query_answers
}

get_and_post! {
    labels(state: State<Arc<AppState>>, request: Request) -> Result<Json<JsonValue>, ApiError>;
    labels_get = "labelsGet", labels_post = "labelsPost";
    path = "/api/v1/labels", summary = "Label names", description = UPSTREAM_DESCRIPTION,
    params(), responses = query_answers
}

get_and_post! {
    label_values(state: State<Arc<AppState>>, name: Path<String>, request: Request) -> Result<Json<JsonValue>, ApiError>;
    label_values_get = "labelValuesGet", label_values_post = "labelValuesPost";
    path = "/api/v1/label/{name}/values", summary = "Values of one label", description = UPSTREAM_DESCRIPTION,
    params(("name" = String, Path)), responses = query_answers
}

get_and_post! {
    metadata(state: State<Arc<AppState>>, request: Request) -> Result<Json<JsonValue>, ApiError>;
    metadata_get = "metadataGet", metadata_post = "metadataPost";
    path = "/api/v1/metadata", summary = "Metric metadata (from remote-write metadata)", description = LOCAL_DESCRIPTION,
    params(), responses = query_answers
}

get_and_post! {
    query_exemplars(state: State<Arc<AppState>>, request: Request) -> Result<Json<JsonValue>, ApiError>;
    query_exemplars_get = "queryExemplarsGet", query_exemplars_post = "queryExemplarsPost";
    path = "/api/v1/query_exemplars", summary = "Exemplars (always empty: exemplars are not stored)", description = LOCAL_DESCRIPTION,
    params(), responses = query_answers
}

get_and_post! {
    buildinfo() -> Json<JsonValue>;
    buildinfo_get = "buildinfoGet", buildinfo_post = "buildinfoPost";
    path = "/api/v1/status/buildinfo", summary = "Build information", description = LOCAL_DESCRIPTION,
    params(), responses = query_answers
}

get_and_post! {
    format_query(state: State<Arc<AppState>>, request: Request) -> Result<Json<JsonValue>, ApiError>;
    format_query_get = "formatQueryGet", format_query_post = "formatQueryPost";
    path = "/api/v1/format_query", summary = "Format a PromQL expression", description = LOCAL_DESCRIPTION,
    params(), responses = query_answers
}

/// `GET|POST /api/v1/query`
pub async fn query(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<QueryAnswer, ApiError> {
    let gzip = accepts_gzip(&request);
    let params = Params::from_request(request).await?;
    let expr = required_query(&params)?;
    let time = params.time_or("time", now_ms())?;
    let timeout = params.duration("timeout")?;
    // Encoding a large answer is CPU work too: done on the query's thread.
    state
        .query
        .run(timeout, move |engine| {
            engine
                .instant_query(&expr, time)
                .map(|r| query_json::encode(&r, gzip))
        })
        .await
}

/// Whether the client takes a gzipped answer.
fn accepts_gzip(request: &Request) -> bool {
    let header = request.headers().get(axum::http::header::ACCEPT_ENCODING);
    exposition::accepts_gzip(header.and_then(|h| h.to_str().ok()))
}

/// `GET|POST /api/v1/query_range`
pub async fn query_range(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<QueryAnswer, ApiError> {
    let gzip = accepts_gzip(&request);
    let params = Params::from_request(request).await?;
    let expr = required_query(&params)?;
    let start = params.time("start")?;
    let end = params.time("end")?;
    let step = params
        .duration("step")?
        .ok_or_else(|| bad_param("step", "missing parameter"))?;
    let timeout = params.duration("timeout")?;
    // `nocache=1` (as VictoriaMetrics spells it) neither reads nor fills
    // the cache: for checking an answer against a fresh evaluation.
    let cache = match params.get("nocache") {
        Some("1" | "true") => None,
        _ => Some(Arc::clone(&state.query.cache)),
    };
    state
        .query
        .run(timeout, move |engine| {
            engine
                .range_query_cached(&expr, start, end, step, cache.as_deref())
                .map(|r| query_json::encode(&r, gzip))
        })
        .await
}

/// The matchers of each `match[]` selector.
fn selectors(state: &AppState, params: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    params
        .all("match[]")
        .into_iter()
        .map(|text| {
            // Under --query.max-length like any query.
            let expr = state.query.engine.parse(text)?;
            match expr {
                Expr::VectorSelector(vs) => Ok(crate::promql::plan::storage_matchers(&vs)?),
                _ => Err(bad_param("match[]", "expected a vector selector")),
            }
        })
        .collect()
}

/// Series matching any of `selectors`: from the index alone when no time
/// range was asked for, else only those with data in the range (judged
/// from chunk bounds; no sample is decoded). At most `max` are gathered:
/// the walk stops there, and `more` says whether it stopped early.
async fn matching_series(
    state: &AppState,
    params: &Params,
    selectors: Vec<Vec<Matcher>>,
    max: usize,
) -> Result<Matched, ApiError> {
    let ranged = params.get("start").is_some() || params.get("end").is_some();
    let start = params.time_or("start", MIN_TIME_MS)?;
    let end = params.time_or("end", MAX_TIME_MS)?;
    // One more than asked, to know whether anything was left out.
    let wanted = max.saturating_add(1);
    state
        .query
        .run(None, move |engine| {
            let mut found: BTreeSet<Labels> = BTreeSet::new();
            for matchers in &selectors {
                let left = wanted - found.len();
                if ranged {
                    found.extend(
                        engine
                            .storage()
                            .series_in_range(matchers, start, end, left)?,
                    );
                } else {
                    found.extend(engine.storage().series_labels(matchers, left));
                }
                if found.len() >= wanted {
                    break;
                }
            }
            let more = found.len() > max;
            Ok(Matched {
                series: found.into_iter().take(max).collect(),
                more,
            })
        })
        .await
}

/// What [`matching_series`] found.
struct Matched {
    series: Vec<Labels>,
    more: bool,
}

/// Truncates to `limit`, with Prometheus's warning when it cut anything.
fn limited<T>(mut items: Vec<T>, limit: Option<usize>, warnings: &mut Vec<String>) -> Vec<T> {
    if let Some(limit) = limit
        && items.len() > limit
    {
        items.truncate(limit);
        warnings.push("results truncated due to limit".to_owned());
    }
    items
}

/// `GET|POST /api/v1/series`: stops walking the index at `limit` (with
/// Prometheus's warning) or, without one, refuses a match of more than
/// `--query.max-series` series rather than building an answer of any size.
pub async fn series(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<JsonValue>, ApiError> {
    let params = Params::from_request(request).await?;
    let selectors = selectors(&state, &params)?;
    if selectors.is_empty() {
        return Err(ApiError::new(
            ErrorKind::BadData,
            "no match[] parameter provided",
        ));
    }
    let limit = params.limit()?;
    let cap = state.limits.query_max_series;
    let max = limit.map_or(cap, |l| l.min(cap));
    let found = matching_series(&state, &params, selectors, max).await?;
    let mut warnings = Vec::new();
    if found.more {
        if limit.is_some_and(|l| l <= cap) {
            warnings.push("results truncated due to limit".to_owned());
        } else {
            return Err(ApiError::new(
                ErrorKind::Execution,
                format!(
                    "the selectors match more than {cap} series (--query.max-series); narrow them or pass limit"
                ),
            ));
        }
    }
    let data: Vec<JsonValue> = found.series.iter().map(|l| labels_json(l)).collect();
    Ok(success(JsonValue::Array(data), &warnings, &[]))
}

/// `GET|POST /api/v1/labels`
pub async fn labels(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<JsonValue>, ApiError> {
    let params = Params::from_request(request).await?;
    let selectors = selectors(&state, &params)?;
    let limit = params.limit()?;
    let names: Vec<String> = if selectors.is_empty() {
        state.storage.label_names()
    } else {
        let found = matching_series(&state, &params, selectors, usize::MAX).await?;
        let names: BTreeSet<String> = found
            .series
            .iter()
            .flat_map(|l| l.iter().map(|(n, _)| n.clone()))
            .collect();
        names.into_iter().collect()
    };
    let mut warnings = Vec::new();
    let names = limited(names, limit, &mut warnings);
    Ok(success(json!(names), &warnings, &[]))
}

/// `GET|POST /api/v1/label/{name}/values`
pub async fn label_values(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Json<JsonValue>, ApiError> {
    if !crate::promql::valid_label_name(&name) {
        return Err(ApiError::new(
            ErrorKind::BadData,
            format!("invalid label name: {name:?}"),
        ));
    }
    let params = Params::from_request(request).await?;
    let selectors = selectors(&state, &params)?;
    let limit = params.limit()?;
    let values: Vec<String> = if selectors.is_empty() {
        state.storage.label_values(&name)
    } else {
        let found = matching_series(&state, &params, selectors, usize::MAX).await?;
        let values: BTreeSet<String> = found
            .series
            .iter()
            .filter_map(|l| l.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()))
            .collect();
        values.into_iter().collect()
    };
    let mut warnings = Vec::new();
    let values = limited(values, limit, &mut warnings);
    Ok(success(json!(values), &warnings, &[]))
}

/// `GET|POST /api/v1/metadata`, from the metadata remote-write senders
/// sent (`metric`, `limit` and `limit_per_metric` honoured; one entry per
/// family, since only the latest is stored).
pub async fn metadata(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<JsonValue>, ApiError> {
    let params = Params::from_request(request).await?;
    let metric = params.get("metric").map(str::to_owned);
    let limit = params.limit()?;
    let storage = state.storage.clone();
    // Answered as "reading metadata failed", not as any storage query.
    let families = blocking("metadata", move || {
        storage
            .metadata()
            .or_internal("reading metadata", "reading metadata failed")
    })
    .await?;
    let mut data: BTreeMap<String, JsonValue> = BTreeMap::new();
    for family in families {
        if metric.as_ref().is_some_and(|m| *m != family.family) {
            continue;
        }
        if limit.is_some_and(|l| data.len() >= l) {
            break;
        }
        data.insert(
            family.family,
            json!([{"type": family.kind, "help": family.help, "unit": family.unit}]),
        );
    }
    Ok(success(json!(data), &[], &[]))
}

/// `GET|POST /api/v1/query_exemplars`: exemplars are not stored, so the
/// answer is always empty (after checking the query parses).
pub async fn query_exemplars(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<JsonValue>, ApiError> {
    let params = Params::from_request(request).await?;
    if let Some(text) = params.get("query").map(str::to_owned) {
        state
            .query
            .run(None, move |engine| engine.parse(&text).map(drop))
            .await?;
    }
    Ok(success(json!([]), &[], &[]))
}

/// `GET|POST /api/v1/status/buildinfo`. The version is the Prometheus
/// version whose query semantics the engine follows, so clients that
/// check it (Grafana) enable the matching features.
pub async fn buildinfo() -> Json<JsonValue> {
    success(
        json!({
            "version": PROMETHEUS_COMPATIBLE_VERSION,
            "revision": concat!("dcmon-receiver ", env!("CARGO_PKG_VERSION")),
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }),
        &[],
        &[],
    )
}

/// The Prometheus version `buildinfo` reports.
pub const PROMETHEUS_COMPATIBLE_VERSION: &str = "3.0.0";

/// `GET|POST /api/v1/format_query`
pub async fn format_query(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<JsonValue>, ApiError> {
    let params = Params::from_request(request).await?;
    let text = required_query(&params)?;
    // Printing recurses over the tree: on a query thread, like evaluation.
    let pretty = state
        .query
        .run(None, move |engine| Ok(engine.parse(&text)?.prettify()))
        .await?;
    Ok(success(json!(pretty), &[], &[]))
}
