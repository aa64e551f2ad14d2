//! Storage tested directly: append, select across head and chunks,
//! compaction, reopen (index rebuild and head replay), retention.

use std::time::Duration;

use dcmon_protocol::remote_write::SeriesSamples;

use super::index::{MatchOp, Matcher};
use super::read::ReadBudget;
use super::{Options, Storage};

const HOUR: i64 = 3_600_000;
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn series(name: &str, instance: &str, samples: &[(i64, f64)]) -> SeriesSamples {
    SeriesSamples {
        labels: vec![
            ("__name__".into(), name.into()),
            ("instance".into(), instance.into()),
            ("job".into(), "dcmon".into()),
        ],
        samples: samples.to_vec(),
    }
}

fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
    Matcher::new(name, op, value).unwrap()
}

/// `(instance, [(ts, bits)])` of every selected series.
fn dump(
    storage: &Storage,
    matchers: &[Matcher],
    start: i64,
    end: i64,
) -> Vec<(String, Vec<(i64, u64)>)> {
    storage
        .select(matchers, start, end)
        .unwrap()
        .into_iter()
        .map(|s| {
            let instance = s
                .labels
                .iter()
                .find(|(n, _)| n == "instance")
                .unwrap()
                .1
                .clone();
            (
                instance,
                s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
            )
        })
        .collect()
}

fn options() -> Options {
    Options {
        retention: Duration::from_secs(24 * 3600),
        ..Options::default()
    }
}

#[test]
fn reads_merge_head_and_chunks_in_time_order_across_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let rt = runtime();
    let base = 1_800_000_000_000i64;
    let storage = Storage::open(&path, options()).unwrap();
    rt.block_on(async {
        // Three hours of data in two requests, second one out of order.
        let later: Vec<(i64, f64)> = (0..180)
            .map(|i| (base + HOUR + i * 30_000, i as f64))
            .collect();
        let earlier: Vec<(i64, f64)> = (0..120).map(|i| (base + i * 30_000, -(i as f64))).collect();
        storage
            .append(vec![series("load", "a", &later)], vec![])
            .await
            .unwrap();
        storage
            .append(
                vec![
                    series("load", "a", &earlier),
                    series("load", "b", &[(base, f64::from_bits(STALE_NAN))]),
                ],
                vec![],
            )
            .await
            .unwrap();
    });
    let expect_a: Vec<(i64, u64)> = (0..120)
        .map(|i| (base + i * 30_000, (-(i as f64)).to_bits()))
        .chain((0..180).map(|i| (base + HOUR + i * 30_000, (i as f64).to_bits())))
        .collect();
    let a_only = [
        m("__name__", MatchOp::Equal, "load"),
        m("instance", MatchOp::Equal, "a"),
    ];
    assert_eq!(
        dump(&storage, &a_only, 0, i64::MAX),
        vec![("a".to_owned(), expect_a.clone())]
    );

    // After compaction the same answer comes from chunks.
    let outcome = rt.block_on(storage.compact()).unwrap();
    assert_eq!(outcome.samples, 301);
    let counters = storage.counters();
    assert_eq!(
        counters
            .compacted_samples
            .load(std::sync::atomic::Ordering::Relaxed),
        301
    );
    assert_eq!(
        dump(&storage, &a_only, 0, i64::MAX),
        vec![("a".to_owned(), expect_a.clone())]
    );
    // Range limits are inclusive and cut inside chunks.
    let range = dump(&storage, &a_only, base + 30_000, base + 90_000);
    assert_eq!(range[0].1, expect_a[1..4].to_vec());
    // A resent sample overrides the chunk's value; the stale marker survives.
    rt.block_on(storage.append(vec![series("load", "a", &[(base + 60_000, 42.0)])], vec![]))
        .unwrap();
    let everything = dump(
        &storage,
        &[m("__name__", MatchOp::Regex, "lo.*")],
        0,
        i64::MAX,
    );
    assert_eq!(everything.len(), 2);
    assert_eq!(everything[0].1[2], (base + 60_000, 42.0f64.to_bits()));
    assert_eq!(everything[1].1, vec![(base, STALE_NAN)]);
    rt.block_on(storage.close());

    // Reopen: the index is rebuilt and the head (the resent sample) replayed.
    let storage = Storage::open(&path, options()).unwrap();
    assert_eq!(storage.series_count(), 2);
    assert_eq!(storage.sample_count(), 302);
    let again = dump(
        &storage,
        &[m("__name__", MatchOp::Regex, "lo.*")],
        0,
        i64::MAX,
    );
    assert_eq!(again, everything);
    assert_eq!(storage.label_values("instance"), vec!["a", "b"]);
    assert_eq!(storage.integrity_check().unwrap(), "ok");
    rt.block_on(storage.close());
}

