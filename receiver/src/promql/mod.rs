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
pub mod cache;
mod columns;
#[cfg(test)]
mod columns_tests;
mod date_fns;
mod depth;
mod error;
mod eval;
mod functions;
pub mod gzip;
mod histogram;
mod label_fns;
mod parsed;
pub mod plan;
#[cfg(test)]
mod property_tests;
mod range_fns;
mod selector;
#[cfg(test)]
mod tests;
pub mod text;
pub mod value;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use self::aggregate::valid_label_name;
pub use self::cache::QueryCache;
pub use self::depth::MAX_DEPTH;
pub use self::error::{QueryError, QueryErrorKind};
pub use self::text::WrittenPoints;
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
    /// Longest query text accepted, in bytes (`--query.max-length`).
    pub max_query_length: usize,
}

/// Default of [`EngineOptions::max_query_length`]: VictoriaMetrics's
/// `-search.maxQueryLen`, roomy for any dashboard's query.
pub const DEFAULT_MAX_QUERY_LENGTH: usize = 16 * 1024;

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            default_subquery_step: Duration::from_secs(60),
            max_query_length: DEFAULT_MAX_QUERY_LENGTH,
        }
    }
}

/// Stack size of a thread that parses, plans, evaluates or prints a query:
/// enough for a [`MAX_DEPTH`]-deep query in a debug build.
pub const QUERY_STACK_BYTES: usize = 64 << 20;

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
    /// For a matrix, per series (missing: none), its leading points and
    /// their answer text, lent by the query cache; the series' `points`
    /// are those after them. [`QueryResult::whole_value`] puts them back.
    pub written: Vec<Option<WrittenPoints>>,
}

impl QueryResult {
    /// The value with each series' lent points back in front of its own.
    pub fn whole_value(self) -> Value {
        match self.value {
            Value::Matrix(mut series) => {
                for (s, written) in series.iter_mut().zip(self.written) {
                    if let Some(written) = written {
                        let own = std::mem::take(&mut s.points);
                        s.points = written.points().to_vec();
                        s.points.extend(own);
                    }
                }
                Value::Matrix(series)
            }
            other => other,
        }
    }
}

/// Evaluates PromQL over a storage.
#[derive(Debug, Clone)]
pub struct Engine {
    storage: Storage,
    options: Arc<EngineOptions>,
    cancel: Vec<Arc<AtomicBool>>,
    /// Shared by its copies (one per request).
    parsed: Arc<parsed::ParsedQueries>,
}

impl Engine {
    /// An engine reading from `storage`.
    pub fn new(storage: Storage, options: EngineOptions) -> Self {
        Self {
            storage,
            options: Arc::new(options),
            cancel: Vec::new(),
            parsed: Arc::default(),
        }
    }

