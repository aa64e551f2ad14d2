//! The cache of range answers: an answer served from it equals a fresh
//! evaluation, writes and retention invalidate what they change, the size
//! bound holds, and queries that may read after their step are refused.

use dcmon_protocol::remote_write::SeriesSamples;
use proptest::prelude::*;

use super::{CacheStats, QueryCache, Refusal, cacheable};
use crate::promql::text::{PointsText, WrittenPoints};
use crate::promql::{Engine, EngineOptions, QueryResult, Value, parse};
use crate::storage::{Options, Storage};

use std::sync::Arc;

const MINUTE: i64 = 60_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A counter with resets and a gauge with a gap, two instances each,
/// every 15 s for 40 minutes.
fn fleet() -> Vec<SeriesSamples> {
    let mut batch = Vec::new();
    for instance in ["i1", "i2"] {
        let skew = if instance == "i1" { 0 } else { 4_000 };
        let counter = (0..160)
            .map(|k: i64| (k * 15_000 + skew, ((k % 70) * 5 + k % 3) as f64))
            .collect();
        let gauge = (0..160)
            .filter(|k| !(60..75).contains(k))
            .map(|k: i64| (k * 15_000 + skew, ((k * 7) % 11) as f64 - 2.5))
            .collect();
        for (name, samples) in [("c_total", counter), ("g", gauge)] {
            batch.push(SeriesSamples {
                labels: vec![
                    ("__name__".into(), name.into()),
                    ("instance".into(), instance.into()),
                    ("job".into(), "j".into()),
                ],
                samples,
            });
        }
    }
    batch
}

fn engine() -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("c.db"), Options::default()).unwrap();
    runtime()
        .block_on(storage.append(fleet(), Vec::new()))
        .unwrap();
    (Engine::new(storage, EngineOptions::default()), dir)
}

fn write(engine: &Engine, name: &str, instance: &str, samples: &[(i64, f64)]) {
    let series = SeriesSamples {
        labels: vec![
            ("__name__".into(), name.into()),
            ("instance".into(), instance.into()),
            ("job".into(), "j".into()),
        ],
        samples: samples.to_vec(),
    };
    runtime()
        .block_on(engine.storage().append(vec![series], Vec::new()))
        .unwrap();
}

/// Labels and points (values by bits, so NaN compares equal to itself),
/// warnings and infos.
type Answer = (
    Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>,
    Vec<String>,
    Vec<String>,
);

fn answer(result: QueryResult) -> Answer {
    let (warnings, infos) = (result.warnings.clone(), result.infos.clone());
    let value = result.whole_value();
    let Value::Matrix(series) = value else {
        panic!("not a matrix: {value:?}");
    };
    (
        series
            .into_iter()
            .map(|s| {
                (
                    s.labels.to_vec(),
                    s.points.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
                )
            })
            .collect(),
        warnings,
        infos,
    )
}

fn cached(engine: &Engine, cache: &QueryCache, q: &str, start: i64, end: i64, step: i64) -> Answer {
    let result = engine
        .range_query_cached(q, start, end, step, Some(cache))
        .unwrap();
    written_points(&result);
    answer(result)
}

/// How many points of `result` the cache lends with their answer text,
/// after checking that text against the points' own and that the
/// series' own points follow them.
fn written_points(result: &QueryResult) -> usize {
    let Value::Matrix(series) = &result.value else {
        return 0;
    };
    assert!(result.written.len() <= series.len());
    let mut count = 0;
    for (series, written) in series.iter().zip(&result.written) {
        let Some(written) = written else { continue };
        let points = written.points();
        if let (Some(lent), Some(own)) = (points.last(), series.points.first()) {
            assert!(lent.0 < own.0, "{:?}", series.labels);
        }
        let own = WrittenPoints::new(
            Arc::new(PointsText::extended(None, points, 1)),
            0..points.len(),
        );
        assert_eq!(
            String::from_utf8_lossy(written.bytes()),
            String::from_utf8_lossy(own.bytes()),
            "{:?}",
            series.labels
        );
        // Its compressed blocks hold the same text.
        assert_eq!(
            String::from_utf8_lossy(&crate::promql::text::tests::gzipped_text(written)),
            String::from_utf8_lossy(own.bytes()),
        );
        count += written.count();
    }
    count
}

fn fresh(engine: &Engine, q: &str, start: i64, end: i64, step: i64) -> Answer {
    answer(engine.range_query(q, start, end, step).unwrap())
}

