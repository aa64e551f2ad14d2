//! `sockstat`: socket counts per protocol from `/proc/net/sockstat` and
//! `/proc/net/sockstat6`, as `node_sockstat_<PROTO>_<field>`; memory in
//! pages is also given in bytes (`_mem_bytes`), as node_exporter does.

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_optional};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "sockstat";

/// The `sockstat` collector.
#[derive(Debug)]
pub struct SockstatCollector {
    roots: Roots,
    page_size: f64,
}

/// Builds the collector.
pub fn new(config: &Config) -> SockstatCollector {
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as f64;
    SockstatCollector {
        roots: config.roots.clone(),
        page_size,
    }
}

/// `(protocol, field, value)` for every `PROTO: field value …` pair.
pub fn parse_sockstat(path: &Path, text: &str) -> Result<Vec<(String, String, f64)>, CollectError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (protocol, rest) = line
            .split_once(':')
            .ok_or_else(|| CollectError::parse(path, format!("no ':' in line {line:?}")))?;
        let tokens: Vec<&str> = rest.split_ascii_whitespace().collect();
        if tokens.is_empty() || !tokens.len().is_multiple_of(2) {
            return Err(CollectError::parse(
                path,
                format!("odd field list in line {line:?}"),
            ));
        }
        for pair in tokens.chunks_exact(2) {
            let value: f64 = pair[1].parse().map_err(|_| {
                CollectError::parse(path, format!("bad value {:?} in line {line:?}", pair[1]))
            })?;
            out.push((protocol.trim().to_owned(), pair[0].to_owned(), value));
        }
    }
    Ok(out)
}

impl Collector for SockstatCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let mut found = false;
        for file in ["net/sockstat", "net/sockstat6"] {
            let path = self.roots.proc(file);
            let Some(text) = read_optional(&path)? else {
                continue;
            };
            found = true;
            for (protocol, field, value) in parse_sockstat(&path, &text)? {
                if protocol == "sockets" && field == "used" {
                    out.gauge(
                        "node_sockstat_sockets_used",
                        "Number of IPv4 sockets in use.",
                        vec![],
                        value,
                    );
                    continue;
                }
                let mut emit = |field: &str, value: f64| {
                    out.gauge(
                        format!("node_sockstat_{protocol}_{field}"),
                        format!("Number of {protocol} sockets in state {field}."),
                        vec![],
                        value,
                    );
                };
                emit(&field, value);
                if field == "mem" {
                    emit("mem_bytes", value * self.page_size);
                }
            }
        }
        if found {
            Ok(())
        } else {
            Err(CollectError::NoData("no /proc/net/sockstat".into()))
        }
    }
}
