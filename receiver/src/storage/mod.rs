//! Sample storage in one SQLite file.
//!
//! Writes go through a single writer thread that owns the write connection:
//! concurrent remote-write requests are grouped into one transaction (one
//! fsync for many requests), and each request is answered only after its
//! transaction committed. Fresh samples are recorded in `head_log` and kept
//! in memory (the head); a compaction pass packs them into per-series
//! chunks; retention drops chunks and then series past the retention
//! window. Reads use separate read-only connections (WAL allows them beside
//! the writer) plus the in-memory index and head.

pub mod changes;
pub mod chunk;
mod chunk_cache;
mod chunk_rows;
pub mod head;
mod id_map;
pub mod index;
mod packed;
pub mod read;
mod recent;
pub mod schema;
pub mod search;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dcmon_protocol::remote_write::{FamilyMetadata, MetadataView, RequestView, SeriesSamples};
use rusqlite::Connection;
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};

use self::changes::{ChangeLog, Changes};
use self::chunk_cache::ChunkCache;
pub use self::chunk_cache::ChunkCacheStats;
use self::head::Head;
use self::index::SeriesIndex;
use self::recent::Recent;

/// Why storage could not do what was asked. Every variant is on our side
/// (a retry may succeed once an operator fixed the cause), so it maps to
/// HTTP 5xx. SQLite's errors are sorted by cause, so that a full disk or a
/// read-only file is reported as what it is, not as damaged data.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// SQLite failed for a reason not sorted below.
    #[error("database: {0}")]
    Sqlite(rusqlite::Error),
    /// The disk (or the database's size limit) is full.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// The file system or the file refuses writes (permissions, a
    /// read-only mount, a file that cannot be opened).
    #[error("permission denied or read-only: {0}")]
    Permission(String),
    /// The operating system failed a read or write.
    #[error("I/O error: {0}")]
    Io(String),
    /// Stored data could not be decoded.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The database file is locked by another process for too long.
    #[error("database busy: {0}")]
    Busy(String),
    /// The writer has stopped (shutdown in progress).
    #[error("storage is shutting down")]
    Closed,
    /// Too many series: the receiver's global series limit.
    #[error(
        "series limit reached: {stored} series stored, {new} new in this request, limit {limit} (--storage.max-series)"
    )]
    SeriesLimit {
        /// Series stored now.
        stored: usize,
        /// Series the request would add.
        new: usize,
        /// The limit.
        limit: usize,
    },
}

impl From<rusqlite::Error> for StorageError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as Code;
        let Some(code) = err.sqlite_error_code() else {
            return StorageError::Sqlite(err);
        };
        let message = err.to_string();
        match code {
            Code::DiskFull => StorageError::DiskFull(message),
            Code::ReadOnly
            | Code::PermissionDenied
            | Code::CannotOpen
            | Code::AuthorizationForStatementDenied => StorageError::Permission(message),
            Code::SystemIoFailure => StorageError::Io(message),
            Code::DatabaseCorrupt | Code::NotADatabase => StorageError::Corrupt(message),
            Code::DatabaseBusy | Code::DatabaseLocked => StorageError::Busy(message),
            _ => StorageError::Sqlite(err),
        }
    }
}

impl From<std::io::Error> for StorageError {
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as Kind;
        let message = err.to_string();
        match err.kind() {
            Kind::StorageFull | Kind::QuotaExceeded => StorageError::DiskFull(message),
            Kind::PermissionDenied | Kind::ReadOnlyFilesystem => StorageError::Permission(message),
            _ => StorageError::Io(message),
        }
    }
}

impl StorageError {
    /// The same failure again, for each of several waiters on one
    /// operation (SQLite's error cannot be cloned; its text and kind can).
    pub fn duplicate(&self) -> StorageError {
        match self {
            StorageError::Sqlite(err) => StorageError::Io(format!("database: {err}")),
            StorageError::DiskFull(m) => StorageError::DiskFull(m.clone()),
            StorageError::Permission(m) => StorageError::Permission(m.clone()),
            StorageError::Io(m) => StorageError::Io(m.clone()),
            StorageError::Corrupt(m) => StorageError::Corrupt(m.clone()),
            StorageError::Busy(m) => StorageError::Busy(m.clone()),
            StorageError::Closed => StorageError::Closed,
            StorageError::SeriesLimit { stored, new, limit } => StorageError::SeriesLimit {
                stored: *stored,
                new: *new,
                limit: *limit,
            },
        }
    }

