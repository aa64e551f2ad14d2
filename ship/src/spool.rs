//! The on-disk queue of one endpoint: batches that could not be delivered
//! yet, one file each under `<state-dir>/spool/<endpoint-id>/`, sent oldest
//! first once the endpoint is back.
//!
//! Files are written crash-safely (temporary file, fsync, rename, fsync of
//! the directory), so after a crash a batch file is either whole or absent.
//! A file that is torn or corrupt anyway (a disk error, a hand edit) is
//! reported, counted and removed; it never stops the exporter. The queue is
//! bounded by total bytes and by the age of its oldest batch; the oldest
//! batches are dropped first, and what was dropped is returned so the caller
//! can count it.
//!
//! File layout (little-endian): the magic `DCMSPL02`, the tick (i64 ms), the
//! sample count (u64), the body length (u64), the first 8 bytes of the
//! body's SHA-256, the protobuf message of the body (u64: 1 for
//! `prometheus.WriteRequest`, 2 for `io.prometheus.write.v2.Request`),
//! then the body (a compressed Remote-Write request). Files of the first
//! layout (`DCMSPL01`, written before the exporter spoke 2.0) have no
//! message field and hold 1.0; they are still read, so an upgrade loses
//! no spooled batch.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dcmon_protocol::remote_write::Version;
use sha2::{Digest, Sha256};

use super::batch::Batch;

const MAGIC: &[u8; 8] = b"DCMSPL02";
const HEADER_LEN: usize = 8 + 8 + 8 + 8 + 8 + 8;
/// The first layout: no message field, the body is always 1.0.
const MAGIC_V1_ONLY: &[u8; 8] = b"DCMSPL01";
const HEADER_LEN_V1_ONLY: usize = 8 + 8 + 8 + 8 + 8;
const SUFFIX: &str = ".batch";
const TEMP_PREFIX: &str = ".tmp-";

/// How much a spool may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// Total size of the batch files, headers included.
    pub max_bytes: u64,
    /// Batches whose tick is older than this are dropped.
    pub max_age: Duration,
}

/// Orders batches: by tick, then by the order they were spooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpoolKey {
    tick_ms: i64,
    seq: u64,
}

impl SpoolKey {
    /// The batch's ordering time, ms since the epoch.
    pub fn tick_ms(&self) -> i64 {
        self.tick_ms
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    samples: u64,
}

/// What the spool gave up on: batches dropped for the bounds, or files that
/// could not be read back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Batches (files) dropped.
    pub batches: u64,
    /// Samples they held (zero for a file whose header was unreadable).
    pub samples: u64,
    /// Of `batches`, how many were corrupt rather than evicted.
    pub corrupt: u64,
}

impl Dropped {
    fn add(&mut self, other: Dropped) {
        self.batches += other.batches;
        self.samples += other.samples;
        self.corrupt += other.corrupt;
    }

    fn evicted(entry: Entry) -> Self {
        Self {
            batches: 1,
            samples: entry.samples,
            corrupt: 0,
        }
    }

    fn corrupt(samples: u64) -> Self {
        Self {
            batches: 1,
            samples,
            corrupt: 1,
        }
    }
}

/// Why a spooled batch could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The file is torn or damaged; it has been removed.
    #[error("spool file {path} is corrupt ({reason}); removed")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
        /// What was lost with it.
        dropped: Dropped,
    },
    /// The file could not be read (it stays for a later try).
    #[error("reading spool file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The on-disk queue of one endpoint.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    entries: BTreeMap<SpoolKey, Entry>,
    total_bytes: u64,
    next_seq: u64,
}

