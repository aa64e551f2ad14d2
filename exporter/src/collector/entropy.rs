//! `entropy`: the kernel entropy pool from `/proc/sys/kernel/random/`,
//! as node_exporter's `node_entropy_available_bits` and
//! `node_entropy_pool_size_bits`.

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_string};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "entropy";

/// The `entropy` collector.
#[derive(Debug)]
pub struct EntropyCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> EntropyCollector {
    EntropyCollector {
        roots: config.roots.clone(),
    }
}

impl EntropyCollector {
    fn bits(&self, file: &str) -> Result<f64, CollectError> {
        let path = self.roots.proc(&format!("sys/kernel/random/{file}"));
        let text = read_string(&path)?;
        text.trim()
            .parse::<u64>()
            .map(|v| v as f64)
            .map_err(|_| CollectError::parse(&path, format!("not a number: {text:?}")))
    }
}

impl Collector for EntropyCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        out.gauge(
            "node_entropy_available_bits",
            "Bits of available entropy.",
            vec![],
            self.bits("entropy_avail")?,
        );
        out.gauge(
            "node_entropy_pool_size_bits",
            "Bits of entropy pool.",
            vec![],
            self.bits("poolsize")?,
        );
        Ok(())
    }
}