#[test]
fn retention_trims_samples_then_drops_empty_series() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let storage = Storage::open(&dir.path().join("db.sqlite"), options()).unwrap();
    let now = 1_800_000_000_000i64;
    rt.block_on(async {
        let old: Vec<(i64, f64)> = (0..5).map(|i| (now - 30 * HOUR + i * HOUR, 1.0)).collect();
        let mixed: Vec<(i64, f64)> = (0..30)
            .map(|i| (now - 29 * HOUR + i * HOUR, i as f64))
            .collect();
        storage
            .append(
                vec![series("m", "old", &old), series("m", "mixed", &mixed)],
                vec![],
            )
            .await
            .unwrap();
        storage.compact().await.unwrap();
        let outcome = storage.apply_retention(now).await.unwrap();
        assert_eq!(outcome.series, 1, "the all-old series is gone");
    });
    let left = dump(&storage, &[m("__name__", MatchOp::Equal, "m")], 0, i64::MAX);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, "mixed");
    let cutoff = now - 24 * HOUR;
    assert!(left[0].1.iter().all(|(t, _)| *t >= cutoff));
    assert_eq!(left[0].1.len(), 25, "samples at or after the cutoff stay");
    assert_eq!(storage.sample_count(), 25);
    rt.block_on(storage.close());
}

#[test]
fn series_in_range_checks_head_and_chunk_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let storage = Storage::open(&dir.path().join("db.sqlite"), options()).unwrap();
    let base = 1_800_000_000_000i64;
    let all = [m("__name__", MatchOp::Regex, ".+")];
    let names = |start: i64, end: i64| -> Vec<String> {
        storage
            .series_in_range(&all, start, end, usize::MAX)
            .unwrap()
            .iter()
            .map(|l| l.iter().find(|(n, _)| n == "instance").unwrap().1.clone())
            .collect()
    };
    rt.block_on(async {
        storage
            .append(
                vec![
                    series("up", "early", &[(base, 1.0), (base + 1000, 1.0)]),
                    series("up", "late", &[(base + 5 * HOUR, 1.0)]),
                ],
                Vec::new(),
            )
            .await
            .unwrap();
    });
    for compacted in [false, true] {
        if compacted {
            rt.block_on(storage.compact()).unwrap();
        }
        assert_eq!(names(base, base + 500), ["early"], "compacted: {compacted}");
        assert_eq!(names(base + 5 * HOUR, base + 6 * HOUR), ["late"]);
        assert_eq!(names(base - HOUR, base + 6 * HOUR), ["early", "late"]);
        assert!(names(base + 2 * HOUR, base + 3 * HOUR).is_empty());
    }
}

#[test]
fn select_within_gives_up_past_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let storage = Storage::open(&dir.path().join("db.sqlite"), options()).unwrap();
    let base = 1_800_000_000_000i64;
    let samples: Vec<(i64, f64)> = (0..10).map(|i| (base + i * 1000, 1.0)).collect();
    rt.block_on(storage.append(
        vec![series("up", "a", &samples), series("up", "b", &samples)],
        Vec::new(),
    ))
    .unwrap();
    let all = [m("__name__", MatchOp::Equal, "up")];
    for compacted in [false, true] {
        if compacted {
            rt.block_on(storage.compact()).unwrap();
        }
        assert!(
            storage
                .select_within(&all, base, base + HOUR, &ReadBudget::new(19))
                .unwrap()
                .is_none()
        );
        let fits = storage
            .select_within(&all, base, base + HOUR, &ReadBudget::new(20))
            .unwrap()
            .unwrap();
        assert_eq!(fits.len(), 2, "compacted: {compacted}");
        // Only samples in range count.
        assert!(
            storage
                .select_within(&all, base, base + 4000, &ReadBudget::new(10))
                .unwrap()
                .is_some()
        );
    }
}

/// Every sample acknowledged before a read starts is in that read's
/// answer, even while compaction moves samples from the head into chunks
/// under it (a read must see each sample in the head or in a chunk).
#[test]
fn reads_during_compaction_miss_no_acknowledged_sample() {
    reads_race_compaction(options(), 5_000, 1000);
}