    /// A short machine-readable name of the cause, for metrics and `/health`.
    pub fn cause(&self) -> &'static str {
        match self {
            StorageError::Sqlite(_) => "database",
            StorageError::DiskFull(_) => "disk_full",
            StorageError::Permission(_) => "permission",
            StorageError::Io(_) => "io",
            StorageError::Corrupt(_) => "corrupt",
            StorageError::Busy(_) => "busy",
            StorageError::Closed => "closed",
            StorageError::SeriesLimit { .. } => "series_limit",
        }
    }
}

/// Tunables, with the defaults the receiver runs with.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long samples are kept.
    pub retention: Duration,
    /// Time span of one chunk. Six hours: longer chunks compress better
    /// (about 720 samples at a 30 s interval), and decoding one to answer a
    /// short query costs microseconds.
    pub chunk_window: Duration,
    /// How often head samples are packed into chunks.
    pub compaction_interval: Duration,
    /// Head size (samples) that triggers a compaction at once; while a
    /// pass runs, appends past it wait for the pass to drain the head, so
    /// the head's memory stays near this bound whatever the ingest rate.
    pub head_max_samples: usize,
    /// How far back compacted samples also stay decoded in memory
    /// (`--storage.recent-window`), so the newest steps of a refreshed
    /// dashboard read no chunk; zero turns it off.
    pub recent_window: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Most series stored at once (`--storage.max-series`); appends that
    /// would add series beyond it are refused. 0: no limit.
    pub max_series: usize,
    /// Bytes of closed chunk rows kept in memory for reads
    /// (`--storage.chunk-cache-size`); 0 turns the cache off.
    pub chunk_cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            chunk_window: Duration::from_secs(6 * 3600),
            compaction_interval: Duration::from_secs(60),
            // About 30 MB packed; compaction costs a fixed amount per
            // series and pass, so a bigger head makes it cheaper per sample.
            head_max_samples: 4_000_000,
            // Past a 5-minute rate window plus a step or two of a dashboard.
            recent_window: Duration::from_secs(15 * 60),
            retention_interval: Duration::from_secs(600),
            max_series: 1_000_000,
            // A week of a few hundred series per host on 20 hosts is about
            // 120 MB of chunks: a dashboard's share of it fits.
            chunk_cache_bytes: 64 << 20,
        }
    }
}

/// Result of one append.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Samples stored.
    pub samples: usize,
    /// Series seen for the first time.
    pub new_series: usize,
}

/// Result of one compaction pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Series whose head samples moved into chunks.
    pub series: usize,
    /// Samples moved.
    pub samples: usize,
}

/// Result of one retention pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Chunks deleted.
    pub chunks: usize,
    /// Series deleted because no sample was left.
    pub series: usize,
}

/// Counters kept by the writer, for `/api/dcmon/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Samples appended since start.
    pub samples_appended: AtomicU64,
    /// Write transactions committed since start.
    pub commits: AtomicU64,
    /// Samples currently packed in chunks.
    pub chunk_samples: AtomicU64,
    /// Compaction passes completed.
    pub compactions: AtomicU64,
    /// Samples moved from the head into chunks.
    pub compacted_samples: AtomicU64,
    /// Microseconds the writer spent in compaction passes.
    pub compaction_micros: AtomicU64,
    /// Retention passes completed.
    pub retention_runs: AtomicU64,
    /// Chunks dropped by retention.
    pub chunks_dropped: AtomicU64,
    /// Series dropped by retention.
    pub series_dropped: AtomicU64,
    /// Failed writer operations (write, compaction, retention).
    pub failures: AtomicU64,
}

/// A storage operation that is failing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `write`, `compaction` or `retention`.
    pub operation: &'static str,
    /// [`StorageError::cause`] of the latest failure.
    pub cause: &'static str,
    /// The latest failure's text.
    pub error: String,
    /// When the operation first failed in this run of failures, ms.
    pub since_ms: i64,
    /// Failures in a row.
    pub count: u64,
}

