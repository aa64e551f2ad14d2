//! The HTTP face of the exporter: `GET /` (a landing page) and the
//! telemetry path (`/metrics`), which runs one scrape per request.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::collector::SharedScraper;
use crate::exposition;
use crate::self_metrics;
use crate::shipper::ShipperMetrics;
use dcmon_protocol::exposition as negotiation;

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Runs the collectors (shared with the shipper).
    pub scraper: Arc<SharedScraper>,
    /// The shipper's counters, when it runs.
    pub shipper: Option<Arc<ShipperMetrics>>,
    /// Path of the metrics endpoint, for the landing page link.
    pub telemetry_path: String,
}

/// The exporter's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let path = state.telemetry_path.clone();
    Router::new()
        .route("/", get(landing_page))
        .route(&path, get(metrics))
        .with_state(state)
}

async fn landing_page(State(state): State<Arc<AppState>>) -> Html<String> {
    let path = &state.telemetry_path;
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>dcmon-exporter</title></head><body>\n\
         <h1>dcmon-exporter</h1>\n<p>Version {}.</p>\n<p><a href=\"{path}\">Metrics</a></p>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    ))
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = negotiation::negotiate(header_str(header::ACCEPT));
    let gzip = negotiation::accepts_gzip(header_str(header::ACCEPT_ENCODING));

    let mut snapshot = state.scraper.scrape().await;
    self_metrics::collect(&mut snapshot);
    if let Some(shipper) = &state.shipper {
        shipper.collect(&mut snapshot);
    }
    snapshot.sort();
    let body = exposition::encode(snapshot, format);

    let content_type = [(header::CONTENT_TYPE, format.content_type())];
    if gzip {
        let compressed = negotiation::gzip(body.as_bytes());
        (
            StatusCode::OK,
            content_type,
            [(header::CONTENT_ENCODING, "gzip")],
            compressed,
        )
            .into_response()
    } else {
        (StatusCode::OK, content_type, body).into_response()
    }
}
