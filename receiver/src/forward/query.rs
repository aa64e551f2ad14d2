//! Reading back through the upstream (`--query.upstream.url`): the query
//! API's data routes (`query`, `query_range`, `series`, `labels`, label
//! values) are answered by the upstream the receiver forwards to, so
//! Grafana keeps one data source. dcmon's read tokens and web
//! configuration still guard them: this layer sits inside the
//! authentication.
//!
//! The receiver's own series (`up` and `dcmon_client_last_seen_timestamp_seconds`
//! of enrolled hosts, which it writes itself and never forwards, and its
//! `dcmon_receiver_*` metrics) stay answerable: a request whose every
//! selector names only those is evaluated locally. An upstream that cannot
//! be reached gives 503 in Prometheus's error shape, naming the upstream;
//! an error the upstream answers comes back with its status, in the same
//! shape, its message prefixed with the upstream's name.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dcmon_ship::endpoint::{EndpointAuth, describe_error};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::json;

use crate::app::AppState;

/// Largest upstream answer passed on.
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// The upstream's query API.
#[derive(Debug)]
pub struct QueryUpstream {
    /// Base URL, without a trailing `/`: `/api/v1/query` is appended.
    base: String,
    /// For errors and logs (no credentials).
    name: String,
    auth: EndpointAuth,
    client: reqwest::Client,
}

impl QueryUpstream {
    /// The upstream at `base` (e.g. `http://vmselect:8481/select/0/prometheus`),
    /// authorised by `auth`; `timeout` bounds one request.
    pub fn new(base: &str, auth: EndpointAuth, timeout: Duration) -> Result<Self, String> {
        let url = reqwest::Url::parse(base).map_err(|e| format!("{base:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{base:?}: only http and https are supported"));
        }
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        dcmon_web::install_crypto_provider();
        let tls = dcmon_ship::tls::TlsOptions::default()
            .client_config()
            .map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("dcmon-receiver/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            name: shown.as_str().trim_end_matches('/').to_owned(),
            auth,
            client,
        })
    }

    /// The upstream's name, for errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends the request on and passes the answer back.
    async fn forward(
        &self,
        method: axum::http::Method,
        path_and_query: &str,
        content_type: Option<HeaderValue>,
        body: Bytes,
    ) -> Response {
        let url = format!("{}{path_and_query}", self.base);
        let method =
            reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut request = self.client.request(method, url);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type.as_bytes());
        }
        request = match self.authorize(request) {
            Ok(request) => request,
            Err(err) => return self.unavailable(&format!("preparing credentials: {err:#}")),
        };
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(err) => return self.unavailable(&describe_error(&err)),
        };
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .cloned();
        let answer = match read_capped(response).await {
            Ok(answer) => answer,
            Err(err) => return self.unavailable(&err),
        };
        if status.is_success() {
            let mut out = (status, Body::from(answer)).into_response();
            if let Some(value) =
                content_type.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
            {
                out.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            return out;
        }
        // An error: Prometheus's shape, naming the upstream.
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&answer).ok();
        let (error_type, message) = match parsed.as_ref() {
            Some(body) if body["error"].is_string() => (
                body["errorType"].as_str().unwrap_or("upstream").to_owned(),
                body["error"].as_str().unwrap_or_default().to_owned(),
            ),
            _ => (
                "upstream".to_owned(),
                String::from_utf8_lossy(&answer[..answer.len().min(1024)])
                    .trim()
                    .to_owned(),
            ),
        };
        error_answer(
            status,
            &error_type,
            &format!("upstream {}: {message}", self.name),
        )
    }

    fn unavailable(&self, why: &str) -> Response {
        tracing::warn!(upstream = %self.name, error = why, "query upstream unavailable");
        error_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &format!("query upstream {} is unavailable: {why}", self.name),
        )
    }

    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        use anyhow::Context;
        let read = |path: &std::path::PathBuf| -> anyhow::Result<String> {
            Ok(std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned())
        };
        Ok(match &self.auth {
            EndpointAuth::None => request,
            EndpointAuth::Bearer(path) => request.bearer_auth(read(path)?),
            EndpointAuth::Basic {
                username,
                password_file,
            } => request.basic_auth(username, Some(read(password_file)?)),
            EndpointAuth::Signer(signer) => {
                request.header(reqwest::header::AUTHORIZATION, signer.authorization()?)
            }
        })
    }
}

fn error_answer(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "errorType": error_type, "error": message})),
    )
        .into_response()
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe_error(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
        }
    }
    Ok(body)
}

/// Whether a series name is one the receiver writes itself.
fn is_local_name(name: &str) -> bool {
    name == "up"
        || name == "dcmon_client_last_seen_timestamp_seconds"
        || name.starts_with("dcmon_receiver_")
}

/// Whether every selector of every expression names only the receiver's
/// own series (and there is at least one expression).
pub fn local_only<'a>(exprs: impl IntoIterator<Item = &'a str>) -> bool {
    let mut any = false;
    for text in exprs {
        any = true;
        let Ok(expr) = parser::parse(text) else {
            return false;
        };
        let mut visitor = LocalNames { all_local: true };
        if walk_expr(&mut visitor, &expr).is_err() || !visitor.all_local {
            return false;
        }
    }
    any
}

struct LocalNames {
    all_local: bool,
}

impl ExprVisitor for LocalNames {
    type Error = ();

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        let selector = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let named = selector.name.iter().cloned().chain(
            selector
                .matchers
                .matchers
                .iter()
                .filter(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone()),
        );
        let names: Vec<String> = named.collect();
        if names.is_empty() || !names.iter().all(|n| is_local_name(n)) {
            self.all_local = false;
        }
        Ok(true)
    }
}

/// The layer on the query API's data routes: local, or the upstream.
pub async fn proxy(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(upstream) = state.query_upstream.clone() else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, state.limits.max_body_bytes).await {
        Ok(body) => body,
        Err(err) => {
            return error_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_data",
                &format!("reading the request body: {err}"),
            );
        }
    };
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut params = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    if is_form {
        params.extend(form_pairs(&body));
    }
    let exprs = params
        .iter()
        .filter(|(name, _)| name == "query" || name == "match[]")
        .map(|(_, value)| value.as_str());
    if local_only(exprs) {
        return next.run(Request::from_parts(parts, Body::from(body))).await;
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
    upstream
        .forward(parts.method, &path_and_query, content_type, body)
        .await
}

/// The pairs of an `application/x-www-form-urlencoded` body (encoded as
/// a query string is); none when it is malformed (the local handler, or
/// the upstream, then says what is wrong).
fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    format!("/?{}", String::from_utf8_lossy(bytes))
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| Query::<Vec<(String, String)>>::try_from_uri(&uri).ok())
        .map(|q| q.0)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_of_the_receivers_own_series_stay_local() {
        for local in [
            "up",
            "up{job=\"dcmon\"} == 0",
            "time() - dcmon_client_last_seen_timestamp_seconds",
            "rate(dcmon_receiver_ingested_samples_total[5m])",
            "{__name__=\"up\", instance=\"gpu-01\"}",
        ] {
            assert!(local_only([local]), "{local}");
        }
        for upstream in [
            "node_load1",
            "up + node_load1",
            "{instance=\"gpu-01\"}",
            "{__name__=~\"up|node_load1\"}",
            "sum(rate(DCGM_FI_DEV_POWER_USAGE[5m]))",
            "not promql (",
        ] {
            assert!(!local_only([upstream]), "{upstream}");
        }
        assert!(!local_only([]), "nothing named: the upstream");
        assert!(!local_only(["up", "node_load1"]));
    }
}
