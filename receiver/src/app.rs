//! The router: every route sits behind [`auth::require_principal`], so an
//! endpoint cannot be added unauthenticated by accident.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::api;
use crate::api::query::QueryService;
use crate::auth::{self, Access, Authenticator, ClientStore};
use crate::commands::CommandQueue;
use crate::error::{ApiError, ErrorKind};
use crate::metrics::{HandlerLabels, Metrics};
use crate::storage::Storage;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted (compressed) request body.
    pub max_request_bytes: usize,
    /// What one write, and one sender per hour, may add.
    pub write: api::write_limits::WriteLimits,
    /// Most series `/api/v1/series` answers with.
    pub query_max_series: usize,
}

/// Largest form body a query endpoint accepts.
pub const MAX_QUERY_FORM_BYTES: usize = 4 << 20;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// Sample storage.
    pub storage: Storage,
    /// The receiver's own metrics.
    pub metrics: Metrics,
    /// Request limits.
    pub limits: Limits,
    /// Enrolled hosts.
    pub clients: Arc<ClientStore>,
    /// How often hosts are expected to write (their status derives from it).
    pub push_interval: Duration,
    /// The command queue.
    pub commands: Arc<CommandQueue>,
    /// Lowest fan duty a command may set, percent.
    pub min_duty: u8,
    /// The PromQL engine behind the query API.
    pub query: QueryService,
    /// New series each sender may still add this hour.
    pub series_budgets: api::write_limits::SeriesBudgets,
}

/// The receiver's HTTP application.
pub fn router(state: Arc<AppState>, auth: Authenticator) -> Router {
    use api::query as q;
    let guarded = |access: Access, routes: Router<Arc<AppState>>| {
        routes.route_layer(middleware::from_fn_with_state(access, auth::require_access))
    };
    let write = guarded(
        Access::Write,
        Router::new().route("/api/v1/write", post(api::write::write)),
    );
    let read = guarded(
        Access::Read,
        Router::new()
            .route("/metrics", get(api::dcmon::metrics))
            // Documentation only: whoever may query may read how to.
            .route("/api/dcmon/openapi.json", get(api::openapi::document))
            .route("/api/v1/query", get(q::query).post(q::query))
            .route(
                "/api/v1/query_range",
                get(q::query_range).post(q::query_range),
            )
            .route("/api/v1/series", get(q::series).post(q::series))
            .route("/api/v1/labels", get(q::labels).post(q::labels))
            .route(
                "/api/v1/label/{name}/values",
                get(q::label_values).post(q::label_values),
            )
            .route("/api/v1/metadata", get(q::metadata).post(q::metadata))
            .route(
                "/api/v1/query_exemplars",
                get(q::query_exemplars).post(q::query_exemplars),
            )
            .route(
                "/api/v1/status/buildinfo",
                get(q::buildinfo).post(q::buildinfo),
            )
            .route(
                "/api/v1/format_query",
                get(q::format_query).post(q::format_query),
            )
            // Query forms are small; bound what a POST may make us buffer.
            .route_layer(DefaultBodyLimit::max(MAX_QUERY_FORM_BYTES)),
    );
    let admin = guarded(
        Access::Admin,
        Router::new()
            .route("/api/dcmon/stats", get(api::dcmon::stats))
            .route("/api/dcmon/register", post(api::clients::register))
            .route("/api/dcmon/clients", get(api::clients::list))
            .route("/api/dcmon/clients/{id}/revoke", post(api::clients::revoke))
            .route(
                "/api/dcmon/commands",
                post(api::commands::create).get(api::commands::list),
            )
            .route("/api/dcmon/commands/{id}", get(api::commands::get))
            .route(
                "/api/dcmon/commands/{id}/cancel",
                post(api::commands::cancel),
            ),
    );
    let host = guarded(
        Access::Host,
        Router::new()
            .route("/api/dcmon/commands/next", get(api::commands::next))
            .route(
                "/api/dcmon/commands/{id}/result",
                post(api::commands::result),
            ),
    );
    let any = Router::new().route("/health", get(api::dcmon::health));
    Router::new()
        .merge(write)
        .merge(read)
        .merge(admin)
        .merge(host)
        .merge(any)
        .fallback(not_found)
        // The write handler enforces its own limit, with a 413 of its own.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            record_duration,
        ))
        .layer(middleware::from_fn_with_state(
            auth,
            auth::require_principal,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "no such endpoint")
}

/// Observes each request's latency under its route pattern.
async fn record_duration(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let handler = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request_duration
        .get_or_create(&HandlerLabels { handler })
        .observe(started.elapsed().as_secs_f64());
    response
}
