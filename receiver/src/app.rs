//! The router: every route sits behind [`auth::require_principal`], so an
//! endpoint cannot be added unauthenticated by accident.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api;
use crate::api::query::QueryService;
use crate::auth::{self, Access, Authenticator, ClientStore};
use crate::commands::CommandQueue;
use crate::error::{self, ApiError, ErrorKind};
use crate::metrics::{HandlerLabels, Metrics};
use crate::serve::Shutdown;
use crate::storage::Storage;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted (compressed) remote-write body.
    pub max_request_bytes: usize,
    /// What one write, and one sender per hour, may add.
    pub write: api::write_limits::WriteLimits,
    /// Most series `/api/v1/series` answers with.
    pub query_max_series: usize,
    /// Largest body any other route buffers; beyond it, 413.
    pub max_body_bytes: usize,
}

/// Largest form body a query endpoint accepts; also the default of
/// [`Limits::max_body_bytes`].
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
    /// The rule groups evaluated (none without `--rules.file`).
    pub rules: Arc<crate::rules::Rules>,
    /// Forwarding accepted writes upstream, when configured.
    pub forward: Option<Arc<crate::forward::Forwarder>>,
    /// Where the query API's data routes are answered, when not here.
    pub query_upstream: Option<Arc<crate::forward::query::QueryUpstream>>,
}

/// The routes of one group, each with its OpenAPI operation.
type Routes = OpenApiRouter<Arc<AppState>>;

/// Every route with its OpenAPI operation, in its access group: `routes!`
/// registers a handler together with its `#[utoipa::path]` description,
/// so no route is served without one (nothing here calls the
/// undocumented `.route`). `proxy` wraps the query routes an upstream
/// answers and `poll` the host's long poll: both need the running
/// receiver, and [`operations`] builds the table without them.
fn routes(proxy: impl FnOnce(Routes) -> Routes, poll: impl FnOnce(Routes) -> Routes) -> Routes {
    use api::query as q;
    use api::{clients, commands, dcmon, openapi, rules, write};
    let guarded = |access: Access, routes: Routes| {
        routes.route_layer(middleware::from_fn_with_state(access, auth::require_access))
    };
    let write = guarded(
        Access::Write,
        Routes::new()
            .routes(routes!(write::write))
            // Remote-write senders log the plain-text reason as it is.
            .route_layer(middleware::map_response(keep_plain_errors)),
    );
    let read = guarded(
        Access::Read,
        Routes::new()
            .routes(routes!(dcmon::metrics))
            // Documentation only: whoever may query may read how to.
            .routes(routes!(openapi::document))
            // Answered by --query.upstream.url when one is set.
            .merge(proxy(
                Routes::new()
                    .routes(routes!(q::query_get, q::query_post))
                    .routes(routes!(q::query_range_get, q::query_range_post))
                    .routes(routes!(q::series_get, q::series_post))
                    .routes(routes!(q::labels_get, q::labels_post))
                    .routes(routes!(q::label_values_get, q::label_values_post)),
            ))
            .routes(routes!(q::metadata_get, q::metadata_post))
            .routes(routes!(q::query_exemplars_get, q::query_exemplars_post))
            .routes(routes!(q::buildinfo_get, q::buildinfo_post))
            .routes(routes!(q::format_query_get, q::format_query_post))
            .routes(routes!(rules::rules_get, rules::rules_post))
            .routes(routes!(rules::alerts_get, rules::alerts_post)),
    );
    let admin = guarded(
        Access::Admin,
        Routes::new()
            .routes(routes!(dcmon::stats))
            .routes(routes!(rules::reload_post, rules::reload_put))
            .routes(routes!(clients::register))
            .routes(routes!(clients::list))
            .routes(routes!(clients::revoke))
            .routes(routes!(commands::create, commands::list))
            .routes(routes!(commands::get))
            .routes(routes!(commands::batch))
            .routes(routes!(commands::cancel_batch))
            .routes(routes!(commands::cancel)),
    );
    let host = guarded(
        Access::Host,
        Routes::new()
            .merge(poll(Routes::new().routes(routes!(commands::next))))
            .routes(routes!(commands::result)),
    );
    let any = Routes::new().routes(routes!(dcmon::health));
    Routes::new()
        .merge(write)
        .merge(read)
        .merge(admin)
        .merge(host)
        .merge(any)
}

/// The operations [`router`] serves, described: the same table, without
/// the layers that need a running receiver.
pub fn operations() -> utoipa::openapi::OpenApi {
    routes(|routes| routes, |routes| routes).into_openapi()
}

/// The receiver's HTTP application; `shutdown` ends long polls early.
pub fn router(state: Arc<AppState>, auth: Authenticator, shutdown: Shutdown) -> Router {
    let proxy_state = Arc::clone(&state);
    let (routes, _) = routes(
        |routes| {
            routes.route_layer(middleware::from_fn_with_state(
                proxy_state,
                crate::forward::query::proxy,
            ))
        },
        |routes| routes.route_layer(middleware::from_fn_with_state(shutdown, end_on_shutdown)),
    )
    .split_for_parts();
    routes
        .fallback(not_found)
        // Every extractor that buffers a body stops at this size (413); the
        // write handler reads its body itself, under its own limit.
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            record_duration,
        ))
        .layer(middleware::from_fn_with_state(
            auth,
            auth::require_principal,
        ))
        // Outermost, so that axum's own answers (extractor rejections,
        // 405, 413) get the JSON error shape as well.
        .layer(middleware::map_response(json_errors))
        .with_state(state)
}

/// Marks an answer whose error body stays as the handler wrote it.
#[derive(Debug, Clone, Copy)]
struct PlainErrors;

/// Only the write handler's own refusals (text) stay plain; axum's
/// answers on the route (405) become JSON like everywhere else.
async fn keep_plain_errors(mut response: Response) -> Response {
    let text = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if text {
        response.extensions_mut().insert(PlainErrors);
    }
    response
}

/// The one place every answer passes on its way out: an internal
/// failure's cause is logged here, then the answer takes the JSON shape.
async fn json_errors(response: Response) -> Response {
    error::log_internal(&response);
    if response.extensions().get::<PlainErrors>().is_some() {
        return response;
    }
    error::into_json_error(response).await
}

/// Answers a host's long poll with "no command" (204) as soon as the
/// receiver stops, instead of holding the shutdown for the poll's timeout.
/// Delivery is at most once anyway: a command taken just before is
/// reported failed by its result deadline, as for any lost answer.
async fn end_on_shutdown(
    State(shutdown): State<Shutdown>,
    request: Request,
    next: Next,
) -> Response {
    tokio::select! {
        response = next.run(request) => response,
        () = shutdown.fired() => StatusCode::NO_CONTENT.into_response(),
    }
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
