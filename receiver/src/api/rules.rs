//! `GET /api/v1/rules` and `GET /api/v1/alerts` in Prometheus's JSON
//! shapes (what Grafana's alerting pages read from a Prometheus data
//! source), and `POST /-/reload`, which re-reads the rule files.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use serde_json::{Map, Value as JsonValue, json};

use super::openapi::{BadRequest, Forbidden, PromBadData, PromSuccess, Unauthorized};
use super::query_params::{Params, bad_param};
use crate::app::AppState;
use crate::error::{ApiError, ErrorKind};
use crate::rules::alert::Alert;
use crate::rules::file::RuleKind;
use crate::rules::group::{GroupState, RuleState};

get_and_post! {
    rules(state: State<Arc<AppState>>, request: Request) -> Result<Json<JsonValue>, ApiError>;
    rules_get = "rulesGet", rules_post = "rulesPost";
    path = "/api/v1/rules", summary = "Rule groups and their rules' state",
    description = "As in Prometheus's HTTP API: the groups of the rule files the receiver evaluates (`--rules.file`), each rule's health, last evaluation and, for alerting rules, state and active alerts. Filters: `type=alert|record`, `rule_name[]`, `rule_group[]`, `file[]`; another `type` is refused (400). GET with query parameters or POST with a form body.",
    params(), responses(
        (status = 200, response = PromSuccess),
        (status = 400, response = PromBadData),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
}

get_and_post! {
    alerts(state: State<Arc<AppState>>) -> Json<JsonValue>;
    alerts_get = "alertsGet", alerts_post = "alertsPost";
    path = "/api/v1/alerts", summary = "Active alerts",
    description = "As in Prometheus's HTTP API: every pending and firing alert of the receiver's alerting rules, with labels, rendered annotations, state, `activeAt` and value. GET with query parameters or POST with a form body.",
    params(), responses(
        (status = 200, response = PromSuccess),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
}

// The answer of [`reload`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: `reload` builds the answer.
struct Reloaded {
    status: super::openapi::Success,
}

/// Declares the `/-/reload` operation for one method.
macro_rules! reload_operation {
    ($name:ident, $method:ident, $id:literal) => {
        /// Re-read the rule files
        ///
        /// As Prometheus's `/-/reload` (and SIGHUP): reads every `--rules.file` again. A file that does not pass the checks is refused (400, the error naming file, group and rule) and the rules running go on; otherwise the new rules replace them, unchanged rules keeping their alerts.
        #[utoipa::path(
            $method, path = "/-/reload", operation_id = $id, tag = "prometheus",
            security(("adminToken" = [])),
            responses(
                (status = 200, description = "The rule files were read again.", body = inline(Reloaded)),
                (status = 400, response = BadRequest),
                (status = 401, response = Unauthorized),
                (status = 403, response = Forbidden),
            ),
            extensions(("x-dcmon-access" = json!("admin"))),
        )]
        pub async fn $name(state: State<Arc<AppState>>) -> Result<Json<JsonValue>, ApiError> {
            reload(state).await
        }
    };
}

reload_operation!(reload_post, post, "reloadPost");
reload_operation!(reload_put, put, "reloadPut");

