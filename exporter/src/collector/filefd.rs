//! `filefd`: allocated and maximum file handles from `/proc/sys/fs/file-nr`.

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_string};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "filefd";

/// `(allocated, maximum)` from the three columns of `file-nr`.
pub fn parse_file_nr(path: &Path, text: &str) -> Result<(f64, f64), CollectError> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let [allocated, _unused, maximum] = fields[..] else {
        return Err(CollectError::parse(
            path,
            format!("expected 3 columns, got {text:?}"),
        ));
    };
    // The kernel ends the line with a newline; without it the read was short.
    if !text.ends_with('\n') {
        return Err(CollectError::parse(
            path,
            format!("truncated line {text:?}"),
        ));
    }
    let number = |t: &str| {
        t.parse::<f64>()
            .map_err(|_| CollectError::parse(path, format!("bad number {t:?}")))
    };
    Ok((number(allocated)?, number(maximum)?))
}

/// The `filefd` collector.
#[derive(Debug)]
pub struct FilefdCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> FilefdCollector {
    FilefdCollector {
        roots: config.roots.clone(),
    }
}

impl Collector for FilefdCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let path = self.roots.proc("sys/fs/file-nr");
        let (allocated, maximum) = parse_file_nr(&path, &read_string(&path)?)?;
        out.gauge(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            vec![],
            allocated,
        );
        out.gauge(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            vec![],
            maximum,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_nr() {
        assert_eq!(
            parse_file_nr(Path::new("f"), "1024\t0\t1631329\n").unwrap(),
            (1024.0, 1631329.0)
        );
        assert!(parse_file_nr(Path::new("f"), "1024 0").is_err());
        assert!(
            parse_file_nr(Path::new("f"), "1024\t0\t16").is_err(),
            "no newline: short read"
        );
    }
}
