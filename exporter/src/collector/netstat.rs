//! `netstat`: selected network protocol counters from `/proc/net/netstat`,
//! `/proc/net/snmp` (header/value line pairs) and `/proc/net/snmp6`
//! (`Name value` lines), as `node_netstat_<Proto>_<Field>`, untyped, with
//! node_exporter's default field selection.

use std::path::Path;

use regex::Regex;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_optional};
use crate::snapshot::{Kind, Snapshot};

/// Flag and label name.
pub const NAME: &str = "netstat";

/// The fields exported by default: what node_exporter exports by default.
pub const DEFAULT_FIELDS: &str = "^(Ip6_(InOctets|OutOctets)|Icmp6?_(InErrors|InMsgs|OutMsgs)|Ip_Forwarding|IpExt_(InOctets|OutOctets)|Tcp_(ActiveOpens|CurrEstab|InErrs|InSegs|OutRsts|OutSegs|PassiveOpens|RetransSegs)|TcpExt_(ListenDrops|ListenOverflows|Syncookies(Failed|Recv|Sent)|TCPOFOQueue|TCPRcvQDrop|TCPSynRetrans|TCPTimeouts)|Udp6?_(InDatagrams|InErrors|NoPorts|OutDatagrams|RcvbufErrors|SndbufErrors)|UdpLite6?_InErrors)$";

/// The `netstat` collector.
#[derive(Debug)]
pub struct NetstatCollector {
    roots: Roots,
    fields: Regex,
}

/// Builds the collector.
pub fn new(config: &Config) -> NetstatCollector {
    NetstatCollector {
        roots: config.roots.clone(),
        fields: Regex::new(DEFAULT_FIELDS).expect("valid default"),
    }
}

/// `(protocol, field, value)` from the header/value line pairs of
/// `/proc/net/netstat` and `/proc/net/snmp`.
pub fn parse_paired(path: &Path, text: &str) -> Result<Vec<(String, String, f64)>, CollectError> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if !lines.len().is_multiple_of(2) {
        return Err(CollectError::parse(
            path,
            "header line without its value line",
        ));
    }
    let mut out = Vec::new();
    for pair in lines.chunks_exact(2) {
        let (proto, names) = pair[0]
            .split_once(':')
            .ok_or_else(|| CollectError::parse(path, format!("no ':' in {:?}", pair[0])))?;
        let (value_proto, values) = pair[1]
            .split_once(':')
            .ok_or_else(|| CollectError::parse(path, format!("no ':' in {:?}", pair[1])))?;
        let names: Vec<&str> = names.split_ascii_whitespace().collect();
        let values: Vec<&str> = values.split_ascii_whitespace().collect();
        if proto != value_proto || names.len() != values.len() {
            return Err(CollectError::parse(
                path,
                format!("mismatched {proto} header and value lines"),
            ));
        }
        for (name, value) in names.iter().zip(values) {
            let value: f64 = value.parse().map_err(|_| {
                CollectError::parse(path, format!("bad value {value:?} for {proto}{name}"))
            })?;
            out.push((proto.to_owned(), (*name).to_owned(), value));
        }
    }
    Ok(out)
}

/// `(protocol, field, value)` from `/proc/net/snmp6` lines such as
/// `Ip6InOctets 123`: the protocol ends at its `6`.
pub fn parse_snmp6(path: &Path, text: &str) -> Result<Vec<(String, String, f64)>, CollectError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split_ascii_whitespace();
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            return Err(CollectError::parse(
                path,
                format!("expected 'Name value', got {line:?}"),
            ));
        };
        let Some(split) = name.find('6').map(|i| i + 1) else {
            continue;
        };
        let value: f64 = value
            .parse()
            .map_err(|_| CollectError::parse(path, format!("bad value {value:?} for {name}")))?;
        out.push((name[..split].to_owned(), name[split..].to_owned(), value));
    }
    Ok(out)
}

impl Collector for NetstatCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        type Parser = fn(&Path, &str) -> Result<Vec<(String, String, f64)>, CollectError>;
        let sources: [(&str, Parser); 3] = [
            ("net/netstat", parse_paired),
            ("net/snmp", parse_paired),
            ("net/snmp6", parse_snmp6),
        ];
        let mut found = false;
        for (file, parse) in sources {
            let path = self.roots.proc(file);
            let Some(text) = read_optional(&path)? else {
                continue;
            };
            found = true;
            for (proto, field, value) in parse(&path, &text)? {
                let key = format!("{proto}_{field}");
                if !self.fields.is_match(&key) {
                    continue;
                }
                out.family(
                    format!("node_netstat_{key}"),
                    format!("Statistic {proto}{field}."),
                    Kind::Untyped,
                )
                .push(vec![], value);
            }
        }
        if found {
            Ok(())
        } else {
            Err(CollectError::NoData(
                "no /proc/net/netstat or /proc/net/snmp".into(),
            ))
        }
    }
}
