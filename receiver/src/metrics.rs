//! The receiver's own metrics, served at `/metrics`: ingest and rejection
//! counters, request latency, and storage figures read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::promql::cache::CacheStats;
use crate::storage::Storage;

/// Label set of a rejection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why the request was refused.
    pub reason: String,
}

/// Label set of a storage operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `write`, `compaction` or `retention`.
    pub operation: String,
}

/// Label set of a request duration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    /// Route pattern (`/api/v1/write`).
    pub handler: String,
}

/// Every metric the receiver exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Samples accepted.
    pub ingested_samples: Counter,
    /// Write requests accepted.
    pub write_requests: Counter,
    /// Requests refused, by reason.
    pub rejected: Family<ReasonLabels, Counter>,
    /// Request latency by route.
    pub request_duration: Family<HandlerLabels, Histogram>,
    /// HTTP connections open and closed by timeouts.
    pub connections: crate::serve::Counters,
    series: Gauge,
    samples: Gauge,
    db_bytes: Gauge,
    compactions: Counter<u64, AtomicU64>,
    compacted_samples: Counter<u64, AtomicU64>,
    compaction_seconds: Counter<f64, AtomicU64>,
    retention_runs: Counter<u64, AtomicU64>,
    storage_failing: Family<OperationLabels, Gauge>,
    storage_failures: Counter<u64, AtomicU64>,
    query_cache: QueryCacheMetrics,
    chunk_cache_hits: Counter<u64, AtomicU64>,
    chunk_cache_misses: Counter<u64, AtomicU64>,
    chunk_cache_bytes: Gauge,
    /// Rule evaluation, under Prometheus's names (no prefix).
    pub rules: crate::rules::RuleMetrics,
}

