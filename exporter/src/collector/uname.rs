//! `uname`: `node_uname_info` from the uname(2) system call, as node_exporter
//! does (so it describes the running kernel even with `--path.procfs`).

use super::{CollectError, Collector};
use crate::config::Config;
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "uname";

/// The `uname` collector.
#[derive(Debug)]
pub struct UnameCollector;

/// Builds the collector.
pub fn new(_config: &Config) -> UnameCollector {
    UnameCollector
}

impl Collector for UnameCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let uts =
            nix::sys::utsname::uname().map_err(|e| CollectError::NoData(format!("uname: {e}")))?;
        let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
        let nodename = text(uts.nodename());
        let domainname = text(uts.domainname());
        out.gauge(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
            vec![
                ("domainname", domainname),
                ("machine", text(uts.machine())),
                ("nodename", nodename),
                ("release", text(uts.release())),
                ("sysname", text(uts.sysname())),
                ("version", text(uts.version())),
            ],
            1.0,
        );
        Ok(())
    }
}