/// As above with windows closing all the time (a minute's window, half a
/// minute a round): every pass moves rows into `chunks`, which the chunk
/// cache must forget before a read can trust it.
#[test]
fn reads_while_windows_close_miss_no_acknowledged_sample() {
    let options = Options {
        chunk_window: Duration::from_secs(60),
        // Reads go to the chunks (the samples lie in the future, where
        // recent tails would hold them all).
        recent_window: Duration::ZERO,
        ..options()
    };
    let round_ms = 30_000;
    let storage = reads_race_compaction(options, 500, round_ms);
    // Whether a read during the race also hit depends on timing (a read
    // keeps rows only if no window closed while it ran, and a slow run
    // may close one during every read): that the race's reads looked
    // rows up is what is asserted, and that the cache then answers.
    let during = storage.chunk_cache_stats();
    assert!(
        during.misses > 0,
        "reads looked up the chunk cache: {during:?}"
    );
    let all = [m("__name__", MatchOp::Equal, "m")];
    let range = (RACE_BASE_MS, RACE_BASE_MS + ROUNDS * round_ms);
    let first = storage.select(&all, range.0, range.1).unwrap();
    let again = storage.select(&all, range.0, range.1).unwrap();
    assert_eq!(first, again);
    let after = storage.chunk_cache_stats();
    assert!(
        after.hits > during.hits,
        "a repeated read hit the cache: {after:?}"
    );
}

/// Rounds of [`reads_race_compaction`] at most.
const ROUNDS: i64 = 1000;

/// The time of [`reads_race_compaction`]'s first round, ms.
const RACE_BASE_MS: i64 = 1_800_000_000_000;

/// Appends a sample to each of `SERIES` series per round (at most
/// [`ROUNDS`]), `round_ms` apart from [`RACE_BASE_MS`], and compacts over
/// and over, while reads check they see every sample acknowledged before
/// they began.
#[allow(non_snake_case)]
fn reads_race_compaction(options: Options, SERIES: usize, round_ms: i64) -> Storage {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let storage = Storage::open(&path, options).unwrap();
    let base = RACE_BASE_MS;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A writer appends a sample to every series per round; a compactor
    // packs the head into chunks over and over.
    let writer = {
        let (storage, acknowledged, stop) = (storage.clone(), acknowledged.clone(), stop.clone());
        rt.spawn(async move {
            let mut round = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && round < ROUNDS {
                let batch: Vec<SeriesSamples> = (0..SERIES)
                    .map(|i| series("m", &format!("h{i}"), &[(base + round * round_ms, 1.0)]))
                    .collect();
                storage.append(batch, Vec::new()).await.unwrap();
                acknowledged.fetch_add(SERIES, std::sync::atomic::Ordering::SeqCst);
                round += 1;
            }
        })
    };
    let compactor = {
        let (storage, stop) = (storage.clone(), stop.clone());
        rt.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                storage.compact().await.unwrap();
            }
        })
    };
    let all = [m("__name__", MatchOp::Equal, "m")];
    let mut short = Vec::new();
    let mut reads = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        reads += 1;
        let before = acknowledged.load(std::sync::atomic::Ordering::SeqCst);
        let read: usize = storage
            .select(&all, base, base + ROUNDS * round_ms)
            .unwrap()
            .iter()
            .map(|s| s.samples.len())
            .sum();
        if read < before {
            short.push((before, read));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(async {
        writer.await.unwrap();
        compactor.await.unwrap();
    });
    assert!(
        storage
            .counters()
            .compactions
            .load(std::sync::atomic::Ordering::Relaxed)
            > 3,
        "compaction ran during the reads"
    );
    assert!(
        short.is_empty(),
        "{} of {reads} reads missed acknowledged samples (acknowledged, read): {short:?}",
        short.len()
    );
    storage
}