impl Spool {
    /// Opens (creating it, mode 0700) the spool in `dir`, indexing the batch
    /// files left by an earlier run. Leftover temporary files are removed;
    /// files with a bad header are removed and reported as dropped.
    pub fn open(dir: &Path, limits: SpoolLimits) -> io::Result<(Spool, Dropped)> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut spool = Spool {
            dir: dir.to_owned(),
            limits,
            entries: BTreeMap::new(),
            total_bytes: 0,
            next_seq: 0,
        };
        let mut dropped = Dropped::default();
        for item in fs::read_dir(dir)? {
            let item = item?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = item.path();
            if name.starts_with(TEMP_PREFIX) {
                // A write that never reached its rename: the batch was not
                // acknowledged as spooled, so nothing is lost by removing it.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(key) = parse_file_name(name) else {
                continue;
            };
            match read_header(&path) {
                Ok(header) if header.tick_ms == key.tick_ms => {
                    let bytes = header.len as u64 + header.body_len;
                    spool.entries.insert(
                        key,
                        Entry {
                            bytes,
                            samples: header.samples,
                        },
                    );
                    spool.total_bytes += bytes;
                    spool.next_seq = spool.next_seq.max(key.seq + 1);
                }
                Ok(_) | Err(HeaderError::Corrupt(_)) => {
                    let reason = match read_header(&path) {
                        Err(HeaderError::Corrupt(reason)) => reason,
                        _ => "tick does not match the file name".into(),
                    };
                    tracing::warn!(file = %path.display(), reason, "spool file is torn or corrupt; removed");
                    let _ = fs::remove_file(&path);
                    dropped.add(Dropped::corrupt(0));
                }
                Err(HeaderError::Io(err)) => return Err(err),
            }
        }
        Ok((spool, dropped))
    }

    /// Writes `batch` durably, first dropping the oldest batches (and any
    /// past the age limit) so that the spool stays within its bounds. A
    /// batch larger than the whole size limit, or already too old, is
    /// dropped itself.
    pub fn push(&mut self, batch: &Batch, now_ms: i64) -> io::Result<Dropped> {
        let mut dropped = self.expire(now_ms);
        let bytes = (HEADER_LEN + batch.body.len()) as u64;
        if bytes > self.limits.max_bytes || self.too_old(batch.tick_ms, now_ms) {
            dropped.add(Dropped::evicted(Entry {
                bytes,
                samples: batch.samples,
            }));
            return Ok(dropped);
        }
        while self.total_bytes + bytes > self.limits.max_bytes {
            let Some(oldest) = self.oldest() else { break };
            dropped.add(self.evict(oldest));
        }
        let key = SpoolKey {
            tick_ms: batch.tick_ms,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.write_file(key, batch)?;
        self.entries.insert(
            key,
            Entry {
                bytes,
                samples: batch.samples,
            },
        );
        self.total_bytes += bytes;
        Ok(dropped)
    }

    /// Drops batches older than the age limit.
    pub fn expire(&mut self, now_ms: i64) -> Dropped {
        let mut dropped = Dropped::default();
        while let Some(oldest) = self.oldest() {
            if !self.too_old(oldest.tick_ms, now_ms) {
                break;
            }
            dropped.add(self.evict(oldest));
        }
        dropped
    }

    /// The oldest batch, if any.
    pub fn oldest(&self) -> Option<SpoolKey> {
        self.entries.keys().next().copied()
    }

    /// Every spooled batch, oldest first.
    pub fn keys(&self) -> Vec<SpoolKey> {
        self.entries.keys().copied().collect()
    }

    /// Reads a batch back, checking its header and checksum. A corrupt file
    /// is removed from disk and from the index.
    pub fn read(&mut self, key: SpoolKey) -> Result<Batch, SpoolError> {
        let path = self.path(key);
        let corrupt = |spool: &mut Spool, reason: String| {
            let samples = spool.forget(key).map_or(0, |e| e.samples);
            let _ = fs::remove_file(&path);
            SpoolError::Corrupt {
                path: path.clone(),
                reason,
                dropped: Dropped::corrupt(samples),
            }
        };
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(corrupt(self, "file vanished".into()));
            }
            Err(source) => {
                return Err(SpoolError::Io {
                    path: path.clone(),
                    source,
                });
            }
        };
        match decode_file(&data) {
            Ok(batch) if batch.tick_ms == key.tick_ms => Ok(batch),
            Ok(_) => Err(corrupt(self, "tick does not match the file name".into())),
            Err(reason) => Err(corrupt(self, reason)),
        }
    }

    /// Removes a batch (delivered, or refused for good).
    pub fn remove(&mut self, key: SpoolKey) -> io::Result<()> {
        if self.forget(key).is_some() {
            match fs::remove_file(self.path(key)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        Ok(())
    }

    /// Total size of the spooled files.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Number of spooled batches.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is spooled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn too_old(&self, tick_ms: i64, now_ms: i64) -> bool {
        now_ms.saturating_sub(tick_ms) > self.limits.max_age.as_millis() as i64
    }

    fn forget(&mut self, key: SpoolKey) -> Option<Entry> {
        let entry = self.entries.remove(&key)?;
        self.total_bytes -= entry.bytes;
        Some(entry)
    }

    fn evict(&mut self, key: SpoolKey) -> Dropped {
        let Some(entry) = self.forget(key) else {
            return Dropped::default();
        };
        if let Err(err) = fs::remove_file(self.path(key))
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.path(key).display(), error = %err, "cannot remove a dropped spool file");
        }
        Dropped::evicted(entry)
    }

    fn path(&self, key: SpoolKey) -> PathBuf {
        self.dir.join(file_name(key))
    }

    fn write_file(&self, key: SpoolKey, batch: &Batch) -> io::Result<()> {
        let name = file_name(key);
        let temp = self.dir.join(format!("{TEMP_PREFIX}{name}"));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&encode_file(batch))?;
            file.sync_all()?;
            fs::rename(&temp, self.dir.join(&name))?;
            // The rename is durable only once the directory is synced.
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