/// The range-query cache's figures (`--query.cache-size`).
#[derive(Debug, Default)]
struct QueryCacheMetrics {
    hits: Counter<u64, AtomicU64>,
    misses: Counter<u64, AtomicU64>,
    evictions: Counter<u64, AtomicU64>,
    bytes: Gauge,
    entries: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        // The receiver's own metrics are prefixed; the rule evaluator's
        // carry Prometheus's names, so they sit in the root registry.
        let mut root = Registry::default();
        let rules = crate::rules::RuleMetrics::default();
        rules.register(&mut root);
        let registry = root.sub_registry_with_prefix("dcmon_receiver");
        let metrics = Metrics {
            ingested_samples: Counter::default(),
            write_requests: Counter::default(),
            rejected: Family::default(),
            request_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            connections: Default::default(),
            series: Gauge::default(),
            samples: Gauge::default(),
            db_bytes: Gauge::default(),
            compactions: Counter::default(),
            compacted_samples: Counter::default(),
            compaction_seconds: Counter::default(),
            retention_runs: Counter::default(),
            storage_failing: Family::default(),
            storage_failures: Counter::default(),
            query_cache: QueryCacheMetrics::default(),
            chunk_cache_hits: Counter::default(),
            chunk_cache_misses: Counter::default(),
            chunk_cache_bytes: Gauge::default(),
            rules,
            registry: Registry::default(),
        };
        registry.register(
            "ingested_samples",
            "Samples accepted through remote write",
            metrics.ingested_samples.clone(),
        );
        registry.register(
            "write_requests",
            "Remote-write requests accepted",
            metrics.write_requests.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused, by reason",
            metrics.rejected.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer HTTP requests, by route",
            metrics.request_duration.clone(),
        );
        registry.register(
            "http_connections_open",
            "HTTP connections open now",
            metrics.connections.open.clone(),
        );
        registry.register(
            "http_connections_timed_out",
            "HTTP connections closed for being slow to send a request head, idle, or not reading an answer",
            metrics.connections.timed_out.clone(),
        );
        registry.register("series", "Series stored", metrics.series.clone());
        registry.register(
            "samples",
            "Samples stored (chunks and head)",
            metrics.samples.clone(),
        );
        registry.register(
            "db_bytes",
            "Bytes the database occupies on disk",
            metrics.db_bytes.clone(),
        );
        registry.register(
            "compactions",
            "Compaction passes completed",
            metrics.compactions.clone(),
        );
        registry.register(
            "compacted_samples",
            "Samples moved from the head into chunks",
            metrics.compacted_samples.clone(),
        );
        registry.register(
            "compaction_seconds",
            "Time the storage writer spent in compaction passes",
            metrics.compaction_seconds.clone(),
        );
        registry.register(
            "retention_runs",
            "Retention passes completed",
            metrics.retention_runs.clone(),
        );
        registry.register(
            "storage_failing",
            "1 while the storage operation's latest attempt failed (then /health says degraded)",
            metrics.storage_failing.clone(),
        );
        registry.register(
            "storage_failures",
            "Failed storage writer operations (writes, compactions, retention passes)",
            metrics.storage_failures.clone(),
        );
        registry.register(
            "query_cache_hits",
            "Range queries answered partly or wholly from the query cache",
            metrics.query_cache.hits.clone(),
        );
        registry.register(
            "query_cache_misses",
            "Cacheable range queries the query cache held nothing usable for",
            metrics.query_cache.misses.clone(),
        );
        registry.register(
            "query_cache_evictions",
            "Query cache entries dropped to stay within --query.cache-size",
            metrics.query_cache.evictions.clone(),
        );
        registry.register(
            "query_cache_bytes",
            "Approximate bytes the query cache holds",
            metrics.query_cache.bytes.clone(),
        );
        registry.register(
            "query_cache_entries",
            "Entries the query cache holds",
            metrics.query_cache.entries.clone(),
        );
        registry.register(
            "chunk_cache_hits",
            "Closed chunk rows (or their absence) a read found in the chunk cache",
            metrics.chunk_cache_hits.clone(),
        );
        registry.register(
            "chunk_cache_misses",
            "Closed chunk rows a read looked for in the database file",
            metrics.chunk_cache_misses.clone(),
        );
        registry.register(
            "chunk_cache_bytes",
            "Approximate bytes the chunk cache holds (--storage.chunk-cache-size)",
            metrics.chunk_cache_bytes.clone(),
        );
        Metrics {
            registry: root,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts a refused request.
    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Adds figures read at scrape time by `collector` (forwarding's).
    pub fn register_collector(&mut self, collector: impl prometheus_client::collector::Collector) {
        // Under the receiver's prefix, beside its other metrics (the root
        // holds the rule evaluator's Prometheus-named ones).
        self.registry
            .sub_registry_with_prefix("dcmon_receiver")
            .register_collector(Box::new(collector));
    }

    /// The registry as it stands, storage figures as last refreshed.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Refreshes the storage and query cache figures and returns the
    /// registry to encode.
    pub fn refreshed(&self, storage: &Storage, cache: &CacheStats) -> &Registry {
        self.series.set(storage.series_count() as i64);
        self.samples.set(storage.sample_count() as i64);
        self.db_bytes.set(storage.disk_bytes() as i64);
        let counters = storage.counters();
        let sync = |counter: &Counter<u64, AtomicU64>, target: u64| {
            let current = counter.get();
            if target > current {
                counter.inc_by(target - current);
            }
        };
        let load = |source: &AtomicU64| source.load(Ordering::Relaxed);
        sync(&self.compactions, load(&counters.compactions));
        sync(&self.compacted_samples, load(&counters.compacted_samples));
        let compaction_seconds = load(&counters.compaction_micros) as f64 / 1e6;
        if compaction_seconds > self.compaction_seconds.get() {
            self.compaction_seconds
                .inc_by(compaction_seconds - self.compaction_seconds.get());
        }
        sync(&self.retention_runs, load(&counters.retention_runs));
        sync(&self.storage_failures, load(&counters.failures));
        sync(&self.query_cache.hits, cache.hits);
        sync(&self.query_cache.misses, cache.misses);
        sync(&self.query_cache.evictions, cache.evictions);
        self.query_cache
            .bytes
            .set(i64::try_from(cache.bytes).unwrap_or(i64::MAX));
        self.query_cache
            .entries
            .set(i64::try_from(cache.entries).unwrap_or(i64::MAX));
        let chunks = storage.chunk_cache_stats();
        sync(&self.chunk_cache_hits, chunks.hits);
        sync(&self.chunk_cache_misses, chunks.misses);
        self.chunk_cache_bytes
            .set(i64::try_from(chunks.bytes).unwrap_or(i64::MAX));
        let failing = storage.failing();
        for operation in ["write", "compaction", "retention"] {
            let failed = failing.iter().any(|f| f.operation == operation);
            self.storage_failing
                .get_or_create(&OperationLabels {
                    operation: operation.to_owned(),
                })
                .set(i64::from(failed));
        }
        &self.registry
    }
}