#[test]
fn the_head_stays_bounded_when_appends_outrun_compaction() {
    let dir = tempfile::tempdir().unwrap();
    const SERIES: usize = 2_500;
    const SENDERS: usize = 4;
    const ROUNDS: i64 = 25;
    let options = Options {
        head_max_samples: SERIES,
        // Only the bound starts passes.
        compaction_interval: Duration::from_secs(3600),
        ..options()
    };
    let storage = Storage::open(&dir.path().join("db.sqlite"), options).unwrap();
    let base = 1_800_000_000_000i64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Several senders keep appends queued while every pass runs (ten
    // slices of series each), so a pass that let them all in between its
    // slices would end with a head several times the bound.
    let largest_seen = rt.block_on(async {
        let senders: Vec<_> = (0..SENDERS as i64)
            .map(|sender| {
                let storage = storage.clone();
                tokio::spawn(async move {
                    let mut largest = 0;
                    for round in 0..ROUNDS {
                        let ts = base + (round * SENDERS as i64 + sender) * 1000;
                        let batch: Vec<SeriesSamples> = (0..SERIES)
                            .map(|i| series("m", &format!("h{i}"), &[(ts, 1.0)]))
                            .collect();
                        storage.append(batch, Vec::new()).await.unwrap();
                        largest = largest.max(storage.head_samples());
                    }
                    largest
                })
            })
            .collect();
        let mut largest = 0;
        for sender in senders {
            largest = largest.max(sender.await.unwrap());
        }
        largest
    });
    let passes = storage
        .counters()
        .compactions
        .load(std::sync::atomic::Ordering::Relaxed);
    // The bound, plus the queued appends let in at once (one group) in
    // the pass's last step under the bound and once more after it.
    let limit = SERIES + 2 * SENDERS * SERIES;
    assert!(
        largest_seen <= limit,
        "head held {largest_seen} samples, over {limit} (bound {SERIES}, {passes} passes)"
    );
    assert!(passes >= 5, "the bound started passes ({passes})");
    let all = [m("__name__", MatchOp::Equal, "m")];
    let stored: usize = storage
        .select(&all, base, base + HOUR)
        .unwrap()
        .iter()
        .map(|s| s.samples.len())
        .sum();
    assert_eq!(
        stored,
        SERIES * SENDERS * ROUNDS as usize,
        "every sample kept"
    );
}

#[test]
fn appends_and_retention_report_what_they_changed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let storage = Storage::open(&dir.path().join("db.sqlite"), options()).unwrap();
    let now = 1_800_000_000_000i64;
    let before = storage.changes_now();
    assert_eq!(before.earliest_written, None);
    assert_eq!(before.deleted_before, i64::MIN);
    rt.block_on(async {
        storage
            .append(
                vec![series("m", "a", &[(now - HOUR, 1.0), (now, 2.0)])],
                vec![],
            )
            .await
            .unwrap();
        let after_first = storage.changes_now();
        assert!(after_first.epoch > before.epoch);
        assert_eq!(
            storage.changes_since(before.epoch).earliest_written,
            Some(now - HOUR)
        );
        // A late sample, for a series not seen before: still reported.
        storage
            .append(vec![series("m", "b", &[(now - 5 * HOUR, 3.0)])], vec![])
            .await
            .unwrap();
        assert_eq!(
            storage.changes_since(after_first.epoch).earliest_written,
            Some(now - 5 * HOUR)
        );
        // Compaction moves samples but changes none.
        let settled = storage.changes_now();
        storage.compact().await.unwrap();
        assert_eq!(storage.changes_since(settled.epoch).earliest_written, None);
        storage.apply_retention(now).await.unwrap();
    });
    assert_eq!(storage.changes_now().deleted_before, now - 24 * HOUR);
    rt.block_on(storage.close());
}

