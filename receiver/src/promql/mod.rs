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
mod error;
mod eval;
mod functions;
mod histogram;
mod plan;
mod range_fns;
mod selector;
pub mod value;

use std::sync::Arc;
use std::time::{Duration, Instant};

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
}

/// Evaluates PromQL over a storage.
#[derive(Debug, Clone)]
pub struct Engine {
    storage: Storage,
    options: Arc<EngineOptions>,
}

impl Engine {
    /// An engine reading from `storage`.
    pub fn new(storage: Storage, options: EngineOptions) -> Self {
        Self {
            storage,
            options: Arc::new(options),
        }
    }

    /// The settings in force.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `query` at `time_ms`.
    pub fn instant_query(&self, query: &str, time_ms: i64) -> Result<QueryResult, QueryError> {
        let expr = parse(query)?;
        let value = self.run(&expr, time_ms, time_ms, 1)?;
        Ok(QueryResult { value, time_ms })
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
        let value = self.run(&expr, start_ms, end_ms, step_ms)?;
        Ok(QueryResult {
            value,
            time_ms: start_ms,
        })
    }

    fn run(
        &self,
        expr: &promql_parser::parser::Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        let deadline = Instant::now() + self.options.timeout;
        let query = plan::Query {
            start_ms,
            end_ms,
            step_ms,
            lookback_ms: self.options.lookback_delta.as_millis() as i64,
            default_subquery_step_ms: self.options.default_subquery_step.as_millis() as i64,
        };
        let data = plan::fetch(&self.storage, expr, &query, self.options.max_samples)?;
        let evaluator = eval::Evaluator::new(&query, &data, deadline, self.options.max_samples);
        if start_ms == end_ms && step_ms == 1 {
            evaluator.instant(expr, start_ms)
        } else {
            evaluator.range(expr)
        }
    }
}

/// Parses a query; syntax errors are `bad_data`.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    promql_parser::parser::parse(query).map_err(QueryError::bad_data)
}