/// State shared by the writer thread and readers.
#[derive(Debug)]
struct Shared {
    path: PathBuf,
    options: Options,
    index: RwLock<SeriesIndex>,
    head: RwLock<Head>,
    /// Decoded copies of the newest chunk samples; taken after `head`
    /// whenever both are held.
    recent: RwLock<Recent>,
    readers: Mutex<Vec<Connection>>,
    counters: Counters,
    /// Operations whose latest attempt failed; an operation leaves the
    /// list when it next succeeds.
    failing: Mutex<Vec<Failure>>,
    /// What appends and retention changed, for caches of query answers.
    changes: ChangeLog,
    /// Closed chunk rows read lately.
    chunk_cache: ChunkCache,
    /// The metadata table's content, by family: an append stores only
    /// what differs from it.
    metadata: RwLock<FxHashMap<String, FamilyMetadata>>,
}

impl Shared {
    fn record_failure(&self, operation: &'static str, err: &StorageError) {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match failing.iter_mut().find(|f| f.operation == operation) {
            Some(failure) => {
                failure.cause = err.cause();
                failure.error = err.to_string();
                failure.count += 1;
            }
            None => failing.push(Failure {
                operation,
                cause: err.cause(),
                error: err.to_string(),
                since_ms: now_ms(),
                count: 1,
            }),
        }
    }

    fn record_success(&self, operation: &'static str) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.iter().any(|f| f.operation == operation) {
            failing.retain(|f| f.operation != operation);
            tracing::info!(operation, "storage operation succeeds again");
        }
    }
}

/// An append prepared by the caller, off the writer thread: samples of
/// series the index already knows are resolved to ids and encoded as a
/// head-log blob; only new series are left for the writer.
#[derive(Debug)]
pub struct PreparedAppend {
    known: Vec<head::LogEntry>,
    known_blob: Vec<u8>,
    unknown: Vec<SeriesSamples>,
    metadata: Vec<FamilyMetadata>,
    /// The earliest sample timestamp of the append (`None`: no samples),
    /// found here so the writer does no per-sample work for it.
    earliest_ms: Option<i64>,
}

impl PreparedAppend {
    /// Series the index did not know when the append was prepared (a
    /// series sent twice in one request counts twice).
    pub fn new_series(&self) -> usize {
        self.unknown.len()
    }
}

enum Job {
    Append {
        prepared: PreparedAppend,
        reply: oneshot::Sender<Result<AppendOutcome, StorageError>>,
    },
    Compact {
        reply: Option<oneshot::Sender<Result<CompactionOutcome, StorageError>>>,
    },
    Retention {
        now_ms: i64,
        reply: Option<oneshot::Sender<Result<RetentionOutcome, StorageError>>>,
    },
    Shutdown,
}

/// The storage handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Storage {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Append { .. } => "Append",
            Job::Compact { .. } => "Compact",
            Job::Retention { .. } => "Retention",
            Job::Shutdown => "Shutdown",
        })
    }
}

/// Queue depth in front of the writer; senders wait beyond it.
const JOB_QUEUE: usize = 256;