/// The two chunk tables' rule (see `chunk_rows`): a window's row is in
/// one of them, a series has at most one open window, and it is not older
/// than any of its closed ones.
fn assert_chunk_layout(path: &std::path::Path) {
    use std::collections::BTreeMap;
    let conn = rusqlite::Connection::open(path).unwrap();
    let keys = |table: &str| -> Vec<i64> {
        conn.prepare(&format!("SELECT key FROM {table}"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let (closed, open) = (keys("chunks"), keys("open_chunks"));
    let series_window = |key: i64| (key & ((1 << 39) - 1), key >> 39);
    let mut newest_closed = BTreeMap::new();
    for &key in &closed {
        assert!(!open.contains(&key), "window row {key} in both tables");
        let (series, window) = series_window(key);
        let newest = newest_closed.entry(series).or_insert(window);
        *newest = window.max(*newest);
    }
    let mut open_of = BTreeMap::new();
    for &key in &open {
        let (series, window) = series_window(key);
        assert!(
            open_of.insert(series, window).is_none(),
            "series {series} has two open windows"
        );
        if let Some(closed) = newest_closed.get(&series) {
            assert!(
                window >= *closed,
                "series {series}: open window {window} behind closed {closed}"
            );
        }
    }
}

/// One step of [`recent_tails_never_change_an_answer`].
#[derive(Debug, Clone)]
enum Step {
    /// Samples of series `k` at these offsets (seconds from now) with these values.
    Append(usize, Vec<(i64, u8)>),
    Compact,
    /// Retention with its cutoff this many minutes before now.
    Retention(i64),
    Reopen,
    /// A read of `[start, end]`, offsets in seconds from now.
    Read(i64, i64),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let offset = -8 * 3600i64..600;
    prop_oneof![
        4 => (0..4usize, proptest::collection::vec((offset.clone(), any::<u8>()), 1..40))
            .prop_map(|(k, samples)| Step::Append(k, samples)),
        2 => Just(Step::Compact),
        1 => (30..480i64).prop_map(Step::Retention),
        1 => Just(Step::Reopen),
        4 => (offset.clone(), offset).prop_map(|(a, b)| Step::Read(a.min(b), a.max(b))),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Reads answered from the recent tails and the chunk cache equal a
    /// model of every acknowledged sample, through appends in and out of
    /// order, compactions, retention and reopening, with windows small and
    /// large.
    #[test]
    fn recent_tails_never_change_an_answer(
        steps in proptest::collection::vec(step(), 1..40),
        chunk_minutes in proptest::prop_oneof![proptest::strategy::Just(60u64), proptest::strategy::Just(360)],
        recent_minutes in proptest::prop_oneof![proptest::strategy::Just(20u64), proptest::strategy::Just(180)],
        // The chunk cache off, small enough to evict all the time, and as
        // the receiver runs.
        chunk_cache_bytes in proptest::prop_oneof![
            proptest::strategy::Just(0u64),
            proptest::strategy::Just(2048),
            proptest::strategy::Just(64 << 20),
        ],
    ) {
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let options = Options {
            chunk_window: Duration::from_secs(chunk_minutes * 60),
            recent_window: Duration::from_secs(recent_minutes * 60),
            chunk_cache_bytes,
            ..options()
        };
        let retention_ms = options.retention.as_millis() as i64;
        let rt = runtime();
        let now = super::now_ms();
        let mut storage = Storage::open(&path, options.clone()).unwrap();
        let mut model: Vec<BTreeMap<i64, u64>> = vec![BTreeMap::new(); 4];
        // What the chunks hold: a head sample that a reopen drops leaves
        // the value its timestamp had in the chunks, if any.
        let mut chunked: Vec<BTreeMap<i64, u64>> = vec![BTreeMap::new(); 4];
        let all = [m("__name__", MatchOp::Equal, "m")];
        let mut last_cutoff = i64::MIN;
        // Timestamps written since the last compaction (still in the head log).
        let mut in_head: Vec<std::collections::BTreeSet<i64>> = vec![Default::default(); 4];
        for step in steps {
            match step {
                Step::Append(k, samples) => {
                    let samples: Vec<(i64, f64)> = samples
                        .iter()
                        .map(|(s, v)| (now + s * 1000, f64::from(*v)))
                        .collect();
                    rt.block_on(storage.append(vec![series("m", &format!("h{k}"), &samples)], Vec::new()))
                        .unwrap();
                    for (t, v) in samples {
                        model[k].insert(t, v.to_bits());
                        in_head[k].insert(t);
                    }
                }
                Step::Compact => {
                    rt.block_on(storage.compact()).unwrap();
                    in_head.iter_mut().for_each(|pending| pending.clear());
                    chunked.clone_from(&model);
                    assert_chunk_layout(&path);
                }
                Step::Retention(minutes) => {
                    let cutoff = now - minutes * 60_000;
                    last_cutoff = last_cutoff.max(cutoff);
                    rt.block_on(storage.apply_retention(cutoff + retention_ms)).unwrap();
                    for samples in model.iter_mut().chain(&mut chunked) {
                        samples.retain(|t, _| *t >= cutoff);
                    }
                    assert_chunk_layout(&path);
                }
                Step::Reopen => {
                    rt.block_on(storage.close());
                    storage = Storage::open(&path, options.clone()).unwrap();
                    // Samples written past the last retention cutoff do not
                    // come back from the head log.
                    for ((samples, pending), chunks) in model.iter_mut().zip(&mut in_head).zip(&chunked) {
                        for t in pending.iter().filter(|t| **t < last_cutoff) {
                            match chunks.get(t) {
                                Some(bits) => samples.insert(*t, *bits),
                                None => samples.remove(t),
                            };
                        }
                        pending.clear();
                    }
                }
                Step::Read(start, end) => {
                    let (start, end) = (now + start * 1000, now + end * 1000);
                    let got = dump(&storage, &all, start, end);
                    let want: Vec<(String, Vec<(i64, u64)>)> = model
                        .iter()
                        .enumerate()
                        .map(|(k, samples)| {
                            let inside: Vec<(i64, u64)> =
                                samples.range(start..=end).map(|(t, b)| (*t, *b)).collect();
                            (format!("h{k}"), inside)
                        })
                        .filter(|(_, inside)| !inside.is_empty())
                        .collect();
                    proptest::prop_assert_eq!(got, want, "read [{}, {}]", start, end);
                }
            }
        }
    }
}

#[test]
fn a_recent_tail_is_not_started_behind_a_newer_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let options = Options {
        chunk_window: Duration::from_secs(3600),
        recent_window: Duration::from_secs(3 * 3600),
        ..options()
    };
    let rt = runtime();
    let now = super::now_ms();
    let minutes = |m: i64| now - m * 60_000;
    let storage = Storage::open(&path, options.clone()).unwrap();
    rt.block_on(async {
        storage
            .append(vec![series("m", "a", &[(minutes(10), 1.0)])], Vec::new())
            .await
            .unwrap();
        storage.compact().await.unwrap();
        storage.close().await;
    });
    // Reopened, no tail: a late sample lands in an older window, whose
    // rewrite must not start a tail that would hide the newer chunk.
    let storage = Storage::open(&path, options).unwrap();
    rt.block_on(async {
        storage
            .append(vec![series("m", "a", &[(minutes(100), 2.0)])], Vec::new())
            .await
            .unwrap();
        storage.compact().await.unwrap();
    });
    let all = [m("__name__", MatchOp::Equal, "m")];
    assert_eq!(
        dump(&storage, &all, minutes(100), now),
        vec![(
            "a".to_owned(),
            vec![
                (minutes(100), 2f64.to_bits()),
                (minutes(10), 1f64.to_bits())
            ]
        )]
    );
    // The newest window rewritten starts the tail, which then answers.
    rt.block_on(async {
        storage
            .append(vec![series("m", "a", &[(minutes(5), 3.0)])], Vec::new())
            .await
            .unwrap();
        storage.compact().await.unwrap();
    });
    assert!(
        storage.recent_samples() > 0,
        "a tail holds the newest window"
    );
    assert_eq!(
        dump(&storage, &all, minutes(100), now),
        vec![(
            "a".to_owned(),
            vec![
                (minutes(100), 2f64.to_bits()),
                (minutes(10), 1f64.to_bits()),
                (minutes(5), 3f64.to_bits())
            ]
        )]
    );
}

#[test]
fn metadata_is_written_when_it_changes_and_survives_reopen() {
    use dcmon_protocol::remote_write::FamilyMetadata;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let rt = runtime();
    let meta = |help: &str| FamilyMetadata {
        family: "load".into(),
        kind: "gauge",
        help: help.into(),
        unit: String::new(),
    };
    let stored = |storage: &Storage| -> Vec<String> {
        storage
            .metadata()
            .unwrap()
            .into_iter()
            .map(|m| format!("{} {} {}", m.family, m.kind, m.help))
            .collect()
    };
    // Another writer's hand on the table shows which appends wrote to it.
    let tamper = || {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("UPDATE metadata SET help = 'tampered'", [])
            .unwrap();
    };
    let append = |storage: &Storage, metadata: Vec<FamilyMetadata>| {
        rt.block_on(storage.append(vec![series("load", "a", &[(1, 1.0)])], metadata))
            .unwrap();
    };
    let storage = Storage::open(&path, options()).unwrap();
    // Within one request, the last entry of a family wins.
    append(&storage, vec![meta("first"), meta("1-minute load")]);
    assert_eq!(stored(&storage), ["load gauge 1-minute load"]);
    tamper();
    append(&storage, vec![meta("1-minute load")]);
    assert_eq!(
        stored(&storage),
        ["load gauge tampered"],
        "unchanged, not rewritten"
    );
    append(&storage, vec![meta("load average")]);
    assert_eq!(stored(&storage), ["load gauge load average"]);
    rt.block_on(storage.close());

    let storage = Storage::open(&path, options()).unwrap();
    tamper();
    append(&storage, vec![meta("load average")]);
    assert_eq!(
        stored(&storage),
        ["load gauge tampered"],
        "known after reopen"
    );
    append(&storage, vec![meta("1-minute load")]);
    assert_eq!(stored(&storage), ["load gauge 1-minute load"]);
}

#[test]
fn an_open_window_grows_by_segments_and_is_written_whole_once_closed() {
    use super::chunk;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let rt = runtime();
    let window = 6 * HOUR;
    let base = 1_800_000_000_000i64 / window * window;
    let storage = Storage::open(
        &path,
        Options {
            retention: Duration::from_secs(365 * 24 * 3600),
            recent_window: Duration::ZERO,
            ..Options::default()
        },
    )
    .unwrap();
    // (samples, segments, table) of every chunk row, in window order.
    let chunks = || -> Vec<(i64, usize, &str)> {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT key, count, data, 'closed' FROM chunks
                 UNION ALL SELECT key, count, data, 'open' FROM open_chunks ORDER BY 1",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, String>(3)?))
        })
        .unwrap()
        .map(|row| {
            let (count, data, table) = row.unwrap();
            let table = if table == "open" { "open" } else { "closed" };
            (count, chunk::segments(&data).unwrap(), table)
        })
        .collect()
    };
    let mut sent = Vec::new();
    let mut pass = |from: i64, to: i64| {
        let samples: Vec<(i64, f64)> = (from..to)
            .map(|k| (base + k * 30_000, (k % 7) as f64 * 0.5))
            .collect();
        sent.extend(samples.iter().map(|(t, v)| (*t, v.to_bits())));
        rt.block_on(storage.append(vec![series("load", "a", &samples)], vec![]))
            .unwrap();
        rt.block_on(storage.compact()).unwrap();
    };
    // Ten passes into the first window: each adds a segment until the
    // limit, where the window is written whole and starts again.
    for p in 0..10 {
        pass(p * 10, p * 10 + 10);
        let (count, segments, table) = chunks()[0];
        assert_eq!(table, "open");
        assert_eq!(count, (p + 1) * 10);
        assert_eq!(segments, (p as usize) % chunk::MAX_SEGMENTS + 1, "pass {p}");
    }
    let window_samples = window / 30_000;
    pass(100, window_samples);
    // The next window's first samples close the first one: it moves to
    // the closed table, written whole.
    pass(window_samples, window_samples + 10);
    assert_eq!(chunks(), [(window_samples, 1, "closed"), (10, 1, "open")]);
    assert_eq!(
        dump(
            &storage,
            &[m("__name__", MatchOp::Equal, "load")],
            base,
            base + 2 * window
        ),
        [("a".to_owned(), sent)]
    );
}

#[test]
fn a_recent_tail_gains_the_samples_each_in_order_pass_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let options = Options {
        recent_window: Duration::from_secs(3 * 3600),
        ..options()
    };
    let rt = runtime();
    let now = super::now_ms();
    // The passes' hour lies in one chunk window: where it would cross into
    // a new window (in the first hour after one begins), it ends before
    // that window instead. Samples in two windows at once would leave the
    // older one's behind its newer chunk, where no tail is started.
    let window = i64::try_from(options.chunk_window.as_millis()).unwrap();
    let window_start = now - now.rem_euclid(window);
    let end = if now - window_start <= HOUR + 300_000 {
        window_start - 1
    } else {
        now
    };
    let storage = Storage::open(&path, options).unwrap();
    let all = [m("__name__", MatchOp::Equal, "m")];
    let mut sent = Vec::new();
    // Twelve passes of five minutes each, oldest first, all within the
    // recent window: after the first, each pass appends a segment and
    // extends the tail that answers the reads.
    for pass in (0..12).rev() {
        let samples: Vec<(i64, f64)> = (0..10)
            .map(|k| {
                (
                    end - pass * 300_000 - (10 - k) * 30_000,
                    (pass * 10 + k) as f64,
                )
            })
            .collect();
        sent.extend(samples.iter().map(|(t, v)| (*t, v.to_bits())));
        rt.block_on(storage.append(vec![series("m", "a", &samples)], Vec::new()))
            .unwrap();
        rt.block_on(storage.compact()).unwrap();
        assert_eq!(storage.recent_samples(), sent.len(), "pass {pass}");
        assert_eq!(
            dump(&storage, &all, now - 3 * HOUR, now),
            vec![("a".to_owned(), sent.clone())],
            "pass {pass}"
        );
    }
}