/// `GET|POST /api/v1/rules`, with the `type`, `rule_name[]`,
/// `rule_group[]` and `file[]` filters.
pub async fn rules(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<JsonValue>, ApiError> {
    let params = Params::from_request(request).await?;
    let kind = match params.get("type") {
        None => None,
        Some(t @ ("alert" | "record")) => Some(t),
        Some(other) => {
            return Err(bad_param("type", &format!("not supported value {other:?}")));
        }
    };
    let names = params.all("rule_name[]");
    let groups_wanted = params.all("rule_group[]");
    let files = params.all("file[]");
    let filtered = !names.is_empty() || !groups_wanted.is_empty() || !files.is_empty();
    let mut groups = Vec::new();
    let mut loaded = state.rules.groups();
    // Prometheus lists groups by file, then name.
    loaded.sort_by(|a, b| (&a.spec.file, &a.spec.name).cmp(&(&b.spec.file, &b.spec.name)));
    for group in loaded {
        if !groups_wanted.is_empty() && !groups_wanted.contains(&group.spec.name.as_str()) {
            continue;
        }
        if !files.is_empty() && !files.contains(&group.spec.file.as_str()) {
            continue;
        }
        let rules: Vec<JsonValue> = group
            .rules
            .iter()
            .filter(|rule| {
                !matches!(
                    (kind, &rule.spec.kind),
                    (Some("alert"), RuleKind::Record { .. })
                        | (Some("record"), RuleKind::Alert { .. })
                )
            })
            .filter(|rule| names.is_empty() || names.contains(&rule.spec.name()))
            .map(rule_json)
            .collect();
        // Prometheus leaves out a group none of whose rules is asked for.
        if (filtered || kind.is_some()) && rules.is_empty() {
            continue;
        }
        groups.push(group_json(&group, rules));
    }
    Ok(Json(
        json!({"status": "success", "data": {"groups": groups}}),
    ))
}

/// `GET|POST /api/v1/alerts`: every pending and firing alert.
pub async fn alerts(State(state): State<Arc<AppState>>) -> Json<JsonValue> {
    let groups = state.rules.groups();
    let mut alerts: Vec<&Alert> = groups.iter().flat_map(GroupState::active_alerts).collect();
    alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
    let alerts: Vec<JsonValue> = alerts.into_iter().map(alert_json).collect();
    Json(json!({"status": "success", "data": {"alerts": alerts}}))
}

/// `POST|PUT /-/reload` (admin): re-reads the rule files; a bad file is
/// refused (400, naming file, group and rule) and the rules running go on.
pub async fn reload(State(state): State<Arc<AppState>>) -> Result<Json<JsonValue>, ApiError> {
    let rules = Arc::clone(&state.rules);
    // A refused file is an answer of its own (400, below), not an error.
    let loaded = super::blocking("reload", move || Ok::<_, ApiError>(rules.reload())).await?;
    match loaded {
        Ok(()) => Ok(Json(json!({"status": "success"}))),
        Err(err) => {
            tracing::warn!(error = %err, "reloading the rule files failed; the previous rules stay");
            Err(ApiError::new(
                ErrorKind::BadData,
                format!("failed to reload rules: {err}"),
            ))
        }
    }
}

fn group_json(group: &GroupState, rules: Vec<JsonValue>) -> JsonValue {
    json!({
        "name": group.spec.name,
        "file": group.spec.file,
        "rules": rules,
        "interval": seconds_json(group.spec.interval.as_secs_f64()),
        "limit": group.spec.limit,
        "evaluationTime": seconds_json(group.evaluation_time.as_secs_f64()),
        "lastEvaluation": time_json(group.last_evaluation_ms),
    })
}

fn rule_json(rule: &RuleState) -> JsonValue {
    let labels = pairs_json(rule.spec.labels.iter().map(|(n, t)| (n.as_str(), t.text())));
    let mut out = match &rule.spec.kind {
        RuleKind::Alert {
            name,
            hold,
            keep_firing_for,
            annotations,
        } => json!({
            "state": rule.alerts.state().as_str(),
            "name": name,
            "query": rule.spec.expr_text,
            "duration": seconds_json(hold.as_secs_f64()),
            "keepFiringFor": seconds_json(keep_firing_for.as_secs_f64()),
            "labels": labels,
            "annotations": pairs_json(annotations.iter().map(|(n, t)| (n.as_str(), t.text()))),
            "alerts": rule.alerts.active().into_iter().map(alert_json).collect::<Vec<_>>(),
            "type": "alerting",
        }),
        RuleKind::Record { name } => {
            let mut record = json!({
                "name": name,
                "query": rule.spec.expr_text,
                "type": "recording",
            });
            if !rule.spec.labels.is_empty() {
                record["labels"] = labels;
            }
            record
        }
    };
    out["health"] = json!(rule.health.as_str());
    if !rule.last_error.is_empty() {
        out["lastError"] = json!(rule.last_error);
    }
    out["evaluationTime"] = seconds_json(rule.evaluation_time.as_secs_f64());
    out["lastEvaluation"] = time_json(rule.last_evaluation_ms);
    out
}

fn alert_json(alert: &Alert) -> JsonValue {
    json!({
        "labels": pairs_json(alert.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
        "annotations": pairs_json(alert.annotations.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
        "state": alert.state.as_str(),
        "activeAt": time_json(Some(alert.active_at_ms)),
        // Go's strconv.FormatFloat(v, 'e', -1, 64), as Prometheus writes it.
        "value": crate::rules::template::go_float_e(alert.value),
    })
}

/// Seconds as Go's JSON writes a float64: a whole number without `.0`.
fn seconds_json(seconds: f64) -> JsonValue {
    if seconds.fract() == 0.0 && seconds.abs() < 9e15 {
        json!(seconds as i64)
    } else {
        json!(seconds)
    }
}

fn pairs_json<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> JsonValue {
    let mut sorted: Vec<(&str, &str)> = pairs.collect();
    sorted.sort();
    JsonValue::Object(
        sorted
            .into_iter()
            .map(|(n, v)| (n.to_owned(), JsonValue::String(v.to_owned())))
            .collect::<Map<_, _>>(),
    )
}

/// RFC 3339 in UTC, as Go marshals a `time.Time`; never evaluated: Go's
/// zero time.
fn time_json(ms: Option<i64>) -> JsonValue {
    let Some(ms) = ms else {
        return json!("0001-01-01T00:00:00Z");
    };
    let Some(at) = chrono::DateTime::from_timestamp_millis(ms) else {
        return json!("0001-01-01T00:00:00Z");
    };
    let mut text = at.format("%Y-%m-%dT%H:%M:%S").to_string();
    let millis = ms.rem_euclid(1000);
    if millis != 0 {
        let fraction = format!(".{millis:03}");
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    json!(text)
}
