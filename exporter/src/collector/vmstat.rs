//! `vmstat`: selected `/proc/vmstat` counters (page faults, paging and
//! swapping, OOM kills) as `node_vmstat_<field>`, untyped as in node_exporter.

use regex::Regex;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_string};
use crate::snapshot::{Kind, Snapshot};

/// Flag and label name.
pub const NAME: &str = "vmstat";

/// node_exporter's default `--collector.vmstat.fields`.
pub const DEFAULT_FIELDS: &str = "^(oom_kill|pgpg|pswp|pg.*fault).*";

/// The `vmstat` collector.
#[derive(Debug)]
pub struct VmstatCollector {
    roots: Roots,
    fields: Regex,
}

/// Builds the collector.
pub fn new(config: &Config) -> VmstatCollector {
    VmstatCollector {
        roots: config.roots.clone(),
        fields: Regex::new(DEFAULT_FIELDS).expect("valid default"),
    }
}

impl Collector for VmstatCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let path = self.roots.proc("vmstat");
        let text = read_string(&path)?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split_ascii_whitespace();
            let (Some(field), Some(value), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(CollectError::parse(
                    &path,
                    format!("expected 'name value', got {line:?}"),
                ));
            };
            if !self.fields.is_match(field) {
                continue;
            }
            let value: f64 = value.parse().map_err(|_| {
                CollectError::parse(&path, format!("bad value {value:?} for {field}"))
            })?;
            out.family(
                format!("node_vmstat_{field}"),
                format!("/proc/vmstat information field {field}."),
                Kind::Untyped,
            )
            .push(vec![], value);
        }
        Ok(())
    }
}