#[test]
fn a_version_5_databases_chunks_are_read_and_grown_after_migration() {
    use super::chunk;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let rt = runtime();
    let window = 6 * HOUR;
    let first = 1_800_000_000_000i64 / window;
    let at = |k: i64| (first * window + k * 60_000, (k % 11) as f64);
    // Two windows of series 1, keyed series first as version 5 keys them.
    let old: Vec<(i64, f64)> = (0..2 * window / 60_000).map(at).collect();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        super::schema::create_at_version(&conn, 5);
        conn.execute(
            r#"INSERT INTO series (id, labels) VALUES (1, '[["__name__","m"],["instance","a"],["job","dcmon"]]')"#,
            [],
        )
        .unwrap();
        for number in [first, first + 1] {
            let raw: Vec<(i64, u64)> = old
                .iter()
                .filter(|(t, _)| t.div_euclid(window) == number)
                .map(|(t, v)| (*t, v.to_bits()))
                .collect();
            conn.execute(
                "INSERT INTO chunks (key, min_ts, max_ts, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![
                    1 << 24 | number,
                    raw[0].0,
                    raw[raw.len() - 1].0,
                    raw.len() as i64,
                    chunk::encode(&raw)
                ],
            )
            .unwrap();
        }
    }
    let storage = Storage::open(
        &path,
        Options {
            retention: Duration::from_secs(365 * 24 * 3600),
            ..Options::default()
        },
    )
    .unwrap();
    let all = [m("__name__", MatchOp::Equal, "m")];
    let bits = |samples: &[(i64, f64)]| -> Vec<(i64, u64)> {
        samples.iter().map(|(t, v)| (*t, v.to_bits())).collect()
    };
    let (start, end) = (first * window, (first + 4) * window);
    assert_eq!(
        dump(&storage, &all, start, end),
        [("a".to_owned(), bits(&old))]
    );
    // A late sample into the older window, and the next window's first.
    let mut sent = old.clone();
    let late = (first * window + 30_000, 99.0);
    let next = at(2 * window / 60_000 + 3);
    rt.block_on(storage.append(vec![series("m", "a", &[late, next])], vec![]))
        .unwrap();
    rt.block_on(storage.compact()).unwrap();
    sent.extend([late, next]);
    sent.sort_by_key(|s| s.0);
    assert_eq!(
        dump(&storage, &all, start, end),
        [("a".to_owned(), bits(&sent))]
    );
    assert_chunk_layout(&path);
    rt.block_on(storage.close());
}

