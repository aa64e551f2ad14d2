//! `textfile`: metrics operators write themselves (RAID state, backup and
//! cron results) as `*.prom` files in the `--collector.textfile.directory`
//! directories, exported and shipped like any collector's, with
//! node_exporter's rules:
//!
//! - every `*.prom` file is parsed as text exposition (`dcmon_protocol::exposition::parse`);
//!   a file that does not parse, cannot be read, or carries client-side
//!   timestamps is skipped whole, logged with its path (and line), and sets
//!   `node_textfile_scrape_error` to 1, as does a directory that cannot be
//!   read;
//! - `node_textfile_mtime_seconds{file}` for each file read;
//! - a family may span files: the first HELP and TYPE seen win; a later
//!   file's family with another HELP or TYPE, and a series already read
//!   from an earlier file, are dropped with an error; a family no file
//!   documents gets the HELP `Metric read from <files>`.
//!
//! Files are read on every scrape and nothing is kept between scrapes.
//! Label names are interned for the life of the process (the snapshot's
//! label names are `'static`), at most [`MAX_LABEL_NAMES`] distinct ones,
//! so files generating label names cannot grow the exporter without bound.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::snapshot::{Kind, SampleLabels, Snapshot};
use dcmon_protocol::exposition::parse::{self, MetricType, TextFamily};

/// Flag and label name.
pub const NAME: &str = "textfile";

/// Distinct label names the process will intern from text files.
pub const MAX_LABEL_NAMES: usize = 1024;

/// The `textfile` collector.
#[derive(Debug)]
pub struct TextfileCollector {
    directories: Vec<PathBuf>,
}

/// Builds the collector.
pub fn new(config: &Config) -> TextfileCollector {
    TextfileCollector {
        directories: config.textfile_directories.clone(),
    }
}

fn intern(name: &str) -> Option<&'static str> {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.get(name) {
        return Some(known);
    }
    if names.len() >= MAX_LABEL_NAMES {
        return None;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    Some(leaked)
}

/// One family merged over the files that mention it.
struct Merged {
    name: String,
    help: Option<String>,
    kind: MetricType,
    files: Vec<String>,
    samples: Vec<(String, SampleLabels, f64)>,
}

#[derive(Default)]
struct Merger {
    families: Vec<Merged>,
    index: HashMap<String, usize>,
    /// `(sample name, sorted labels)` of every series taken so far.
    series: HashSet<(String, Vec<(String, String)>)>,
    errored: bool,
}

impl Merger {
    fn conflict(&mut self, file: &str, family: &str, problem: &str) {
        tracing::error!(
            file,
            metric = family,
            "{problem}; the file's samples of it are dropped"
        );
        self.errored = true;
    }

    fn add(&mut self, file: &str, family: TextFamily) {
        let slot = match self.index.get(&family.name) {
            Some(&i) => {
                let known = &self.families[i];
                if known.kind != family.kind {
                    let problem = format!(
                        "metric family is {} in an earlier file, {} here",
                        known.kind.as_str(),
                        family.kind.as_str()
                    );
                    return self.conflict(file, &family.name, &problem);
                }
                if let (Some(first), Some(this)) = (&known.help, &family.help)
                    && first != this
                {
                    let problem = format!(
                        "inconsistent metric help text: {this:?} here, {first:?} in {}",
                        known.files[0]
                    );
                    return self.conflict(file, &family.name, &problem);
                }
                i
            }
            None => {
                self.families.push(Merged {
                    name: family.name.clone(),
                    help: None,
                    kind: family.kind,
                    files: Vec::new(),
                    samples: Vec::new(),
                });
                self.index
                    .insert(family.name.clone(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let mut taken = Vec::new();
        for sample in family.samples {
            let mut key = sample.labels.clone();
            key.sort();
            if !self.series.insert((sample.name.clone(), key)) {
                tracing::error!(
                    file,
                    metric = sample.name,
                    "series already read from an earlier file; dropped"
                );
                self.errored = true;
                continue;
            }
            let labels: Option<SampleLabels> = sample
                .labels
                .into_iter()
                .map(|(name, value)| intern(&name).map(|name| (name, value)))
                .collect();
            let Some(labels) = labels else {
                tracing::error!(
                    file,
                    metric = sample.name,
                    "more than {MAX_LABEL_NAMES} distinct label names in text files; sample dropped"
                );
                self.errored = true;
                continue;
            };
            taken.push((sample.name, labels, sample.value));
        }
        let merged = &mut self.families[slot];
        merged.help = merged.help.take().or(family.help);
        merged.files.push(file.to_owned());
        merged.samples.extend(taken);
    }

    fn emit(self, out: &mut Snapshot) {
        for family in self.families {
            let help = family
                .help
                .unwrap_or_else(|| format!("Metric read from {}", family.files.join(", ")));
            // The snapshot knows counters, gauges and untyped families. A
            // counter whose name lacks `_total` would be renamed by the
            // encoder, and histogram and summary series are plain samples
            // to it: those are exported as untyped, under their own names.
            let kind = match family.kind {
                MetricType::Counter if family.name.ends_with("_total") => Kind::Counter,
                MetricType::Gauge => Kind::Gauge,
                _ => Kind::Untyped,
            };
            for (name, labels, value) in family.samples {
                out.family(name, help.clone(), kind).push(labels, value);
            }
        }
    }
}

/// The file's text and modification time, read from one open handle.
fn read_file(path: &Path) -> std::io::Result<(String, f64)> {
    let mut file = std::fs::File::open(path)?;
    let modified = file.metadata()?.modified()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let millis = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0);
    Ok((text, millis / 1000.0))
}

fn prom_files(directory: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "prom"))
        .collect();
    files.sort();
    Ok(files)
}

impl Collector for TextfileCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let mut merger = Merger::default();
        let mut mtimes = Vec::new();
        for directory in &self.directories {
            let files = match prom_files(directory) {
                Ok(files) => files,
                Err(err) => {
                    tracing::error!(
                        directory = %directory.display(),
                        error = %err,
                        "failed to read textfile collector directory"
                    );
                    merger.errored = true;
                    continue;
                }
            };
            for path in files {
                let shown = path.display().to_string();
                let (text, mtime) = match read_file(&path) {
                    Ok(read) => read,
                    Err(err) => {
                        tracing::error!(file = shown, error = %err, "failed to read textfile");
                        merger.errored = true;
                        continue;
                    }
                };
                match parse::parse(&text) {
                    Ok(families) => {
                        for family in families.into_iter().filter(|f| !f.samples.is_empty()) {
                            merger.add(&shown, family);
                        }
                        mtimes.push((shown, mtime));
                    }
                    Err(err) => {
                        tracing::error!(
                            file = shown,
                            line = err.line,
                            error = err.msg,
                            "failed to parse textfile data; file skipped"
                        );
                        merger.errored = true;
                    }
                }
            }
        }
        let errored = merger.errored;
        merger.emit(out);
        for (file, mtime) in mtimes {
            out.gauge(
                "node_textfile_mtime_seconds",
                "Unixtime mtime of textfiles successfully read.",
                vec![("file", file)],
                mtime,
            );
        }
        out.gauge(
            "node_textfile_scrape_error",
            "1 if there was an error opening or reading a file, 0 otherwise",
            vec![],
            if errored { 1.0 } else { 0.0 },
        );
        Ok(())
    }
}
