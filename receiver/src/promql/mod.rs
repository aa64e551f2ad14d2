//! The PromQL engine: parses with `promql-parser`, evaluates with Prometheus
//! 3.x semantics over [`Storage`].
//!
//! A query runs in two phases. [`plan`] walks the syntax tree once to find
//! the time span every selector needs over the whole query, and fetches
//! each selector's series once. [`eval`] then evaluates the tree at every
//! step from that in-memory data, so a range query touches SQLite once per
//! selector, not once per step.

mod aggregate;
mod binary;
mod date_fns;
mod error;
mod eval;
mod functions;
mod histogram;
mod label_fns;
pub mod plan;
mod range_fns;
mod selector;
#[cfg(test)]
mod tests;
pub mod value;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use self::aggregate::valid_label_name;
pub use self::error::{QueryError, QueryErrorKind};
pub use self::value::{Sample, Series, Value};
use crate::storage::Storage;

/// Engine settings, named after Prometheus's flags.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (`--query.lookback-delta`).
    pub lookback_delta: Duration,
    /// Longest a query may run (`--query.timeout`).
    pub timeout: Duration,
    /// Most samples a query may hold in memory at once (`--query.max-samples`).
    pub max_samples: usize,
    /// Subquery step when the query gives none (Prometheus: the global
    /// evaluation interval, 1 minute).
    pub default_subquery_step: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// Most points one series of a range query may have (Prometheus's limit).
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// The answer to a query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The value: for range queries always a matrix sorted by labels.
    pub value: Value,
    /// Evaluation time of an instant query (ms), used to stamp scalars,
    /// strings and vector samples in the API's answer.
    pub time_ms: i64,
    /// Warnings about the query (`PromQL warning: …`).
    pub warnings: Vec<String>,
    /// Informational notes about the query (`PromQL info: …`).
    pub infos: Vec<String>,
}

/// Evaluates PromQL over a storage.
#[derive(Debug, Clone)]
pub struct Engine {
    storage: Storage,
    options: Arc<EngineOptions>,
    cancel: Option<Arc<AtomicBool>>,
}

impl Engine {
    /// An engine reading from `storage`.
    pub fn new(storage: Storage, options: EngineOptions) -> Self {
        Self {
            storage,
            options: Arc::new(options),
            cancel: None,
        }
    }

    /// The same engine, whose queries stop with `canceled` once `flag` is
    /// set (the API sets it when the client goes away).
    pub fn with_cancel(&self, flag: Arc<AtomicBool>) -> Engine {
        Engine {
            cancel: Some(flag),
            ..self.clone()
        }
    }

    /// The same engine with a shorter timeout (a request's `timeout`).
    pub fn with_timeout(&self, timeout: Duration) -> Engine {
        let mut options = (*self.options).clone();
        options.timeout = options.timeout.min(timeout);
        Engine {
            options: Arc::new(options),
            ..self.clone()
        }
    }

    /// The storage queried.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The settings in force.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `query` at `time_ms`.
    pub fn instant_query(&self, query: &str, time_ms: i64) -> Result<QueryResult, QueryError> {
        let expr = parse(query)?;
        self.instant_query_parsed(query, &expr, time_ms)
    }

    /// Evaluates an already parsed `expr` (whose text is `query`) at `time_ms`.
    pub fn instant_query_parsed(
        &self,
        query: &str,
        expr: &promql_parser::parser::Expr,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        let (value, notes) = self.run(query, expr, time_ms, time_ms, None)?;
        Ok(QueryResult {
            value,
            time_ms,
            warnings: notes.warnings.into_iter().collect(),
            infos: notes.infos.into_iter().collect(),
        })
    }

    /// Evaluates `query` at every `step_ms` from `start_ms` to `end_ms`.
    pub fn range_query(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::bad_data(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::bad_data(
                "end timestamp must not be before start time",
            ));
        }
        if (end_ms - start_ms) / step_ms >= MAX_POINTS_PER_SERIES {
            return Err(QueryError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let expr = parse(query)?;
        match expr.value_type() {
            promql_parser::parser::value::ValueType::Vector
            | promql_parser::parser::value::ValueType::Scalar => {}
            other => {
                return Err(QueryError::bad_data(format!(
                    "invalid expression type \"{other}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let (value, notes) = self.run(query, &expr, start_ms, end_ms, Some(step_ms))?;
        Ok(QueryResult {
            value,
            time_ms: start_ms,
            warnings: notes.warnings.into_iter().collect(),
            infos: notes.infos.into_iter().collect(),
        })
    }

    /// Evaluates `expr`: once at `start_ms` without a step, else at every
    /// step from `start_ms` to `end_ms`.
    fn run(
        &self,
        source: &str,
        expr: &promql_parser::parser::Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: Option<i64>,
    ) -> Result<(Value, eval::Annotations), QueryError> {
        let deadline = Instant::now() + self.options.timeout;
        let query = plan::Query {
            source: source.to_owned(),
            is_range: step_ms.is_some(),
            start_ms,
            end_ms,
            step_ms: step_ms.unwrap_or(1),
            lookback_ms: self.options.lookback_delta.as_millis() as i64,
            default_subquery_step_ms: self.options.default_subquery_step.as_millis() as i64,
        };
        let limits = eval::Limits {
            deadline,
            max_samples: self.options.max_samples,
            cancel: self.cancel.clone(),
        };
        let data = plan::fetch(&self.storage, expr, &query, &limits)?;
        let evaluator = eval::Evaluator::new(&query, &data, limits);
        let value = if step_ms.is_some() {
            evaluator.range(expr)?
        } else {
            evaluator.instant(expr, start_ms)?
        };
        Ok((value, evaluator.into_annotations()))
    }
}

/// Deepest bracket nesting accepted. The parser and the evaluator recurse
/// per level, and a stack overflow would take the whole receiver down;
/// real queries stay far below this.
pub const MAX_NESTING: usize = 200;

/// Parses a query; syntax errors are `bad_data`.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    if nesting_depth(query) > MAX_NESTING {
        return Err(QueryError::bad_data(format!(
            "query nests deeper than {MAX_NESTING} levels"
        )));
    }
    promql_parser::parser::parse(query).map_err(|message| match unsupported_syntax(query) {
        Some(feature) => QueryError::unsupported(format!("{feature} (parser: {message})")),
        None => QueryError::bad_data(message),
    })
}

/// Deepest nesting of `(`, `[` and `{` outside string literals.
fn nesting_depth(query: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in query.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Experimental Prometheus syntax the parser rejects with a generic
/// message: name it, so the user learns why the query failed.
fn unsupported_syntax(query: &str) -> Option<&'static str> {
    const KEYWORDS: &[(&str, &str)] = &[
        ("limitk", "limitk()"),
        ("limit_ratio", "limit_ratio()"),
        ("anchored", "anchored range selectors"),
        ("smoothed", "smoothed range selectors"),
        ("fill", "fill() binary operator modifiers"),
        ("fill_left", "fill_left() binary operator modifiers"),
        ("fill_right", "fill_right() binary operator modifiers"),
    ];
    let words = query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    let mut found = None;
    for word in words {
        if let Some((_, feature)) = KEYWORDS.iter().find(|(k, _)| *k == word) {
            found = Some(*feature);
            break;
        }
    }
    found
}