/// Storage with one-hour windows and no recent tails: a few hours of
/// samples span several windows, and every read of them reads chunks.
fn hourly_windows_without_tails(path: &std::path::Path) -> Storage {
    Storage::open(
        path,
        Options {
            chunk_window: Duration::from_secs(3600),
            recent_window: Duration::ZERO,
            ..options()
        },
    )
    .unwrap()
}

#[test]
fn a_read_of_series_picked_among_others_gets_each_ones_samples() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let rt = runtime();
    let storage = hourly_windows_without_tails(&path);
    let now = super::now_ms();
    let start = now - 3 * HOUR;
    // Twelve series numbered in order, three hours (three or four windows)
    // of a sample a minute, each with values of its own; the last minutes
    // stay in the head.
    let mut sent: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    let mut batch = |from: i64, to: i64| {
        let request: Vec<SeriesSamples> = (0..12)
            .map(|k| {
                let samples: Vec<(i64, f64)> = (from..to)
                    .map(|i| (start + i * 60_000 + k, (k * 1000 + i) as f64))
                    .collect();
                let name = format!("h{k}");
                sent.entry(name.clone())
                    .or_default()
                    .extend(samples.iter().map(|(t, v)| (*t, v.to_bits())));
                series("m", &name, &samples)
            })
            .collect();
        rt.block_on(storage.append(request, vec![])).unwrap();
    };
    batch(0, 170);
    rt.block_on(storage.compact()).unwrap();
    batch(170, 180);
    // Ids 1, 3, 4, 8 and 12: runs of neighbours and a loner, with series
    // in between that are not asked for.
    let picked = [m("instance", MatchOp::Regex, "h0|h2|h3|h7|h11")];
    let want: Vec<(String, Vec<(i64, u64)>)> = ["h0", "h11", "h2", "h3", "h7"]
        .iter()
        .map(|name| (name.to_string(), sent[*name].clone()))
        .collect();
    assert_eq!(dump(&storage, &picked, start, now), want);
    // A range inside the middle window cuts each series' chunks alike.
    let (from, to) = (start + 70 * 60_000, start + 100 * 60_000);
    let inside: Vec<(String, Vec<(i64, u64)>)> = want
        .iter()
        .map(|(name, samples)| {
            let kept = samples
                .iter()
                .copied()
                .filter(|(t, _)| (from..=to).contains(t))
                .collect();
            (name.clone(), kept)
        })
        .collect();
    assert_eq!(dump(&storage, &picked, from, to), inside);
    rt.block_on(storage.close());
}

