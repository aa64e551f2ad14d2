//! `conntrack`: the netfilter connection-tracking table, as node_exporter's
//! `node_nf_conntrack_entries`, `_entries_limit` (from
//! `/proc/sys/net/netfilter/`) and `node_nf_conntrack_stat_*` (summed over
//! the per-CPU rows of `/proc/net/stat/nf_conntrack`). The conntrack-limit
//! alert compares the first two.

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_optional};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "conntrack";

/// `(column in the stat file's header = metric suffix, HELP)`.
const STATS: [(&str, &str); 8] = [
    ("found", "Number of searched entries which were successful."),
    (
        "invalid",
        "Number of packets seen which can not be tracked.",
    ),
    (
        "ignore",
        "Number of packets seen which are already connected to a conntrack entry.",
    ),
    ("insert", "Number of entries inserted into the list."),
    (
        "insert_failed",
        "Number of entries for which list insertion was attempted but failed.",
    ),
    (
        "drop",
        "Number of packets dropped due to conntrack failure.",
    ),
    (
        "early_drop",
        "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached.",
    ),
    (
        "search_restart",
        "Number of conntrack table lookups which had to be restarted due to hashtable resizes.",
    ),
];

/// The `conntrack` collector.
#[derive(Debug)]
pub struct ConntrackCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> ConntrackCollector {
    ConntrackCollector {
        roots: config.roots.clone(),
    }
}

/// Sums every column of `/proc/net/stat/nf_conntrack` over its per-CPU
/// rows (hexadecimal), keyed by the header's column names.
pub fn parse_stat(path: &Path, text: &str) -> Result<Vec<(String, u64)>, CollectError> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| CollectError::parse(path, "empty file"))?
        .split_ascii_whitespace()
        .collect();
    if header.first() != Some(&"entries") {
        return Err(CollectError::parse(path, "no 'entries ...' header line"));
    }
    let mut sums = vec![0u64; header.len()];
    for (number, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() != header.len() {
            return Err(CollectError::parse(
                path,
                format!(
                    "row {} has {} columns, the header {}",
                    number + 1,
                    fields.len(),
                    header.len()
                ),
            ));
        }
        for (sum, field) in sums.iter_mut().zip(&fields) {
            let value = u64::from_str_radix(field, 16)
                .map_err(|_| CollectError::parse(path, format!("bad hex number {field:?}")))?;
            *sum = sum
                .checked_add(value)
                .ok_or_else(|| CollectError::parse(path, "counter sum overflows"))?;
        }
    }
    Ok(header.into_iter().map(str::to_owned).zip(sums).collect())
}

fn read_count(path: &Path) -> Result<Option<f64>, CollectError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    text.trim()
        .parse::<u64>()
        .map(|v| Some(v as f64))
        .map_err(|_| CollectError::parse(path, format!("not a number: {text:?}")))
}

fn not_loaded(path: &Path) -> CollectError {
    CollectError::NoData(format!(
        "{} is missing: conntrack is probably not loaded",
        path.display()
    ))
}

impl Collector for ConntrackCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let count = self.roots.proc("sys/net/netfilter/nf_conntrack_count");
        let entries = read_count(&count)?.ok_or_else(|| not_loaded(&count))?;
        out.gauge(
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
            vec![],
            entries,
        );
        let max = self.roots.proc("sys/net/netfilter/nf_conntrack_max");
        let limit = read_count(&max)?.ok_or_else(|| not_loaded(&max))?;
        out.gauge(
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
            vec![],
            limit,
        );
        let path = self.roots.proc("net/stat/nf_conntrack");
        let text = read_optional(&path)?.ok_or_else(|| not_loaded(&path))?;
        let sums = parse_stat(&path, &text)?;
        for (column, help) in STATS {
            let value = sums
                .iter()
                .find(|(name, _)| name == column)
                .map(|(_, v)| *v)
                .ok_or_else(|| CollectError::parse(&path, format!("no {column:?} column")))?;
            out.gauge(
                format!("node_nf_conntrack_stat_{column}"),
                help,
                vec![],
                value as f64,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_ragged_rows_and_bad_numbers() {
        let p = Path::new("nf_conntrack");
        assert!(parse_stat(p, "entries found\n00000001 00000002\n").is_ok());
        assert!(parse_stat(p, "entries found\n00000001\n").is_err());
        assert!(parse_stat(p, "entries found\n00000001 zz\n").is_err());
        assert!(parse_stat(p, "found entries\n").is_err());
        assert!(parse_stat(p, "entries\nffffffffffffffff\n0000000000000001\n").is_err());
    }
}