/// Queries covering the engine's paths: by series and by step, range
/// functions, subqueries, aggregations whose series change between steps,
/// binary operators, scalars, and annotations.
const QUERIES: &[&str] = &[
    "g",
    "g offset 1m",
    "rate(c_total[2m])",
    "sum by (job) (rate(c_total[1m]))",
    "max_over_time(g[3m:30s])",
    "rate(g[5m])",
    "g > 2",
    "topk(1, g)",
    "time()",
    "scalar(sum(g)) * 2",
    "absent(nothing)",
    "count by (instance) (g)",
    "g and on (instance) c_total",
    "quantile_over_time(0.5, g[2m] offset 30s)",
    "changes(g[5m])",
];

#[test]
fn every_refusal_reason_is_found_from_the_syntax_tree() {
    let refusal = |q: &str| cacheable(&parse(q).unwrap()).err();
    for q in [
        "g @ 100",
        "g @ start()",
        "rate(g[5m] @ end())",
        "sum(g @ 5)",
    ] {
        assert_eq!(refusal(q), Some(Refusal::AtModifier), "{q}");
    }
    assert_eq!(
        refusal("max_over_time(g[5m:1m] @ 10)"),
        Some(Refusal::AtModifier)
    );
    for q in [
        "g offset -1m",
        "rate(g[5m] offset -30s)",
        "g - g offset -5m",
    ] {
        assert_eq!(refusal(q), Some(Refusal::NegativeOffset), "{q}");
    }
    assert_eq!(
        refusal("max_over_time(g[5m:1m] offset -1m)"),
        Some(Refusal::NegativeOffset)
    );
    for q in ["g[5m]", "\"text\"", "g[10m:1m]"] {
        assert_eq!(refusal(q), Some(Refusal::NotRangeType), "{q}");
    }
    for q in QUERIES {
        assert_eq!(refusal(q), None, "{q}");
    }
}