#[test]
fn series_of_one_scrape_read_back_their_own_samples() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let rt = runtime();
    let storage = hourly_windows_without_tails(&path);
    let now = super::now_ms();
    let start = now - 3 * HOUR;
    // Two hosts of six series each, scraped every 30 s with jitter: a
    // host's series share each scrape's timestamp (and so the first bits
    // of each window's chunks), the hosts' timestamps differ. One series
    // misses every seventh scrape, so its chunks begin otherwise.
    let stamp =
        |host: i64, i: i64| start + i * 30_000 + host * 7_000 + (i * 7_919 + host) % 81 - 40;
    let mut sent: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    let request: Vec<SeriesSamples> = (0..12i64)
        .map(|k| {
            let host = k / 6;
            let samples: Vec<(i64, f64)> = (0..360)
                .filter(|i| k != 4 || i % 7 != 3)
                .map(|i| (stamp(host, i), (k * 100_000 + i * (k + 1)) as f64 / 4.0))
                .collect();
            let name = format!("h{host}s{k:02}");
            sent.insert(
                name.clone(),
                samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
            );
            series("m", &name, &samples)
        })
        .collect();
    rt.block_on(storage.append(request, vec![])).unwrap();
    rt.block_on(storage.compact()).unwrap();
    let every = [m("__name__", MatchOp::Equal, "m")];
    let want: Vec<(String, Vec<(i64, u64)>)> = sent.clone().into_iter().collect();
    assert_eq!(dump(&storage, &every, start - HOUR, now), want);
    // Ids far apart (read by separate searches) still meet window by window.
    let spaced = [m("instance", MatchOp::Regex, "h0s00|h0s04|h1s06|h1s11")];
    let want: Vec<(String, Vec<(i64, u64)>)> = ["h0s00", "h0s04", "h1s06", "h1s11"]
        .iter()
        .map(|name| (name.to_string(), sent[*name].clone()))
        .collect();
    assert_eq!(dump(&storage, &spaced, start - HOUR, now), want);
    rt.block_on(storage.close());
}