impl Storage {
    /// Opens (or creates) the database at `path`, rebuilds the index and
    /// replays the head log, and starts the writer thread.
    pub fn open(path: &Path, options: Options) -> Result<Storage, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                let what = format!("creating {}", dir.display());
                match StorageError::from(e) {
                    StorageError::DiskFull(m) => StorageError::DiskFull(format!("{what}: {m}")),
                    StorageError::Permission(m) => StorageError::Permission(format!("{what}: {m}")),
                    other => StorageError::Io(format!("{what}: {other}")),
                }
            })?;
        }
        let conn = schema::open_writer(path)?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            chunk_cache: ChunkCache::new(options.chunk_cache_bytes),
            options,
            index: RwLock::new(SeriesIndex::default()),
            head: RwLock::new(Head::default()),
            recent: RwLock::new(Recent::default()),
            readers: Mutex::new(Vec::new()),
            counters: Counters::default(),
            failing: Mutex::new(Vec::new()),
            changes: ChangeLog::new(),
            metadata: RwLock::new(FxHashMap::default()),
        });
        let open_windows = writer::load(&conn, &shared)?;
        let (tx, rx) = mpsc::channel(JOB_QUEUE);
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || writer::Writer::new(conn, thread_shared, open_windows).run(rx))
            .map_err(|e| StorageError::Io(format!("starting the writer thread: {e}")))?;
        Ok(Storage {
            shared,
            jobs: tx,
            writer: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// Durably stores `series` (and the metadata that came with them).
    /// Returns once the samples are committed and visible to reads.
    pub async fn append(
        &self,
        series: Vec<SeriesSamples>,
        metadata: Vec<FamilyMetadata>,
    ) -> Result<AppendOutcome, StorageError> {
        self.commit(self.prepare(series, metadata)).await
    }

    /// Fails with [`StorageError::SeriesLimit`] if `new` more series would
    /// pass `--storage.max-series`. Concurrent appends are checked each on
    /// its own, so the limit can be passed by at most what the appends in
    /// flight add together.
    pub fn check_series_limit(&self, new: usize) -> Result<(), StorageError> {
        let limit = self.shared.options.max_series;
        if limit == 0 || new == 0 {
            return Ok(());
        }
        let stored = self.series_count();
        if stored.saturating_add(new) > limit {
            return Err(StorageError::SeriesLimit { stored, new, limit });
        }
        Ok(())
    }

    /// Durably stores a prepared append; see [`Storage::append`].
    pub async fn commit(&self, prepared: PreparedAppend) -> Result<AppendOutcome, StorageError> {
        self.check_series_limit(prepared.new_series())?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Append { prepared, reply })
            .await
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Resolves known series and encodes their log blob in the caller's
    /// thread, so the single writer does as little per sample as possible.
    pub fn prepare(
        &self,
        series: Vec<SeriesSamples>,
        metadata: Vec<FamilyMetadata>,
    ) -> PreparedAppend {
        let metadata = self.changed_metadata(metadata.iter().map(|m| MetadataView {
            family: &m.family,
            kind: m.kind,
            help: &m.help,
            unit: &m.unit,
        }));
        self.prepare_series(
            series.iter().map(|s| (&s.labels[..], &s.samples[..])),
            metadata,
        )
    }

    /// [`Storage::prepare`] for a request decoded as a view: labels are
    /// looked up as they lie in the body and copied only for series the
    /// index does not know yet, metadata only where it changed.
    pub fn prepare_view(&self, batch: &RequestView<'_>) -> PreparedAppend {
        let metadata = self.changed_metadata(batch.metadata().iter().copied());
        self.prepare_series(batch.series().map(|s| (s.labels, s.samples)), metadata)
    }

    fn prepare_series<'b, S: AsRef<str> + 'b>(
        &self,
        series: impl Iterator<Item = (&'b [(S, S)], &'b [(i64, f64)])>,
        metadata: Vec<FamilyMetadata>,
    ) -> PreparedAppend {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        let mut earliest_ms = None::<i64>;
        {
            let index = read_lock(&self.shared.index);
            let mut previous = None;
            for (labels, samples) in series {
                if let Some(min) = samples.iter().map(|(ts, _)| *ts).min() {
                    earliest_ms = Some(earliest_ms.map_or(min, |e| e.min(min)));
                }
                let id = previous
                    .and_then(|p| index.next_after(p, labels))
                    .or_else(|| index.lookup(index::hash_labels(labels), labels));
                previous = id;
                match id {
                    Some(id) => known.extend(samples.iter().map(|(ts, v)| (id, *ts, v.to_bits()))),
                    None => unknown.push(SeriesSamples {
                        labels: labels
                            .iter()
                            .map(|(n, v)| (n.as_ref().to_owned(), v.as_ref().to_owned()))
                            .collect(),
                        samples: samples.to_vec(),
                    }),
                }
            }
        }
        let known_blob = if known.is_empty() {
            Vec::new()
        } else {
            head::encode_log(&known)
        };
        PreparedAppend {
            known,
            known_blob,
            unknown,
            metadata,
            earliest_ms,
        }
    }

    /// The metadata entries that differ from what is stored (each family
    /// once, the last one sent winning), owned: senders repeat unchanged
    /// metadata with every request, and each stored entry is an upsert.
    fn changed_metadata<'m>(
        &self,
        metadata: impl Iterator<Item = MetadataView<'m>>,
    ) -> Vec<FamilyMetadata> {
        let stored = read_lock(&self.shared.metadata);
        let mut changed: Vec<FamilyMetadata> = Vec::new();
        for meta in metadata.filter(|m| !m.family.is_empty()) {
            let same = |m: &FamilyMetadata| {
                m.kind == meta.kind && m.help == meta.help && m.unit == meta.unit
            };
            if let Some(pending) = changed.iter_mut().find(|m| m.family == meta.family) {
                if !same(pending) {
                    *pending = meta.to_owned();
                }
                continue;
            }
            if !stored.get(meta.family).is_some_and(same) {
                changed.push(meta.to_owned());
            }
        }
        changed
    }

    /// Runs a compaction pass now and waits for it.
    pub async fn compact(&self) -> Result<CompactionOutcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Compact { reply: Some(reply) })
            .await
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Runs a retention pass as of `now_ms` and waits for it.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Retention {
                now_ms,
                reply: Some(reply),
            })
            .await
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Starts the background compaction and retention schedule; it ends when
    /// the storage is closed.
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let jobs = self.jobs.clone();
        let options = self.shared.options.clone();
        tokio::spawn(async move {
            let mut compaction = tokio::time::interval(options.compaction_interval);
            let mut retention = tokio::time::interval(options.retention_interval);
            compaction.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let job = tokio::select! {
                    _ = compaction.tick() => Job::Compact { reply: None },
                    _ = retention.tick() => Job::Retention { now_ms: now_ms(), reply: None },
                };
                if jobs.send(job).await.is_err() {
                    return;
                }
            }
        })
    }

    /// Lets the writer finish every job queued so far, stops it, and waits
    /// for it. Appends after this fail with [`StorageError::Closed`].
    pub async fn close(&self) {
        let _ = self.jobs.send(Job::Shutdown).await;
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// The labels of every series, for index-level queries.
    pub fn series_count(&self) -> usize {
        read_lock(&self.shared.index).len()
    }

    /// Samples held (chunks and head).
    pub fn sample_count(&self) -> u64 {
        self.shared.counters.chunk_samples.load(Ordering::Relaxed) + self.head_samples() as u64
    }

    /// Acknowledged samples not yet packed into chunks (held in memory).
    pub fn head_samples(&self) -> usize {
        read_lock(&self.shared.head).len()
    }

    /// Compacted samples also held decoded in memory (see
    /// [`Options::recent_window`]).
    pub fn recent_samples(&self) -> usize {
        read_lock(&self.shared.recent).len()
    }

    /// The storage operations failing now (empty when healthy): a write
    /// that fails here fails for every sender, so `/health` reports it.
    pub fn failing(&self) -> Vec<Failure> {
        self.shared
            .failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What appends and retention changed since `epoch` (an epoch an
    /// earlier answer carried; 0 for "since the start"). Cheap: one short
    /// lock, no I/O.
    pub fn changes_since(&self, epoch: u64) -> Changes {
        self.shared.changes.since(epoch)
    }

    /// The change epoch now, with the retention cutoff; see
    /// [`Storage::changes_since`].
    pub fn changes_now(&self) -> Changes {
        self.shared.changes.now()
    }

    /// Writer counters.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The chunk cache's counters.
    pub fn chunk_cache_stats(&self) -> ChunkCacheStats {
        self.shared.chunk_cache.stats()
    }

    /// Bytes the database occupies on disk (main file and WAL).
    pub fn disk_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.shared.path.display()));
        [self.shared.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Runs `f` with a read-only connection from the pool.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let pooled = self
            .shared
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => schema::open_reader(&self.shared.path)?,
        };
        let result = f(&conn);
        self.shared
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        result
    }

    /// Runs `PRAGMA integrity_check` on a read connection.
    pub fn integrity_check(&self) -> Result<String, StorageError> {
        self.with_reader(|conn| {
            Ok(conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))?)
        })
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// The window number of a timestamp.
fn window_of(ts_ms: i64, window: Duration) -> i64 {
    ts_ms
        .div_euclid(window.as_millis() as i64)
        .clamp(0, LAST_WINDOW)
}

/// The last window number: it holds every later timestamp, as window 0
/// holds every earlier one.
const LAST_WINDOW: i64 = 0xff_ffff;

/// The timestamps `[start, end)` window number `number` holds.
fn window_span(number: i64, window: Duration) -> (i64, i64) {
    let width = window.as_millis() as i64;
    let start = if number <= 0 {
        i64::MIN
    } else {
        number.saturating_mul(width)
    };
    let end = if number >= LAST_WINDOW {
        i64::MAX
    } else {
        (number + 1).saturating_mul(width)
    };
    (start, end)
}
#[cfg(test)]
mod tests;