fn file_name(key: SpoolKey) -> String {
    format!("{:020}-{:010}{SUFFIX}", key.tick_ms.max(0), key.seq)
}

fn parse_file_name(name: &str) -> Option<SpoolKey> {
    let (tick, seq) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    Some(SpoolKey {
        tick_ms: tick.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

fn checksum(body: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(body);
    digest[..8].try_into().expect("8 bytes of a 32-byte digest")
}

fn encode_file(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + batch.body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&batch.tick_ms.to_le_bytes());
    out.extend_from_slice(&batch.samples.to_le_bytes());
    out.extend_from_slice(&(batch.body.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(&batch.body));
    out.extend_from_slice(&message_code(batch.version).to_le_bytes());
    out.extend_from_slice(&batch.body);
    out
}

fn message_code(version: Version) -> u64 {
    match version {
        Version::V1 => 1,
        Version::V2 => 2,
    }
}

struct Header {
    /// Length of the header itself (it depends on the layout).
    len: usize,
    tick_ms: i64,
    samples: u64,
    body_len: u64,
    checksum: [u8; 8],
    version: Version,
}

enum HeaderError {
    Corrupt(String),
    Io(io::Error),
}

fn parse_header(data: &[u8]) -> Result<Header, String> {
    let len = match data.get(..8) {
        Some(magic) if magic == MAGIC => HEADER_LEN,
        Some(magic) if magic == MAGIC_V1_ONLY => HEADER_LEN_V1_ONLY,
        Some(_) => return Err("bad magic".into()),
        None => return Err(format!("{} bytes, shorter than the header", data.len())),
    };
    if data.len() < len {
        return Err(format!("{} bytes, shorter than the header", data.len()));
    }
    let word = |at: usize| -> [u8; 8] { data[at..at + 8].try_into().expect("8 bytes") };
    let version = if len == HEADER_LEN_V1_ONLY {
        Version::V1
    } else {
        match u64::from_le_bytes(word(40)) {
            1 => Version::V1,
            2 => Version::V2,
            other => return Err(format!("unknown protobuf message {other}")),
        }
    };
    Ok(Header {
        len,
        tick_ms: i64::from_le_bytes(word(8)),
        samples: u64::from_le_bytes(word(16)),
        body_len: u64::from_le_bytes(word(24)),
        checksum: word(32),
        version,
    })
}

/// Reads and checks the header, and that the file is exactly as long as it
/// says (a torn write is shorter).
fn read_header(path: &Path) -> Result<Header, HeaderError> {
    let mut file = File::open(path).map_err(HeaderError::Io)?;
    let len = file.metadata().map_err(HeaderError::Io)?.len();
    let mut head = [0u8; HEADER_LEN];
    let read = read_up_to(&mut file, &mut head).map_err(HeaderError::Io)?;
    let header = parse_header(&head[..read]).map_err(HeaderError::Corrupt)?;
    if header.len as u64 + header.body_len != len {
        return Err(HeaderError::Corrupt(
            "length does not match the header".into(),
        ));
    }
    Ok(header)
}

/// Reads until `buf` is full or the file ends (one `read` may return less).
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

fn decode_file(data: &[u8]) -> Result<Batch, String> {
    let header = parse_header(data)?;
    let body = &data[header.len..];
    if body.len() as u64 != header.body_len {
        return Err(format!(
            "body is {} bytes, header says {}",
            body.len(),
            header.body_len
        ));
    }
    if checksum(body) != header.checksum {
        return Err("checksum mismatch".into());
    }
    Ok(Batch {
        tick_ms: header.tick_ms,
        samples: header.samples,
        version: header.version,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn batch(tick_ms: i64, size: usize) -> Batch {
        Batch {
            tick_ms,
            samples: size as u64 / 10,
            version: if tick_ms % 2 == 0 {
                Version::V2
            } else {
                Version::V1
            },
            body: (0..size)
                .map(|i| (i as u64 * 31 + tick_ms as u64) as u8)
                .collect(),
        }
    }

    fn roomy() -> SpoolLimits {
        SpoolLimits {
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(86_400),
        }
    }

    fn drain(spool: &mut Spool) -> Vec<i64> {
        let mut ticks = Vec::new();
        while let Some(key) = spool.oldest() {
            ticks.push(spool.read(key).unwrap().tick_ms);
            spool.remove(key).unwrap();
        }
        ticks
    }

    #[test]
    fn batches_come_back_oldest_first_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), roomy()).unwrap();
        for tick in [NOW - 3_000, NOW - 1_000, NOW - 2_000] {
            spool.push(&batch(tick, 100), NOW).unwrap();
        }
        let first = spool.oldest().unwrap();
        assert_eq!(spool.read(first).unwrap(), batch(NOW - 3_000, 100));
        drop(spool);

        let (mut reopened, dropped) = Spool::open(dir.path(), roomy()).unwrap();
        assert_eq!(dropped, Dropped::default());
        assert_eq!(reopened.len(), 3);
        assert_eq!(reopened.bytes(), 3 * (HEADER_LEN as u64 + 100));
        assert_eq!(
            drain(&mut reopened),
            vec![NOW - 3_000, NOW - 2_000, NOW - 1_000]
        );
        assert_eq!(reopened.bytes(), 0);
        // New batches after a reopen never reuse a file name.
        reopened.push(&batch(NOW, 10), NOW).unwrap();
        reopened.push(&batch(NOW, 10), NOW).unwrap();
        assert_eq!(reopened.len(), 2);
    }

    #[test]
    fn size_bound_drops_oldest_first_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let per_file = HEADER_LEN as u64 + 200;
        let limits = SpoolLimits {
            max_bytes: 3 * per_file + 10,
            max_age: Duration::from_secs(86_400),
        };
        let (mut spool, _) = Spool::open(dir.path(), limits).unwrap();
        let mut dropped = Dropped::default();
        for i in 0..10 {
            dropped.add(
                spool
                    .push(&batch(NOW - 10_000 + i * 1_000, 200), NOW)
                    .unwrap(),
            );
            assert!(
                spool.bytes() <= limits.max_bytes,
                "over the limit after push {i}"
            );
            let on_disk: u64 = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            assert_eq!(on_disk, spool.bytes());
        }
        assert_eq!(
            dropped,
            Dropped {
                batches: 7,
                samples: 7 * 20,
                corrupt: 0
            }
        );
        assert_eq!(
            drain(&mut spool),
            vec![NOW - 3_000, NOW - 2_000, NOW - 1_000]
        );

        // A batch bigger than the whole limit is dropped itself.
        let big = spool.push(&batch(NOW, 5_000), NOW).unwrap();
        assert_eq!(big.batches, 1);
        assert!(spool.is_empty());
    }

    #[test]
    fn age_bound_drops_batches_past_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        };
        let (mut spool, _) = Spool::open(dir.path(), limits).unwrap();
        spool.push(&batch(NOW - 50_000, 10), NOW).unwrap();
        spool.push(&batch(NOW - 20_000, 10), NOW).unwrap();
        assert_eq!(spool.expire(NOW + 15_000).batches, 1);
        assert_eq!(drain(&mut spool), vec![NOW - 20_000]);
        // Already too old when it arrives.
        assert_eq!(
            spool.push(&batch(NOW - 61_000, 10), NOW).unwrap().batches,
            1
        );
        assert!(spool.is_empty());
    }

    #[test]
    fn corrupt_and_torn_files_are_skipped_counted_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), roomy()).unwrap();
        for tick in [NOW - 4_000, NOW - 3_000, NOW - 2_000, NOW - 1_000] {
            spool.push(&batch(tick, 100), NOW).unwrap();
        }
        drop(spool);
        let mut files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        // A flipped body byte (caught by the checksum on read)...
        let mut data = fs::read(&files[0]).unwrap();
        data[HEADER_LEN + 5] ^= 0xff;
        fs::write(&files[0], data).unwrap();
        // ...a torn write (caught by the length on open)...
        let data = fs::read(&files[2]).unwrap();
        fs::write(&files[2], &data[..HEADER_LEN + 10]).unwrap();
        // ...garbage, and a temporary file a crash left behind.
        fs::write(&files[3], b"not a spool file").unwrap();
        fs::write(
            dir.path()
                .join(".tmp-00000000000000000001-0000000009.batch"),
            b"x",
        )
        .unwrap();

        let (mut spool, dropped) = Spool::open(dir.path(), roomy()).unwrap();
        assert_eq!(dropped.corrupt, 2, "{dropped:?}");
        assert_eq!(spool.len(), 2);
        let key = spool.oldest().unwrap();
        match spool.read(key) {
            Err(SpoolError::Corrupt { dropped, .. }) => {
                assert_eq!(
                    dropped,
                    Dropped {
                        batches: 1,
                        samples: 10,
                        corrupt: 1
                    }
                )
            }
            other => panic!("expected a corrupt file, got {other:?}"),
        }
        assert_eq!(drain(&mut spool), vec![NOW - 3_000]);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn files_of_the_first_layout_are_read_as_remote_write_1_0() {
        let dir = tempfile::tempdir().unwrap();
        // As the exporter wrote them before it spoke 2.0.
        let old = |tick_ms: i64, body: &[u8]| {
            let mut out = Vec::new();
            out.extend_from_slice(b"DCMSPL01");
            out.extend_from_slice(&tick_ms.to_le_bytes());
            out.extend_from_slice(&7u64.to_le_bytes());
            out.extend_from_slice(&(body.len() as u64).to_le_bytes());
            out.extend_from_slice(&checksum(body));
            out.extend_from_slice(body);
            out
        };
        let body = b"an old compressed 1.0 request".to_vec();
        let name = file_name(SpoolKey {
            tick_ms: NOW - 2_000,
            seq: 0,
        });
        fs::write(dir.path().join(name), old(NOW - 2_000, &body)).unwrap();
        let (mut spool, dropped) = Spool::open(dir.path(), roomy()).unwrap();
        assert_eq!(dropped, Dropped::default());
        assert_eq!(spool.bytes(), (HEADER_LEN_V1_ONLY + body.len()) as u64);
        // New batches go next to it in the current layout.
        let new = Batch {
            version: Version::V2,
            ..batch(NOW - 1_000, 50)
        };
        spool.push(&new, NOW).unwrap();
        let first = spool.oldest().unwrap();
        assert_eq!(
            spool.read(first).unwrap(),
            Batch {
                tick_ms: NOW - 2_000,
                samples: 7,
                version: Version::V1,
                body,
            }
        );
        spool.remove(first).unwrap();
        let second = spool.oldest().unwrap();
        assert_eq!(spool.read(second).unwrap(), new);
    }

    #[test]
    fn an_unknown_message_code_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), roomy()).unwrap();
        spool.push(&batch(NOW - 1_000, 100), NOW).unwrap();
        drop(spool);
        let file = fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut data = fs::read(&file).unwrap();
        data[40] = 9;
        fs::write(&file, data).unwrap();
        let (spool, dropped) = Spool::open(dir.path(), roomy()).unwrap();
        assert_eq!(dropped.corrupt, 1);
        assert!(spool.is_empty());
    }

    #[test]
    fn file_names_round_trip() {
        let key = SpoolKey {
            tick_ms: NOW,
            seq: 42,
        };
        assert_eq!(parse_file_name(&file_name(key)), Some(key));
        assert_eq!(parse_file_name("1-2.txt"), None);
        assert_eq!(parse_file_name("x-2.batch"), None);
    }
}
