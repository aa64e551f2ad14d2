//! `udp_queues`: bytes queued in UDP sockets, summed over the
//! `tx_queue:rx_queue` column of `/proc/net/udp` and `/proc/net/udp6`, as
//! node_exporter's `node_udp_queues{ip,queue}`. A missing file (no IPv6)
//! leaves that protocol out.

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_optional};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "udp_queues";

/// The `udp_queues` collector.
#[derive(Debug)]
pub struct UdpQueuesCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> UdpQueuesCollector {
    UdpQueuesCollector {
        roots: config.roots.clone(),
    }
}

/// `(tx, rx)` bytes summed over every socket line.
pub fn sum_queues(path: &Path, text: &str) -> Result<(u64, u64), CollectError> {
    let mut lines = text.lines();
    let header = lines.next().and_then(|h| h.split_ascii_whitespace().next());
    if header != Some("sl") {
        return Err(CollectError::parse(
            path,
            "no 'sl local_address ...' header line",
        ));
    }
    let (mut tx, mut rx) = (0u64, 0u64);
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let queues = line
            .split_ascii_whitespace()
            .nth(4)
            .ok_or_else(|| CollectError::parse(path, format!("short line {line:?}")))?;
        let (t, r) = queues
            .split_once(':')
            .ok_or_else(|| CollectError::parse(path, format!("bad queue field {queues:?}")))?;
        let hex = |v: &str| {
            u64::from_str_radix(v, 16)
                .map_err(|_| CollectError::parse(path, format!("bad queue field {queues:?}")))
        };
        let overflow = || CollectError::parse(path, "queue sum overflows");
        tx = tx.checked_add(hex(t)?).ok_or_else(overflow)?;
        rx = rx.checked_add(hex(r)?).ok_or_else(overflow)?;
    }
    Ok((tx, rx))
}

impl Collector for UdpQueuesCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let mut found = false;
        for (file, ip) in [("net/udp", "v4"), ("net/udp6", "v6")] {
            let path = self.roots.proc(file);
            let Some(text) = read_optional(&path)? else {
                continue;
            };
            found = true;
            let (tx, rx) = sum_queues(&path, &text)?;
            for (queue, value) in [("tx", tx), ("rx", rx)] {
                out.gauge(
                    "node_udp_queues",
                    "Number of allocated memory in the kernel for UDP datagrams in bytes.",
                    vec![("ip", ip.to_owned()), ("queue", queue.to_owned())],
                    value as f64,
                );
            }
        }
        if found {
            Ok(())
        } else {
            Err(CollectError::NoData("no /proc/net/udp or udp6".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_both_queues() {
        let p = Path::new("udp");
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when\n\
            0: 00000000:0016 00000000:0000 0A 00000015:00000001 00:00000000 00000000\n\
            1: 00000000:0017 00000000:0000 0A 00000001:00000100 00:00000000 00000000\n";
        assert_eq!(sum_queues(p, text).unwrap(), (0x16, 0x101));
        assert!(sum_queues(p, "garbage\n").is_err());
        assert!(sum_queues(p, "  sl x\n 0: a b c zz:00\n").is_err());
    }
}