    /// The same engine, whose queries stop with `canceled` once `flag` is
    /// set, as well as once any flag given before is (the API sets one when
    /// the client goes away, another when the receiver shuts down).
    pub fn with_cancel(&self, flag: Arc<AtomicBool>) -> Engine {
        let mut cancel = self.cancel.clone();
        cancel.push(flag);
        Engine {
            cancel,
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

    /// Parses `query` for this engine: refused when longer than
    /// [`EngineOptions::max_query_length`], else as [`parse`].
    pub fn parse(&self, query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
        let max = self.options.max_query_length;
        if query.len() > max {
            return Err(QueryError::bad_data(format!(
                "the query is {} bytes long, more than the {max} bytes accepted \
                 (--query.max-length)",
                query.len()
            )));
        }
        self.parsed.get_or_parse(query, parse)
    }

    /// What stops a query starting now: its deadline and cancel flags.
    fn limits(&self) -> eval::Limits {
        let now = Instant::now();
        // A timeout too long to represent never comes: a year will do.
        let deadline = now
            .checked_add(self.options.timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
        eval::Limits {
            deadline,
            max_samples: self.options.max_samples,
            cancel: self.cancel.clone(),
        }
    }

    /// Parses `query` within `limits`: a query cancelled or out of time
    /// before or while it was parsed goes no further.
    fn parse_within(
        &self,
        query: &str,
        limits: &eval::Limits,
    ) -> Result<promql_parser::parser::Expr, QueryError> {
        limits.check()?;
        let expr = self.parse(query)?;
        limits.check()?;
        Ok(expr)
    }

    /// Evaluates `query` at `time_ms`.
    pub fn instant_query(&self, query: &str, time_ms: i64) -> Result<QueryResult, QueryError> {
        let limits = self.limits();
        let expr = self.parse_within(query, &limits)?;
        self.instant(query, &expr, time_ms, limits)
    }

    /// Evaluates an already parsed `expr` (whose text is `query`) at `time_ms`.
    pub fn instant_query_parsed(
        &self,
        query: &str,
        expr: &promql_parser::parser::Expr,
        time_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        check_depth(expr)?;
        self.instant(query, expr, time_ms, self.limits())
    }

    fn instant(
        &self,
        query: &str,
        expr: &promql_parser::parser::Expr,
        time_ms: i64,
        limits: eval::Limits,
    ) -> Result<QueryResult, QueryError> {
        let (value, notes) = self.run(query, expr, time_ms, time_ms, None, limits)?;
        Ok(QueryResult {
            value,
            time_ms,
            warnings: notes.warnings.into_iter().collect(),
            infos: notes.infos.into_iter().collect(),
            written: Vec::new(),
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
        self.range_query_cached(query, start_ms, end_ms, step_ms, None)
    }

    /// [`Engine::range_query`], answering the steps `cache` holds from it
    /// and filling it with those that can no longer change (see
    /// [`cache`]); the answer is the same as without it.
    pub fn range_query_cached(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        cache: Option<&QueryCache>,
    ) -> Result<QueryResult, QueryError> {
        let limits = self.limits();
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
        // Any i64 times: the span itself may not fit.
        let steps = end_ms
            .checked_sub(start_ms)
            .map_or(i64::MAX, |span| span / step_ms);
        if steps >= MAX_POINTS_PER_SERIES {
            return Err(QueryError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let expr = self.parse_within(query, &limits)?;
        match expr.value_type() {
            promql_parser::parser::value::ValueType::Vector
            | promql_parser::parser::value::ValueType::Scalar => {}
            other => {
                return Err(QueryError::bad_data(format!(
                    "invalid expression type \"{other}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        if let Some(cache) = cache.filter(|c| c.enabled())
            && cache::cacheable(&expr).is_ok()
        {
            let range = cache::Range {
                start_ms,
                end_ms,
                step_ms,
            };
            return cache.range_query(self, query, &expr, range, limits, crate::storage::now_ms());
        }
        let (value, notes) = self.run(query, &expr, start_ms, end_ms, Some(step_ms), limits)?;
        Ok(QueryResult {
            value,
            time_ms: start_ms,
            warnings: notes.warnings.into_iter().collect(),
            infos: notes.infos.into_iter().collect(),
            written: Vec::new(),
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
        limits: eval::Limits,
    ) -> Result<(Value, eval::Annotations), QueryError> {
        let query = plan::Query {
            source: source.to_owned(),
            is_range: step_ms.is_some(),
            start_ms,
            end_ms,
            step_ms: step_ms.unwrap_or(1),
            lookback_ms: duration_ms(self.options.lookback_delta),
            default_subquery_step_ms: duration_ms(self.options.default_subquery_step),
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

/// A duration in ms, saturating (durations come from flags and queries).
pub fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Parses a query; syntax errors and queries nesting deeper than
/// [`MAX_DEPTH`] are `bad_data`. Safe on any thread: the text is measured
/// before the parser sees it. The tree it returns may still be
/// [`MAX_DEPTH`] deep: evaluate, print or walk it recursively only on a
/// thread with a [`QUERY_STACK_BYTES`] stack.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    if depth::text_depth_bound(query) > depth::MAX_TEXT_DEPTH {
        return Err(too_deep());
    }
    let expr =
        promql_parser::parser::parse(query).map_err(|message| match unsupported_syntax(query) {
            Some(feature) => QueryError::unsupported(format!("{feature} (parser: {message})")),
            None => QueryError::bad_data(message),
        })?;
    check_depth(&expr)?;
    Ok(expr)
}

/// Refuses a tree deeper than [`MAX_DEPTH`].
pub fn check_depth(expr: &promql_parser::parser::Expr) -> Result<(), QueryError> {
    if depth::tree_depth(expr) > MAX_DEPTH {
        return Err(too_deep());
    }
    Ok(())
}

fn too_deep() -> QueryError {
    QueryError::bad_data(format!(
        "query nests too deeply: at most {MAX_DEPTH} levels of operators, brackets, \
         function calls and aggregations are accepted (put long chains of binary \
         operators in brackets, e.g. (a + b) + (c + d))"
    ))
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