#[test]
fn answers_with_annotations_are_stored_with_them() {
    let (engine, _dir) = engine();
    let cache = QueryCache::new(1 << 20);
    let q = "rate(g[5m])";
    let first = cached(&engine, &cache, q, 0, 20 * MINUTE, 30_000);
    assert!(!first.2.is_empty(), "rate of a gauge earns an info");
    assert_eq!(first, fresh(&engine, q, 0, 20 * MINUTE, 30_000));
    assert_eq!(cache.stats().entries, 1);
    // A refresh moving the end is served from the entry, infos included.
    let refresh = cached(&engine, &cache, q, 0, 25 * MINUTE, 30_000);
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(refresh, fresh(&engine, q, 0, 25 * MINUTE, 30_000));
    // Past the data no step earns the info: a later start, not knowing
    // which steps earned it, evaluates again and answers without it.
    let late = cached(&engine, &cache, q, 60 * MINUTE, 70 * MINUTE, 30_000);
    assert!(late.2.is_empty());
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn refused_queries_are_answered_but_not_stored() {
    let (engine, _dir) = engine();
    let cache = QueryCache::new(1 << 20);
    for q in ["g @ 300", "g offset -1m"] {
        for _ in 0..2 {
            assert_eq!(
                cached(&engine, &cache, q, 0, 20 * MINUTE, 30_000),
                fresh(&engine, q, 0, 20 * MINUTE, 30_000)
            );
        }
    }
    assert_eq!(cache.stats(), CacheStats::default());
}

#[test]
fn a_refresh_with_a_later_end_is_served_from_the_cache() {
    let (engine, _dir) = engine();
    let cache = QueryCache::new(1 << 20);
    let q = "sum by (job) (rate(c_total[1m]))";
    let first = cached(&engine, &cache, q, 5 * MINUTE, 20 * MINUTE, 30_000);
    assert_eq!(first, fresh(&engine, q, 5 * MINUTE, 20 * MINUTE, 30_000));
    assert_eq!(cache.stats().misses, 1);
    assert_eq!(cache.stats().entries, 1);
    let later = engine
        .range_query_cached(q, 6 * MINUTE, 25 * MINUTE, 30_000, Some(&cache))
        .unwrap();
    assert_eq!(cache.stats().hits, 1);
    // Every step is long past, so all are stored, with their text, and
    // the answer copies it: the same, byte for byte, as a fresh answer
    // written point by point.
    let Value::Matrix(series) = &later.value else {
        panic!("not a matrix");
    };
    assert!(series.iter().all(|s| s.points.is_empty()));
    let again = engine
        .range_query(q, 6 * MINUTE, 25 * MINUTE, 30_000)
        .unwrap();
    let Value::Matrix(fresh_series) = &again.value else {
        panic!("not a matrix");
    };
    let points: usize = fresh_series.iter().map(|s| s.points.len()).sum();
    assert!(points > 0);
    assert_eq!(written_points(&later), points);
    assert_eq!(
        String::from_utf8(crate::api::query_json::encode(&later, false).to_vec()).unwrap(),
        String::from_utf8(crate::api::query_json::encode(&again, false).to_vec()).unwrap()
    );
    assert_eq!(answer(later), answer(again));
    // Another grid of steps (start moved by half a step) is another entry.
    cached(&engine, &cache, q, 6 * MINUTE + 15_000, 25 * MINUTE, 30_000);
    assert_eq!(cache.stats().misses, 2);
}

#[test]
fn an_entry_missing_only_its_last_steps_is_kept_and_still_cut() {
    let (engine, _dir) = engine();
    let cache = QueryCache::new(1 << 20);
    let q = "sum by (job) (rate(c_total[1m]))";
    let (start, end, step) = (0, 20 * MINUTE, 30_000);
    cached(&engine, &cache, q, start, end, step);
    let bytes = cache.stats().bytes;
    // A late sample that changes the last step only.
    write(&engine, "c_total", "i1", &[(end - 1_000, 1e6)]);
    for refresh in 1..=2 {
        let answer_now = engine
            .range_query_cached(q, start, end, step, Some(&cache))
            .unwrap();
        assert_eq!(cache.stats().hits, refresh);
        // The entry is not stored again: its text serves every step but
        // the last, which is evaluated afresh each time.
        let Value::Matrix(series) = &answer_now.value else {
            panic!("not a matrix");
        };
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].points.len(), 1);
        // Written as one answer: the lent text, a comma, the own point.
        let again = engine.range_query(q, start, end, step).unwrap();
        let text = |result: &QueryResult, gzip: bool| {
            let body = crate::api::query_json::encode(result, gzip).to_vec();
            if !gzip {
                return body;
            }
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
                .unwrap();
            text
        };
        for gzip in [false, true] {
            assert_eq!(text(&answer_now, gzip), text(&again, false));
        }
        let whole = fresh(&engine, q, start, end, step);
        assert_eq!(written_points(&answer_now), whole.0[0].1.len() - 1);
        assert_eq!(cache.stats().bytes, bytes);
        assert_eq!(answer(answer_now), whole);
    }
}

#[test]
fn a_late_sample_in_a_cached_window_changes_the_next_answer() {
    let (engine, _dir) = engine();
    let cache = QueryCache::new(1 << 20);
    for (i, q) in ["g", "rate(c_total[2m])", "max_over_time(g[3m:30s])"]
        .into_iter()
        .enumerate()
    {
        let before = cached(&engine, &cache, q, 0, 30 * MINUTE, 60_000);
        let hits = cache.stats().hits;
        assert_eq!(cached(&engine, &cache, q, 0, 30 * MINUTE, 60_000), before);
        assert_eq!(cache.stats().hits, hits + 1);
        // Inside the gauge's gap, far behind the newest samples.
        let late = 16 * MINUTE + 1_000 + i as i64 * 1_000;
        let value = 1e6 * (i + 1) as f64;
        write(&engine, "g", "i1", &[(late, value)]);
        write(&engine, "c_total", "i2", &[(late, value)]);
        let after = cached(&engine, &cache, q, 0, 30 * MINUTE, 60_000);
        assert_ne!(after, before, "{q}: the late sample is not seen");
        assert_eq!(after, fresh(&engine, q, 0, 30 * MINUTE, 60_000), "{q}");
        // Steps before the late sample still came from the cache.
        assert_eq!(cache.stats().hits, hits + 2);
    }
}

#[test]
fn steps_reading_data_retention_deleted_are_not_served() {
    let (engine, _dir) = engine();
    let cache = QueryCache::new(1 << 20);
    let q = "count_over_time(g[5m])";
    let before = cached(&engine, &cache, q, 10 * MINUTE, 30 * MINUTE, 60_000);
    // Retention as of 7 days and 8 minutes after the data began deletes
    // the first 8 minutes, which the steps before 13 minutes read.
    let retention = engine.storage().options().retention;
    let now = crate::promql::duration_ms(retention) + 8 * MINUTE;
    runtime()
        .block_on(engine.storage().apply_retention(now))
        .unwrap();
    let after = cached(&engine, &cache, q, 10 * MINUTE, 30 * MINUTE, 60_000);
    assert_ne!(after, before);
    assert_eq!(after, fresh(&engine, q, 10 * MINUTE, 30 * MINUTE, 60_000));
    assert_eq!(cache.stats().misses, 2);
    // Steps whose reach stays after the cutoff are served again.
    cached(&engine, &cache, q, 14 * MINUTE, 30 * MINUTE, 60_000);
    let hit = cached(&engine, &cache, q, 14 * MINUTE, 30 * MINUTE, 60_000);
    assert_eq!(hit, fresh(&engine, q, 14 * MINUTE, 30 * MINUTE, 60_000));
    assert_eq!(cache.stats().hits, 2);
}

#[test]
fn the_size_bound_holds_and_the_least_recently_used_entry_goes_first() {
    let (engine, _dir) = engine();
    let run = |cache: &QueryCache, q: &str| cached(&engine, cache, q, 0, 40 * MINUTE, 15_000);
    // Measure one entry, then allow a little over four of them.
    let probe = QueryCache::new(1 << 30);
    run(&probe, "g + 1");
    let one = probe.stats().bytes;
    let cache = QueryCache::new(one * 4 + one / 2);
    for q in ["g + 1", "g + 2", "g + 3", "g + 4"] {
        run(&cache, q);
    }
    assert_eq!(cache.stats().entries, 4);
    // "g + 1" is used again, so "g + 2" is now the least recently used.
    run(&cache, "g + 1");
    run(&cache, "g + 5");
    let stats = cache.stats();
    assert_eq!(stats.evictions, 1);
    assert_eq!(stats.entries, 4);
    assert!(stats.bytes <= one * 4 + one / 2);
    let misses = stats.misses;
    run(&cache, "g + 1");
    assert_eq!(cache.stats().misses, misses, "g + 1 was kept");
    run(&cache, "g + 2");
    assert_eq!(cache.stats().misses, misses + 1, "g + 2 was evicted");
    // Many more entries: the bound holds throughout.
    for k in 0..40 {
        run(&cache, &format!("g * {k}"));
        assert!(cache.stats().bytes <= one * 4 + one / 2);
    }
    // An answer over a quarter of the cache is not stored at all.
    let small = QueryCache::new(one * 3);
    run(&small, "g + 1");
    assert_eq!(small.stats().entries, 0);
    // Size 0: off.
    let off = QueryCache::new(0);
    run(&off, "g + 1");
    run(&off, "g + 1");
    assert_eq!(off.stats(), CacheStats::default());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the ranges of two successive requests on one grid of steps,
    /// the second answer (partly from the cache) equals a fresh evaluation.
    #[test]
    fn answers_from_the_cache_equal_fresh_evaluations(
        start in 0i64..1_800,
        step in 1i64..=120,
        len in 0i64..60,
        shift in 0i64..40,
        len2 in 0i64..80,
    ) {
        let (engine, _dir) = shared();
        let cache = QueryCache::new(64 << 20);
        let (start, step) = (start * 1000, step * 1000);
        let end = start + len * step;
        let start2 = start + shift * step;
        let end2 = start2 + len2 * step;
        for q in QUERIES {
            let first = cached(engine, &cache, q, start, end, step);
            prop_assert_eq!(first, fresh(engine, q, start, end, step), "{}", q);
            let second = cached(engine, &cache, q, start2, end2, step);
            prop_assert_eq!(second, fresh(engine, q, start2, end2, step), "{}", q);
        }
        // Every query but `rate(g[5m])` (whose info keeps it out) found
        // its first answer's steps.
        if shift <= len {
            prop_assert!(cache.stats().hits >= QUERIES.len() as u64 - 1);
        }
    }
}

/// One engine for every proptest case (nothing writes to it).
fn shared() -> &'static (Engine, tempfile::TempDir) {
    static ENGINE: std::sync::OnceLock<(Engine, tempfile::TempDir)> = std::sync::OnceLock::new();
    ENGINE.get_or_init(engine)
}
